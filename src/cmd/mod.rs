//! One module per subcommand. Each turns its flags into the library's config struct and runs it
//! under the process-wide shutdown token.

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub mod gateway;
pub mod ingest;
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
    }
}
