//! One simulated bus: its trips, its GPS receiver and the faults of its device.

use std::collections::VecDeque;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use crate::Error;
use crate::config::FaultConfig;
use crate::encode::{push_fixed, push_int, push_uint};
use crate::motion::{M_PER_DEG_LAT, TripProfile};
use crate::plan::{Assignment, Rotation, World, approx_m};
use crate::sink::Sink;
use crate::truth::{Fault, InvalidKind, TruthRecord};

/// A bus appears this long before its first departure when it comes from the depot.
const PULL_IN_S: f64 = 120.0;
/// A bus waits at the terminus reporting when its next trip starts within this long nearby.
const MAX_LAYOVER_S: f64 = 1_200.0;
/// Turnaround between consecutive trips of one bus.
const MIN_TURN_S: f64 = 60.0;

/// Fault probabilities per report, derived once from [`FaultConfig`].
#[derive(Debug, Clone)]
pub(crate) struct FaultRates {
    noise_m: f64,
    accuracy_m: f64,
    multipath: f64,
    dropout_start: f64,
    dropout_end: f64,
    duplicate: f64,
    out_of_order: f64,
    stuck_start: f64,
    stuck_end: f64,
    invalid: f64,
    clock_skew: f64,
    no_ids: f64,
}

impl FaultRates {
    /// Episodes (dropouts, stuck fixes) are two-state Markov chains per vehicle; the start
    /// probability is chosen so the stationary share of affected reports equals the rate asked.
    pub fn new(f: &FaultConfig, hz: f64) -> FaultRates {
        let episode = |rate: f64, mean_len: f64| {
            let mean_len = mean_len.max(1.0);
            if rate <= 0.0 {
                (0.0, 1.0)
            } else {
                (rate / (mean_len * (1.0 - rate)), 1.0 / mean_len)
            }
        };
        let (dropout_start, dropout_end) = episode(f.dropout, f.dropout_mean_s * hz);
        let (stuck_start, stuck_end) = episode(f.stuck, f.stuck_mean_reports);
        FaultRates {
            noise_m: f.noise_m,
            accuracy_m: f.noise_m.max(3.0),
            multipath: f.multipath,
            dropout_start,
            dropout_end,
            duplicate: f.duplicate,
            out_of_order: f.out_of_order,
            stuck_start,
            stuck_end,
            invalid: f.invalid,
            clock_skew: f.clock_skew,
            no_ids: f.no_ids,
        }
    }
}

/// Counts of what the generator did, by fault.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Reports due by the vehicles' report rate, before dropouts.
    pub scheduled: u64,
    /// Reports lost to dropouts.
    pub dropped: u64,
    /// Distinct reports emitted (duplicates not counted).
    pub reports: u64,
    /// Records handed to the sink, duplicates included.
    pub emitted: u64,
    /// Reports displaced by multipath.
    pub multipath: u64,
    /// Extra copies sent.
    pub duplicate: u64,
    /// Reports delivered behind newer ones.
    pub out_of_order: u64,
    /// Reports from devices with a skewed clock.
    pub clock_skew: u64,
    /// Reports repeating a frozen fix.
    pub stuck: u64,
    /// Invalid reports, by [`InvalidKind::ALL`] order.
    pub invalid: [u64; 5],
    /// Reports without route and trip ids.
    pub no_ids: u64,
    /// Trips started (or joined mid-way at the start of the run).
    pub trips: u64,
}

impl FaultCounts {
    /// Adds another set of counts.
    pub fn add(&mut self, o: &FaultCounts) {
        self.scheduled += o.scheduled;
        self.dropped += o.dropped;
        self.reports += o.reports;
        self.emitted += o.emitted;
        self.multipath += o.multipath;
        self.duplicate += o.duplicate;
        self.out_of_order += o.out_of_order;
        self.clock_skew += o.clock_skew;
        self.stuck += o.stuck;
        for (a, b) in self.invalid.iter_mut().zip(o.invalid) {
            *a += b;
        }
        self.no_ids += o.no_ids;
        self.trips += o.trips;
    }

    /// All invalid reports.
    pub fn invalid_total(&self) -> u64 {
        self.invalid.iter().sum()
    }
}

/// Per-tick context shared by a partition's vehicles.
pub(crate) struct Ctx<'a> {
    pub world: &'a World,
    pub rotation: Option<&'a Rotation>,
    pub rates: &'a FaultRates,
    pub t0: f64,
    pub anchor_ms: i64,
    pub buf: &'a mut Vec<u8>,
    pub truth: Option<&'a mut Vec<TruthRecord>>,
    pub stats: &'a mut FaultCounts,
}

#[derive(Debug, Clone, Copy)]
struct Fix {
    lat: f64,
    lon: f64,
    speed: f64,
    bearing: f32,
}

enum Next {
    Emit,
    WaitUntil(f64),
    Idle,
}

#[derive(Debug)]
pub(crate) struct Vehicle {
    /// The vehicle id, inline so the hot loop does not chase a pointer.
    key: Key,
    rng: SmallRng,
    period: f64,
    phase: f64,
    pub next_emit: f64,
    seq: u64,
    skew_ms: i64,
    no_ids: bool,
    queue: VecDeque<Assignment>,
    current: Option<Assignment>,
    on_trip: bool,
    profile: TripProfile,
    cursor: usize,
    emit_from: f64,
    prev_end: Option<(f64, (f64, f64))>,
    in_dropout: bool,
    stuck: bool,
    last_fix: Option<Fix>,
    held: Vec<u8>,
    held_truth: Option<Box<TruthRecord>>,
    held_left: u8,
}

/// SplitMix64: decorrelates per-vehicle seeds derived from one user seed.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The vehicle id for a vehicle number; wide enough for `count` vehicles.
pub(crate) fn vehicle_key(n: u32, width: usize) -> Key {
    let mut digits = Vec::with_capacity(10);
    push_uint(&mut digits, u64::from(n));
    let mut k = Key { bytes: [0; 16], len: 0 };
    let pad = width.min(10).saturating_sub(digits.len());
    for b in b"bus-".iter().chain(std::iter::repeat_n(&b'0', pad)).chain(digits.iter()) {
        k.bytes[usize::from(k.len)] = *b;
        k.len += 1;
    }
    k
}

/// `bus-` and up to 10 digits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key {
    bytes: [u8; 16],
    len: u8,
}

impl Key {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    fn as_str(&self) -> &str {
        // Only ASCII is ever written.
        std::str::from_utf8(self.as_bytes()).unwrap_or("bus-?")
    }
}

impl Vehicle {
    pub fn new(n: u32, width: usize, seed: u64, hz: f64, rates: &FaultRates) -> Vehicle {
        let mut rng = SmallRng::seed_from_u64(mix(seed ^ mix(u64::from(n))));
        let period = 1.0 / hz;
        let phase = rng.random_range(0.0..period);
        let skew_ms = if rng.random::<f64>() < rates.clock_skew {
            let s = rng.random_range(2_000..120_000i64);
            if rng.random::<bool>() { s } else { -s }
        } else {
            0
        };
        let no_ids = rng.random::<f64>() < rates.no_ids;
        Vehicle {
            key: vehicle_key(n, width),
            rng,
            period,
            phase,
            next_emit: f64::INFINITY,
            seq: 0,
            skew_ms,
            no_ids,
            queue: VecDeque::new(),
            current: None,
            on_trip: false,
            profile: TripProfile::default(),
            cursor: 0,
            emit_from: 0.0,
            prev_end: None,
            in_dropout: false,
            stuck: false,
            last_fix: None,
            held: Vec::new(),
            held_truth: None,
            held_left: 0,
        }
    }

    /// First report time at or after `t` on this vehicle's report grid.
    fn align(&self, t: f64) -> f64 {
        if !t.is_finite() {
            return t;
        }
        self.phase + ((t - self.phase) / self.period).ceil() * self.period
    }

    /// Queues a trip; the vehicle wakes up at `now` if it was idle.
    pub fn assign(&mut self, a: Assignment, now: f64) {
        self.queue.push_back(a);
        if self.next_emit == f64::INFINITY {
            self.next_emit = self.align(now);
        }
    }

    /// For `--vehicles N`: start on `trip_pos` of the rotation, `fraction` of the way through.
    pub fn start_rotation(&mut self, world: &World, rotation: &Rotation, pos: usize, now: f64) {
        let trip = rotation.trips[pos % rotation.trips.len()];
        let t = world.network.trip(trip);
        let dur = f64::from(t.end_s().saturating_sub(t.start_s()));
        let fraction = self.rng.random::<f64>();
        let offset_s = now - f64::from(t.start_s()) - fraction * dur;
        self.assign(Assignment { trip, offset_s, vehicle: 0 }, now);
    }

    fn next_in_rotation(&mut self, world: &World, rotation: &Rotation) -> Assignment {
        let net = &world.network;
        let (after, trip) = match (self.prev_end, self.current) {
            (Some((end, _)), Some(cur)) => {
                let shape = net.trip(cur.trip).shape as usize;
                let options = &rotation.next_by_shape[shape];
                let trip = if options.is_empty() {
                    cur.trip
                } else {
                    rotation.trips[options[self.rng.random_range(0..options.len())] as usize]
                };
                (end + self.rng.random_range(MIN_TURN_S..300.0), trip)
            }
            _ => (0.0, rotation.trips[0]),
        };
        let start = f64::from(net.trip(trip).start_s());
        Assignment { trip, offset_s: after - start, vehicle: 0 }
    }

    fn state_at(&mut self, t: f64, world: &World, rotation: Option<&Rotation>) -> (Next, bool) {
        let mut started = false;
        loop {
            if self.on_trip {
                if t <= self.profile.end() {
                    return if t >= self.emit_from {
                        (Next::Emit, started)
                    } else {
                        (Next::WaitUntil(self.emit_from), started)
                    };
                }
                self.on_trip = false;
                if let Some(cur) = self.current {
                    self.prev_end = Some((self.profile.end(), world.trip_end_point(cur.trip)));
                }
            }
            let a = match self.queue.pop_front() {
                Some(a) => a,
                None => match rotation {
                    Some(r) => self.next_in_rotation(world, r),
                    None => return (Next::Idle, started),
                },
            };
            let trip = world.network.trip(a.trip);
            let not_before = self.prev_end.map_or(f64::NEG_INFINITY, |p| p.0 + MIN_TURN_S);
            let vmax = world.route_vmax[trip.route as usize];
            self.profile.plan(&trip.stop_times, a.offset_s, not_before, vmax, &mut self.rng);
            self.current = Some(a);
            self.cursor = 0;
            self.on_trip = true;
            if self.profile.end() < t {
                continue;
            }
            started = true;
            let start = self.profile.start();
            self.emit_from = match self.prev_end {
                Some((end_t, p))
                    if start - end_t <= MAX_LAYOVER_S
                        && approx_m(p, world.trip_start_point(a.trip)) <= 1_000.0 =>
                {
                    end_t
                }
                _ => start - PULL_IN_S,
            };
        }
    }

    /// Emits every report due before `to`.
    pub fn run_until<S: Sink + ?Sized>(
        &mut self,
        to: f64,
        ctx: &mut Ctx<'_>,
        sink: &mut S,
    ) -> Result<(), Error> {
        while self.next_emit < to {
            let t = self.next_emit;
            let (next, started) = self.state_at(t, ctx.world, ctx.rotation);
            if started {
                ctx.stats.trips += 1;
            }
            match next {
                Next::Emit => {
                    self.next_emit += self.period;
                    self.report(t, ctx, sink)?;
                }
                Next::WaitUntil(x) => {
                    self.flush(ctx, sink)?;
                    self.next_emit = self.align(x).max(t + self.period * 0.5);
                }
                Next::Idle => {
                    self.flush(ctx, sink)?;
                    self.next_emit = f64::INFINITY;
                }
            }
        }
        Ok(())
    }

    /// Sends a held-back report now because no newer one is coming soon (the vehicle goes
    /// quiet, or the run ends): it is then delivered in order after all, and counted so.
    pub fn flush<S: Sink + ?Sized>(
        &mut self,
        ctx: &mut Ctx<'_>,
        sink: &mut S,
    ) -> Result<(), Error> {
        if self.held_left > 0 {
            self.held_left = 0;
            ctx.stats.out_of_order -= 1;
            if let Some(t) = &mut self.held_truth {
                t.faults.retain(|f| *f != Fault::OutOfOrder);
            }
            self.release_held(ctx, sink)?;
        }
        Ok(())
    }

    fn release_held<S: Sink + ?Sized>(
        &mut self,
        ctx: &mut Ctx<'_>,
        sink: &mut S,
    ) -> Result<(), Error> {
        sink.send(self.key.as_bytes(), &self.held)?;
        ctx.stats.emitted += 1;
        if let (Some(out), Some(t)) = (ctx.truth.as_deref_mut(), self.held_truth.take()) {
            out.push(*t);
        }
        Ok(())
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random::<f64>() < p
    }

    fn report<S: Sink + ?Sized>(
        &mut self,
        t: f64,
        ctx: &mut Ctx<'_>,
        sink: &mut S,
    ) -> Result<(), Error> {
        let r = ctx.rates;
        ctx.stats.scheduled += 1;
        if !self.in_dropout && self.chance(r.dropout_start) {
            self.in_dropout = true;
        }
        if self.in_dropout {
            ctx.stats.dropped += 1;
            if self.chance(r.dropout_end) {
                self.in_dropout = false;
            }
            return Ok(());
        }
        let Some(a) = self.current else { return Ok(()) };
        let world = ctx.world;
        let trip = world.network.trip(a.trip);
        let geom = &world.shapes[trip.shape as usize];
        let s = self.profile.sample(t);
        let (tlat, tlon, bearing) = geom.sample(s.dist_m, &mut self.cursor);
        self.seq += 1;
        let true_ts = ctx.anchor_ms + ((t - ctx.t0) * 1000.0).round() as i64;
        let ts = true_ts + self.skew_ms;
        let mut faults: [Option<Fault>; 4] = [None; 4];
        let mut nf = 0;
        let mut note = |f: Fault| {
            if nf < faults.len() {
                faults[nf] = Some(f);
                nf += 1;
            }
        };

        // Position: a stuck receiver repeats its last fix; otherwise noise and multipath.
        if !self.stuck && self.last_fix.is_some() && self.chance(r.stuck_start) {
            self.stuck = true;
        }
        let fix = match (self.stuck, self.last_fix) {
            (true, Some(f)) => {
                if self.chance(r.stuck_end) {
                    self.stuck = false;
                }
                note(Fault::Stuck);
                ctx.stats.stuck += 1;
                f
            }
            _ => {
                self.stuck = false;
                let (mut lat, mut lon) = (tlat, tlon);
                if r.noise_m > 0.0 {
                    let n: f64 = self.rng.sample(StandardNormal);
                    let e: f64 = self.rng.sample(StandardNormal);
                    lat += n * r.noise_m / M_PER_DEG_LAT;
                    lon += e * r.noise_m / geom.m_per_deg_lon;
                }
                if self.chance(r.multipath) {
                    let d = self.rng.random_range(100.0..500.0);
                    let ang = self.rng.random_range(0.0..std::f64::consts::TAU);
                    lat += d * ang.cos() / M_PER_DEG_LAT;
                    lon += d * ang.sin() / geom.m_per_deg_lon;
                    note(Fault::Multipath);
                    ctx.stats.multipath += 1;
                }
                let f = Fix { lat, lon, speed: s.speed, bearing };
                self.last_fix = Some(f);
                f
            }
        };
        if self.skew_ms != 0 {
            note(Fault::ClockSkew);
            ctx.stats.clock_skew += 1;
        }
        if self.no_ids {
            note(Fault::NoIds);
            ctx.stats.no_ids += 1;
        }
        let invalid = if self.chance(r.invalid) {
            let k = self.rng.random_range(0..InvalidKind::ALL.len());
            ctx.stats.invalid[k] += 1;
            Some(InvalidKind::ALL[k])
        } else {
            None
        };
        let ids = (!self.no_ids).then(|| &*world.ids_json[a.trip as usize]);
        let (lat_out, lon_out) = encode(
            ctx.buf,
            self.key.as_str(),
            ts,
            &fix,
            r.accuracy_m,
            ids,
            self.seq,
            invalid,
            &mut self.rng,
        );
        ctx.stats.reports += 1;

        let truth = ctx.truth.is_some().then(|| {
            let mut fl: Vec<Fault> = faults.iter().flatten().copied().collect();
            if invalid.is_some() {
                fl.push(Fault::Invalid);
            }
            let net = &world.network;
            TruthRecord {
                vehicle_id: self.key.as_str().to_string(),
                seq: self.seq,
                ts,
                true_ts,
                lat: lat_out,
                lon: lon_out,
                true_lat: tlat,
                true_lon: tlon,
                speed_mps: s.speed,
                route_id: net.route(trip.route).id.clone(),
                trip_id: trip.id.clone(),
                shape_id: net.shape(trip.shape).id.clone(),
                dist_along_m: s.dist_m,
                faults: fl,
                invalid,
                skew_ms: self.skew_ms,
            }
        });

        if self.held_left == 0 && self.chance(r.out_of_order) {
            ctx.stats.out_of_order += 1;
            std::mem::swap(&mut self.held, ctx.buf);
            self.held_left = self.rng.random_range(1..=3);
            self.held_truth = truth.map(|mut t| {
                t.faults.push(Fault::OutOfOrder);
                Box::new(t)
            });
            return Ok(());
        }
        sink.send(self.key.as_bytes(), ctx.buf)?;
        ctx.stats.emitted += 1;
        let dup = self.chance(r.duplicate);
        if let Some(out) = ctx.truth.as_deref_mut()
            && let Some(t) = truth
        {
            if dup {
                let mut d = t.clone();
                d.faults.push(Fault::Duplicate);
                out.push(t);
                out.push(d);
            } else {
                out.push(t);
            }
        }
        if dup {
            sink.send(self.key.as_bytes(), ctx.buf)?;
            ctx.stats.emitted += 1;
            ctx.stats.duplicate += 1;
        }
        if self.held_left > 0 {
            self.held_left -= 1;
            if self.held_left == 0 {
                self.release_held(ctx, sink)?;
            }
        }
        Ok(())
    }
}

enum Coord {
    Num(f64),
    NanString,
    Missing,
}

/// Writes one report, broken as `invalid` says; returns the coordinates as written (for the
/// truth), `None` where none was written.
#[allow(clippy::too_many_arguments)]
fn encode(
    buf: &mut Vec<u8>,
    key: &str,
    ts: i64,
    fix: &Fix,
    accuracy_m: f64,
    ids: Option<&str>,
    seq: u64,
    invalid: Option<InvalidKind>,
    rng: &mut SmallRng,
) -> (Option<f64>, Option<f64>) {
    buf.clear();
    let mut lat = Coord::Num(fix.lat);
    let mut lon = Coord::Num(fix.lon);
    let (mut with_ts, mut with_id, mut bad_utf8) = (true, true, false);
    match invalid {
        Some(InvalidKind::OutOfRange) => {
            let excess = rng.random_range(0.5..100.0);
            if rng.random::<bool>() {
                lat = Coord::Num(fix.lat.signum() * (90.0 + excess));
            } else {
                lon = Coord::Num(fix.lon.signum() * (180.0 + excess));
            }
        }
        Some(InvalidKind::NanCoordinate) => {
            if rng.random::<bool>() {
                lat = Coord::NanString;
            } else {
                lon = Coord::NanString;
            }
        }
        Some(InvalidKind::MissingField) => match rng.random_range(0..3) {
            0 => with_ts = false,
            1 => lat = Coord::Missing,
            _ => with_id = false,
        },
        Some(InvalidKind::NotUtf8) => bad_utf8 = true,
        Some(InvalidKind::MalformedJson) | None => {}
    }
    buf.extend_from_slice(b"{\"v\":1");
    if with_id {
        buf.extend_from_slice(b",\"vehicle_id\":\"");
        buf.extend_from_slice(key.as_bytes());
        buf.push(b'"');
    }
    if with_ts {
        buf.extend_from_slice(b",\"ts\":");
        push_int(buf, ts);
    }
    let mut written = [None, None];
    for (i, (name, c)) in
        [(&b",\"lat\":"[..], &lat), (&b",\"lon\":"[..], &lon)].into_iter().enumerate()
    {
        match c {
            Coord::Num(v) => {
                buf.extend_from_slice(name);
                push_fixed(buf, *v, 7);
                written[i] = Some(*v);
            }
            Coord::NanString => {
                buf.extend_from_slice(name);
                buf.extend_from_slice(b"\"NaN\"");
            }
            Coord::Missing => {}
        }
    }
    buf.extend_from_slice(b",\"speed_mps\":");
    push_fixed(buf, fix.speed, 1);
    buf.extend_from_slice(b",\"bearing_deg\":");
    push_fixed(buf, f64::from(fix.bearing), 1);
    buf.extend_from_slice(b",\"accuracy_m\":");
    push_fixed(buf, accuracy_m, 1);
    if bad_utf8 {
        // A corrupted string as a flaky modem delivers it: bytes that are not UTF-8.
        buf.extend_from_slice(b",\"trip_id\":\"\xff\xfe\xc3\"");
    } else if let Some(ids) = ids {
        buf.push(b',');
        buf.extend_from_slice(ids.as_bytes());
    }
    buf.extend_from_slice(b",\"seq\":");
    push_uint(buf, seq);
    buf.push(b'}');
    if invalid == Some(InvalidKind::MalformedJson) {
        let cut = rng.random_range(buf.len() / 4..buf.len() - 1);
        buf.truncate(cut.max(1));
    }
    (written[0], written[1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use busflow_core::RawPosition;

    fn fix() -> Fix {
        Fix { lat: -16.9234567, lon: 145.7654321, speed: 10.25, bearing: 93.4 }
    }

    #[test]
    fn clean_record_is_a_raw_position() {
        let mut buf = Vec::new();
        let mut rng = SmallRng::seed_from_u64(3);
        let ids = "\"route_id\":\"110\",\"trip_id\":\"t\\\"1\"";
        encode(&mut buf, "bus-0001", 1_700_000_000_000, &fix(), 8.0, Some(ids), 7, None, &mut rng);
        let raw: RawPosition = serde_json::from_slice(&buf).unwrap();
        assert_eq!(raw.vehicle_id, "bus-0001");
        assert_eq!(raw.ts, 1_700_000_000_000);
        assert_eq!(raw.lat, -16.9234567);
        assert_eq!(raw.trip_id.as_deref(), Some("t\"1"));
        assert_eq!(raw.seq, Some(7));
        assert_eq!(raw.speed_mps, Some(10.3));
    }

    #[test]
    fn every_invalid_kind_fails_to_parse_as_a_valid_position() {
        let mut rng = SmallRng::seed_from_u64(3);
        for kind in InvalidKind::ALL {
            for _ in 0..20 {
                let mut buf = Vec::new();
                encode(&mut buf, "bus-1", 1, &fix(), 8.0, None, 1, Some(kind), &mut rng);
                let parsed = serde_json::from_slice::<RawPosition>(&buf);
                let ok = match (&parsed, kind) {
                    (Ok(p), InvalidKind::OutOfRange) => p.lat.abs() > 90.0 || p.lon.abs() > 180.0,
                    (Ok(_), _) => false,
                    (Err(_), InvalidKind::OutOfRange) => false,
                    (Err(_), _) => true,
                };
                assert!(ok, "{kind:?}: {:?} -> {parsed:?}", String::from_utf8_lossy(&buf));
                if kind == InvalidKind::NotUtf8 {
                    assert!(std::str::from_utf8(&buf).is_err());
                }
            }
        }
    }

    #[test]
    fn episode_rates_hit_their_stationary_share() {
        let f = FaultConfig { stuck: 0.1, dropout: 0.05, ..FaultConfig::none() };
        let r = FaultRates::new(&f, 1.0);
        let (p, q) = (r.stuck_start, r.stuck_end);
        assert!((p / (p + q) - 0.1).abs() < 1e-12);
        let (p, q) = (r.dropout_start, r.dropout_end);
        assert!((p / (p + q) - 0.05).abs() < 1e-12);
    }
}
