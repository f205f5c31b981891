//! One module per subcommand. Each turns its flags into the library's config struct and runs it
//! under the process-wide shutdown token.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use busflow_core::{Network, Topics};
use busflow_kafka::{KafkaConfig, ensure_topics};
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command, KafkaArgs};

pub mod gateway;
pub mod ingest;
pub mod load;
pub mod pipeline;
pub mod replay;
pub mod simulate;
#[cfg(feature = "sql")]
pub mod sql;
pub mod up;

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Up(args) => up::run(args).await,
        Command::Gateway(args) => gateway::run(args).await,
        Command::Simulate(args) => simulate::run(args).await,
        Command::Replay(args) => replay::run(args).await,
        Command::Ingest(args) => ingest::run(args).await,
        Command::Pipeline(args) => pipeline::run(args).await,
        Command::Load(args) => load::run(args).await,
        #[cfg(feature = "sql")]
        Command::Sql(args) => sql::run(args).await,
    }
}

/// Loads a GTFS feed off the async runtime and logs what it holds.
pub async fn load_network(path: &Path) -> anyhow::Result<Arc<Network>> {
    let owned = path.to_path_buf();
    let network = tokio::task::spawn_blocking(move || Network::load(&owned))
        .await
        .context("GTFS loader task failed")?
        .with_context(|| format!("loading GTFS feed {}", path.display()))?;
    tracing::info!(
        feed = %path.display(),
        routes = network.routes.len(),
        shapes = network.shapes.len(),
        stops = network.stops.len(),
        trips = network.trips.len(),
        "GTFS network loaded"
    );
    Ok(Arc::new(network))
}

/// Creates missing topics and logs what it did. While the broker is unreachable it waits and
/// retries (services must not exit because Kafka starts later than they do). Returns false when
/// shut down before the broker answered.
pub async fn prepare_topics(
    kafka: &KafkaConfig,
    topics: &Topics,
    partitions: i32,
    shutdown: &CancellationToken,
) -> anyhow::Result<bool> {
    loop {
        let attempt = tokio::select! {
            r = ensure_topics(kafka, topics, partitions, std::time::Duration::from_secs(10)) => r,
            _ = shutdown.cancelled() => return Ok(false),
        };
        match attempt {
            Ok(report) => {
                for t in &report.created {
                    tracing::info!(topic = %t, partitions, "created topic");
                }
                for (t, n) in &report.existing {
                    tracing::debug!(topic = %t, partitions = n, "topic exists");
                }
                return Ok(true);
            }
            // A refusal is final: retrying cannot help, and the error says what to do.
            Err(e @ busflow_kafka::Error::TopicCreation { .. }) => return Err(e.into()),
            Err(e) => {
                tracing::warn!("{e:#}; retrying in 5s");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(false),
                    _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                }
            }
        }
    }
}

/// The Kafka side of a command that runs against an existing broker: requires `--brokers`, then
/// prepares the topics (waiting for the broker). `None` when shut down before the broker answered.
pub async fn connect(
    args: &KafkaArgs,
    command: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<(KafkaConfig, Topics)>> {
    let brokers = args.brokers.clone().with_context(|| {
        format!(
            "`busflow {command}` needs a broker: pass --brokers or set KAFKA_BROKERS \
             (`busflow up` runs everything with an in-process broker)"
        )
    })?;
    let (kafka, topics) = (args.config(&brokers), args.topics());
    Ok(prepare_topics(&kafka, &topics, args.partitions, shutdown).await?.then_some((kafka, topics)))
}
