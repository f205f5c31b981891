//! `busflow ingest gtfs-rt URL`: a live GTFS-realtime VehiclePositions feed into the raw topic.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use busflow_simulator::IngestConfig;
use clap::{Args, Subcommand};

use crate::cli::{KafkaArgs, parse_duration};

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(subcommand)]
    pub source: IngestSource,
}

#[derive(Debug, Subcommand)]
pub enum IngestSource {
    /// Poll a GTFS-realtime VehiclePositions feed (protobuf); only changed vehicles are sent.
    GtfsRt(GtfsRtArgs),
}

#[derive(Debug, Args)]
pub struct GtfsRtArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Feed URL, e.g. https://example.org/gtfs-rt/vehicle-positions.pb
    #[arg(env = "BUSFLOW_INGEST_URL")]
    pub url: String,
    /// Time between polls.
    #[arg(long, env = "BUSFLOW_INGEST_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Per-request timeout.
    #[arg(long, env = "BUSFLOW_INGEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Longest wait between retries while the feed fails.
    #[arg(long, env = "BUSFLOW_INGEST_MAX_BACKOFF", default_value = "5m", value_parser = parse_duration)]
    pub max_backoff: Duration,
}

pub async fn run(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let IngestSource::GtfsRt(args) = args.source;
    let shutdown = crate::shutdown::on_signal();
    let Some((kafka, topics)) = crate::cmd::connect(&args.kafka, "ingest", &shutdown).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    let config = IngestConfig {
        interval: args.interval,
        timeout: args.timeout,
        max_backoff: args.max_backoff,
        ..IngestConfig::new(args.url.clone())
    };
    tracing::info!(url = %args.url, interval = ?args.interval, topic = %topics.raw, "polling GTFS-realtime feed");
    let report = busflow_simulator::ingest_gtfs_rt(config, kafka, topics, shutdown)
        .await
        .with_context(|| format!("ingesting {}", args.url))?;
    eprintln!(
        "{} polls ({} failed), {} vehicle entities, {} sent, {} unchanged, {} unusable; {} delivered, {} failed",
        report.polls,
        report.failed_polls,
        report.entities,
        report.sent,
        report.unchanged,
        report.unusable,
        report.delivered,
        report.failed
    );
    Ok(if report.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
