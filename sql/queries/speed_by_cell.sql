-- Average speed per H3 cell (resolution 9) over the last 10 minutes of positions, counted back
-- from the newest position so a recording queries the same as a live topic.
SELECT
    h3_parent(h3_cell, 9) AS cell,
    count(*) AS positions,
    count(DISTINCT vehicle_id) AS vehicles,
    round(avg(speed_mps) * 3.6, 1) AS avg_speed_kmh
FROM positions
WHERE ts >= (SELECT max(ts) FROM positions) - INTERVAL '10 minutes'
  AND speed_mps IS NOT NULL
GROUP BY h3_parent(h3_cell, 9)
ORDER BY positions DESC, cell;
