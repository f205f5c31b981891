//! `busflow replay FILE`: recorded positions back onto the raw topic, with their spacing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use busflow_simulator::{CSV_FIELDS, ReplayConfig, ReplayFormat};
use clap::Args;

use crate::cli::KafkaArgs;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Recording: NDJSON RawPosition (one per line), or CSV with a header row (.csv).
    #[arg(env = "BUSFLOW_REPLAY_FILE")]
    pub file: PathBuf,
    /// Read the file as CSV even without a .csv extension.
    #[arg(long, env = "BUSFLOW_REPLAY_CSV")]
    pub csv: bool,
    /// CSV column names for RawPosition fields whose column is named differently, e.g.
    /// --columns vehicle_id=bus,ts=time,lat=latitude,lon=longitude
    #[arg(long, env = "BUSFLOW_REPLAY_COLUMNS", value_delimiter = ',', value_parser = parse_column)]
    pub columns: Vec<(String, String)>,
    /// Replay this many times faster than recorded, or `max` for no waiting.
    #[arg(long, env = "BUSFLOW_REPLAY_SPEEDUP", default_value = "1", value_parser = parse_speedup)]
    pub speedup: f64,
    /// Shift timestamps so the first record is stamped now (spacing kept).
    #[arg(long, env = "BUSFLOW_REPLAY_SHIFT_TO_NOW")]
    pub shift_to_now: bool,
}

fn parse_column(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((field, name)) if CSV_FIELDS.contains(&field.trim()) && !name.trim().is_empty() => {
            Ok((field.trim().to_string(), name.trim().to_string()))
        }
        _ => Err(format!(
            "expected FIELD=COLUMN with FIELD one of {}, got {s:?}",
            CSV_FIELDS.join(", ")
        )),
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

pub async fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let shutdown = crate::shutdown::on_signal();
    let Some((kafka, topics)) = crate::cmd::connect(&args.kafka, "replay", &shutdown).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    let format = if args.csv { ReplayFormat::Csv } else { ReplayFormat::from_path(&args.file) };
    let config = ReplayConfig {
        path: args.file.clone(),
        format,
        columns: args.columns.iter().cloned().collect::<HashMap<_, _>>(),
        speedup: args.speedup,
        shift_to_now: args.shift_to_now,
    };
    tracing::info!(file = %args.file.display(), ?format, topic = %topics.raw, "replaying");
    let report = busflow_simulator::replay(config, kafka, topics, shutdown)
        .await
        .with_context(|| format!("replaying {}", args.file.display()))?;
    eprintln!(
        "replayed {} records in {:.1} s: {} delivered, {} failed, {} unreadable lines skipped",
        report.sent,
        report.wall.as_secs_f64(),
        report.delivered,
        report.failed,
        report.skipped
    );
    if let Some(e) = &report.first_error {
        eprintln!("first delivery error: {e}");
    }
    Ok(if report.failed == 0 && report.delivered == report.sent {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_parse() {
        assert_eq!(parse_column("ts=time").unwrap(), ("ts".into(), "time".into()));
        assert!(parse_column("colour=x").is_err());
        assert!(parse_column("ts").is_err());
        assert_eq!(parse_speedup("max").unwrap(), f64::INFINITY);
    }
}
