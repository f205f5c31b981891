-- Vehicles that went stale: their last position is more than 2 minutes older than the newest
-- position in the topic (the gateway drops them from live state at its --stale-after, 120 s).
SELECT
    vehicle_id,
    last_value(route_short_name ORDER BY ts) AS route_short_name,
    max(ts) AS last_fix,
    round((CAST((SELECT max(ts) FROM positions) AS BIGINT) - CAST(max(ts) AS BIGINT)) / 1000.0) AS silent_s
FROM positions
GROUP BY vehicle_id
HAVING max(ts) < (SELECT max(ts) FROM positions) - INTERVAL '2 minutes'
ORDER BY last_fix, vehicle_id;
