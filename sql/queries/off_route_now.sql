-- Vehicles off their route now: furthest from the route first.
SELECT
    vehicle_id,
    route_short_name,
    trip_id,
    round(off_route_m) AS off_route_m,
    lat,
    lon,
    ts
FROM vehicles
WHERE status = 'off_route'
ORDER BY off_route_m DESC, vehicle_id;
