//! `busflow up`: the whole system in one process.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use busflow_core::Network;
use busflow_kafka::{DevBroker, ensure_topics};
use clap::Args;

use crate::cli::{GtfsArgs, KafkaArgs, MetricsArgs};

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub gtfs: GtfsArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// Address the gateway (map, streams, API) listens on.
    #[arg(long, env = "BUSFLOW_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
}

pub async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let _metrics = crate::telemetry::install_metrics(args.metrics.metrics_addr)?;
    let shutdown = crate::shutdown::on_signal();
    let topics = args.kafka.topics();

    // Without --brokers, an in-process broker: nothing to install, nothing left behind.
    let (dev_broker, brokers) = match &args.kafka.brokers {
        Some(b) => (None, b.clone()),
        None => {
            let dev = DevBroker::start(&topics, args.kafka.partitions)
                .context("starting the in-process development broker")?;
            let addr = dev.bootstrap_servers().to_string();
            tracing::info!(
                bootstrap = %addr,
                "in-process development broker started (memory only, no retention or compaction); \
                 other tools can connect with --brokers {addr}"
            );
            (Some(dev), addr)
        }
    };
    let kafka = args.kafka.config(&brokers);
    let report = ensure_topics(&kafka, &topics, args.kafka.partitions, Duration::from_secs(30))
        .await
        .with_context(|| format!("preparing topics on {brokers}"))?;
    for t in &report.created {
        tracing::info!(topic = %t, partitions = args.kafka.partitions, "created topic");
    }
    for (t, n) in &report.existing {
        tracing::info!(topic = %t, partitions = n, "topic ready");
    }

    let gtfs = args.gtfs.path();
    let network = tokio::task::spawn_blocking({
        let gtfs = gtfs.clone();
        move || Network::load(&gtfs)
    })
    .await
    .context("GTFS loader task failed")?
    .with_context(|| format!("loading GTFS feed {}", gtfs.display()))?;
    let network = Arc::new(network);
    tracing::info!(
        feed = %gtfs.display(),
        routes = network.routes.len(),
        shapes = network.shapes.len(),
        stops = network.stops.len(),
        trips = network.trips.len(),
        "GTFS network loaded"
    );

    let missing = ["simulator (issue #3)", "pipeline (issue #4)", "gateway (issue #5)"];
    tracing::warn!(
        "not yet part of this build: {}; only the broker and topics are running, nothing listens on {}",
        missing.join(", "),
        args.http_addr
    );
    println!("busflow up: Kafka at {brokers}; press Ctrl-C to stop");

    shutdown.cancelled().await;
    drop(network);
    if let Some(dev) = dev_broker {
        dev.stop();
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}
