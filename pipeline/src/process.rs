//! The per-event path: parse, validate, deduplicate, snap, enrich, H3-index.

use std::collections::HashMap;
use std::sync::Arc;

use busflow_core::geometry::{bearing_deg, haversine_m};
use busflow_core::network::{RouteIdx, ShapeIdx, TripIdx};
use busflow_core::{
    Network, Projection, RawPosition, RejectReason, Rejected, SCHEMA_VERSION, VehiclePosition,
    VehicleStatus,
};
use h3o::Resolution;

use crate::Error;
use crate::config::PipelineConfig;
use crate::parse::{Refusal, parse};
use crate::snap::{Fix, MAX_TRACKS, Matched, Track, follow, heading_penalty, scan};

/// Within this distance of a shape's end, a vehicle that stops matching has finished the trip.
const END_ZONE_M: f64 = 150.0;
/// Same position within this many degrees (about 1 mm) counts as an exact repeat; JSON
/// round trips may move the last bit.
const SAME_POS_DEG: f64 = 1e-8;
/// Consecutive implausible jumps after which the new position is believed (the old anchor was
/// the outlier).
const JUMP_STREAK_LIMIT: u8 = 3;
/// Off route for this long, a vehicle found behind its track on the same shape is on a new run
/// of it (a curtailed trip begun again) rather than a fix to hold back; seconds.
const RESTART_AFTER_S: f64 = 120.0;

/// One message from the raw topic.
#[derive(Debug, Clone, Copy)]
pub struct RawMessage<'a> {
    /// Message value.
    pub payload: &'a [u8],
    /// Message key.
    pub key: Option<&'a [u8]>,
    /// Raw-topic partition.
    pub partition: i32,
    /// Raw-topic offset.
    pub offset: i64,
}

/// What one raw message turned into.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Accepted: goes to `positions` and `latest`.
    Position(Box<VehiclePosition>),
    /// Refused: goes to `rejected`.
    Rejected(Box<Rejected>),
    /// An exact repeat of the vehicle's last accepted report: dropped and counted.
    Duplicate,
}

/// Per-vehicle memory, a few hundred bytes.
#[derive(Debug, Clone)]
struct VehicleState {
    last_ts: i64,
    last_lat: f64,
    last_lon: f64,
    /// The accepted fix before the last: a multipath fix that slipped through after a gap
    /// must not make the next good fix look like a jump.
    prev_ts: i64,
    prev_lat: f64,
    prev_lon: f64,
    /// The trip the device last named, so a device that keeps naming a finished trip does not
    /// undo a block continuation.
    hinted_trip: Option<TripIdx>,
    trip: Option<TripIdx>,
    tracks: [Track; MAX_TRACKS],
    n_tracks: u8,
    /// When the vehicle was last on a shape (bounds how far it may have moved along it).
    snapped_ts: i64,
    speed: Option<f32>,
    bearing: Option<f32>,
    anchor_lat: f64,
    anchor_lon: f64,
    anchor_ts: i64,
    jump_streak: u8,
    /// The last fix agreed with one before it. A first fix has nothing to back it, so a
    /// disagreeing second fix is not called a jump: either could be the outlier.
    corroborated: bool,
}

const NO_TRACK: Track = Track { shape: 0, dist_m: 0.0, score: 0.0 };

impl VehicleState {
    fn new(raw: &RawPosition) -> Self {
        VehicleState {
            last_ts: raw.ts,
            last_lat: raw.lat,
            last_lon: raw.lon,
            prev_ts: raw.ts,
            prev_lat: raw.lat,
            prev_lon: raw.lon,
            hinted_trip: None,
            trip: None,
            tracks: [NO_TRACK; MAX_TRACKS],
            n_tracks: 0,
            snapped_ts: raw.ts,
            speed: None,
            bearing: None,
            anchor_lat: raw.lat,
            anchor_lon: raw.lon,
            anchor_ts: raw.ts,
            jump_streak: 0,
            corroborated: false,
        }
    }

    fn tracks(&self) -> &[Track] {
        &self.tracks[..self.n_tracks as usize]
    }

    fn track(&self, shape: ShapeIdx) -> Option<&Track> {
        self.tracks().iter().find(|t| t.shape == shape)
    }

    fn set_tracks(&mut self, matched: &[Matched]) {
        self.n_tracks = matched.len().min(MAX_TRACKS) as u8;
        for (slot, m) in self.tracks.iter_mut().zip(matched) {
            *slot = m.track;
        }
    }
}

/// Counters of one processor, read and reset by the dataflow once per epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Positions produced.
    pub positions: u64,
    /// Rejections by reason, indexed like [`RejectReason::ALL`].
    pub rejected: [u64; 13],
    /// Exact repeats dropped.
    pub duplicates: u64,
    /// Positions with status `off_route`.
    pub off_route: u64,
}

/// The stateful per-event processor for the vehicles one worker owns.
///
/// ```
/// # use std::sync::Arc;
/// use busflow_pipeline::{Outcome, PipelineConfig, Processor, RawMessage};
/// let network = Arc::new(busflow_core::Network::load(busflow_core::bundled_gtfs_path()).unwrap());
/// let mut p = Processor::new(network, &PipelineConfig::default()).unwrap();
/// let now = 1_763_900_000_000;
/// let payload = format!(r#"{{"vehicle_id":"b1","ts":{now},"lat":-16.9237,"lon":145.7713}}"#);
/// let msg = RawMessage { payload: payload.as_bytes(), key: Some(b"b1"), partition: 0, offset: 0 };
/// assert!(matches!(p.process(msg, now), Outcome::Position(_)));
/// assert_eq!(p.process(msg, now), Outcome::Duplicate);
/// ```
#[derive(Debug)]
pub struct Processor {
    net: Arc<Network>,
    cfg: PipelineConfig,
    res: Resolution,
    states: HashMap<String, VehicleState>,
    counts: Counts,
    /// Trips per shape: among shapes that fit equally well, the busier one is likelier.
    shape_trips: Vec<u32>,
}

impl Processor {
    /// A processor with no vehicles yet.
    pub fn new(net: Arc<Network>, cfg: &PipelineConfig) -> Result<Self, Error> {
        let res = busflow_core::h3::resolution(cfg.h3_resolution)?;
        let mut shape_trips = vec![0u32; net.shapes.len()];
        for t in &net.trips {
            if let Some(n) = shape_trips.get_mut(t.shape as usize) {
                *n += 1;
            }
        }
        Ok(Processor {
            net,
            cfg: cfg.clone(),
            res,
            states: HashMap::new(),
            counts: Counts::default(),
            shape_trips,
        })
    }

    /// Vehicles with state.
    pub fn vehicles(&self) -> usize {
        self.states.len()
    }

    /// Takes the counters accumulated since the last call.
    pub fn take_counts(&mut self) -> Counts {
        std::mem::take(&mut self.counts)
    }

    /// Drops vehicles whose last accepted fix is older than the state TTL; returns how many.
    pub fn evict(&mut self, now_ms: i64) -> usize {
        let ttl = self.cfg.state_ttl.as_millis() as i64;
        let before = self.states.len();
        self.states.retain(|_, s| now_ms - s.last_ts <= ttl);
        before - self.states.len()
    }

    /// Rebuilds a vehicle's state from a position this pipeline produced earlier (recovery).
    /// Keeps whichever is newer when the vehicle already has state.
    pub fn restore(&mut self, pos: &VehiclePosition) {
        if self.states.get(&pos.vehicle_id).is_some_and(|s| s.last_ts >= pos.ts) {
            return;
        }
        let raw = RawPosition::new(pos.vehicle_id.clone(), pos.ts, pos.lat, pos.lon);
        let mut st = VehicleState::new(&raw);
        st.trip = pos.trip_id.as_deref().and_then(|t| self.net.trip_by_id(t));
        st.hinted_trip = st.trip;
        if let (Some(shape), Some(dist)) =
            (pos.shape_id.as_deref().and_then(|s| self.net.shape_by_id(s)), pos.dist_along_m)
        {
            st.tracks[0] =
                Track { shape, dist_m: dist, score: pos.off_route_m.unwrap_or(0.0) as f32 };
            st.n_tracks = 1;
        }
        st.speed = pos.speed_mps;
        // Whether this fix was backed by the one before it is not on the wire; treating it as
        // unbacked means a restart never turns a good next fix into an `implausible_speed`.
        st.corroborated = false;
        st.bearing = pos.bearing_deg;
        if pos.status == VehicleStatus::Stopped {
            st.anchor_ts = pos.ts - self.cfg.stopped_after.as_millis() as i64;
        }
        self.states.insert(pos.vehicle_id.clone(), st);
    }

    /// Processes one raw message at wall-clock time `now_ms`.
    pub fn process(&mut self, msg: RawMessage<'_>, now_ms: i64) -> Outcome {
        let outcome = match self.accept(msg, now_ms) {
            Ok(Some(pos)) => Outcome::Position(Box::new(pos)),
            Ok(None) => Outcome::Duplicate,
            Err(r) => {
                // An oversized message keeps only its first `max_message_bytes`: its whole
                // base64 is a third larger than the message, can exceed what the producer and
                // broker take (1 MB by default), and the sink would retry it forever, stalling
                // every epoch behind it.
                let limit = self.cfg.max_message_bytes;
                let (raw, detail) =
                    if r.reason == RejectReason::Oversized && msg.payload.len() > limit {
                        (
                            &msg.payload[..limit],
                            format!("{}; raw_b64 holds the first {limit} bytes", r.detail),
                        )
                    } else {
                        (msg.payload, r.detail)
                    };
                Outcome::Rejected(Box::new(Rejected::new(
                    r.reason,
                    detail,
                    r.vehicle_id,
                    raw,
                    msg.key,
                    msg.partition,
                    msg.offset,
                    now_ms,
                )))
            }
        };
        match &outcome {
            Outcome::Position(p) => {
                self.counts.positions += 1;
                if p.status == VehicleStatus::OffRoute {
                    self.counts.off_route += 1;
                }
            }
            Outcome::Rejected(r) => {
                if let Some(i) = RejectReason::ALL.iter().position(|x| *x == r.reason) {
                    self.counts.rejected[i] += 1;
                }
            }
            Outcome::Duplicate => self.counts.duplicates += 1,
        }
        outcome
    }

    fn accept(
        &mut self,
        msg: RawMessage<'_>,
        now_ms: i64,
    ) -> Result<Option<VehiclePosition>, Refusal> {
        let raw = parse(msg.payload, msg.key, self.cfg.max_message_bytes)?;
        validate(&raw, now_ms, &self.cfg)?;
        let prev = self.states.get(&raw.vehicle_id);
        if let Some(st) = prev {
            let same_pos = (st.last_lat - raw.lat).abs() < SAME_POS_DEG
                && (st.last_lon - raw.lon).abs() < SAME_POS_DEG;
            if raw.ts == st.last_ts && same_pos {
                return Ok(None);
            }
            if raw.ts <= st.last_ts {
                return Err(Refusal::new(
                    RejectReason::Stale,
                    format!("ts {} is not after the last accepted {}", raw.ts, st.last_ts),
                    Some(&raw.vehicle_id),
                ));
            }
        }
        let mut st = match self.states.remove(&raw.vehicle_id) {
            Some(st) => st,
            None => VehicleState::new(&raw),
        };
        let fresh = st.last_ts == raw.ts;
        let mut plausible_or_first = true;
        if !fresh {
            let implied_from = |ts: i64, lat: f64, lon: f64| {
                let d = haversine_m(lat, lon, raw.lat, raw.lon);
                let dt = ((raw.ts - ts) as f64 / 1000.0).max(0.5);
                (d, dt, (d - self.cfg.gps_noise_m).max(0.0) / dt)
            };
            let (d, dt, implied) = implied_from(st.last_ts, st.last_lat, st.last_lon);
            let plausible = implied <= self.cfg.max_speed_mps
                || implied_from(st.prev_ts, st.prev_lat, st.prev_lon).2 <= self.cfg.max_speed_mps;
            plausible_or_first = plausible;
            if !plausible && st.corroborated && st.jump_streak + 1 < JUMP_STREAK_LIMIT {
                st.jump_streak += 1;
                let vehicle = raw.vehicle_id.clone();
                self.states.insert(vehicle, st);
                return Err(Refusal::new(
                    RejectReason::ImplausibleSpeed,
                    format!(
                        "{d:.0} m in {dt:.1} s implies {implied:.0} m/s (limit {})",
                        self.cfg.max_speed_mps
                    ),
                    Some(&raw.vehicle_id),
                ));
            }
        }
        let corroborated = !fresh && plausible_or_first;
        let pos = self.locate(&mut st, &raw, fresh, msg, now_ms);
        st.corroborated = corroborated;
        let vehicle = raw.vehicle_id;
        self.states.insert(vehicle, st);
        pos.map(Some)
    }

    /// Snaps and enriches an accepted fix, updating the vehicle's state.
    fn locate(
        &self,
        st: &mut VehicleState,
        raw: &RawPosition,
        fresh: bool,
        msg: RawMessage<'_>,
        now_ms: i64,
    ) -> Result<VehiclePosition, Refusal> {
        let net = &*self.net;
        let cfg = &self.cfg;
        let dt = if fresh { 0.0 } else { (raw.ts - st.last_ts) as f64 / 1000.0 };
        let moved = haversine_m(st.last_lat, st.last_lon, raw.lat, raw.lon);

        // Trip and route hints from the device.
        let trip_hint = raw.trip_id.as_deref().and_then(|t| net.trip_by_id(t));
        let route_hint = raw.route_id.as_deref().and_then(|r| net.route_by_id(r));
        if trip_hint.is_some() {
            if trip_hint != st.hinted_trip {
                // A trip the device names anew is a new run: matched afresh, not followed on
                // from where the last trip left its (possibly same) shape.
                if trip_hint != st.trip {
                    st.n_tracks = 0;
                }
                st.hinted_trip = trip_hint;
                st.trip = trip_hint;
            }
        } else if let Some(r) = route_hint
            && st.trip.is_some_and(|t| net.trip(t).route != r)
        {
            st.trip = None;
            st.hinted_trip = None;
        }

        let device_bearing = raw.bearing_deg.filter(|b| b.is_finite() && (0.0..=360.0).contains(b));
        let heading = device_bearing.map(f64::from).or_else(|| {
            (!fresh && moved > cfg.gps_noise_m)
                .then(|| bearing_deg(st.last_lat, st.last_lon, raw.lat, raw.lon))
        });
        let since_snap = ((raw.ts - st.snapped_ts) as f64 / 1000.0).max(0.0);
        let fix = Fix {
            lat: raw.lat,
            lon: raw.lon,
            heading,
            reach_m: cfg.max_speed_mps * since_snap + 2.0 * cfg.gps_noise_m,
            advance_m: st.speed.map_or(0.0, |s| f64::from(s).clamp(0.0, cfg.max_speed_mps))
                * since_snap,
            moved_m: if fresh { 0.0 } else { moved },
            back_m: cfg.gps_noise_m,
            max_off_m: cfg.max_off_route_m,
            restart: since_snap >= RESTART_AFTER_S,
        };

        let mut matched = self.match_candidates(st, route_hint, &fix);
        // End of the shape: the trip is over. Continue with the block's next trip, else match
        // afresh on the route's shapes (or the same trip's shape for a loop service).
        if let (Some(best), Some(prev)) = (matched.first(), st.tracks().first().copied()) {
            let len = net.shape(best.track.shape).line.length_m();
            if best.track.shape == prev.shape
                && prev.dist_m >= len - END_ZONE_M
                && best.projection.dist_along_m >= len - 1.0
                && best.projection.off_m > cfg.gps_noise_m
            {
                if let Some(next) = st.trip.and_then(|t| next_in_block(net, t)) {
                    st.trip = Some(next);
                }
                st.n_tracks = 0;
                matched = self.match_candidates(st, route_hint, &fix);
            }
        }

        let best = matched.first().copied();
        let prev_dist = best.and_then(|b| st.track(b.track.shape).map(|t| t.dist_m));
        st.set_tracks(&matched);
        let on_route = best.is_some_and(|m| m.projection.off_m <= cfg.max_off_route_m);

        // Speed: the device's when plausible, else progress along the shape (or straight line).
        let measured = if fresh || dt <= 0.0 {
            None
        } else {
            let along = match (best, prev_dist) {
                (Some(b), Some(d)) if on_route => b.track.dist_m - d,
                _ => moved,
            };
            Some((along / dt) as f32)
        };
        let device_speed = raw
            .speed_mps
            .filter(|s| s.is_finite() && *s >= 0.0 && f64::from(*s) <= cfg.max_speed_mps);
        st.speed = match (device_speed, measured, st.speed) {
            (Some(s), _, _) => Some(s),
            (None, Some(m), Some(old)) => Some(0.5 * old + 0.5 * m),
            (None, m, old) => m.or(old),
        };

        // Stopped: has not left a noise-sized circle for a while.
        if haversine_m(st.anchor_lat, st.anchor_lon, raw.lat, raw.lon) > cfg.gps_noise_m {
            st.anchor_lat = raw.lat;
            st.anchor_lon = raw.lon;
            st.anchor_ts = raw.ts;
        }
        let still_ms = raw.ts - st.anchor_ts;

        let mut pos = VehiclePosition {
            v: SCHEMA_VERSION,
            vehicle_id: raw.vehicle_id.clone(),
            ts: raw.ts,
            lat: raw.lat,
            lon: raw.lon,
            snapped_lat: None,
            snapped_lon: None,
            route_id: None,
            route_short_name: None,
            route_color: None,
            trip_id: None,
            shape_id: None,
            direction_id: None,
            headsign: None,
            dist_along_m: None,
            off_route_m: None,
            speed_mps: st.speed,
            bearing_deg: None,
            next_stop_id: None,
            next_stop_dist_m: None,
            h3_cell: String::new(),
            status: VehicleStatus::Unassigned,
            seq: raw.seq,
            processed_ts: now_ms,
            partition: msg.partition,
            offset: msg.offset,
        };
        let mut movement_bearing = (!fresh && moved > cfg.gps_noise_m)
            .then(|| bearing_deg(st.last_lat, st.last_lon, raw.lat, raw.lon) as f32);
        if let Some(m) = best {
            let shape = net.shape(m.track.shape);
            let trip = st.trip.filter(|t| net.trip(*t).shape == m.track.shape).map(|t| net.trip(t));
            let route = net.route(trip.map_or(shape.route, |t| t.route));
            pos.route_id = Some(route.id.clone());
            pos.route_short_name = Some(route.short_name.clone());
            pos.route_color = Some(route.color.clone());
            pos.trip_id = trip.map(|t| t.id.clone());
            pos.shape_id = Some(shape.id.clone());
            pos.direction_id = trip.and_then(|t| t.direction_id).or(shape.direction_id);
            pos.headsign = trip.and_then(|t| t.headsign.clone()).or_else(|| shape.headsign.clone());
            pos.off_route_m = Some(round_cm(m.projection.off_m));
            if on_route {
                let dist = m.track.dist_m;
                pos.snapped_lat = Some(m.projection.lat);
                pos.snapped_lon = Some(m.projection.lon);
                pos.dist_along_m = Some(round_cm(dist));
                st.snapped_ts = raw.ts;
                movement_bearing = Some(shape.line.bearing_at(dist) as f32);
                let next = match trip {
                    Some(t) => {
                        let i = t.stop_times.partition_point(|s| s.dist_m <= dist + 1.0);
                        t.stop_times.get(i).map(|s| (s.stop, s.dist_m))
                    }
                    None => {
                        let i = shape.stops.partition_point(|s| s.dist_m <= dist + 1.0);
                        shape.stops.get(i).map(|s| (s.stop, s.dist_m))
                    }
                };
                if let Some((stop, at)) = next {
                    pos.next_stop_id = Some(net.stop(stop).id.clone());
                    pos.next_stop_dist_m = Some(round_cm(at - dist));
                }
                pos.status = if still_ms >= cfg.stopped_after.as_millis() as i64 {
                    VehicleStatus::Stopped
                } else {
                    VehicleStatus::InTransit
                };
            } else {
                pos.status = VehicleStatus::OffRoute;
            }
        }
        st.bearing = device_bearing.or(movement_bearing).or(st.bearing);
        pos.bearing_deg = st.bearing;
        let (clat, clon) = match (pos.snapped_lat, pos.snapped_lon) {
            (Some(a), Some(b)) => (a, b),
            _ => (raw.lat, raw.lon),
        };
        pos.h3_cell = busflow_core::h3::cell_string(clat, clon, self.res).map_err(|e| {
            Refusal::new(RejectReason::InvalidCoordinates, e.to_string(), Some(&raw.vehicle_id))
        })?;
        if !fresh {
            st.prev_ts = st.last_ts;
            st.prev_lat = st.last_lat;
            st.prev_lon = st.last_lon;
        }
        st.last_ts = raw.ts;
        st.last_lat = raw.lat;
        st.last_lon = raw.lon;
        st.jump_streak = 0;
        Ok(pos)
    }

    /// Follows every candidate shape and returns the matches, best first.
    fn match_candidates(
        &self,
        st: &VehicleState,
        route_hint: Option<RouteIdx>,
        fix: &Fix,
    ) -> Vec<Matched> {
        let net = &*self.net;
        let mut near: Option<Vec<busflow_core::network::NearShape>> = None;
        let mut shapes: Vec<(ShapeIdx, Option<Projection>)> = Vec::with_capacity(8);
        if let Some(t) = st.trip {
            shapes.push((net.trip(t).shape, None));
        } else if let Some(r) = route_hint {
            // The route's shapes that are tracked or near; a far variant is no candidate.
            let route_shapes = &net.route(r).shapes;
            for &s in route_shapes {
                if st.track(s).is_some() {
                    shapes.push((s, None));
                } else {
                    let near = near
                        .get_or_insert_with(|| net.shapes_near(fix.lat, fix.lon, fix.max_off_m));
                    if let Some(n) = near.iter().find(|n| n.shape == s) {
                        shapes.push((s, Some(n.projection)));
                    }
                }
            }
            if shapes.is_empty() {
                // Nowhere near its route: still report how far off it is.
                shapes.extend(route_shapes.iter().map(|&s| (s, None)));
            }
        } else {
            shapes.extend(st.tracks().iter().map(|t| (t.shape, None)));
            let near = near.get_or_insert_with(|| net.shapes_near(fix.lat, fix.lon, fix.max_off_m));
            for n in near.iter().take(MAX_TRACKS) {
                if !shapes.iter().any(|(s, _)| *s == n.shape) {
                    shapes.push((n.shape, Some(n.projection)));
                }
            }
        }
        // A lost track looks for its shape again only if the shape is near at all; only the
        // chosen track pays for a full scan (leg choice), the others take the nearest point.
        let primary = st.tracks().first().map(|t| t.shape);
        let single = shapes.len() == 1;
        // `from`: how far along the shape the search starts.
        let mut rescan = |shape: ShapeIdx, from: f64| -> Option<(Projection, f64)> {
            let near = near.get_or_insert_with(|| net.shapes_near(fix.lat, fix.lon, fix.max_off_m));
            let hit = near.iter().find(|n| n.shape == shape)?;
            let line = &net.shape(shape).line;
            if single || primary == Some(shape) {
                Some(scan(line, fix, from, f64::INFINITY, None))
            } else {
                let p = hit.projection;
                (p.dist_along_m >= from)
                    .then(|| (p, p.off_m + heading_penalty(line, p.segment, fix)))
            }
        };
        let mut out: Vec<Matched> = shapes
            .iter()
            .map(|&(s, seed)| {
                let reported = primary == Some(s);
                follow(&net.shape(s).line, s, st.track(s), reported, seed, fix, &mut rescan)
            })
            .collect();
        // Scores within a metre are a tie (shared road): then the busier shape.
        let trips =
            |m: &Matched| self.shape_trips.get(m.track.shape as usize).copied().unwrap_or(0);
        out.sort_by(|a, b| {
            a.track.score.round().total_cmp(&b.track.score.round()).then(trips(b).cmp(&trips(a)))
        });
        // Keep the best and the alternatives still within reach.
        let mut first = true;
        out.retain(|m| std::mem::take(&mut first) || m.projection.off_m <= fix.max_off_m);
        out
    }
}

fn next_in_block(net: &Network, trip: TripIdx) -> Option<TripIdx> {
    let block = &net.blocks[net.trip(trip).block? as usize];
    let i = block.iter().position(|&t| t == trip)?;
    block.get(i + 1).copied()
}

fn round_cm(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Checks that need no vehicle state: coordinates and timestamp bounds.
pub fn validate(raw: &RawPosition, now_ms: i64, cfg: &PipelineConfig) -> Result<(), Refusal> {
    let v = Some(raw.vehicle_id.as_str());
    if !(raw.lat.is_finite()
        && raw.lon.is_finite()
        && raw.lat.abs() <= 90.0
        && raw.lon.abs() <= 180.0)
    {
        return Err(Refusal::new(
            RejectReason::InvalidCoordinates,
            format!("({}, {}) is not a WGS84 position", raw.lat, raw.lon),
            v,
        ));
    }
    if raw.lat.abs() < 1e-6 && raw.lon.abs() < 1e-6 {
        return Err(Refusal::new(RejectReason::NullIsland, "(0, 0): no GPS fix", v));
    }
    // Saturating: ts is whatever the device sent, and near i64::MIN the plain difference
    // overflows (a panic in debug builds, a wrapped "future" timestamp in release).
    let future = raw.ts.saturating_sub(now_ms);
    let age = future.saturating_neg();
    if future > cfg.max_future.as_millis() as i64 {
        return Err(Refusal::new(
            RejectReason::FutureTimestamp,
            format!("ts is {:.1}s ahead of the pipeline clock", future as f64 / 1000.0),
            v,
        ));
    }
    if age > cfg.max_age.as_millis() as i64 {
        return Err(Refusal::new(
            RejectReason::TooOld,
            format!("ts is {:.1}s old (limit {}s)", age as f64 / 1000.0, cfg.max_age.as_secs()),
            v,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testnet;
    use busflow_core::geometry::destination;

    const NOW: i64 = 1_763_900_000_000;

    fn proc() -> Processor {
        Processor::new(testnet::network(), &PipelineConfig::default()).unwrap()
    }

    fn send(p: &mut Processor, v: &str, ts: i64, lat: f64, lon: f64, extra: &str) -> Outcome {
        let payload = format!(r#"{{"vehicle_id":"{v}","ts":{ts},"lat":{lat},"lon":{lon}{extra}}}"#);
        let msg = RawMessage {
            payload: payload.as_bytes(),
            key: Some(v.as_bytes()),
            partition: 0,
            offset: 0,
        };
        p.process(msg, NOW)
    }

    fn position(o: Outcome) -> VehiclePosition {
        match o {
            Outcome::Position(p) => *p,
            other => panic!("expected a position, got {other:?}"),
        }
    }

    fn reason(o: Outcome) -> RejectReason {
        match o {
            Outcome::Rejected(r) => r.reason,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    /// Points every `step_m` along a polyline given as vertices.
    fn walk(points: &[(f64, f64)], step_m: f64) -> Vec<(f64, f64)> {
        let line = busflow_core::Polyline::new(points.iter().copied()).unwrap();
        let n = (line.length_m() / step_m).floor() as usize;
        (0..=n)
            .map(|i| {
                let (lat, lon, _) = line.point_at(i as f64 * step_m);
                (lat, lon)
            })
            .collect()
    }

    fn shape_points(id: &str) -> Vec<(f64, f64)> {
        testnet::shapes().into_iter().find(|s| s.id == id).unwrap().points
    }

    #[test]
    fn extreme_timestamps_are_refused_without_overflow() {
        // ts - now overflowed i64 for ts near i64::MIN (seen writing the fuzz targets).
        let cfg = PipelineConfig::default();
        let at = |ts: i64, now: i64| {
            validate(&RawPosition::new("b1", ts, -16.9, 145.7), now, &cfg).unwrap_err().reason
        };
        assert_eq!(at(i64::MIN, NOW), RejectReason::TooOld);
        assert_eq!(at(i64::MAX, NOW), RejectReason::FutureTimestamp);
        assert_eq!(at(i64::MAX, -NOW), RejectReason::FutureTimestamp);
        // ts - now is exactly i64::MIN here, so its negation overflowed as well.
        assert_eq!(at(i64::MIN, 0), RejectReason::TooOld);
    }

    #[test]
    fn every_rejection_reason_from_the_processor() {
        let mut p = proc();
        fn raw<'a>(payload: &'a [u8], key: Option<&'a [u8]>) -> RawMessage<'a> {
            RawMessage { payload, key, partition: 1, offset: 9 }
        }
        for (payload, key, want) in [
            (&b"\xff\xfe"[..], None, RejectReason::NotUtf8),
            (b"{", None, RejectReason::MalformedJson),
            (br#"{"vehicle_id":"x","lat":1.0,"lon":1.0}"#, None, RejectReason::MissingField),
            (br#"{"vehicle_id":"x","ts":1,"lat":"n","lon":1.0}"#, None, RejectReason::InvalidField),
            (
                br#"{"v":2,"vehicle_id":"x","ts":1,"lat":1.0,"lon":1.0}"#,
                None,
                RejectReason::UnsupportedVersion,
            ),
            (
                br#"{"vehicle_id":"x","ts":1,"lat":1.0,"lon":1.0}"#,
                Some(&b"y"[..]),
                RejectReason::KeyMismatch,
            ),
        ] {
            let r = match p.process(raw(payload, key), NOW) {
                Outcome::Rejected(r) => r,
                other => panic!("{want:?}: {other:?}"),
            };
            assert_eq!(r.reason, want);
            assert_eq!(r.raw_bytes().unwrap(), payload);
            assert_eq!((r.partition, r.offset), (1, 9));
        }
        let big = vec![b' '; p.cfg.max_message_bytes + 1];
        assert_eq!(reason(p.process(raw(&big, None), NOW)), RejectReason::Oversized);
        assert_eq!(
            reason(send(&mut p, "a", NOW, 91.0, 145.7, "")),
            RejectReason::InvalidCoordinates
        );
        assert_eq!(
            reason(send(&mut p, "a", NOW, -16.9, 181.0, "")),
            RejectReason::InvalidCoordinates
        );
        assert_eq!(reason(send(&mut p, "a", NOW, 0.0, 0.0, "")), RejectReason::NullIsland);
        assert_eq!(
            reason(send(&mut p, "a", NOW + 61_000, -16.92, 145.70, "")),
            RejectReason::FutureTimestamp
        );
        assert_eq!(
            reason(send(&mut p, "a", NOW - 3_601_000, -16.92, 145.70, "")),
            RejectReason::TooOld
        );
        position(send(&mut p, "a", NOW - 12_000, -16.92, 145.6999, ""));
        position(send(&mut p, "a", NOW - 10_000, -16.92, 145.70, ""));
        // 2 km in 5 s.
        assert_eq!(
            reason(send(&mut p, "a", NOW - 5_000, -16.92, 145.719, "")),
            RejectReason::ImplausibleSpeed
        );
        assert_eq!(
            reason(send(&mut p, "a", NOW - 20_000, -16.92, 145.70, "")),
            RejectReason::Stale
        );
        let c = p.take_counts();
        assert_eq!(c.positions, 2);
        assert_eq!(c.rejected.iter().sum::<u64>(), 14);
        assert!(c.rejected.iter().all(|&n| n >= 1), "{c:?}");
    }

    #[test]
    fn exact_repeat_is_dropped_and_counted_but_same_ts_elsewhere_is_stale() {
        let mut p = proc();
        position(send(&mut p, "a", NOW, -16.92, 145.70, ""));
        assert_eq!(send(&mut p, "a", NOW, -16.92, 145.70, ""), Outcome::Duplicate);
        assert_eq!(reason(send(&mut p, "a", NOW, -16.92, 145.7001, "")), RejectReason::Stale);
        assert_eq!(p.take_counts().duplicates, 1);
    }

    #[test]
    fn out_of_order_is_stale_and_does_not_move_the_vehicle() {
        let mut p = proc();
        position(send(&mut p, "a", NOW - 2000, -16.92, 145.701, r#","trip_id":"t_e""#));
        let late = send(&mut p, "a", NOW - 3000, -16.92, 145.700, r#","trip_id":"t_e""#);
        assert_eq!(reason(late), RejectReason::Stale);
        let next = position(send(&mut p, "a", NOW - 1000, -16.92, 145.7012, r#","trip_id":"t_e""#));
        assert!(next.dist_along_m.unwrap() > 110.0, "{next:?}");
    }

    #[test]
    fn multipath_jump_is_rejected_and_the_track_continues() {
        let mut p = proc();
        let mut ts = NOW - 60_000;
        for (lat, lon) in walk(&shape_points("line_e"), 10.0).into_iter().take(20) {
            position(send(&mut p, "m", ts, lat, lon, r#","trip_id":"t_e""#));
            ts += 1000;
        }
        let (jlat, jlon) = destination(-16.92, 145.7019, 0.0, 400.0);
        assert_eq!(reason(send(&mut p, "m", ts, jlat, jlon, "")), RejectReason::ImplausibleSpeed);
        ts += 1000;
        let back = position(send(&mut p, "m", ts, -16.92, 145.7020, r#","trip_id":"t_e""#));
        assert_eq!(back.status, VehicleStatus::InTransit);
        // Three consistent jumps in a row are believed: the old anchor was the outlier.
        let (flat, flon) = destination(-16.92, 145.7020, 0.0, 3000.0);
        let mut outcomes = Vec::new();
        for _ in 0..3 {
            ts += 1000;
            outcomes.push(send(&mut p, "m", ts, flat, flon, ""));
        }
        assert_eq!(reason(outcomes.remove(0)), RejectReason::ImplausibleSpeed);
        assert_eq!(reason(outcomes.remove(0)), RejectReason::ImplausibleSpeed);
        position(outcomes.remove(0));
    }

    #[test]
    fn loop_shape_progress_is_monotonic_and_ends_at_its_length() {
        let mut p = proc();
        let pts = walk(&shape_points("loop"), 20.0);
        let mut ts = NOW - pts.len() as i64 * 2000;
        let mut last = -1.0;
        let mut final_pos = None;
        for (lat, lon) in pts {
            let pos = position(send(&mut p, "l", ts, lat, lon, r#","trip_id":"t_loop""#));
            let d = pos.dist_along_m.unwrap();
            assert!(d >= last, "went back from {last} to {d}");
            last = d;
            final_pos = Some(pos);
            ts += 2000;
        }
        let len = p.net.shape(p.net.shape_by_id("loop").unwrap()).line.length_m();
        let f = final_pos.unwrap();
        assert!((f.dist_along_m.unwrap() - len).abs() < 25.0, "{f:?} vs {len}");
        assert!(matches!(f.next_stop_id.as_deref(), None | Some("loop_4")), "{f:?}");
    }

    #[test]
    fn out_and_back_snaps_to_the_right_leg() {
        let mut p = proc();
        let pts = walk(&shape_points("outback"), 25.0);
        let mut ts = NOW - pts.len() as i64 * 2000;
        let len = p.net.shape(p.net.shape_by_id("outback").unwrap()).line.length_m();
        for (i, (lat, lon)) in pts.iter().enumerate() {
            let pos = position(send(&mut p, "o", ts, *lat, *lon, r#","trip_id":"t_ob""#));
            let want = i as f64 * 25.0;
            assert!(
                (pos.dist_along_m.unwrap() - want).abs() < 30.0,
                "fix {i}: {pos:?} want {want} of {len}"
            );
            ts += 2000;
        }
    }

    #[test]
    fn direction_is_inferred_from_progress_when_only_the_route_is_known() {
        let mut p = proc();
        let pts = walk(&shape_points("line_w"), 15.0);
        let mut ts = NOW - 100_000;
        for (i, (lat, lon)) in pts.iter().take(30).enumerate() {
            let pos = position(send(&mut p, "d", ts, *lat, *lon, r#","route_id":"R1""#));
            if i >= 3 {
                assert_eq!(pos.shape_id.as_deref(), Some("line_w"), "fix {i}");
                assert_eq!(pos.direction_id, Some(1));
            }
            ts += 2000;
        }
    }

    #[test]
    fn nearest_shapes_without_hints_follow_the_heading() {
        let mut p = proc();
        let pts = walk(&shape_points("line_e"), 15.0);
        let mut ts = NOW - 100_000;
        for (i, (lat, lon)) in pts.iter().take(20).enumerate() {
            let pos = position(send(&mut p, "n", ts, *lat, *lon, ""));
            if i >= 2 {
                assert_eq!(pos.shape_id.as_deref(), Some("line_e"), "fix {i}");
                assert_eq!(pos.route_short_name.as_deref(), Some("1"));
                assert_eq!(pos.route_color.as_deref(), Some("FF0000"));
            }
            ts += 2000;
        }
        let far = position(send(&mut p, "far", ts, -16.5, 145.2, ""));
        assert_eq!(far.status, VehicleStatus::Unassigned);
        assert_eq!(far.shape_id, None);
    }

    #[test]
    fn off_route_detour_is_reported_not_forced_onto_the_line() {
        let mut p = proc();
        let pts = walk(&shape_points("line_e"), 20.0);
        let mut ts = NOW - 200_000;
        let mut before = 0.0;
        for (i, (lat, lon)) in pts.iter().enumerate().take(60) {
            ts += 3000;
            // A parallel street 200 m north, reached and left over a few fixes.
            let off = (i.saturating_sub(19) as f64 * 50.0)
                .min((35usize.saturating_sub(i)) as f64 * 50.0)
                .clamp(0.0, 200.0);
            let (lat, lon) =
                if off > 0.0 { destination(*lat, *lon, 0.0, off) } else { (*lat, *lon) };
            let pos = position(send(&mut p, "x", ts, lat, lon, r#","trip_id":"t_e""#));
            if off > 0.0 && off < 100.0 {
                continue;
            }
            if off > 0.0 {
                assert_eq!(pos.status, VehicleStatus::OffRoute, "fix {i}");
                assert_eq!(pos.snapped_lat, None);
                assert!(pos.off_route_m.unwrap() > off - 10.0, "fix {i}: {pos:?}");
            } else {
                assert_eq!(pos.status, VehicleStatus::InTransit, "fix {i}");
                let d = pos.dist_along_m.unwrap();
                assert!((d - i as f64 * 20.0).abs() < 5.0, "fix {i}: {d}");
                assert!(d >= before);
                before = d;
            }
        }
    }

    #[test]
    fn block_continues_on_the_next_trip_at_the_end_of_the_shape() {
        let mut p = proc();
        let mut pts = walk(&shape_points("b1"), 20.0);
        pts.extend(walk(&shape_points("b2"), 20.0).into_iter().skip(1));
        let mut ts = NOW - 300_000;
        let mut last = None;
        for (lat, lon) in pts {
            // The device keeps naming the first trip of the block.
            last = Some(position(send(&mut p, "k", ts, lat, lon, r#","trip_id":"t_b1""#)));
            ts += 2000;
        }
        let last = last.unwrap();
        assert_eq!(last.trip_id.as_deref(), Some("t_b2"), "{last:?}");
        assert_eq!(last.shape_id.as_deref(), Some("b2"));
        assert_eq!(last.status, VehicleStatus::InTransit);
        assert!(last.dist_along_m.unwrap() > 1000.0);
    }

    #[test]
    fn enrichment_next_stop_speed_and_stopped() {
        let mut p = proc();
        let mut ts = NOW - 100_000;
        let a =
            position(send(&mut p, "e", ts, -16.92, 145.702, r#","trip_id":"t_e","speed_mps":8.5"#));
        assert_eq!(a.next_stop_id.as_deref(), Some("line_e_1"));
        assert!((a.next_stop_dist_m.unwrap() - 851.9).abs() < 15.0, "{a:?}");
        assert_eq!(a.speed_mps, Some(8.5));
        assert_eq!(a.headsign.as_deref(), Some("to line_e"));
        assert_eq!(a.h3_cell.len(), 15);
        assert!((a.bearing_deg.unwrap() - 90.0).abs() < 1.0);
        let mut last = a;
        for i in 1..=8 {
            ts += 5000;
            let jitter = if i % 2 == 0 { 0.00003 } else { -0.00003 };
            last = position(send(&mut p, "e", ts, -16.92 + jitter, 145.702, r#","trip_id":"t_e""#));
        }
        assert_eq!(last.status, VehicleStatus::Stopped);
        assert!(last.speed_mps.unwrap() < 1.0, "{last:?}");
    }

    #[test]
    fn restored_state_detects_repeats_and_eviction_forgets() {
        let mut p = proc();
        let pos = position(send(&mut p, "r", NOW - 1000, -16.92, 145.705, r#","trip_id":"t_e""#));
        let json = serde_json::to_string(&pos).unwrap();
        let mut q = proc();
        q.restore(&serde_json::from_str(&json).unwrap());
        assert_eq!(
            send(&mut q, "r", NOW - 1000, -16.92, 145.705, r#","trip_id":"t_e""#),
            Outcome::Duplicate
        );
        assert_eq!(reason(send(&mut q, "r", NOW - 2000, -16.92, 145.704, "")), RejectReason::Stale);
        let next = position(send(&mut q, "r", NOW, -16.92, 145.7055, r#","trip_id":"t_e""#));
        assert!(next.dist_along_m > pos.dist_along_m);
        assert_eq!(q.vehicles(), 1);
        assert_eq!(q.evict(NOW + 1_801_000), 1);
        assert_eq!(q.vehicles(), 0);
    }
}
