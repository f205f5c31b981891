//! What to simulate: fleet size, clock, faults, limits.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

use crate::Error;

/// Configuration of a simulation run. `Default` is the live demo: the feed's own schedule in
/// real time from the current local time of day, one report per vehicle per second, faults at
/// realistic low rates, no rate cap, runs until cancelled.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatorConfig {
    /// Override the schedule with this many vehicles spread over the day's trips (staggered);
    /// `None` runs exactly the scheduled trips.
    pub vehicles: Option<usize>,
    /// Reports per vehicle per simulated second.
    pub hz: f64,
    /// Simulated seconds per wall second; `f64::INFINITY` runs as fast as the sink accepts.
    pub speedup: f64,
    /// Simulated time of day to begin at; `None` is the time of day now in the feed's time zone.
    pub start: Option<NaiveTime>,
    /// Service date to simulate; `None` is today in the feed's time zone. An expired calendar runs on its
    /// weekday patterns.
    pub date: Option<NaiveDate>,
    /// What the feed's local clock reads now, for the defaults of `start` and `date`; `None`
    /// reads the real clock. Tests set it so that a fleet never depends on when they run.
    pub clock: Option<NaiveDateTime>,
    /// Seed for every random choice: the same seed gives the same records (per vehicle) and
    /// the same truth.
    pub seed: u64,
    /// GPS faults.
    pub faults: FaultConfig,
    /// Cap on emitted records per wall second.
    pub rate: Option<f64>,
    /// Stop after this much simulated time.
    pub sim_duration: Option<Duration>,
    /// Stop after this much wall time.
    pub duration: Option<Duration>,
    /// Stop after this many emitted records (approximately: workers finish their tick).
    pub max_events: Option<u64>,
    /// Write ground truth NDJSON here.
    pub truth: Option<PathBuf>,
    /// Show a live progress line on stderr (off when embedded, e.g. in `busflow up`).
    pub progress: bool,
    /// Generator threads; 0 uses the available parallelism.
    pub threads: usize,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            vehicles: None,
            hz: 1.0,
            speedup: 1.0,
            start: None,
            date: None,
            clock: None,
            seed: 42,
            faults: FaultConfig::default(),
            rate: None,
            sim_duration: None,
            duration: None,
            max_events: None,
            truth: None,
            progress: false,
            threads: 0,
        }
    }
}

impl SimulatorConfig {
    /// Checks ranges; every entry point calls it.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Config(m));
        if !(self.hz.is_finite() && self.hz > 0.0 && self.hz <= 1000.0) {
            return bad(format!("hz must be in (0, 1000], got {}", self.hz));
        }
        if self.speedup.is_nan() || self.speedup <= 0.0 {
            return bad(format!("speedup must be positive, got {}", self.speedup));
        }
        if let Some(r) = self.rate
            && !(r.is_finite() && r > 0.0)
        {
            return bad(format!("rate must be positive, got {r}"));
        }
        if self.vehicles == Some(0) {
            return bad("vehicles must be at least 1".into());
        }
        self.faults.validate()
    }
}

/// GPS faults and their rates. Per-record rates are probabilities per emitted report; per-device
/// rates are the fraction of vehicles affected for the whole run.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    /// Standard deviation of the position noise on each axis (east, north), metres. 0 = exact.
    pub noise_m: f64,
    /// Per record: displaced by 100-500 m in a random direction.
    pub multipath: f64,
    /// Fraction of reports lost to dropouts (a vehicle goes silent for ~`dropout_mean_s`).
    pub dropout: f64,
    /// Mean dropout length, simulated seconds.
    pub dropout_mean_s: f64,
    /// Per record: sent twice.
    pub duplicate: f64,
    /// Per record: held back and delivered after 1-3 newer reports of the same vehicle.
    pub out_of_order: f64,
    /// Per device: clock off by 2-120 s, either way.
    pub clock_skew: f64,
    /// Fraction of reports that repeat a frozen fix (episodes of ~`stuck_mean_reports`).
    pub stuck: f64,
    /// Mean stuck episode length, reports.
    pub stuck_mean_reports: f64,
    /// Per record: invalid (out-of-range or NaN coordinates, missing field, malformed JSON,
    /// non-UTF-8), in equal shares.
    pub invalid: f64,
    /// Per device: reports carry no route or trip id.
    pub no_ids: f64,
}

impl Default for FaultConfig {
    /// Realistic low rates for a live demo.
    fn default() -> Self {
        FaultConfig {
            noise_m: 8.0,
            multipath: 0.002,
            dropout: 0.01,
            dropout_mean_s: 60.0,
            duplicate: 0.005,
            out_of_order: 0.005,
            clock_skew: 0.02,
            stuck: 0.005,
            stuck_mean_reports: 10.0,
            invalid: 0.001,
            no_ids: 0.02,
        }
    }
}

impl FaultConfig {
    /// Exact positions, no faults.
    pub fn none() -> Self {
        FaultConfig {
            noise_m: 0.0,
            multipath: 0.0,
            dropout: 0.0,
            duplicate: 0.0,
            out_of_order: 0.0,
            clock_skew: 0.0,
            stuck: 0.0,
            invalid: 0.0,
            no_ids: 0.0,
            ..FaultConfig::default()
        }
    }

    fn validate(&self) -> Result<(), Error> {
        let rates = [
            ("multipath", self.multipath),
            ("dropout", self.dropout),
            ("duplicate", self.duplicate),
            ("out_of_order", self.out_of_order),
            ("clock_skew", self.clock_skew),
            ("stuck", self.stuck),
            ("invalid", self.invalid),
            ("no_ids", self.no_ids),
        ];
        for (name, r) in rates {
            if !(0.0..=1.0).contains(&r) {
                return Err(Error::Config(format!("fault rate {name} must be in [0, 1], got {r}")));
            }
        }
        if self.dropout >= 0.99 || self.stuck >= 0.99 {
            return Err(Error::Config("dropout and stuck rates must be below 0.99".into()));
        }
        if !(self.noise_m.is_finite() && self.noise_m >= 0.0) {
            return Err(Error::Config(format!("noise must be >= 0 m, got {}", self.noise_m)));
        }
        if self.dropout_mean_s.is_nan()
            || self.dropout_mean_s <= 0.0
            || self.stuck_mean_reports.is_nan()
            || self.stuck_mean_reports < 1.0
        {
            return Err(Error::Config("dropout/stuck episode lengths must be positive".into()));
        }
        Ok(())
    }
}
