#!/usr/bin/env python3
"""Writes the hand-made seed inputs of every fuzz target into fuzz/corpus/<target>/.

Run once from anywhere (python3 fuzz/make_seeds.py); the fuzzers grow the corpus from these and
`cargo fuzz cmin` keeps it small. The GTFS seeds are small excerpts of data/cairns_gtfs.zip
(one or two trips, a few stops, a thinned shape), so each is a valid feed the loader accepts
and mutations start from the structure of a real one.
"""

import csv
import math
import io
import struct
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
CLOCK_START_MS = 1_764_633_600_000  # fuzz_targets/processor.rs


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def raw_json(vid, ts, lat, lon, extra=""):
    return f'{{"vehicle_id":"{vid}","ts":{ts},"lat":{lat},"lon":{lon}{extra}}}'


# --- raw_position: one payload, optionally `key NUL payload` ---------------------------------
def raw_position_seeds():
    t = CLOCK_START_MS
    seeds = {
        "minimal": raw_json("b1", t, -16.92, 145.77),
        "keyed": "b1\0" + raw_json("b1", t, -16.92, 145.77),
        "key_mismatch": "b2\0" + raw_json("b1", t, -16.92, 145.77),
        "all_fields": raw_json(
            "bus-42", t, -16.9203, 145.7710,
            ',"v":1,"speed_mps":8.5,"bearing_deg":271.0,"accuracy_m":4.0,'
            '"route_id":"110-423","trip_id":"CNS2014-CNS_MUL-Weekday-00-4165878","seq":17',
        ),
        "null_island": raw_json("b1", t, 0.0, 0.0),
        "out_of_range": raw_json("b1", t, 91.5, -181.0),
        "old_version": '{"v":7,"vehicle_id":"b1","ts":1,"lat":1.0,"lon":2.0}',
        "missing_ts": '{"vehicle_id":"b1","lat":1.0,"lon":2.0}',
        "wrong_type": '{"vehicle_id":"b1","ts":"soon","lat":1.0,"lon":2.0}',
        "escapes": raw_json("b\\u00e9\\n\\ud83d\\ude8c", t, -16.9, 145.7),
        "array": "[1,2,3]",
    }
    for name, s in seeds.items():
        write("raw_position", name, s)


# --- processor: one message per line ---------------------------------------------------------
def shape_points(cairns, shape_id, every=1):
    rows = [r for r in cairns["shapes.txt"] if r["shape_id"] == shape_id]
    rows.sort(key=lambda r: int(r["shape_pt_sequence"]))
    return [(float(r["shape_pt_lat"]), float(r["shape_pt_lon"])) for r in rows][::every]


def walk(pts, step_m, n):
    """n points every step_m metres along a polyline (flat-earth steps are fine at this scale)."""
    out, (lat, lon), i = [], pts[0], 1
    while len(out) < n and i < len(pts):
        out.append((round(lat, 6), round(lon, 6)))
        left = step_m
        while i < len(pts):
            dy = (pts[i][0] - lat) * 111_320
            dx = (pts[i][1] - lon) * 111_320 * math.cos(math.radians(lat))
            d = math.hypot(dx, dy)
            if d >= left:
                f = left / d
                lat, lon = lat + (pts[i][0] - lat) * f, lon + (pts[i][1] - lon) * f
                break
            left -= d
            lat, lon = pts[i]
            i += 1
    return out


def processor_seeds(cairns):
    t = CLOCK_START_MS
    # About 12 m/s along a real shape, one fix per second (the harness clock's pace).
    pts = walk(shape_points(cairns, "1100023"), 12.0, 40)
    along = [raw_json("b1", t + i * 1000, lat, lon) for i, (lat, lon) in enumerate(pts)]
    write("processor", "along_shape", "\n".join(along))
    # Two vehicles interleaved, keyed, with device speed and trip hints.
    two = []
    for i, (lat, lon) in enumerate(pts[:20]):
        two.append("b1\0" + raw_json("b1", t + i * 1000, lat, lon, ',"speed_mps":9.0'))
        la, lo = pts[-1 - i]
        two.append(raw_json("b2", t + i * 1000 + 500, la, lo,
                            ',"trip_id":"CNS2014-CNS_MUL-Weekday-00-4165878","bearing_deg":90'))
    write("processor", "two_vehicles", "\n".join(two))
    # Stopped: the same spot for longer than stopped_after, then a duplicate and a stale fix.
    lat, lon = pts[5]
    stop = [raw_json("b3", t + i * 1000, lat, lon) for i in range(35)]
    stop += [stop[-1], raw_json("b3", t, lat, lon)]
    write("processor", "stopped_dup_stale", "\n".join(stop))
    # Off route, a teleport, garbage, and refusals in between.
    mixed = [
        raw_json("b4", t, -16.95, 145.60),
        raw_json("b4", t + 1000, -16.92, 145.77),
        raw_json("b4", t + 2000, -17.50, 146.20),
        "not json",
        raw_json("b4", t + 500_000, -16.92, 145.77),
        raw_json("b4", t - 4_000_000, -16.92, 145.77),
        raw_json("b4", t + 4000, 0.0, 0.0),
        raw_json("b4", t + 5000, -16.9201, 145.7702),
    ]
    write("processor", "mixed", "\n".join(mixed))


# --- gtfs_rt: protobuf FeedMessage (simulator/src/gtfs_rt.rs field numbers) ------------------
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num, wire, payload):
    key = varint((num << 3) | wire)
    if wire == 0:
        return key + varint(payload)
    if wire == 1:
        return key + struct.pack("<d", payload)
    if wire == 5:
        return key + struct.pack("<f", payload)
    return key + varint(len(payload)) + payload  # length-delimited


def s(v):
    return v.encode()


def entity(eid, vid=None, label=None, ts=None, lat=None, lon=None, speed=None, bearing=None,
           trip=None, route=None, deleted=None):
    pos = b""
    if lat is not None:
        pos += field(1, 5, lat)
    if lon is not None:
        pos += field(2, 5, lon)
    if bearing is not None:
        pos += field(3, 5, bearing)
    if speed is not None:
        pos += field(5, 5, speed)
    vp = b""
    if trip or route:
        td = (field(1, 2, s(trip)) if trip else b"") + (field(5, 2, s(route)) if route else b"")
        vp += field(1, 2, td)
    if pos:
        vp += field(2, 2, pos)
    if ts is not None:
        vp += field(5, 0, ts)
    if vid or label:
        vd = (field(1, 2, s(vid)) if vid else b"") + (field(2, 2, s(label)) if label else b"")
        vp += field(8, 2, vd)
    e = field(1, 2, s(eid))
    if deleted is not None:
        e += field(2, 0, int(deleted))
    return field(2, 2, e + field(4, 2, vp))


def header(ts):
    return field(1, 2, field(1, 2, b"2.0") + field(2, 0, 0) + field(3, 0, ts))


def gtfs_rt_seeds():
    t = CLOCK_START_MS // 1000
    write("gtfs_rt", "one_vehicle",
          header(t) + entity("e1", vid="b1", ts=t, lat=-16.92, lon=145.77, speed=8.0,
                             bearing=270.0, trip="CNS2014-CNS_MUL-Weekday-00-4165878",
                             route="110-423"))
    write("gtfs_rt", "fallbacks",
          header(t)
          + entity("e1", label="lbl", lat=-16.9, lon=145.7)  # id from the label, ts from header
          + entity("e2", lat=-16.91, lon=145.71, ts=t + 5)  # id from the entity
          + entity("e3", vid="b3", ts=t)  # no position: unusable
          + entity("e4", vid="b4", ts=t, lat=-16.9, lon=145.7, deleted=True))
    write("gtfs_rt", "empty_feed", header(t))


# --- gateway: query strings and WebSocket messages -------------------------------------------
def gateway_seeds():
    q = {
        "bbox": "bbox=145.7,-17,145.8,-16.9",
        "full": "bbox=145.7,-17,145.8,-16.9&routes=110,111&min_interval_ms=250",
        "encoded": "bbox=145.7%2C-17%2C145.8%2C-16.9&routes=110%2C111N",
        "too_large": "bbox=140,-20,150,-10",
        "unknown": "bbox=145.7,-17,145.8,-16.9&zoom=3",
        "repeated": "bbox=1,2,3,4&bbox=145.7,-17,145.8,-16.9",
        "none": "<none>",
    }
    for name, v in q.items():
        write("gateway_query", name, v)
    w = {
        "array": '{"type":"subscribe","bbox":[145.7,-17,145.8,-16.9]}',
        "text": '{"type":"subscribe","bbox":"145.7,-17,145.8,-16.9","routes":"110,111"}',
        "list": '{"type":"subscribe","bbox":[145.7,-17,145.8,-16.9],"routes":["110","111N"],'
                '"min_interval_ms":500}',
        "other_type": '{"type":"unsubscribe"}',
        "inverted": '{"type":"subscribe","bbox":[145.8,-16.9,145.7,-17]}',
    }
    for name, v in w.items():
        write("gateway_ws", name, v)


# --- gtfs_load: NUL-separated files in the order of fuzz_targets/gtfs_load.rs ----------------
FILES = ["agency.txt", "stops.txt", "routes.txt", "trips.txt", "stop_times.txt", "shapes.txt",
         "calendar.txt", "calendar_dates.txt", "frequencies.txt"]


def read_cairns():
    with zipfile.ZipFile(ROOT / "data" / "cairns_gtfs.zip") as z:
        return {n: list(csv.DictReader(io.TextIOWrapper(z.open(n), "utf-8-sig")))
                for n in z.namelist()}


def to_csv(rows, fields):
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def excerpt(cairns, trip_ids, n_stops, shape_every, with_shapes=True, frequencies=""):
    trips = [r for r in cairns["trips.txt"] if r["trip_id"] in trip_ids]
    st = []
    for tid in trip_ids:
        rows = [r for r in cairns["stop_times.txt"] if r["trip_id"] == tid]
        rows.sort(key=lambda r: int(r["stop_sequence"]))
        st += rows[:n_stops]
    stop_ids = {r["stop_id"] for r in st}
    stops = [r for r in cairns["stops.txt"] if r["stop_id"] in stop_ids]
    routes = [r for r in cairns["routes.txt"] if r["route_id"] in {t["route_id"] for t in trips}]
    services = {t["service_id"] for t in trips}
    cal = [r for r in cairns["calendar.txt"] if r["service_id"] in services]
    cd = [r for r in cairns["calendar_dates.txt"] if r["service_id"] in services][:2]
    shapes = []
    if with_shapes:
        for sid in sorted({t["shape_id"] for t in trips}):
            rows = [r for r in cairns["shapes.txt"] if r["shape_id"] == sid]
            rows.sort(key=lambda r: int(r["shape_pt_sequence"]))
            shapes += rows[: 40 * shape_every : shape_every]
    files = {
        "agency.txt": to_csv(cairns["agency.txt"], ["agency_name", "agency_url", "agency_timezone"]),
        "stops.txt": to_csv(stops, ["stop_id", "stop_name", "stop_lat", "stop_lon"]),
        "routes.txt": to_csv(routes, ["route_id", "route_short_name", "route_long_name",
                                      "route_type", "route_color", "route_text_color"]),
        "trips.txt": to_csv(trips, ["route_id", "service_id", "trip_id", "trip_headsign",
                                    "direction_id", "block_id", "shape_id"]),
        "stop_times.txt": to_csv(st, ["trip_id", "arrival_time", "departure_time", "stop_id",
                                      "stop_sequence"]),
        "shapes.txt": to_csv(shapes, ["shape_id", "shape_pt_lat", "shape_pt_lon",
                                      "shape_pt_sequence"]) if shapes else "",
        "calendar.txt": to_csv(cal, ["service_id", "monday", "tuesday", "wednesday", "thursday",
                                     "friday", "saturday", "sunday", "start_date", "end_date"]),
        "calendar_dates.txt": to_csv(cd, ["service_id", "date", "exception_type"]),
        "frequencies.txt": frequencies,
    }
    return "\0".join(files[f] for f in FILES)


def gtfs_load_seeds(cairns):
    t1, t2 = "CNS2014-CNS_MUL-Weekday-00-4165878", "CNS2014-CNS_MUL-Weekday-00-4165879"
    write("gtfs_load", "one_trip", excerpt(cairns, [t1], 6, 8))
    write("gtfs_load", "two_trips_no_shapes", excerpt(cairns, [t1, t2], 5, 8, with_shapes=False))
    freq = f"trip_id,start_time,end_time,headway_secs\n{t1},06:00:00,09:00:00,600\n"
    write("gtfs_load", "frequencies", excerpt(cairns, [t1], 4, 12, frequencies=freq))
    # A second route, so trips on different routes and shapes meet in one network.
    other = next(r["trip_id"] for r in cairns["trips.txt"] if r["route_id"].startswith("131"))
    write("gtfs_load", "two_routes", excerpt(cairns, [t1, other], 4, 12))


def main():
    cairns = read_cairns()
    raw_position_seeds()
    processor_seeds(cairns)
    gtfs_rt_seeds()
    gateway_seeds()
    gtfs_load_seeds(cairns)
    for d in sorted(CORPUS.iterdir()):
        files = list(d.iterdir())
        print(f"{d.name}: {len(files)} seeds, {sum(f.stat().st_size for f in files)} bytes")


if __name__ == "__main__":
    main()
