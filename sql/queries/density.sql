-- Where the buses are now: active vehicles per H3 cell at resolution 8 (about 0.7 km2), with the
-- cell centre for plotting.
SELECT
    h3_parent(h3_cell, 8) AS cell,
    count(*) AS vehicles,
    round(avg(speed_mps) * 3.6, 1) AS avg_speed_kmh,
    h3_to_lat(h3_parent(h3_cell, 8)) AS lat,
    h3_to_lon(h3_parent(h3_cell, 8)) AS lon
FROM vehicles
GROUP BY h3_parent(h3_cell, 8)
ORDER BY vehicles DESC, cell;
