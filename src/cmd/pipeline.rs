//! `busflow pipeline`: the stateful stage from the raw topic to positions, latest and rejected.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use busflow_pipeline::PipelineConfig;
use clap::Args;

use crate::cli::{GtfsArgs, KafkaArgs, MetricsArgs, parse_duration};

#[derive(Debug, Args)]
pub struct PipelineArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub gtfs: GtfsArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    #[command(flatten)]
    pub options: PipelineOptions,
}

/// Pipeline settings (shared with `up`).
#[derive(Debug, Clone, Args)]
pub struct PipelineOptions {
    /// Worker threads in this process (timely -w).
    #[arg(short = 'w', long, env = "BUSFLOW_PIPELINE_WORKERS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=512))]
    pub workers: u16,
    /// Processes in the timely cluster (timely -n); each runs `busflow pipeline` with its own
    /// --process index.
    #[arg(long, env = "BUSFLOW_PIPELINE_PROCESSES", default_value_t = 1)]
    pub processes: usize,
    /// This process's index in the cluster, 0-based (timely -p).
    #[arg(long, env = "BUSFLOW_PIPELINE_PROCESS", default_value_t = 0)]
    pub process: usize,
    /// File with one host:port per process (timely -h). Default: 127.0.0.1:2101 and up.
    #[arg(long, env = "BUSFLOW_PIPELINE_HOSTFILE")]
    pub hostfile: Option<PathBuf>,
    /// Consumer group whose committed raw offsets mark the pipeline's progress.
    #[arg(long, env = "BUSFLOW_PIPELINE_GROUP", default_value = "busflow-pipeline")]
    pub group_id: String,
    /// Reject fixes further in the future than this (device clock skew).
    #[arg(long, env = "BUSFLOW_MAX_FUTURE", default_value = "60s", value_parser = parse_duration)]
    pub max_future: Duration,
    /// Reject fixes older than this when they arrive.
    #[arg(long, env = "BUSFLOW_MAX_AGE", default_value = "1h", value_parser = parse_duration)]
    pub max_age: Duration,
    /// Reject a fix whose implied speed from the previous one exceeds this (multipath), m/s.
    #[arg(long, env = "BUSFLOW_MAX_SPEED_MPS", default_value_t = 40.0)]
    pub max_speed_mps: f64,
    /// Beyond this distance from every candidate shape a vehicle is off route, metres.
    #[arg(long, env = "BUSFLOW_MAX_OFF_ROUTE_M", default_value_t = 60.0)]
    pub max_off_route_m: f64,
    /// GPS noise allowance, metres.
    #[arg(long, env = "BUSFLOW_GPS_NOISE_M", default_value_t = 25.0)]
    pub gps_noise_m: f64,
    /// A vehicle that has not moved beyond the noise for this long is `stopped`.
    #[arg(long, env = "BUSFLOW_STOPPED_AFTER", default_value = "30s", value_parser = parse_duration)]
    pub stopped_after: Duration,
    /// Forget vehicles silent for this long.
    #[arg(long, env = "BUSFLOW_STATE_TTL", default_value = "30m", value_parser = parse_duration)]
    pub state_ttl: Duration,
    /// H3 resolution of `h3_cell` (0-15).
    #[arg(long, env = "BUSFLOW_H3_RESOLUTION", default_value_t = busflow_core::h3::DEFAULT_RESOLUTION, value_parser = clap::value_parser!(u8).range(0..=15))]
    pub h3_resolution: u8,
    /// Largest raw message accepted, bytes.
    #[arg(long, env = "BUSFLOW_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024)]
    pub max_message_bytes: usize,
    /// Length of a processing epoch (offsets are committed per epoch).
    #[arg(long, env = "BUSFLOW_PIPELINE_EPOCH", default_value = "50ms", value_parser = parse_duration)]
    pub epoch: Duration,
}

impl PipelineOptions {
    pub fn config(&self) -> PipelineConfig {
        PipelineConfig {
            workers: usize::from(self.workers),
            processes: self.processes,
            process_index: self.process,
            hostfile: self.hostfile.clone(),
            group_id: self.group_id.clone(),
            max_message_bytes: self.max_message_bytes,
            max_future: self.max_future,
            max_age: self.max_age,
            max_speed_mps: self.max_speed_mps,
            gps_noise_m: self.gps_noise_m,
            max_off_route_m: self.max_off_route_m,
            stopped_after: self.stopped_after,
            state_ttl: self.state_ttl,
            h3_resolution: self.h3_resolution,
            epoch: self.epoch,
            ..PipelineConfig::default()
        }
    }
}

pub async fn run(args: PipelineArgs) -> anyhow::Result<ExitCode> {
    let _metrics = crate::telemetry::install_metrics(args.metrics.metrics_addr)?;
    let shutdown = crate::shutdown::on_signal();
    let cfg = args.options.config();
    if cfg.process_index >= cfg.processes {
        anyhow::bail!(
            "--process {} must be below --processes {}",
            cfg.process_index,
            cfg.processes
        );
    }

    // Topics: wait for the broker rather than exit while it is down.
    let Some((kafka, topics)) = crate::cmd::connect(&args.kafka, "pipeline", &shutdown).await?
    else {
        return Ok(ExitCode::SUCCESS);
    };

    let network = crate::cmd::load_network(&args.gtfs.path()).await?;

    tracing::info!(
        workers = cfg.workers,
        process = cfg.process_index,
        processes = cfg.processes,
        raw = %topics.raw,
        positions = %topics.positions,
        "pipeline starting"
    );
    let report = tokio::task::spawn_blocking(move || {
        busflow_pipeline::run(cfg, network, kafka, topics, shutdown)
    })
    .await
    .context("pipeline thread failed")?
    .context("pipeline")?;
    tracing::info!(
        consumed = report.consumed,
        positions = report.positions,
        rejected = report.rejected,
        duplicates = report.duplicates,
        replays_suppressed = report.replays_suppressed,
        "pipeline stopped"
    );
    Ok(ExitCode::SUCCESS)
}
