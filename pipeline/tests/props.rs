#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property tests of snapping, through the public API only.
//!
//! - Projection (`Polyline::project`, `project_window`): the returned point lies on the line,
//!   its distance along matches it, and `off_m` is the true distance to the line (or to the
//!   window's part of it), checked against a brute-force minimum over segments written here.
//! - Progress (`Processor`): a vehicle driven forward along a shape (random bent lines, closed
//!   loops, exact out-and-backs, and real Cairns shapes) with GPS noise below the allowance
//!   is always accepted and on route, and `dist_along_m` never decreases; on the synthetic
//!   shapes it also stays near the truth (the right leg of a loop or an out-and-back).
//! - Off route (`Processor`): a report farther than `max_off_route_m` from every shape is
//!   `off_route` or `unassigned`, never given a snapped point, and its `off_route_m` is not
//!   smaller than its true distance to the shape named.

use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};

use busflow_core::geometry::{destination, haversine_m};
use busflow_core::{Network, Polyline, RawPosition, VehiclePosition, VehicleStatus};
use busflow_pipeline::{Outcome, PipelineConfig, Processor, RawMessage};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

/// Seeded, so every run (and CI) tries the same cases; nothing is written to disk.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x6275_7366_6c6f_7721),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const R: f64 = 6_371_008.8;

/// Planar (east, north) metres around a reference point: the brute-force reference frame.
fn xy(lat0: f64, lon0: f64, lat: f64, lon: f64) -> (f64, f64) {
    let k = R * std::f64::consts::PI / 180.0;
    ((lon - lon0) * k * lat0.to_radians().cos(), (lat - lat0) * k)
}

/// Distance from the origin to segment a-b in the plane.
fn seg_dist((ax, ay): (f64, f64), (bx, by): (f64, f64)) -> f64 {
    let (dx, dy) = (bx - ax, by - ay);
    let l2 = dx * dx + dy * dy;
    let t = if l2 > 0.0 { ((-ax * dx - ay * dy) / l2).clamp(0.0, 1.0) } else { 0.0 };
    let (px, py) = (ax + t * dx, ay + t * dy);
    (px * px + py * py).sqrt()
}

/// Brute force: distance from a point to the polyline through `pts`, every segment tried.
fn dist_to(pts: &[(f64, f64)], lat: f64, lon: f64) -> f64 {
    pts.windows(2)
        .map(|w| seg_dist(xy(lat, lon, w[0].0, w[0].1), xy(lat, lon, w[1].0, w[1].1)))
        .fold(f64::INFINITY, f64::min)
}

fn vertices(line: &Polyline) -> Vec<(f64, f64)> {
    (0..line.len()).map(|i| line.point(i)).collect()
}

/// Vertices of a walk: start point, then (length m, turn degrees) per segment.
fn walk(lat: f64, lon: f64, bearing: f64, steps: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut pts = vec![(lat, lon)];
    let mut b = bearing;
    for &(len, turn) in steps {
        b = (b + turn).rem_euclid(360.0);
        let &(la, lo) = pts.last().unwrap();
        pts.push(destination(la, lo, b, len));
    }
    pts
}

// ---------------------------------------------------------------------------------------------
// Projection

#[derive(Debug, Clone)]
struct LineCase {
    lat: f64,
    lon: f64,
    bearing: f64,
    steps: Vec<(f64, f64)>,
    out_and_back: bool,
    /// The query point: a fraction along the line, then an offset (bearing, metres).
    at: f64,
    off_bearing: f64,
    off_m: f64,
    /// Window bounds as fractions of the length (may be in either order, or outside 0..1).
    from: f64,
    to: f64,
}

fn line_case() -> impl Strategy<Value = LineCase> {
    (
        prop_oneof![3 => (-17.5..-16.4f64, 145.4..146.1f64), 1 => (-60.0..60.0f64, -170.0..170.0f64)],
        0.0..360.0f64,
        // Segments from a metre to 800 m, any turn (hairpins and crossings included).
        prop::collection::vec((1.0..800.0f64, -180.0..180.0f64), 1..12),
        any::<bool>(),
        0.0..=1.0f64,
        0.0..360.0f64,
        prop_oneof![1 => Just(0.0), 3 => 0.0..50.0f64, 2 => 0.0..3000.0f64],
        -0.2..1.2f64,
        -0.2..1.2f64,
    )
        .prop_map(|((lat, lon), bearing, steps, out_and_back, at, off_bearing, off_m, from, to)| {
            LineCase { lat, lon, bearing, steps, out_and_back, at, off_bearing, off_m, from, to }
        })
}

fn build_line(c: &LineCase) -> Polyline {
    let mut pts = walk(c.lat, c.lon, c.bearing, &c.steps);
    if c.out_and_back {
        let back: Vec<_> = pts.iter().rev().skip(1).copied().collect();
        pts.extend(back);
    }
    Polyline::new(pts).unwrap()
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn projection_lands_on_the_line_at_the_true_distance(c in line_case()) {
        let line = build_line(&c);
        let pts = vertices(&line);
        let len = line.length_m();
        let (alat, alon, _) = line.point_at(c.at * len);
        let (qlat, qlon) = destination(alat, alon, c.off_bearing, c.off_m);

        for (from_m, to_m, whole) in
            [(0.0, len, true), (c.from * len, c.to * len, false)]
        {
            let p = if whole { line.project(qlat, qlon) } else { line.project_window(qlat, qlon, from_m, to_m) };
            // The part of the line the answer may come from.
            let lo = from_m.clamp(0.0, len);
            let hi = to_m.clamp(lo, len);
            let mut part = vec![{ let (a, b, _) = line.point_at(lo); (a, b) }];
            part.extend((0..line.len()).filter(|&i| line.cum_m(i) > lo && line.cum_m(i) < hi).map(|i| line.point(i)));
            part.push({ let (a, b, _) = line.point_at(hi); (a, b) });

            // On the line: the returned point is on some segment.
            let on = dist_to(&pts, p.lat, p.lon);
            prop_assert!(on < 1e-3, "returned point is {on} m off the line: {p:?}");
            // Inside the window, and the distance along names the same point.
            prop_assert!(p.dist_along_m >= lo - 1e-6 && p.dist_along_m <= hi + 1e-6,
                "dist_along {} outside [{lo}, {hi}]", p.dist_along_m);
            let (blat, blon, _) = line.point_at(p.dist_along_m);
            let gap = haversine_m(blat, blon, p.lat, p.lon);
            prop_assert!(gap < 0.01, "point_at(dist_along) is {gap} m from the point: {p:?}");
            // The distance is the true (minimum) distance to that part of the line...
            let truth = if part.len() >= 2 { dist_to(&part, qlat, qlon) } else { f64::INFINITY };
            prop_assert!((p.off_m - truth).abs() < 1e-3,
                "off_m {} but the line is {truth} m away (window {whole}: {lo}..{hi}) {p:?}", p.off_m);
            // ...and agrees with the great-circle distance to the returned point.
            let h = haversine_m(qlat, qlon, p.lat, p.lon);
            prop_assert!((p.off_m - h).abs() <= 0.003 * h + 0.01, "off_m {} vs haversine {h}", p.off_m);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Networks

/// A one-shape, one-trip GTFS feed around the given vertices.
fn network_of(points: &[(f64, f64)]) -> Arc<Network> {
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
    w("agency.txt", "agency_id,agency_name,agency_url,agency_timezone\nA,T,http://x,UTC\n".into());
    w(
        "routes.txt",
        "route_id,agency_id,route_short_name,route_long_name,route_type\nR1,A,1,One,3\n".into(),
    );
    w(
        "calendar.txt",
        "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\n\
         S,1,1,1,1,1,1,1,20200101,20301231\n"
            .into(),
    );
    w("trips.txt", "route_id,service_id,trip_id,direction_id,shape_id\nR1,S,T1,0,S1\n".into());
    let mut shapes = String::from("shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence\n");
    for (i, (lat, lon)) in points.iter().enumerate() {
        writeln!(shapes, "S1,{lat},{lon},{}", i + 1).unwrap();
    }
    w("shapes.txt", shapes);
    let (first, last) = (points[0], points[points.len() - 1]);
    w(
        "stops.txt",
        format!(
            "stop_id,stop_name,stop_lat,stop_lon\nA,A,{},{}\nB,B,{},{}\n",
            first.0, first.1, last.0, last.1
        ),
    );
    w(
        "stop_times.txt",
        "trip_id,arrival_time,departure_time,stop_id,stop_sequence\nT1,06:00:00,06:00:00,A,1\nT1,06:30:00,06:30:00,B,2\n"
            .into(),
    );
    Arc::new(Network::load(dir.path()).unwrap())
}

static CAIRNS: LazyLock<Arc<Network>> =
    LazyLock::new(|| Arc::new(Network::load(busflow_core::bundled_gtfs_path()).unwrap()));

const T0: i64 = 1_763_900_000_000;

/// Sends one report (its own clock as the pipeline's, so no time check interferes).
fn send(p: &mut Processor, raw: &RawPosition) -> Outcome {
    let payload = serde_json::to_vec(raw).unwrap();
    let msg = RawMessage {
        payload: &payload,
        key: Some(raw.vehicle_id.as_bytes()),
        partition: 0,
        offset: 0,
    };
    p.process(msg, raw.ts)
}

fn position(o: Outcome) -> Result<VehiclePosition, TestCaseError> {
    match o {
        Outcome::Position(p) => Ok(*p),
        other => Err(TestCaseError::fail(format!("expected a position, got {other:?}"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Monotonic progress

#[derive(Debug, Clone)]
enum ShapeKind {
    /// A random bent line: segments 80-400 m, turns within 45 degrees.
    Bent(Vec<(f64, f64)>),
    /// A closed regular polygon (sides, circumradius m), driven once round back to its start.
    Loop(usize, f64),
    /// A bent line and exactly back along it.
    OutAndBack(Vec<(f64, f64)>),
}

#[derive(Debug, Clone)]
struct Drive {
    /// Speed (m/s) and report interval (ms).
    speed: f64,
    dt_ms: i64,
    /// Where the drive starts: metres past the first 60 m, as a fraction of the length.
    start: f64,
    /// Per fix: noise bearing and magnitude as a fraction of 95 % of the allowance; device
    /// bearing error, degrees.
    noise: Vec<(f64, f64, f64)>,
}

fn drive() -> impl Strategy<Value = Drive> {
    (
        3.0..12.0f64,
        2000..5000i64,
        0.0..0.6f64,
        prop::collection::vec((0.0..360.0f64, 0.0..=1.0f64, -10.0..10.0f64), 400),
    )
        .prop_map(|(speed, dt_ms, start, noise)| Drive { speed, dt_ms, start, noise })
}

fn bent() -> impl Strategy<Value = Vec<(f64, f64)>> {
    prop::collection::vec((80.0..400.0f64, -45.0..45.0f64), 1..10)
}

fn line_or_loop() -> impl Strategy<Value = ShapeKind> {
    prop_oneof![
        bent().prop_map(ShapeKind::Bent),
        (4..9usize, 150.0..600.0f64).prop_map(|(n, r)| ShapeKind::Loop(n, r)),
    ]
}

fn shape_points(k: &ShapeKind) -> Vec<(f64, f64)> {
    let (lat, lon) = (-16.92, 145.77);
    match k {
        ShapeKind::Bent(steps) => walk(lat, lon, 90.0, steps),
        ShapeKind::Loop(n, r) => {
            let mut pts: Vec<(f64, f64)> =
                (0..*n).map(|i| destination(lat, lon, 360.0 * i as f64 / *n as f64, *r)).collect();
            pts.push(pts[0]);
            pts
        }
        ShapeKind::OutAndBack(steps) => {
            let mut pts = walk(lat, lon, 90.0, steps);
            let back: Vec<_> = pts.iter().rev().skip(1).copied().collect();
            pts.extend(back);
            pts
        }
    }
}

/// Drives `trip` of `net` from the drive's start to the shape's end (or 400 fixes); returns
/// each accepted position with the true distance along.
fn drive_along(
    net: &Arc<Network>,
    trip: usize,
    d: &Drive,
    max_len_m: f64,
) -> Result<Vec<(VehiclePosition, f64)>, TestCaseError> {
    let cfg = PipelineConfig::default();
    let mut p = Processor::new(net.clone(), &cfg).unwrap();
    let trip = &net.trips[trip];
    let line = &net.shape(trip.shape).line;
    let len = line.length_m();
    let start = (60.0 + d.start * len).min(len);
    let end = (start + max_len_m).min(len);
    let max_noise = 0.95 * cfg.gps_noise_m;
    let mut out = Vec::new();
    for (i, &(nb, nf, berr)) in d.noise.iter().enumerate() {
        let truth = (start + d.speed * (d.dt_ms as f64 / 1000.0) * i as f64).min(end);
        let (tlat, tlon, bearing) = line.point_at(truth);
        let (lat, lon) = destination(tlat, tlon, nb, nf * max_noise);
        let mut raw = RawPosition::new("v", T0 + i as i64 * d.dt_ms, lat, lon);
        raw.trip_id = Some(trip.id.clone());
        raw.bearing_deg = Some((bearing + berr).rem_euclid(360.0) as f32);
        let pos = position(send(&mut p, &raw))?;
        out.push((pos, truth));
        if truth >= end {
            break;
        }
    }
    Ok(out)
}

fn check_monotonic(
    run: &[(VehiclePosition, f64)],
    shape: &str,
    tolerance: impl Fn(f64) -> Option<f64>,
) -> Result<(), TestCaseError> {
    let mut last = f64::NEG_INFINITY;
    for (i, (pos, truth)) in run.iter().enumerate() {
        prop_assert!(
            matches!(pos.status, VehicleStatus::InTransit | VehicleStatus::Stopped),
            "fix {i}: {:?} within the noise allowance of the line: {pos:?}",
            pos.status
        );
        prop_assert_eq!(pos.shape_id.as_deref(), Some(shape), "fix {}", i);
        let d = pos.dist_along_m.unwrap();
        prop_assert!(
            d >= last,
            "fix {i}: dist_along on {shape} went back from {last} to {d} (truth {truth})"
        );
        if let Some(tol) = tolerance(*truth) {
            prop_assert!(
                (d - truth).abs() <= tol,
                "fix {i}: dist_along {d} but truth {truth} (tolerance {tol})"
            );
        }
        last = d;
    }
    Ok(())
}

/// Drives a synthetic shape and checks progress and accuracy.
fn synthetic(kind: &ShapeKind, d: &Drive) -> Result<(), TestCaseError> {
    let net = network_of(&shape_points(kind));
    let run = drive_along(&net, 0, d, f64::INFINITY)?;
    // Noise along the line, and the previous fix's noise held by the no-going-back rule.
    let cfg = PipelineConfig::default();
    let dt_s = d.dt_ms as f64 / 1000.0;
    let tol = 2.0 * cfg.gps_noise_m + d.speed * dt_s + 10.0;
    let len = net.shape(0).line.length_m();
    // Also at an out-and-back's turn, where the forward window holds the return leg too.
    check_monotonic(&run, "S1", |_| Some(tol))?;
    // A drive that got to the end of the shape is reported there.
    let (last, truth) = run.last().map(|(p, t)| (p.dist_along_m.unwrap(), *t)).unwrap();
    if truth >= len {
        prop_assert!((last - len).abs() <= tol, "ended at {last} of {len}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn progress_never_goes_back_on_lines_and_loops(kind in line_or_loop(), d in drive()) {
        synthetic(&kind, &d)?;
    }
}

proptest! {
    #![proptest_config(config(96))]

    /// Found a bug: near the turn the fix landed on the return leg ahead (the window projection
    /// ignored the heading); the vehicle then drifted out of that leg's window, the lost-track
    /// rescan put it back on the outbound leg and `dist_along_m` went back (1166.49 -> 1088.68).
    #[test]
    fn progress_never_goes_back_on_out_and_back_shapes(steps in bent(), d in drive()) {
        synthetic(&ShapeKind::OutAndBack(steps), &d)?;
    }
}

proptest! {
    #![proptest_config(config(48))]

    /// Found the same bug where a Cairns shape doubles back on itself: on shape 1110016 (trip
    /// index 6842), 3 m/s every 3 s, `dist_along_m` went back from 17894.94 to 17805.15.
    #[test]
    fn progress_never_goes_back_on_cairns_shapes(trip in 0..10_000usize, d in drive()) {
        let net = &*CAIRNS;
        let trip = trip % net.trips.len();
        let shape = net.shape(net.trips[trip].shape).id.clone();
        let run = drive_along(net, trip, &d, 2000.0)?;
        check_monotonic(&run, &shape, |_| None)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Off route

#[derive(Debug, Clone)]
struct OffCase {
    trip: usize,
    at: f64,
    /// Fixes on the shape before the off-route one.
    before: usize,
    /// 0: trip named, 1: route named, 2: nothing.
    hint: u8,
    side: bool,
    off_m: f64,
}

fn off_case() -> impl Strategy<Value = OffCase> {
    (0..10_000usize, 0.0..1.0f64, 0..5usize, 0..3u8, any::<bool>(), 62.0..1500.0f64).prop_map(
        |(trip, at, before, hint, side, off_m)| OffCase { trip, at, before, hint, side, off_m },
    )
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn reports_far_from_every_shape_are_off_route(c in off_case()) {
        let net = &*CAIRNS;
        let cfg = PipelineConfig::default();
        let trip = &net.trips[c.trip % net.trips.len()];
        let line = &net.shape(trip.shape).line;
        let route_id = net.route(trip.route).id.clone();
        let hinted = |raw: &mut RawPosition| match c.hint {
            0 => raw.trip_id = Some(trip.id.clone()),
            1 => raw.route_id = Some(route_id.clone()),
            _ => {}
        };
        // Square off from the line at a point along it.
        let along = c.at * line.length_m();
        let (lat, lon, bearing) = line.point_at(along);
        let (olat, olon) = destination(lat, lon, bearing + if c.side { 90.0 } else { -90.0 }, c.off_m);
        let nearest = net.shapes.iter().map(|s| s.line.project(olat, olon).off_m).fold(f64::INFINITY, f64::min);
        prop_assume!(nearest > cfg.max_off_route_m + 1.0);

        let mut p = Processor::new(net.clone(), &cfg).unwrap();
        let mut ts = T0;
        for i in 0..c.before {
            let (blat, blon, _) = line.point_at((along - 30.0 * (c.before - i) as f64).max(0.0));
            let mut raw = RawPosition::new("x", ts, blat, blon);
            hinted(&mut raw);
            position(send(&mut p, &raw))?;
            ts += 3000;
        }
        // Late enough that the jump is a plausible drive, not a multipath outlier.
        ts += ((c.off_m / 20.0) * 1000.0) as i64 + 5000;
        let mut raw = RawPosition::new("x", ts, olat, olon);
        hinted(&mut raw);
        let pos = position(send(&mut p, &raw))?;
        prop_assert!(
            matches!(pos.status, VehicleStatus::OffRoute | VehicleStatus::Unassigned),
            "{nearest:.1} m from every shape but {:?}: {pos:?}", pos.status
        );
        prop_assert_eq!(pos.snapped_lat, None);
        prop_assert_eq!(pos.snapped_lon, None);
        prop_assert_eq!(pos.dist_along_m, None);
        if let Some(off) = pos.off_route_m {
            let shape = net.shape_by_id(pos.shape_id.as_deref().unwrap()).unwrap();
            let truth = net.shape(shape).line.project(olat, olon).off_m;
            prop_assert!(off > cfg.max_off_route_m, "off_route_m {off} for a report {nearest} m from every shape");
            prop_assert!(off >= truth - 0.05, "off_route_m {off} understates the true {truth}");
            if c.before == 0 && c.hint == 0 {
                // A first report on a named trip is matched over the whole shape; near-ties
                // within a metre keep the earlier leg.
                prop_assert!(off <= truth + 1.05, "off_route_m {off} but the shape is {truth} m away");
            }
        }
    }
}
