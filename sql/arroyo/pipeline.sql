-- busflow's pipeline, stateless core, in Arroyo SQL (issue #9).
--
-- Reads RawPosition JSON from bus.raw, refuses what the timely pipeline would refuse on sight
-- (same reason codes), drops exact duplicates of (vehicle_id, ts) within a window, H3-indexes
-- what is left and writes it to bus.positions.arroyo keyed by vehicle id. Refusals go to
-- bus.rejected.arroyo with their reason. What only the timely stage does (route snapping,
-- dedup across any distance in time, stale/implausible-speed checks, GTFS enrichment,
-- future/too-old checks against a clock) is listed in sql/arroyo/README.md.
--
-- Needs the UDFs in sql/arroyo/udfs/ (h3_cell, h3_parent) registered in Arroyo first.
-- Replace the bootstrap_servers value (three times) with your cluster's. Checked by
-- sql/arroyo/check (cargo test); it has not been run on an Arroyo cluster.

-- bus.raw: one RawPosition per message (docs/topics.md). Every payload column is nullable so
-- that a message missing a required field still arrives as a row, refused as missing_field,
-- instead of failing the pipeline. Messages that are not JSON, or carry a field of the wrong
-- JSON type, cannot become rows at all: bad_data = 'drop' discards them (the timely pipeline
-- sends those to bus.rejected as malformed_json / invalid_field; Arroyo cannot).
CREATE TABLE raw_positions (
    v INT,
    vehicle_id TEXT,
    ts BIGINT,
    lat DOUBLE,
    lon DOUBLE,
    speed_mps FLOAT,
    bearing_deg FLOAT,
    accuracy_m FLOAT,
    route_id TEXT,
    trip_id TEXT,
    seq BIGINT,
    -- Kafka metadata: where the message was, and its key (must equal vehicle_id).
    source_partition INT METADATA FROM 'partition',
    source_offset BIGINT METADATA FROM 'offset_id',
    message_key BYTEA METADATA FROM 'key',
    -- Event time: the device's fix time. A row without ts gets the epoch (it is refused below
    -- anyway, and the epoch never moves the watermark).
    event_time TIMESTAMP GENERATED ALWAYS AS (to_timestamp_millis(coalesce(ts, 0))) STORED,
    -- Fixes may arrive up to 5 s out of order before windows close without them.
    WATERMARK FOR event_time AS event_time - INTERVAL '5 seconds'
) WITH (
    connector = 'kafka',
    bootstrap_servers = 'localhost:9092',
    topic = 'bus.raw',
    type = 'source',
    format = 'json',
    bad_data = 'drop',
    'source.offset' = 'earliest',
    'source.group_id' = 'busflow-arroyo'
);

-- bus.positions.arroyo: one record per accepted (vehicle_id, ts), keyed by vehicle id like
-- every busflow topic. A subset of VehiclePosition (no snapping or GTFS enrichment) plus the
-- resolution-8 parent cell.
CREATE TABLE positions_arroyo (
    v INT NOT NULL,
    vehicle_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    lat DOUBLE NOT NULL,
    lon DOUBLE NOT NULL,
    speed_mps FLOAT,
    bearing_deg FLOAT,
    accuracy_m FLOAT,
    route_id TEXT,
    trip_id TEXT,
    seq BIGINT,
    h3_cell TEXT,
    h3_cell_r8 TEXT,
    "partition" INT,
    "offset" BIGINT
) WITH (
    connector = 'kafka',
    bootstrap_servers = 'localhost:9092',
    topic = 'bus.positions.arroyo',
    type = 'sink',
    format = 'json',
    'sink.key_field' = 'vehicle_id',
    'sink.commit_mode' = 'exactly_once'
);

-- bus.rejected.arroyo: one record per refused row, with the reason code of RejectReason
-- (core/src/contract.rs). Arroyo has only the parsed columns, not the original bytes, so there
-- is no raw_b64; partition and offset point at the original on bus.raw.
CREATE TABLE rejected_arroyo (
    v INT NOT NULL,
    reason TEXT NOT NULL,
    vehicle_id TEXT,
    ts BIGINT,
    lat DOUBLE,
    lon DOUBLE,
    "partition" INT,
    "offset" BIGINT
) WITH (
    connector = 'kafka',
    bootstrap_servers = 'localhost:9092',
    topic = 'bus.rejected.arroyo',
    type = 'sink',
    format = 'json',
    'sink.key_field' = 'vehicle_id',
    'sink.commit_mode' = 'at_least_once'
);

-- The pipeline's checks, in its order (pipeline/src/parse.rs, then `validate` in
-- pipeline/src/process.rs). NULL reason = accepted. Two approximations: SQL trim() strips
-- spaces where Rust's trim() strips all Unicode whitespace, and JSON cannot carry NaN or
-- infinities at all (such messages are dropped as bad data), so isnan() is belt and braces.
CREATE VIEW checked AS
SELECT
    coalesce(v, 1) AS v,
    vehicle_id,
    ts,
    lat,
    lon,
    speed_mps,
    bearing_deg,
    accuracy_m,
    route_id,
    trip_id,
    seq,
    source_partition,
    source_offset,
    CASE
        WHEN vehicle_id IS NULL OR ts IS NULL OR lat IS NULL OR lon IS NULL
            THEN 'missing_field'
        WHEN coalesce(v, 1) <> 1
            THEN 'unsupported_version'
        WHEN char_length(trim(vehicle_id)) = 0 OR octet_length(vehicle_id) > 128
            THEN 'invalid_field'
        WHEN message_key IS NOT NULL AND message_key <> CAST(vehicle_id AS BYTEA)
            THEN 'key_mismatch'
        WHEN isnan(lat) OR isnan(lon)
            OR lat < -90.0 OR lat > 90.0 OR lon < -180.0 OR lon > 180.0
            THEN 'invalid_coordinates'
        WHEN abs(lat) < 0.000001 AND abs(lon) < 0.000001
            THEN 'null_island'
        ELSE NULL
    END AS reason
FROM raw_positions;

INSERT INTO rejected_arroyo
SELECT
    v,
    reason,
    vehicle_id,
    ts,
    lat,
    lon,
    source_partition AS "partition",
    source_offset AS "offset"
FROM checked
WHERE reason IS NOT NULL;

-- Dedup. A duplicate of (vehicle_id, ts) has the same event time, so it always falls into the
-- same tumbling window as the original: within the watermark's 5 s of lateness no duplicate
-- can escape by straddling a window boundary. Rows with the same vehicle, ts and position
-- collapse into one (the timely pipeline drops these and counts them); the first to arrive
-- gives the Kafka position (one vehicle is one partition, so offsets order them). A second row
-- with the same vehicle and ts but another position is what the timely pipeline refuses as
-- `stale`; ROW_NUMBER() over the window (Arroyo's supported pattern: the partition must include
-- the window) keeps the first by offset and sends the others to bus.rejected.arroyo.
CREATE VIEW deduped AS
SELECT
    ROW_NUMBER() OVER (
        PARTITION BY time_window, vehicle_id, ts
        ORDER BY source_offset
    ) AS arrival,
    v,
    vehicle_id,
    ts,
    lat,
    lon,
    speed_mps,
    bearing_deg,
    accuracy_m,
    route_id,
    trip_id,
    seq,
    source_partition,
    source_offset
FROM (
    SELECT
        tumble(INTERVAL '10 seconds') AS time_window,
        vehicle_id,
        ts,
        lat,
        lon,
        min(v) AS v,
        min(speed_mps) AS speed_mps,
        min(bearing_deg) AS bearing_deg,
        min(accuracy_m) AS accuracy_m,
        min(route_id) AS route_id,
        min(trip_id) AS trip_id,
        min(seq) AS seq,
        min(source_partition) AS source_partition,
        min(source_offset) AS source_offset
    FROM checked
    WHERE reason IS NULL
    GROUP BY time_window, vehicle_id, ts, lat, lon
);

INSERT INTO positions_arroyo
SELECT
    v,
    vehicle_id,
    ts,
    lat,
    lon,
    speed_mps,
    bearing_deg,
    accuracy_m,
    route_id,
    trip_id,
    seq,
    h3_cell(lat, lon, 12) AS h3_cell,
    h3_parent(h3_cell(lat, lon, 12), 8) AS h3_cell_r8,
    source_partition AS "partition",
    source_offset AS "offset"
FROM deduped
WHERE arrival = 1;

INSERT INTO rejected_arroyo
SELECT
    v,
    'stale' AS reason,
    vehicle_id,
    ts,
    lat,
    lon,
    source_partition AS "partition",
    source_offset AS "offset"
FROM deduped
WHERE arrival > 1;
