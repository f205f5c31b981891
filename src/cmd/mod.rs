//! One module per subcommand. Each turns its flags into the library's config struct and runs it
//! under the process-wide shutdown token.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use busflow_core::Network;

use crate::cli::{Cli, Command};

pub mod gateway;
pub mod ingest;
pub mod load;
pub mod pipeline;
pub mod replay;
pub mod simulate;
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
