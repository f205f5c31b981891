//! Every query in `sql/queries/` run on fixtures, its result checked.
//!
//! Two kinds of fixture:
//! - `tests/fixtures/recorded/`: the topics of a real run (`busflow up`, recorded with
//!   `examples/record.rs`; see its README). Each query's result is compared with the same
//!   question answered in plain Rust over the decoded records, so the check holds whatever the
//!   recording contains.
//! - small scenarios built here, whose answers were worked out by hand (headways, statuses).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use busflow_core::{RejectReason, Rejected, VehiclePosition, VehicleStatus};
use busflow_sql::{Format, SqlConfig, SqlSession, TableName, write_text};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

type Row = serde_json::Map<String, Value>;

const STALE_MS: i64 = 120_000;

fn recorded_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recorded")
}

fn query_text(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("queries").join(format!("{name}.sql"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn decode_all<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn config(dir: &Path) -> SqlConfig {
    SqlConfig::files(BTreeMap::from([
        (TableName::Positions, dir.join("positions.ndjson")),
        (TableName::Vehicles, dir.join("latest.ndjson")),
        (TableName::Rejected, dir.join("rejected.ndjson")),
    ]))
}

async fn run(cfg: &SqlConfig, name: &str) -> Vec<Row> {
    let session = SqlSession::new(cfg.clone(), CancellationToken::new()).unwrap();
    let out = session.execute(&query_text(name)).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut buf = Vec::new();
    write_text(out.last().unwrap(), Format::Json, &mut buf).unwrap();
    String::from_utf8(buf)
        .unwrap()
        .lines()
        .map(|l| match serde_json::from_str(l).unwrap() {
            Value::Object(m) => m,
            v => panic!("not a row: {v}"),
        })
        .collect()
}

fn ms(v: &Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"));
    chrono::DateTime::parse_from_rfc3339(s)
        .or_else(|_| chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%#z"))
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .timestamp_millis()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn s(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn mean(xs: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (n, sum) = xs.into_iter().fold((0usize, 0.0), |(n, s), x| (n + 1, s + x));
    (n > 0).then(|| sum / n as f64)
}

fn close(a: f64, b: f64, what: &str) {
    // Values are rounded to 0.1 by the query; float sums in another order may land either side.
    assert!((a - b).abs() <= 0.1 + 1e-9, "{what}: sql {a} vs expected {b}");
}

/// The newest position of each vehicle, active within the stale window of the newest record.
fn active(latest: &[VehiclePosition]) -> Vec<VehiclePosition> {
    let as_of = latest.iter().map(|p| p.processed_ts).max().unwrap_or(0);
    let mut newest: HashMap<&str, &VehiclePosition> = HashMap::new();
    for p in latest {
        match newest.get(p.vehicle_id.as_str()) {
            Some(cur) if cur.ts >= p.ts => {}
            _ => {
                newest.insert(&p.vehicle_id, p);
            }
        }
    }
    newest.into_values().filter(|p| p.processed_ts >= as_of - STALE_MS).cloned().collect()
}

struct Recorded {
    positions: Vec<VehiclePosition>,
    latest: Vec<VehiclePosition>,
    rejected: Vec<Rejected>,
}

fn recorded() -> Recorded {
    let d = recorded_dir();
    let r = Recorded {
        positions: decode_all(&d.join("positions.ndjson")),
        latest: decode_all(&d.join("latest.ndjson")),
        rejected: decode_all(&d.join("rejected.ndjson")),
    };
    // The checks below mean something only on a fixture with some substance.
    assert!(r.positions.len() > 1_000, "recorded positions: {}", r.positions.len());
    assert!(active(&r.latest).len() >= 10);
    assert!(!r.rejected.is_empty());
    r
}

fn check_fleet_status(rows: &[Row], vehicles: &[VehiclePosition]) {
    let mut groups: BTreeMap<Option<String>, Vec<&VehiclePosition>> = BTreeMap::new();
    for v in vehicles {
        groups.entry(v.route_short_name.clone()).or_default().push(v);
    }
    let mut order: Vec<_> = groups.iter().collect();
    order.sort_by(|a, b| {
        (a.0.is_none(), std::cmp::Reverse(a.1.len()), a.0).cmp(&(
            b.0.is_none(),
            std::cmp::Reverse(b.1.len()),
            b.0,
        ))
    });
    assert_eq!(rows.len(), order.len(), "{rows:?}");
    for (row, (route, vs)) in rows.iter().zip(order) {
        assert_eq!(&s(&row["route_short_name"]), route);
        assert_eq!(row["vehicles"], vs.len());
        let count = |st: VehicleStatus| vs.iter().filter(|v| v.status == st).count();
        assert_eq!(row["in_transit"], count(VehicleStatus::InTransit), "{route:?}");
        assert_eq!(row["stopped"], count(VehicleStatus::Stopped), "{route:?}");
        assert_eq!(row["off_route"], count(VehicleStatus::OffRoute), "{route:?}");
        assert_eq!(row["unassigned"], count(VehicleStatus::Unassigned), "{route:?}");
        match mean(vs.iter().filter_map(|v| v.speed_mps).map(f64::from)) {
            Some(m) => close(f(&row["avg_speed_kmh"]), round1(m * 3.6), "avg_speed_kmh"),
            None => assert!(row["avg_speed_kmh"].is_null()),
        }
        assert_eq!(ms(&row["newest_fix"]), vs.iter().map(|v| v.ts).max().unwrap());
    }
}

fn check_off_route(rows: &[Row], vehicles: &[VehiclePosition]) {
    let mut off: Vec<_> = vehicles.iter().filter(|v| v.status == VehicleStatus::OffRoute).collect();
    off.sort_by(|a, b| {
        let r = |v: &VehiclePosition| v.off_route_m.map(f64::round).unwrap_or(f64::NAN);
        r(b).total_cmp(&r(a)).then_with(|| a.vehicle_id.cmp(&b.vehicle_id))
    });
    let got: Vec<_> = rows.iter().map(|r| s(&r["vehicle_id"]).unwrap()).collect();
    let want: Vec<_> = off.iter().map(|v| v.vehicle_id.clone()).collect();
    assert_eq!(got, want);
    for (row, v) in rows.iter().zip(&off) {
        assert_eq!(f(&row["off_route_m"]), v.off_route_m.unwrap().round());
        assert_eq!(ms(&row["ts"]), v.ts);
    }
}

/// Headways as the query defines them, computed directly: per route/direction/stop, the time
/// between consecutive passages by different vehicles.
fn expected_headways(positions: &[VehiclePosition]) -> BTreeMap<(String, Option<u8>), Vec<f64>> {
    let mut by_trip: HashMap<(&str, &str), Vec<&VehiclePosition>> = HashMap::new();
    for p in positions {
        if let (Some(t), Some(_)) = (&p.trip_id, &p.route_short_name) {
            by_trip.entry((&p.vehicle_id, t)).or_default().push(p);
        }
    }
    // (route, direction, stop) -> (when, vehicle)
    type Stop = (String, Option<u8>, String);
    let mut passages: HashMap<Stop, Vec<(i64, String)>> = HashMap::new();
    for ps in by_trip.values_mut() {
        ps.sort_by_key(|p| p.ts);
        for w in ps.windows(2) {
            if let Some(prev) = &w[0].next_stop_id
                && w[1].next_stop_id.as_ref() != Some(prev)
            {
                let route = w[1].route_short_name.clone().unwrap();
                passages
                    .entry((route, w[1].direction_id, prev.clone()))
                    .or_default()
                    .push((w[1].ts, w[1].vehicle_id.clone()));
            }
        }
    }
    let mut out: BTreeMap<(String, Option<u8>), Vec<f64>> = BTreeMap::new();
    for ((route, dir, _), mut ps) in passages {
        ps.sort();
        for w in ps.windows(2) {
            if w[0].1 != w[1].1 {
                out.entry((route.clone(), dir))
                    .or_default()
                    .push((w[1].0 - w[0].0) as f64 / 60_000.0);
            }
        }
    }
    out
}

fn check_headways(rows: &[Row], positions: &[VehiclePosition]) {
    let want = expected_headways(positions);
    assert_eq!(rows.len(), want.len(), "{rows:?}");
    for (row, ((route, dir), gaps)) in rows.iter().zip(&want) {
        assert_eq!(&s(&row["route_short_name"]).unwrap(), route);
        assert_eq!(row["direction_id"].as_u64().map(|d| d as u8), *dir);
        assert_eq!(row["headways"], gaps.len());
        close(f(&row["avg_headway_min"]), round1(mean(gaps.iter().copied()).unwrap()), "avg");
        close(
            f(&row["min_headway_min"]),
            round1(gaps.iter().copied().fold(f64::MAX, f64::min)),
            "min",
        );
        close(f(&row["max_headway_min"]), round1(gaps.iter().copied().fold(0.0, f64::max)), "max");
        assert_eq!(row["bunched"], gaps.iter().filter(|g| **g < 2.0).count());
    }
}

#[tokio::test]
async fn fleet_status_on_the_recording() {
    let fx = recorded();
    let rows = run(&config(&recorded_dir()), "fleet_status").await;
    check_fleet_status(&rows, &active(&fx.latest));
}

#[tokio::test]
async fn off_route_now_on_the_recording() {
    let fx = recorded();
    let rows = run(&config(&recorded_dir()), "off_route_now").await;
    check_off_route(&rows, &active(&fx.latest));
}

#[tokio::test]
async fn headway_on_the_recording() {
    let fx = recorded();
    let rows = run(&config(&recorded_dir()), "headway").await;
    assert!(!rows.is_empty(), "the recording is long enough for buses to follow each other");
    check_headways(&rows, &fx.positions);
}

#[tokio::test]
async fn density_on_the_recording() {
    let fx = recorded();
    let rows = run(&config(&recorded_dir()), "density").await;
    let mut cells: BTreeMap<String, usize> = BTreeMap::new();
    for v in active(&fx.latest) {
        *cells.entry(busflow_core::h3::parent_string(&v.h3_cell, 8).unwrap()).or_default() += 1;
    }
    let got: BTreeMap<String, usize> = rows
        .iter()
        .map(|r| (s(&r["cell"]).unwrap(), r["vehicles"].as_u64().unwrap() as usize))
        .collect();
    assert_eq!(got, cells);
    let counts: Vec<_> = rows.iter().map(|r| r["vehicles"].as_u64().unwrap()).collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "densest first: {counts:?}");
    for r in &rows {
        let (lat, lon) = busflow_core::h3::center(r["cell"].as_str().unwrap()).unwrap();
        assert_eq!((f(&r["lat"]), f(&r["lon"])), (lat, lon));
    }
}

#[tokio::test]
async fn speed_by_cell_on_the_recording() {
    let fx = recorded();
    let rows = run(&config(&recorded_dir()), "speed_by_cell").await;
    let newest = fx.positions.iter().map(|p| p.ts).max().unwrap();
    let mut cells: BTreeMap<String, (usize, BTreeSet<&str>, Vec<f64>)> = BTreeMap::new();
    for p in fx.positions.iter().filter(|p| p.ts >= newest - 600_000) {
        let Some(speed) = p.speed_mps else { continue };
        let e = cells.entry(busflow_core::h3::parent_string(&p.h3_cell, 9).unwrap()).or_default();
        e.0 += 1;
        e.1.insert(&p.vehicle_id);
        e.2.push(f64::from(speed));
    }
    assert_eq!(rows.len(), cells.len());
    for r in &rows {
        let (n, vs, speeds) = &cells[r["cell"].as_str().unwrap()];
        assert_eq!(r["positions"], *n);
        assert_eq!(r["vehicles"], vs.len());
        close(f(&r["avg_speed_kmh"]), round1(mean(speeds.iter().copied()).unwrap() * 3.6), "speed");
    }
}

#[tokio::test]
async fn rejected_reasons_on_the_recording() {
    let fx = recorded();
    let rows = run(&config(&recorded_dir()), "rejected_reasons").await;
    let mut by: BTreeMap<&str, (usize, BTreeSet<&str>)> = BTreeMap::new();
    for r in &fx.rejected {
        let e = by.entry(r.reason.as_str()).or_default();
        e.0 += 1;
        if let Some(v) = &r.vehicle_id {
            e.1.insert(v);
        }
    }
    assert_eq!(rows.len(), by.len());
    let total = fx.rejected.len() as f64;
    let mut share = 0.0;
    for r in &rows {
        let (n, vs) = &by[r["reason"].as_str().unwrap()];
        assert_eq!(r["messages"], *n);
        assert_eq!(r["vehicles"], vs.len());
        close(f(&r["share_pct"]), (10_000.0 * *n as f64 / total).round() / 100.0, "share");
        share += f(&r["share_pct"]);
    }
    assert!((share - 100.0).abs() < 0.1, "shares add up: {share}");
    let counts: Vec<_> = rows.iter().map(|r| r["messages"].as_u64().unwrap()).collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{counts:?}");
}

#[tokio::test]
async fn stale_vehicles_on_the_recording() {
    let fx = recorded();
    let rows = run(&config(&recorded_dir()), "stale_vehicles").await;
    let newest = fx.positions.iter().map(|p| p.ts).max().unwrap();
    let mut last: BTreeMap<&str, &VehiclePosition> = BTreeMap::new();
    for p in &fx.positions {
        if last.get(p.vehicle_id.as_str()).is_none_or(|c| c.ts < p.ts) {
            last.insert(&p.vehicle_id, p);
        }
    }
    let mut stale: Vec<_> = last.values().filter(|p| p.ts < newest - STALE_MS).collect();
    stale.sort_by(|a, b| (a.ts, &a.vehicle_id).cmp(&(b.ts, &b.vehicle_id)));
    let got: Vec<_> = rows.iter().map(|r| s(&r["vehicle_id"]).unwrap()).collect();
    let want: Vec<_> = stale.iter().map(|p| p.vehicle_id.clone()).collect();
    assert_eq!(got, want);
    for (r, p) in rows.iter().zip(&stale) {
        assert_eq!(s(&r["route_short_name"]), p.route_short_name, "the route of the last fix");
        assert_eq!(f(&r["silent_s"]), ((newest - p.ts) as f64 / 1000.0).round());
    }
}

#[tokio::test]
async fn pipeline_cells_match_the_sql_function() {
    // Parity: h3_cell() in SQL gives the cell the pipeline wrote, for every recorded position.
    let session = SqlSession::new(config(&recorded_dir()), CancellationToken::new()).unwrap();
    let out = session
        .execute(
            "SELECT count(*) AS n, \
             sum(CASE WHEN h3_cell = h3_cell(coalesce(snapped_lat, lat), coalesce(snapped_lon, lon), 12) \
                 THEN 1 ELSE 0 END) AS same FROM positions",
        )
        .await
        .unwrap();
    let mut buf = Vec::new();
    write_text(&out[0], Format::Json, &mut buf).unwrap();
    let row: Value = serde_json::from_slice(&buf).unwrap();
    assert!(row["n"].as_u64().unwrap() > 1_000);
    assert_eq!(row["n"], row["same"], "{row}");
}

// ---- scenarios worked out by hand ----

fn pos(
    vehicle: &str,
    trip: &str,
    route: &str,
    dir: u8,
    ts_s: i64,
    next: Option<&str>,
) -> VehiclePosition {
    VehiclePosition {
        v: 1,
        vehicle_id: vehicle.into(),
        ts: 1_796_112_000_000 + ts_s * 1000,
        lat: -16.92,
        lon: 145.77,
        snapped_lat: None,
        snapped_lon: None,
        route_id: Some(route.into()),
        route_short_name: Some(route.into()),
        route_color: None,
        trip_id: Some(trip.into()),
        shape_id: None,
        direction_id: Some(dir),
        headsign: None,
        dist_along_m: None,
        off_route_m: Some(5.0),
        speed_mps: Some(10.0),
        bearing_deg: None,
        next_stop_id: next.map(str::to_string),
        next_stop_dist_m: None,
        h3_cell: "8c9d5a0a1b2c3ff".into(),
        status: VehicleStatus::InTransit,
        seq: None,
        processed_ts: 1_796_112_000_000 + ts_s * 1000,
        partition: 0,
        offset: 0,
    }
}

fn write_fixture(dir: &Path, name: &str, lines: impl IntoIterator<Item = String>) {
    let body: Vec<String> = lines.into_iter().collect();
    std::fs::write(dir.join(name), body.join("\n")).unwrap();
}

#[tokio::test]
async fn headway_scenario() {
    // Route 110 direction 0, stops S1 then S2. Passages of S1: A at 60 s, B at 660, C at 1560,
    // D at 1620, D again at 2000 (its next trip: not a headway). Of S2: A at 120, B at 720.
    // Headways: S1 10, 15, 1 min; S2 10 min -> 4 headways, avg 9.0, min 1.0, max 15.0, 1 bunched.
    // Route 120 direction 1: E passes S9 at 100, F at 1900 -> one headway of 30 min.
    let ps = [
        pos("A", "a1", "110", 0, 0, Some("S1")),
        pos("A", "a1", "110", 0, 60, Some("S2")),
        pos("A", "a1", "110", 0, 120, None),
        pos("B", "b1", "110", 0, 600, Some("S1")),
        pos("B", "b1", "110", 0, 660, Some("S2")),
        pos("B", "b1", "110", 0, 690, Some("S2")),
        pos("B", "b1", "110", 0, 720, None),
        pos("C", "c1", "110", 0, 1500, Some("S1")),
        pos("C", "c1", "110", 0, 1560, Some("S2")),
        pos("D", "d1", "110", 0, 1590, Some("S1")),
        pos("D", "d1", "110", 0, 1620, Some("S2")),
        pos("D", "d2", "110", 0, 1980, Some("S1")),
        pos("D", "d2", "110", 0, 2000, Some("S2")),
        pos("E", "e1", "120", 1, 50, Some("S9")),
        pos("E", "e1", "120", 1, 100, Some("S10")),
        pos("F", "f1", "120", 1, 1850, Some("S9")),
        pos("F", "f1", "120", 1, 1900, Some("S10")),
    ];
    let dir = tempfile::tempdir().unwrap();
    write_fixture(
        dir.path(),
        "positions.ndjson",
        ps.iter().map(|p| serde_json::to_string(p).unwrap()),
    );
    let cfg = SqlConfig::files(BTreeMap::from([(
        TableName::Positions,
        dir.path().join("positions.ndjson"),
    )]));
    let rows = run(&cfg, "headway").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let r = &rows[0];
    assert_eq!(
        (r["route_short_name"].as_str(), r["direction_id"].as_u64()),
        (Some("110"), Some(0))
    );
    assert_eq!(r["headways"], 4);
    assert_eq!(
        (f(&r["avg_headway_min"]), f(&r["min_headway_min"]), f(&r["max_headway_min"])),
        (9.0, 1.0, 15.0)
    );
    assert_eq!(r["bunched"], 1);
    let r = &rows[1];
    assert_eq!((r["route_short_name"].as_str(), r["headways"].as_u64()), (Some("120"), Some(1)));
    assert_eq!(f(&r["avg_headway_min"]), 30.0);
    // The Rust reading of the definition agrees on this scenario too.
    check_headways(&rows, &ps);
}

#[tokio::test]
async fn fleet_status_and_off_route_scenario() {
    // 110: A and G in transit at 36 km/h, B off route 80 m (newer fix than its in-transit one),
    // C stopped at 0 km/h -> 4 vehicles, avg 27.0 km/h. 120: D off route 300 m. E: no route, unassigned.
    // F went silent 5 minutes before the newest record: not active.
    let mut a = pos("A", "a1", "110", 0, 1000, None);
    a.speed_mps = Some(10.0);
    let b_old = pos("B", "b1", "110", 0, 900, None);
    let mut b = pos("B", "b1", "110", 0, 1000, None);
    b.status = VehicleStatus::OffRoute;
    b.off_route_m = Some(80.4);
    b.speed_mps = Some(10.0);
    let mut c = pos("C", "c1", "110", 0, 990, None);
    c.status = VehicleStatus::Stopped;
    c.speed_mps = Some(0.0);
    let mut d = pos("D", "d1", "120", 1, 995, None);
    d.status = VehicleStatus::OffRoute;
    d.off_route_m = Some(299.6);
    let mut e = pos("E", "e1", "x", 0, 1000, None);
    e.route_short_name = None;
    e.status = VehicleStatus::Unassigned;
    e.speed_mps = None;
    let f_old = pos("F", "f1", "120", 1, 700, None);
    let g = pos("G", "g1", "110", 1, 999, None);
    let all = [b, a, b_old, c, d, e, f_old, g];
    let dir = tempfile::tempdir().unwrap();
    write_fixture(
        dir.path(),
        "latest.ndjson",
        all.iter().map(|p| serde_json::to_string(p).unwrap()),
    );
    let cfg =
        SqlConfig::files(BTreeMap::from([(TableName::Vehicles, dir.path().join("latest.ndjson"))]));

    let rows = run(&cfg, "fleet_status").await;
    let routes: Vec<_> = rows.iter().map(|r| s(&r["route_short_name"])).collect();
    assert_eq!(routes, [Some("110".to_string()), Some("120".into()), None]);
    let r = &rows[0];
    assert_eq!((r["vehicles"].as_u64(), r["in_transit"].as_u64()), (Some(4), Some(2)));
    assert_eq!((r["off_route"].as_u64(), r["stopped"].as_u64()), (Some(1), Some(1)));
    assert_eq!(f(&r["avg_speed_kmh"]), 27.0);
    assert_eq!(rows[2]["unassigned"], 1);
    assert!(rows[2]["avg_speed_kmh"].is_null());

    let rows = run(&cfg, "off_route_now").await;
    let ids: Vec<_> = rows.iter().map(|r| r["vehicle_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["D", "B"]);
    assert_eq!((f(&rows[0]["off_route_m"]), f(&rows[1]["off_route_m"])), (300.0, 80.0));
}

#[tokio::test]
async fn rejected_reasons_scenario() {
    // 3 stale (2 vehicles), 1 null island (no vehicle): 75% and 25%.
    let rej = |reason, v: Option<&str>| {
        Rejected::new(reason, "x", v.map(str::to_string), b"{}", None, 0, 0, 1_796_112_000_000)
    };
    let all = [
        rej(RejectReason::Stale, Some("A")),
        rej(RejectReason::NullIsland, None),
        rej(RejectReason::Stale, Some("A")),
        rej(RejectReason::Stale, Some("B")),
    ];
    let dir = tempfile::tempdir().unwrap();
    write_fixture(
        dir.path(),
        "rejected.ndjson",
        all.iter().map(|r| serde_json::to_string(r).unwrap()),
    );
    let cfg = SqlConfig::files(BTreeMap::from([(
        TableName::Rejected,
        dir.path().join("rejected.ndjson"),
    )]));
    let rows = run(&cfg, "rejected_reasons").await;
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0]["reason"].as_str(), rows[0]["messages"].as_u64()),
        (Some("stale"), Some(3))
    );
    assert_eq!((rows[0]["vehicles"].as_u64(), f(&rows[0]["share_pct"])), (Some(2), 75.0));
    assert_eq!((rows[1]["vehicles"].as_u64(), f(&rows[1]["share_pct"])), (Some(0), 25.0));
}
