//! `busflow`: one command for every part of the system. This binary only parses flags, sets up
//! logging, metrics and shutdown, and hands plain config structs to the library crates.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod cmd;
mod shutdown;
mod telemetry;

#[cfg(test)]
mod compose_check;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if let Err(e) = telemetry::init_logging(&cli.global) {
        eprintln!("busflow: {e:#}");
        return ExitCode::FAILURE;
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("busflow: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("busflow")
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    let result = runtime.block_on(cmd::dispatch(cli));
    // Every component is awaited inside dispatch, so anything still running here was abandoned
    // (e.g. a metadata request to an unreachable broker) and must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    result
}
