//! The generator: vehicles partitioned over threads, advanced tick by tick on the simulated
//! clock. Pure and deterministic: no Kafka, no wall clock except the anchor for `ts`.

use std::sync::Arc;

use busflow_core::Network;
use chrono::{NaiveDate, NaiveTime, Timelike};

use crate::Error;
use crate::config::SimulatorConfig;
use crate::plan::{Assignment, Dispatcher, Rotation, World};
use crate::sink::Sink;
use crate::truth::TruthRecord;
use crate::vehicle::{Ctx, FaultCounts, FaultRates, Vehicle};

/// A bus pulls out this long before its first trip, so dispatch looks this far ahead.
const LOOKAHEAD_S: f64 = 1_500.0;

#[derive(Debug, Default)]
struct Partition {
    /// Vehicle `n` lives in partition `n % parts` at index `n / parts`.
    vehicles: Vec<Option<Vehicle>>,
    buf: Vec<u8>,
    truth: Vec<TruthRecord>,
    stats: FaultCounts,
}

/// A running simulation. Advance it with [`Simulation::advance`]; records go to one [`Sink`] per
/// partition (generator thread).
///
/// The same config, anchor and seed give the same records per vehicle, whatever the number of
/// partitions.
#[derive(Debug)]
pub struct Simulation {
    world: Arc<World>,
    rotation: Option<Rotation>,
    dispatcher: Option<Dispatcher>,
    rates: FaultRates,
    config: SimulatorConfig,
    parts: Vec<Partition>,
    day0: NaiveDate,
    t0: f64,
    now: f64,
    anchor_ms: i64,
    width: usize,
    assignments: Vec<Assignment>,
    vehicles: u32,
    keep_truth: bool,
}

impl Simulation {
    /// A simulation whose `ts` starts at the current wall time.
    pub fn new(network: Arc<Network>, config: &SimulatorConfig) -> Result<Simulation, Error> {
        Self::with_anchor(network, config, chrono::Utc::now().timestamp_millis())
    }

    /// A simulation whose first simulated instant is stamped `anchor_ms` (unix ms).
    pub fn with_anchor(
        network: Arc<Network>,
        config: &SimulatorConfig,
        anchor_ms: i64,
    ) -> Result<Simulation, Error> {
        config.validate()?;
        let (day0, start): (NaiveDate, NaiveTime) = match (config.date, config.start) {
            (Some(d), Some(s)) => (d, s),
            (date, start) => {
                let local = config.clock.unwrap_or_else(|| schedule_now(&network));
                (date.unwrap_or_else(|| local.date()), start.unwrap_or_else(|| local.time()))
            }
        };
        let t0 = f64::from(start.num_seconds_from_midnight());
        let parts_n = match config.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .clamp(1, 256);
        let world = Arc::new(World::new(network));
        let rates = FaultRates::new(&config.faults, config.hz);
        let mut parts: Vec<Partition> = (0..parts_n).map(|_| Partition::default()).collect();
        let mut sim_vehicles = 0u32;
        let (rotation, dispatcher, width) = match config.vehicles {
            Some(n) => {
                let n = u32::try_from(n)
                    .map_err(|_| Error::Config(format!("too many vehicles: {n}")))?;
                let rotation = Rotation::new(&world, day0);
                let width = digits(n.saturating_sub(1)).max(4);
                for v in 0..n {
                    let mut veh = Vehicle::new(v, width, config.seed, config.hz, &rates);
                    veh.start_rotation(&world, &rotation, v as usize, t0);
                    let p = &mut parts[v as usize % parts_n];
                    p.vehicles.push(Some(veh));
                }
                sim_vehicles = n;
                (Some(rotation), None, width)
            }
            None => (None, Some(Dispatcher::new(day0)), 4),
        };
        Ok(Simulation {
            world,
            rotation,
            dispatcher,
            rates,
            config: config.clone(),
            parts,
            day0,
            t0,
            now: t0,
            anchor_ms,
            width,
            assignments: Vec::new(),
            vehicles: sim_vehicles,
            keep_truth: config.truth.is_some(),
        })
    }

    /// Collect ground truth even without a truth file (see [`Simulation::take_truth`]).
    pub fn keep_truth(&mut self, keep: bool) {
        self.keep_truth = keep;
    }

    /// Generator partitions: pass this many sinks to [`Simulation::advance`].
    pub fn partitions(&self) -> usize {
        self.parts.len()
    }

    /// Simulated time generated so far, seconds after midnight of the start date.
    pub fn sim_time(&self) -> f64 {
        self.now
    }

    /// The service date simulated (the day `sim_time` counts from).
    pub fn service_date(&self) -> NaiveDate {
        self.day0
    }

    /// Simulated time at the start, seconds after midnight of the start date.
    pub fn sim_start(&self) -> f64 {
        self.t0
    }

    /// The unix-ms timestamp of a simulated instant.
    pub fn ts_of(&self, sim_s: f64) -> i64 {
        self.anchor_ms + ((sim_s - self.t0) * 1000.0).round() as i64
    }

    /// Vehicles that have taken part so far.
    pub fn vehicles(&self) -> u32 {
        match &self.dispatcher {
            Some(_) => self.parts.iter().map(|p| p.vehicles.iter().flatten().count() as u32).sum(),
            None => self.vehicles,
        }
    }

    /// Totals so far.
    pub fn counts(&self) -> FaultCounts {
        let mut c = FaultCounts::default();
        for p in &self.parts {
            c.add(&p.stats);
        }
        c
    }

    /// Generates every report due before simulated time `to`. `sinks[i]` receives partition
    /// `i`'s records; partitions run on their own threads when there are several.
    pub fn advance<S: Sink>(&mut self, to: f64, sinks: &mut [S]) -> Result<(), Error> {
        if sinks.len() != self.parts.len() {
            return Err(Error::Config(format!(
                "{} sinks for {} partitions",
                sinks.len(),
                self.parts.len()
            )));
        }
        if to <= self.now {
            return Ok(());
        }
        if let Some(d) = &mut self.dispatcher {
            self.assignments.clear();
            d.dispatch_until(&self.world, to + LOOKAHEAD_S, self.t0, &mut self.assignments);
            let n = self.parts.len();
            for a in &self.assignments {
                let p = &mut self.parts[a.vehicle as usize % n];
                let idx = a.vehicle as usize / n;
                if p.vehicles.len() <= idx {
                    p.vehicles.resize_with(idx + 1, || None);
                }
                let v = p.vehicles[idx].get_or_insert_with(|| {
                    Vehicle::new(
                        a.vehicle,
                        self.width,
                        self.config.seed,
                        self.config.hz,
                        &self.rates,
                    )
                });
                v.assign(*a, self.now);
            }
        }
        let shared = Shared {
            world: &self.world,
            rotation: self.rotation.as_ref(),
            rates: &self.rates,
            t0: self.t0,
            anchor_ms: self.anchor_ms,
            keep_truth: self.keep_truth,
        };
        let result = if self.parts.len() == 1 {
            run_partition(&mut self.parts[0], &mut sinks[0], &shared, to, false)
        } else {
            std::thread::scope(|scope| {
                let mut handles = Vec::new();
                let mut parts = self.parts.iter_mut().zip(sinks.iter_mut());
                let first = parts.next();
                for (p, s) in parts {
                    let shared = &shared;
                    handles.push(scope.spawn(move || run_partition(p, s, shared, to, false)));
                }
                let mut result = match first {
                    Some((p, s)) => run_partition(p, s, &shared, to, false),
                    None => Ok(()),
                };
                for h in handles {
                    let r = h
                        .join()
                        .unwrap_or_else(|_| Err(Error::Thread("generator panicked".into())));
                    if result.is_ok() {
                        result = r;
                    }
                }
                result
            })
        };
        self.now = to;
        result
    }

    /// Sends reports still held back for out-of-order delivery; call once at the end.
    pub fn finish<S: Sink>(&mut self, sinks: &mut [S]) -> Result<(), Error> {
        let shared = Shared {
            world: &self.world,
            rotation: self.rotation.as_ref(),
            rates: &self.rates,
            t0: self.t0,
            anchor_ms: self.anchor_ms,
            keep_truth: self.keep_truth,
        };
        for (p, s) in self.parts.iter_mut().zip(sinks.iter_mut()) {
            run_partition(p, s, &shared, self.now, true)?;
        }
        Ok(())
    }

    /// Ground truth collected since the last call, per partition, each in emission order
    /// (aligned with the records that partition's sink received in the same period).
    pub fn take_truth(&mut self) -> Vec<Vec<TruthRecord>> {
        self.parts.iter_mut().map(|p| std::mem::take(&mut p.truth)).collect()
    }
}

struct Shared<'a> {
    world: &'a World,
    rotation: Option<&'a Rotation>,
    rates: &'a FaultRates,
    t0: f64,
    anchor_ms: i64,
    keep_truth: bool,
}

fn run_partition<S: Sink>(
    p: &mut Partition,
    sink: &mut S,
    shared: &Shared<'_>,
    to: f64,
    flush: bool,
) -> Result<(), Error> {
    let Partition { vehicles, buf, truth, stats } = p;
    let mut ctx = Ctx {
        world: shared.world,
        rotation: shared.rotation,
        rates: shared.rates,
        t0: shared.t0,
        anchor_ms: shared.anchor_ms,
        buf,
        truth: shared.keep_truth.then_some(truth),
        stats,
    };
    for v in vehicles.iter_mut().flatten() {
        if flush {
            v.flush(&mut ctx, sink)?;
        } else {
            v.run_until(to, &mut ctx, sink)?;
        }
    }
    Ok(())
}

fn digits(mut n: u32) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// One generated record with the truth behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedRecord {
    /// Kafka key (vehicle id).
    pub key: Vec<u8>,
    /// Kafka value: RawPosition JSON, or deliberately broken bytes.
    pub payload: Vec<u8>,
    /// What really happened.
    pub truth: TruthRecord,
}

/// Runs a simulation for `config.sim_duration` in memory and returns every record with its
/// truth, per vehicle in emission order. Meant for tests of the pipeline; `config.truth` is
/// ignored.
pub fn generate(
    network: Arc<Network>,
    config: &SimulatorConfig,
    anchor_ms: i64,
) -> Result<(Vec<GeneratedRecord>, FaultCounts), Error> {
    let Some(span) = config.sim_duration else {
        return Err(Error::Config("generate needs sim_duration".into()));
    };
    let mut sim = Simulation::with_anchor(network, config, anchor_ms)?;
    sim.keep_truth(true);
    let mut sinks: Vec<crate::VecSink> = vec![Default::default(); sim.partitions()];
    let end = sim.sim_start() + span.as_secs_f64();
    let mut t = sim.sim_start();
    while t < end {
        t = (t + 60.0).min(end);
        sim.advance(t, &mut sinks)?;
    }
    sim.finish(&mut sinks)?;
    let truth = sim.take_truth();
    let mut out = Vec::new();
    for (sink, truth) in sinks.into_iter().zip(truth) {
        if sink.records.len() != truth.len() {
            return Err(Error::Thread("truth and records out of step".into()));
        }
        for ((key, payload), truth) in sink.records.into_iter().zip(truth) {
            out.push(GeneratedRecord { key, payload, truth });
        }
    }
    Ok((out, sim.counts()))
}

/// `HH:MM:SS` of seconds after midnight (past 24:00 for service that runs over midnight, as in
/// GTFS).
pub(crate) fn clock_label(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Now on the schedule's clock: the feed's time zone, so `busflow simulate` with no `--start`
/// runs the service a rider in that city sees now (a machine on UTC simulated Cairns at night
/// during its day). A feed without a usable time zone falls back to the machine's.
fn schedule_now(network: &Network) -> chrono::NaiveDateTime {
    match network.timezone.parse::<chrono_tz::Tz>() {
        Ok(tz) => chrono::Utc::now().with_timezone(&tz).naive_local(),
        Err(_) => {
            tracing::warn!(
                timezone = %network.timezone,
                "the feed names no known time zone (agency_timezone); simulating the machine's local time"
            );
            chrono::Local::now().naive_local()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CountingSink, FaultConfig};
    use std::collections::HashMap;

    fn network() -> Arc<Network> {
        Arc::new(Network::load(busflow_core::bundled_gtfs_path()).unwrap())
    }

    #[test]
    fn the_default_clock_is_the_feeds_time_zone() {
        let net = network();
        // Brisbane keeps UTC+10 all year (no daylight saving), so the expectation is exact.
        let expected = chrono::Utc::now().naive_utc() + chrono::Duration::hours(10);
        let got = schedule_now(&net);
        assert!((got - expected).num_seconds().abs() < 5, "{got} vs {expected}");
        let mut other = Network::load(busflow_core::bundled_gtfs_path()).unwrap();
        other.timezone = "Not/AZone".into();
        let local = chrono::Local::now().naive_local();
        assert!((schedule_now(&other) - local).num_seconds().abs() < 5);
    }

    fn config(threads: usize) -> SimulatorConfig {
        SimulatorConfig {
            start: NaiveTime::from_hms_opt(8, 0, 0),
            date: NaiveDate::from_ymd_opt(2026, 11, 24),
            sim_duration: Some(std::time::Duration::from_secs(600)),
            threads,
            ..SimulatorConfig::default()
        }
    }

    #[test]
    fn same_seed_same_records_per_vehicle_whatever_the_threads() {
        let net = network();
        let per_vehicle = |threads| {
            let (recs, _) = generate(net.clone(), &config(threads), 1_000).unwrap();
            let mut m: HashMap<Vec<u8>, Vec<Vec<u8>>> = HashMap::new();
            for r in recs {
                m.entry(r.key).or_default().push(r.payload);
            }
            m
        };
        let a = per_vehicle(1);
        assert!(a.len() > 20, "{} vehicles", a.len());
        assert_eq!(a, per_vehicle(3));
        let mut other = config(1);
        other.seed = 7;
        let (c, _) = generate(net, &other, 1_000).unwrap();
        assert_ne!(a.values().map(Vec::len).sum::<usize>(), 0);
        assert!(c.iter().any(|r| a.get(&r.key).is_none_or(|v| !v.contains(&r.payload))));
    }

    #[test]
    fn clean_reports_follow_the_shape_at_bus_speeds() {
        let net = network();
        let cfg = SimulatorConfig { faults: FaultConfig::none(), ..config(2) };
        let (recs, counts) = generate(net.clone(), &cfg, 0).unwrap();
        assert_eq!(counts.emitted as usize, recs.len());
        let mut last: HashMap<Vec<u8>, busflow_core::RawPosition> = HashMap::new();
        for r in &recs {
            let raw: busflow_core::RawPosition = serde_json::from_slice(&r.payload).unwrap();
            let shape = &net.shape(net.shape_by_id(&r.truth.shape_id).unwrap()).line;
            let (la, lo, _) = shape.point_at(r.truth.dist_along_m);
            let d = busflow_core::geometry::haversine_m(raw.lat, raw.lon, la, lo);
            assert!(d < 0.05, "{d} m off");
            assert!(raw.speed_mps.unwrap() <= 22.3);
            if let Some(prev) = last.get(&r.key) {
                assert_eq!(raw.ts - prev.ts, 1000, "1 Hz");
                let moved =
                    busflow_core::geometry::haversine_m(prev.lat, prev.lon, raw.lat, raw.lon);
                assert!(moved < 25.0 || raw.trip_id != prev.trip_id, "{moved} m in 1 s");
            }
            last.insert(r.key.clone(), raw);
        }
    }

    #[test]
    fn a_block_is_worked_by_one_bus_in_order() {
        let dir = tempfile::tempdir().unwrap();
        crate::plan::tests::tiny_feed(dir.path());
        let net = Arc::new(Network::load(dir.path()).unwrap());
        let cfg = SimulatorConfig {
            start: NaiveTime::from_hms_opt(7, 55, 0),
            sim_duration: Some(std::time::Duration::from_secs(45 * 60)),
            faults: FaultConfig::none(),
            ..config(1)
        };
        let (recs, _) = generate(net, &cfg, 0).unwrap();
        let trips: Vec<(&str, &str)> =
            recs.iter().map(|r| (r.truth.vehicle_id.as_str(), r.truth.trip_id.as_str())).collect();
        assert!(trips.iter().all(|(v, _)| *v == trips[0].0), "one vehicle");
        let first_t2 = trips.iter().position(|t| t.1 == "T2").unwrap();
        assert!(first_t2 > 0 && trips[..first_t2].iter().all(|t| t.1 == "T1"));
        assert!(trips[first_t2..].iter().all(|t| t.1 == "T2"));
        // It dwelled at stops: some reports at zero speed mid-trip.
        assert!(recs.iter().any(|r| r.truth.speed_mps == 0.0 && r.truth.dist_along_m > 10.0));
    }

    #[test]
    fn the_clock_sets_what_date_and_start_leave_out() {
        let net = network();
        let sunday_night = NaiveDate::from_ymd_opt(2026, 12, 6).unwrap().and_hms_opt(23, 30, 0);
        let cfg = SimulatorConfig { start: None, date: None, clock: sunday_night, ..config(1) };
        let sim = Simulation::with_anchor(net.clone(), &cfg, 0).unwrap();
        assert_eq!(sim.sim_start(), 23.5 * 3600.0);
        assert_eq!(sim.service_date(), NaiveDate::from_ymd_opt(2026, 12, 6).unwrap());
        // An explicit start wins over the clock's time of day.
        let cfg = SimulatorConfig { date: None, clock: sunday_night, ..config(1) };
        assert_eq!(Simulation::with_anchor(net, &cfg, 0).unwrap().sim_start(), 8.0 * 3600.0);
    }

    #[test]
    fn vehicles_override_runs_exactly_n_buses() {
        let net = network();
        let cfg = SimulatorConfig {
            vehicles: Some(500),
            sim_duration: Some(std::time::Duration::from_secs(30)),
            faults: FaultConfig::none(),
            ..config(2)
        };
        let mut sim = Simulation::with_anchor(net, &cfg, 0).unwrap();
        let mut sinks = vec![CountingSink::default(); sim.partitions()];
        let t = sim.sim_start();
        sim.advance(t + 30.0, &mut sinks).unwrap();
        let total: u64 = sinks.iter().map(|s| s.records).sum();
        // 500 buses at 1 Hz for 30 s, minus the few turning round silently.
        assert!(total > 500 * 30 * 9 / 10 && total <= 500 * 30, "{total}");
    }
}
