#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property test of viewport delivery through the public API: for random viewports (a few metres
//! to about a hundred kilometres, edges on H3 cell vertices or anywhere) and random vehicle
//! positions (inside, exactly on an edge or corner, one float step or a hair either side of an
//! edge, on H3 cell vertices, around the box, far away), every subscriber gets an event for
//! exactly the vehicles whose display point is inside its bbox, edges included, and nothing
//! else: in its snapshot, for vehicles that appear later, and for vehicles that move.
//!
//! The expected sets come from a plain comparison of coordinates written here, not from the
//! gateway's `Bbox::contains`, so a wrong edge rule in the gateway is caught too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use busflow_core::{SCHEMA_VERSION, VehiclePosition, VehicleStatus};
use busflow_gateway::{
    Bbox, Filter, LiveSettings, LiveState, Outgoing, QueueLimits, RemoveReason, Subscriber,
};
use h3o::LatLng;
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

const M_PER_DEG: f64 = 111_320.0;

/// Where a vehicle is put, relative to one of the viewports.
#[derive(Debug, Clone)]
enum Place {
    /// Uniform inside, by fractions of the width and height.
    Inside(f64, f64),
    /// Exactly on an edge (0 west, 1 south, 2 east, 3 north), at a fraction along it.
    OnEdge(u8, f64),
    /// Exactly on a corner.
    Corner(u8),
    /// One float step inside or outside an edge.
    NextFloat { side: u8, along: f64, outside: bool },
    /// `10^exp` index-cell edge lengths inside or outside an edge.
    NearEdge { side: u8, along: f64, exp: f64, outside: bool },
    /// A vertex of the index-resolution H3 cell holding a point on an edge: where cells meet.
    CellVertex { side: u8, along: f64, k: usize },
    /// Anywhere in a box three times the viewport's size around it (mostly outside).
    Around(f64, f64),
    /// Anywhere in the region the viewports are drawn from.
    Far(f64, f64),
}

fn place() -> impl Strategy<Value = Place> {
    let f = || 0.0..=1.0f64;
    prop_oneof![
        3 => (f(), f()).prop_map(|(u, v)| Place::Inside(u, v)),
        2 => (0..4u8, f()).prop_map(|(s, u)| Place::OnEdge(s, u)),
        1 => (0..4u8).prop_map(Place::Corner),
        2 => (0..4u8, f(), any::<bool>())
            .prop_map(|(side, along, outside)| Place::NextFloat { side, along, outside }),
        4 => (0..4u8, f(), -6.0..0.3f64, any::<bool>())
            .prop_map(|(side, along, exp, outside)| Place::NearEdge { side, along, exp, outside }),
        2 => (0..4u8, f(), 0..6usize).prop_map(|(side, along, k)| Place::CellVertex { side, along, k }),
        2 => (-1.0..2.0f64, -1.0..2.0f64).prop_map(|(u, v)| Place::Around(u, v)),
        1 => (-1.0..1.0f64, -1.0..1.0f64).prop_map(|(u, v)| Place::Far(u, v)),
    ]
}

/// One vehicle: which viewport its place refers to, the place, and whether it is drawn at a
/// snapped point (its raw report then sits elsewhere and must not count).
#[derive(Debug, Clone)]
struct Vehicle {
    view: usize,
    place: Place,
    snapped: bool,
}

fn vehicle() -> impl Strategy<Value = Vehicle> {
    (0..4usize, place(), prop::bool::weighted(0.3)).prop_map(|(view, place, snapped)| Vehicle {
        view,
        place,
        snapped,
    })
}

/// A viewport: centre, size in metres (log scale), and whether its west/south edges are moved
/// onto a vertex of an H3 cell at its index resolution.
#[derive(Debug, Clone)]
struct View {
    lat: f64,
    lon: f64,
    log_w: f64,
    log_h: f64,
    align: Option<usize>,
}

fn view() -> impl Strategy<Value = View> {
    prop_oneof![
        // Cairns and around, where the viewports of the real system are.
        3 => (-17.5..-16.4f64, 145.4..146.1f64),
        // Anywhere else at city latitudes, where H3 cells are shaped differently.
        1 => (-60.0..60.0f64, -170.0..170.0f64),
    ]
    .prop_flat_map(|(lat, lon)| {
        (Just(lat), Just(lon), 0.7..5.0f64, 0.7..5.0f64, prop::option::of(0..6usize))
    })
    .prop_map(|(lat, lon, log_w, log_h, align)| View { lat, lon, log_w, log_h, align })
}

fn deg_lon(m: f64, lat: f64) -> f64 {
    m / (M_PER_DEG * lat.to_radians().cos().max(0.05))
}

fn bbox_of(v: &View) -> Bbox {
    let (w, h) = (10f64.powf(v.log_w), 10f64.powf(v.log_h));
    let dlat = h / M_PER_DEG;
    let dlon = deg_lon(w, v.lat);
    let b =
        Bbox::new(v.lon - dlon / 2.0, v.lat - dlat / 2.0, v.lon + dlon / 2.0, v.lat + dlat / 2.0)
            .unwrap();
    let Some(k) = v.align else { return b };
    // Put the south-west corner on a vertex of the cell holding it, so the west and south
    // edges run through the points where cells meet.
    let r = b.index_resolution();
    let cell = LatLng::new(b.south, b.west).unwrap().to_cell(r);
    let verts: Vec<LatLng> = cell.boundary().iter().copied().collect();
    let vtx = verts[k % verts.len()];
    Bbox::new(vtx.lng().min(b.east - 1e-9), vtx.lat().min(b.north - 1e-9), b.east, b.north)
        .unwrap_or(b)
}

/// A point on side `side` at fraction `along`, as (lat, lon).
fn edge_point(b: &Bbox, side: u8, along: f64) -> (f64, f64) {
    let lon = b.west + (b.east - b.west) * along;
    let lat = b.south + (b.north - b.south) * along;
    match side % 4 {
        0 => (lat, b.west),
        1 => (b.south, lon),
        2 => (lat, b.east),
        _ => (b.north, lon),
    }
}

fn position_of(b: &Bbox, p: &Place) -> (f64, f64) {
    let (lat, lon) = match *p {
        Place::Inside(u, v) => (b.south + (b.north - b.south) * v, b.west + (b.east - b.west) * u),
        Place::OnEdge(side, along) => edge_point(b, side, along),
        Place::Corner(c) => match c % 4 {
            0 => (b.south, b.west),
            1 => (b.south, b.east),
            2 => (b.north, b.east),
            _ => (b.north, b.west),
        },
        Place::NextFloat { side, along, outside } => {
            let (lat, lon) = edge_point(b, side, along);
            // Outward is west, south, east, north for sides 0..3.
            let out = |x: f64, decreasing_is_out: bool| {
                if outside == decreasing_is_out { x.next_down() } else { x.next_up() }
            };
            match side % 4 {
                0 => (lat, out(lon, true)),
                1 => (out(lat, true), lon),
                2 => (lat, out(lon, false)),
                _ => (out(lat, false), lon),
            }
        }
        Place::NearEdge { side, along, exp, outside } => {
            let (lat, lon) = edge_point(b, side, along);
            let m = b.index_resolution().edge_length_m() * 10f64.powf(exp);
            let sign = if outside { 1.0 } else { -1.0 };
            let (dlat, dlon) = (m / M_PER_DEG, deg_lon(m, lat));
            match side % 4 {
                0 => (lat, lon - sign * dlon),
                1 => (lat - sign * dlat, lon),
                2 => (lat, lon + sign * dlon),
                _ => (lat + sign * dlat, lon),
            }
        }
        Place::CellVertex { side, along, k } => {
            let (lat, lon) = edge_point(b, side, along);
            let cell = LatLng::new(lat, lon).unwrap().to_cell(b.index_resolution());
            let verts: Vec<LatLng> = cell.boundary().iter().copied().collect();
            let v = verts[k % verts.len()];
            (v.lat(), v.lng())
        }
        Place::Around(u, v) => (b.south + (b.north - b.south) * v, b.west + (b.east - b.west) * u),
        Place::Far(u, v) => (-17.0 + 20.0 * v, 145.7 + 20.0 * u),
    };
    (lat.clamp(-89.0, 89.0), lon.clamp(-180.0, 180.0))
}

/// The rule under test, written independently of the gateway: edges belong to the viewport.
fn inside(b: &Bbox, (lat, lon): (f64, f64)) -> bool {
    b.south <= lat && lat <= b.north && b.west <= lon && lon <= b.east
}

/// A position drawn at `at`; when `snapped`, the raw report is 0.3° away.
fn position(id: &str, ts: i64, at: (f64, f64), snapped: bool) -> VehiclePosition {
    let (raw_lat, raw_lon) = if snapped { ((at.0 + 0.3).min(89.0), at.1) } else { at };
    VehiclePosition {
        v: SCHEMA_VERSION,
        vehicle_id: id.into(),
        ts,
        lat: raw_lat,
        lon: raw_lon,
        snapped_lat: snapped.then_some(at.0),
        snapped_lon: snapped.then_some(at.1),
        route_id: Some("R".into()),
        route_short_name: None,
        route_color: None,
        trip_id: None,
        shape_id: None,
        direction_id: None,
        headsign: None,
        dist_along_m: None,
        off_route_m: None,
        speed_mps: None,
        bearing_deg: None,
        next_stop_id: None,
        next_stop_dist_m: None,
        h3_cell: String::new(),
        status: VehicleStatus::InTransit,
        seq: None,
        processed_ts: 0,
        partition: 0,
        offset: 0,
    }
}

/// What one subscriber was told in one phase: vehicle id -> "update" or "remove".
fn drain(sub: &Subscriber) -> (Option<BTreeSet<String>>, BTreeMap<String, &'static str>) {
    let mut snapshot = None;
    let mut events = BTreeMap::new();
    for e in sub.queue.try_batch().unwrap_or_default() {
        match e {
            Outgoing::Snapshot { vehicles, .. } => {
                snapshot = Some(vehicles.iter().map(|v| v.vehicle_id.clone()).collect());
            }
            Outgoing::Update(u) => {
                let prev = events.insert(u.vehicle_id.clone(), "update");
                assert!(prev.is_none(), "two events for {} in one phase", u.vehicle_id);
            }
            Outgoing::Remove { vehicle_id, reason } => {
                assert_eq!(reason, RemoveReason::LeftViewport, "{vehicle_id}");
                let prev = events.insert(vehicle_id.clone(), "remove");
                assert!(prev.is_none(), "two events for {vehicle_id} in one phase");
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    (snapshot, events)
}

fn live() -> Arc<LiveState> {
    LiveState::new(LiveSettings {
        stale_after: Duration::from_secs(3600),
        // Never switch to density frames or coalesce: every per-vehicle event must be visible.
        max_vehicles_per_stream: 1_000_000,
        queue: QueueLimits { capacity: 1_000_000, slow_timeout: Duration::from_secs(3600) },
        // Several shards, so the property covers subscriptions spread over shards (positions
        // applied one at a time are matched on the caller's thread, shard after shard).
        fanout_threads: 3,
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn subscribers_get_exactly_the_vehicles_inside_their_bbox(
        views in prop::collection::vec(view(), 1..=4),
        before in prop::collection::vec(vehicle(), 0..40),
        later in prop::collection::vec(vehicle(), 0..40),
        moves in prop::collection::vec(vehicle(), 0..40),
    ) {
        let boxes: Vec<Bbox> = views.iter().map(bbox_of).collect();
        // Where each vehicle is drawn (its snapped point when it has one).
        let shown = |v: &Vehicle| position_of(&boxes[v.view % boxes.len()], &v.place);
        let state = live();

        // Phase 1: vehicles first, then subscribers: the snapshot.
        for (i, v) in before.iter().enumerate() {
            state.apply_seen(position(&format!("a{i}"), 1, shown(v), v.snapped), 1);
        }
        let subs: Vec<Subscriber> =
            boxes.iter().map(|b| state.subscribe(Filter::bbox(*b), false)).collect();
        for (s, b) in subs.iter().zip(&boxes) {
            let (snapshot, events) = drain(s);
            let want: BTreeSet<String> = before
                .iter()
                .enumerate()
                .filter(|(_, v)| inside(b, shown(v)))
                .map(|(i, _)| format!("a{i}"))
                .collect();
            prop_assert_eq!(snapshot, Some(want), "snapshot of {:?}", b);
            prop_assert!(events.is_empty());
        }

        // Phase 2: new vehicles appear: an update for exactly those inside.
        for (i, v) in later.iter().enumerate() {
            state.apply_seen(position(&format!("b{i}"), 1, shown(v), v.snapped), 2);
        }
        for (s, b) in subs.iter().zip(&boxes) {
            let (snapshot, events) = drain(s);
            prop_assert!(snapshot.is_none());
            let want: BTreeMap<String, &str> = later
                .iter()
                .enumerate()
                .filter(|(_, v)| inside(b, shown(v)))
                .map(|(i, _)| (format!("b{i}"), "update"))
                .collect();
            prop_assert_eq!(events, want, "new vehicles for {:?}", b);
        }

        // Phase 3: the first vehicles move: an update when the new point is inside, a remove
        // when only the old one was, nothing when neither is.
        for (i, new) in moves.iter().take(before.len()).enumerate() {
            state.apply_seen(position(&format!("a{i}"), 2, shown(new), new.snapped), 3);
        }
        for (s, b) in subs.iter().zip(&boxes) {
            let (snapshot, events) = drain(s);
            prop_assert!(snapshot.is_none());
            let mut want = BTreeMap::new();
            for (i, (old, new)) in before.iter().zip(&moves).enumerate() {
                if inside(b, shown(new)) {
                    want.insert(format!("a{i}"), "update");
                } else if inside(b, shown(old)) {
                    want.insert(format!("a{i}"), "remove");
                }
            }
            prop_assert_eq!(events, want, "moves for {:?}", b);
        }
    }
}
