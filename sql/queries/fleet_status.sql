-- Per-route fleet status now: active vehicles per route by status, their average speed and the
-- newest fix. Vehicles with no route (unassigned) form their own row, last.
SELECT
    route_short_name,
    count(*) AS vehicles,
    sum(CASE WHEN status = 'in_transit' THEN 1 ELSE 0 END) AS in_transit,
    sum(CASE WHEN status = 'stopped' THEN 1 ELSE 0 END) AS stopped,
    sum(CASE WHEN status = 'off_route' THEN 1 ELSE 0 END) AS off_route,
    sum(CASE WHEN status = 'unassigned' THEN 1 ELSE 0 END) AS unassigned,
    round(avg(speed_mps) * 3.6, 1) AS avg_speed_kmh,
    max(ts) AS newest_fix
FROM vehicles
GROUP BY route_short_name
ORDER BY route_short_name IS NULL, vehicles DESC, route_short_name;
