-- Headway: minutes between consecutive buses of a route (and direction) passing the same stop,
-- from the positions history. A bus passes stop S when its next stop changes from S to another
-- stop (or to none, at the end of the trip). Consecutive passages by the same vehicle (a loop
-- route coming round again) are not a headway.
WITH steps AS (
    SELECT
        vehicle_id,
        route_short_name,
        direction_id,
        next_stop_id,
        CAST(ts AS BIGINT) AS ts_ms,
        lag(next_stop_id) OVER (PARTITION BY vehicle_id, trip_id ORDER BY ts) AS prev_stop
    FROM positions
    WHERE trip_id IS NOT NULL AND route_short_name IS NOT NULL
),
passages AS (
    SELECT route_short_name, direction_id, prev_stop AS stop_id, vehicle_id, ts_ms
    FROM steps
    WHERE prev_stop IS NOT NULL AND (next_stop_id IS NULL OR next_stop_id <> prev_stop)
),
gaps AS (
    SELECT
        route_short_name,
        direction_id,
        vehicle_id,
        lag(vehicle_id) OVER w AS prev_vehicle,
        (ts_ms - lag(ts_ms) OVER w) / 60000.0 AS gap_min
    FROM passages
    WINDOW w AS (PARTITION BY route_short_name, direction_id, stop_id ORDER BY ts_ms)
)
SELECT
    route_short_name,
    direction_id,
    count(*) AS headways,
    round(avg(gap_min), 1) AS avg_headway_min,
    round(min(gap_min), 1) AS min_headway_min,
    round(max(gap_min), 1) AS max_headway_min,
    sum(CASE WHEN gap_min < 2 THEN 1 ELSE 0 END) AS bunched
FROM gaps
WHERE gap_min IS NOT NULL AND vehicle_id <> prev_vehicle
GROUP BY route_short_name, direction_id
ORDER BY route_short_name, direction_id;
