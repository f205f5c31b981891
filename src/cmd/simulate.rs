//! `busflow simulate`: a GTFS-driven bus fleet with GPS faults, produced to the raw topic.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use busflow_simulator::{FaultConfig, NaiveDate, NaiveDateTime, NaiveTime, SimulatorConfig};
use clap::Args;

use crate::cli::{GtfsArgs, KafkaArgs, MetricsArgs, parse_duration};

#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub gtfs: GtfsArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Cap on records per second (wall clock).
    #[arg(long, env = "BUSFLOW_SIM_RATE")]
    pub rate: Option<f64>,
    /// Stop after this much wall time (e.g. 60s, 10m).
    #[arg(long, env = "BUSFLOW_SIM_DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this much simulated time (e.g. 1h).
    #[arg(long, env = "BUSFLOW_SIM_SIM_DURATION", value_parser = parse_duration)]
    pub sim_duration: Option<Duration>,
    /// Stop after about this many records.
    #[arg(long, env = "BUSFLOW_SIM_MAX_EVENTS")]
    pub max_events: Option<u64>,
    /// Write the ground truth of every emitted record here (NDJSON).
    #[arg(long, env = "BUSFLOW_SIM_TRUTH")]
    pub truth: Option<PathBuf>,
    /// Generator threads (0: one per core).
    #[arg(long, env = "BUSFLOW_SIM_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// No live progress line; log a summary line every 10 s instead.
    #[arg(long, env = "BUSFLOW_SIM_NO_PROGRESS")]
    pub no_progress: bool,
    #[command(flatten)]
    pub faults: FaultArgs,
}

/// What the fleet is and how simulated time runs; shared with `busflow up`.
#[derive(Debug, Clone, Args)]
pub struct FleetArgs {
    /// Run this many vehicles spread over the day's trips instead of the timetable's own.
    #[arg(long, env = "BUSFLOW_SIM_VEHICLES")]
    pub vehicles: Option<usize>,
    /// Reports per vehicle per simulated second.
    #[arg(long, env = "BUSFLOW_SIM_HZ", default_value_t = 1.0)]
    pub hz: f64,
    /// Simulated seconds per wall second, or `max` to run as fast as the broker accepts.
    /// Timestamps then run ahead of wall time: relax the pipeline's --max-future to match.
    #[arg(long, env = "BUSFLOW_SIM_SPEEDUP", default_value = "1", value_parser = parse_speedup)]
    pub speedup: f64,
    /// Simulated time of day to start at (HH:MM); default: now in the feed's time zone.
    #[arg(long, env = "BUSFLOW_SIM_START", value_parser = parse_hhmm)]
    pub start: Option<NaiveTime>,
    /// Service date to simulate (YYYY-MM-DD); default: today in the feed's time zone.
    #[arg(long, env = "BUSFLOW_SIM_DATE")]
    pub date: Option<NaiveDate>,
    /// What the feed's local clock reads now (YYYY-MM-DDTHH:MM[:SS]), for the defaults of
    /// --date and --start; default: the real clock. For tests and CI, so that a run that omits
    /// --date or --start does not depend on the day or hour it runs (CI sets a Sunday night).
    #[arg(long, env = "BUSFLOW_SIM_CLOCK", value_parser = parse_clock)]
    pub clock: Option<NaiveDateTime>,
    /// Seed for every random choice; the same seed gives the same records.
    #[arg(long, env = "BUSFLOW_SIM_SEED", default_value_t = 42)]
    pub seed: u64,
}

impl FleetArgs {
    /// A simulator config for this fleet with the given faults; run limits left unset.
    pub fn config(&self, faults: FaultConfig) -> SimulatorConfig {
        SimulatorConfig {
            vehicles: self.vehicles,
            hz: self.hz,
            speedup: self.speedup,
            start: self.start,
            date: self.date,
            clock: self.clock,
            seed: self.seed,
            faults,
            ..SimulatorConfig::default()
        }
    }
}

/// GPS faults. Per-record rates are probabilities per report; per-device rates are the share of
/// vehicles affected.
#[derive(Debug, Clone, Args)]
pub struct FaultArgs {
    /// Turn every fault off (noise included) unless set explicitly below.
    #[arg(long, env = "BUSFLOW_SIM_NO_FAULTS")]
    pub no_faults: bool,
    /// Position noise, standard deviation per axis, metres.
    #[arg(long, env = "BUSFLOW_SIM_NOISE_M")]
    pub noise_m: Option<f64>,
    /// Per record: multipath jump of 100-500 m [default 0.002].
    #[arg(long, env = "BUSFLOW_SIM_MULTIPATH")]
    pub multipath: Option<f64>,
    /// Share of reports lost to dropouts (vehicle silent ~60 s) [default 0.01].
    #[arg(long, env = "BUSFLOW_SIM_DROPOUT")]
    pub dropout: Option<f64>,
    /// Per record: sent twice [default 0.005].
    #[arg(long, env = "BUSFLOW_SIM_DUPLICATE")]
    pub duplicate: Option<f64>,
    /// Per record: delivered after 1-3 newer reports [default 0.005].
    #[arg(long, env = "BUSFLOW_SIM_OUT_OF_ORDER")]
    pub out_of_order: Option<f64>,
    /// Per device: clock off by 2-120 s [default 0.02].
    #[arg(long, env = "BUSFLOW_SIM_CLOCK_SKEW")]
    pub clock_skew: Option<f64>,
    /// Share of reports repeating a frozen fix [default 0.005].
    #[arg(long, env = "BUSFLOW_SIM_STUCK")]
    pub stuck: Option<f64>,
    /// Per record: invalid (bad coordinates, missing field, malformed JSON, non-UTF-8)
    /// [default 0.001].
    #[arg(long, env = "BUSFLOW_SIM_INVALID")]
    pub invalid: Option<f64>,
    /// Per device: reports without route and trip id [default 0.02].
    #[arg(long, env = "BUSFLOW_SIM_NO_IDS")]
    pub no_ids: Option<f64>,
}

impl FaultArgs {
    pub fn config(&self) -> FaultConfig {
        let base = if self.no_faults { FaultConfig::none() } else { FaultConfig::default() };
        FaultConfig {
            noise_m: self.noise_m.unwrap_or(base.noise_m),
            multipath: self.multipath.unwrap_or(base.multipath),
            dropout: self.dropout.unwrap_or(base.dropout),
            duplicate: self.duplicate.unwrap_or(base.duplicate),
            out_of_order: self.out_of_order.unwrap_or(base.out_of_order),
            clock_skew: self.clock_skew.unwrap_or(base.clock_skew),
            stuck: self.stuck.unwrap_or(base.stuck),
            invalid: self.invalid.unwrap_or(base.invalid),
            no_ids: self.no_ids.unwrap_or(base.no_ids),
            ..base
        }
    }
}

fn parse_speedup(s: &str) -> Result<f64, String> {
    if s.eq_ignore_ascii_case("max") {
        return Ok(f64::INFINITY);
    }
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("expected a positive number or `max`, got {s:?}")),
    }
}

fn parse_hhmm(s: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(s, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(s, "%H:%M:%S"))
        .map_err(|_| format!("expected HH:MM, got {s:?}"))
}

fn parse_clock(s: &str) -> Result<NaiveDateTime, String> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| format!("expected YYYY-MM-DDTHH:MM[:SS], got {s:?}"))
}

pub async fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let _metrics = crate::telemetry::install_metrics(args.metrics.metrics_addr)?;
    let shutdown = crate::shutdown::on_signal();
    let Some((kafka, topics)) = crate::cmd::connect(&args.kafka, "simulate", &shutdown).await?
    else {
        return Ok(ExitCode::SUCCESS);
    };
    let gtfs = args.gtfs.path();
    let network = crate::cmd::load_network(&gtfs).await?;

    let config = SimulatorConfig {
        rate: args.rate,
        sim_duration: args.sim_duration,
        duration: args.duration,
        max_events: args.max_events,
        truth: args.truth.clone(),
        progress: !args.no_progress,
        threads: args.threads,
        ..args.fleet.config(args.faults.config())
    };
    config.validate().context("checking simulator flags")?;
    tracing::info!(
        feed = %gtfs.display(),
        topic = %topics.raw,
        brokers = %kafka.brokers,
        vehicles = ?config.vehicles,
        hz = config.hz,
        speedup = config.speedup,
        "simulating"
    );
    let report = busflow_simulator::run(config, network, kafka, topics, shutdown)
        .await
        .context("simulation failed")?;
    eprintln!("{report}");
    if !report.all_delivered() {
        eprintln!(
            "busflow simulate: {} of {} records were not delivered",
            report.failed, report.counts.emitted
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speedup_and_start_parse() {
        assert_eq!(parse_speedup("max").unwrap(), f64::INFINITY);
        assert_eq!(parse_speedup("60").unwrap(), 60.0);
        assert!(parse_speedup("0").is_err());
        assert_eq!(parse_hhmm("07:30").unwrap(), NaiveTime::from_hms_opt(7, 30, 0).unwrap());
        assert!(parse_hhmm("7h").is_err());
        let sunday_night = parse_clock("2026-12-06T23:30").unwrap();
        assert_eq!(sunday_night, parse_clock("2026-12-06T23:30:00").unwrap());
        assert_eq!(sunday_night.format("%A %H:%M").to_string(), "Sunday 23:30");
        assert!(parse_clock("2026-12-06 23:30").is_err());
        assert!(parse_clock("23:30").is_err());
    }

    #[test]
    fn no_faults_keeps_explicit_rates() {
        let f = FaultArgs {
            no_faults: true,
            noise_m: None,
            multipath: None,
            dropout: Some(0.1),
            duplicate: None,
            out_of_order: None,
            clock_skew: None,
            stuck: None,
            invalid: None,
            no_ids: None,
        }
        .config();
        assert_eq!(f.noise_m, 0.0);
        assert_eq!(f.dropout, 0.1);
        assert_eq!(f.multipath, 0.0);
    }
}
