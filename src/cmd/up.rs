//! `busflow up`: the whole system in one process, wired with the same config types the separate
//! commands use: broker (in-process unless --brokers), simulator, pipeline and gateway with the
//! live map.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use busflow_kafka::DevBroker;
use clap::Args;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cli::{GtfsArgs, KafkaArgs, MapArgs, MetricsArgs};
use crate::cmd::gateway::GatewayOptions;
use crate::cmd::pipeline::PipelineOptions;
use crate::cmd::simulate::{FaultArgs, FleetArgs};

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
    /// Do not run the simulator: feed the raw topic from elsewhere (replay, ingest, devices).
    #[arg(long, env = "BUSFLOW_UP_NO_SIMULATOR")]
    pub no_simulator: bool,
    #[command(flatten)]
    pub map: MapArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub faults: FaultArgs,
    #[command(flatten)]
    pub pipeline: PipelineOptions,
    #[command(flatten)]
    pub gateway: GatewayOptions,
}

/// With `--speedup N` the simulator's timestamps run ahead of the wall clock by (N-1) x the
/// elapsed time, so the pipeline's future check must allow for that over a long session.
fn max_future_for(speedup: f64, base: Duration) -> Duration {
    if speedup <= 1.0 || !speedup.is_finite() {
        return base;
    }
    const SESSION: f64 = 7.0 * 24.0 * 3600.0;
    base + Duration::from_secs_f64((speedup - 1.0) * SESSION)
}

enum Part {
    Simulator(Result<busflow_simulator::SimReport, busflow_simulator::Error>),
    Pipeline(Result<busflow_pipeline::Report, busflow_pipeline::Error>),
    Gateway(Result<(), busflow_gateway::Error>),
}

pub async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let metrics = crate::telemetry::install_metrics(args.metrics.metrics_addr)?;
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
    if !crate::cmd::prepare_topics(&kafka, &topics, args.kafka.partitions, &shutdown).await? {
        return Ok(ExitCode::SUCCESS);
    }
    let network = crate::cmd::load_network(&args.gtfs.path()).await?;

    // Gateway first, so its initial state load finds the latest topic before traffic arrives.
    let map = args.map.config(network.bbox());
    let gateway = busflow_gateway::start(
        args.gateway.config(args.http_addr),
        network.clone(),
        kafka.clone(),
        topics.clone(),
        Some(metrics),
        Some(busflow_gateway::map::router(&map)),
        shutdown.clone(),
    )
    .await
    .context("starting the gateway")?;

    let mut pipeline_cfg = args.pipeline.config();
    pipeline_cfg.max_future = max_future_for(args.fleet.speedup, pipeline_cfg.max_future);
    let mut parts: Vec<JoinHandle<Part>> = Vec::new();
    parts.push({
        let (network, kafka, topics, shutdown) =
            (network.clone(), kafka.clone(), topics.clone(), shutdown.clone());
        tokio::task::spawn_blocking(move || {
            Part::Pipeline(busflow_pipeline::run(pipeline_cfg, network, kafka, topics, shutdown))
        })
    });
    if args.no_simulator {
        tracing::info!(topic = %topics.raw, "simulator off: waiting for raw positions from elsewhere");
    } else {
        let mut sim = args.fleet.config(args.faults.config());
        // The map is the progress display here; the simulator logs a summary line instead.
        sim.progress = false;
        sim.validate().context("checking simulator flags")?;
        let (network, kafka, topics, shutdown) =
            (network.clone(), kafka.clone(), topics.clone(), shutdown.clone());
        parts.push(tokio::spawn(async move {
            Part::Simulator(busflow_simulator::run(sim, network, kafka, topics, shutdown).await)
        }));
    }

    let ready = tokio::select! {
        addr = gateway.ready() => Some(addr),
        _ = shutdown.cancelled() => None,
    };
    if let Some(addr) = ready {
        let scheme = if args.gateway.tls_cert.is_some() { "https" } else { "http" };
        tracing::info!(ready_after_ms = started.elapsed().as_millis() as u64, "busflow is up");
        println!(
            "busflow is up: open {scheme}://{addr}/ for the live map (Kafka at {brokers}; Ctrl-C to stop)"
        );
    }

    let ok = supervise(parts, gateway, &shutdown).await;
    if let Some(dev) = dev_broker {
        dev.stop();
    }
    tracing::info!("stopped");
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Waits for Ctrl-C or for any part to stop on its own (which stops the others), then joins
/// everything. Returns false when a part failed.
async fn supervise(
    mut parts: Vec<JoinHandle<Part>>,
    gateway: busflow_gateway::GatewayHandle,
    shutdown: &CancellationToken,
) -> bool {
    let mut ok = true;
    let gateway_task = tokio::spawn(async move { Part::Gateway(gateway.join().await) });
    parts.push(gateway_task);
    let mut pending = parts;
    while !pending.is_empty() {
        let (done, _, rest) = futures::future::select_all(pending).await;
        pending = rest;
        let failed = match done {
            Ok(Part::Simulator(Ok(report))) => {
                tracing::info!(
                    delivered = report.delivered,
                    failed = report.failed,
                    "simulator stopped"
                );
                report.failed > 0
            }
            Ok(Part::Pipeline(Ok(report))) => {
                tracing::info!(?report, "pipeline stopped");
                false
            }
            Ok(Part::Gateway(Ok(()))) => {
                tracing::info!("gateway stopped");
                false
            }
            Ok(Part::Simulator(Err(e))) => log_failure("simulator", &e),
            Ok(Part::Pipeline(Err(e))) => log_failure("pipeline", &e),
            Ok(Part::Gateway(Err(e))) => log_failure("gateway", &e),
            Err(e) => log_failure("component task", &e),
        };
        ok &= !failed;
        if !shutdown.is_cancelled() {
            // A part stopped by itself (or failed): bring the rest down too.
            tracing::warn!("a component stopped; shutting the others down");
            shutdown.cancel();
        }
    }
    ok
}

fn log_failure(what: &str, e: &dyn std::fmt::Display) -> bool {
    tracing::error!("{what} failed: {e:#}");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speedup_relaxes_the_future_check() {
        let base = Duration::from_secs(60);
        assert_eq!(max_future_for(1.0, base), base);
        let relaxed = max_future_for(10.0, base);
        // A day of a x10 session puts timestamps 9 days ahead; that must pass.
        assert!(relaxed > Duration::from_secs(9 * 24 * 3600));
    }
}
