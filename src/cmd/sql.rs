//! `busflow sql`: SQL (DataFusion) over the topics, or over recordings of them.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use busflow_sql::{
    End, Format, KafkaRead, QueryOutput, ReadRange, SqlConfig, SqlSession, Start, TableName,
};
use clap::Args;

use crate::cli::{KafkaArgs, parse_duration};

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The SQL to run; several statements may be separated by `;`. Tables: positions, rejected,
    /// raw, vehicles (see docs/sql.md).
    #[arg(env = "BUSFLOW_SQL_QUERY", required_unless_present = "file")]
    pub query: Option<String>,
    /// Read the SQL from this file instead.
    #[arg(short = 'f', long = "file", env = "BUSFLOW_SQL_FILE", conflicts_with = "query")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Read positions, rejected and raw from this point: a duration ago (10m) or an RFC 3339
    /// time. Default: from the oldest retained record.
    #[arg(long, env = "BUSFLOW_SQL_SINCE", conflicts_with = "from_offset")]
    pub since: Option<String>,
    /// Read positions, rejected and raw from this offset in every partition.
    #[arg(long, env = "BUSFLOW_SQL_FROM_OFFSET", value_parser = clap::value_parser!(i64).range(0..))]
    pub from_offset: Option<i64>,
    /// Read up to this point: `now` (the end each partition has when the read starts), a
    /// duration ago (5m) or an RFC 3339 time.
    #[arg(long, env = "BUSFLOW_SQL_UNTIL", default_value = "now")]
    pub until: String,
    /// Output format: table, csv, json (one object per line) or parquet (needs --output).
    #[arg(long, env = "BUSFLOW_SQL_FORMAT", default_value = "table", value_parser = parse_format)]
    pub format: Format,
    /// Write the result to this file instead of stdout.
    #[arg(short = 'o', long, env = "BUSFLOW_SQL_OUTPUT")]
    pub output: Option<PathBuf>,
    /// Read a table from a recording (NDJSON, one topic value per line) instead of Kafka:
    /// --table positions=positions.ndjson. Repeatable; in the environment separate with ';'.
    #[arg(long = "table", env = "BUSFLOW_SQL_TABLES", value_name = "TABLE=FILE",
          value_delimiter = ';', value_parser = parse_table_file)]
    pub tables: Vec<(TableName, PathBuf)>,
    /// `vehicles` holds vehicles whose last position is at most this old (as the gateway's
    /// --stale-after).
    #[arg(long, env = "BUSFLOW_SQL_STALE_AFTER", default_value = "120s", value_parser = parse_duration)]
    pub stale_after: Duration,
    /// Refuse to read more records than this from one topic (bound the query instead).
    #[arg(long, env = "BUSFLOW_SQL_MAX_RECORDS", default_value_t = 20_000_000)]
    pub max_records: u64,
    /// Longest wait for the broker (metadata, offsets, the next record).
    #[arg(long, env = "BUSFLOW_SQL_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub read_timeout: Duration,
    /// No progress bar while reading topics.
    #[arg(long, env = "BUSFLOW_SQL_NO_PROGRESS")]
    pub no_progress: bool,
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

fn parse_table_file(s: &str) -> Result<(TableName, PathBuf), String> {
    let names = TableName::ALL.map(TableName::as_str).join(", ");
    match s.split_once('=') {
        Some((t, f)) if !f.trim().is_empty() => match TableName::parse(t.trim()) {
            Some(t) => Ok((t, PathBuf::from(f.trim()))),
            None => Err(format!("unknown table {t:?}: expected one of {names}")),
        },
        _ => Err(format!("expected TABLE=FILE with TABLE one of {names}, got {s:?}")),
    }
}

pub async fn run(args: SqlArgs) -> anyhow::Result<ExitCode> {
    let shutdown = crate::shutdown::on_signal();
    let sql = match (&args.query, &args.file) {
        (_, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("reading SQL file {}", f.display()))?,
        (Some(q), None) => q.clone(),
        (None, None) => anyhow::bail!("give the SQL as an argument or with --file"),
    };
    if args.format == Format::Parquet && args.output.is_none() {
        anyhow::bail!("--format parquet writes a file: add --output FILE.parquet");
    }

    let now = busflow_sql::now_ms();
    let start = match (&args.since, args.from_offset) {
        (Some(s), _) => Start::Since(busflow_sql::parse_time(s, now).map_err(anyhow::Error::msg)?),
        (None, Some(o)) => Start::Offset(o),
        (None, None) => Start::Beginning,
    };
    let end = if args.until.trim().eq_ignore_ascii_case("now") {
        End::Now
    } else {
        End::Until(busflow_sql::parse_time(&args.until, now).map_err(anyhow::Error::msg)?)
    };
    let kafka = args.kafka.brokers.as_deref().map(|b| KafkaRead {
        kafka: args.kafka.config(b),
        timeout: args.read_timeout,
        max_records: args.max_records,
        progress: !args.no_progress && std::io::stderr().is_terminal(),
    });
    let config = SqlConfig {
        kafka,
        topics: args.kafka.topics(),
        range: ReadRange { start, end },
        files: args.tables.iter().cloned().collect::<BTreeMap<_, _>>(),
        stale_after: args.stale_after,
    };

    let session =
        SqlSession::new(config, shutdown.clone()).context("setting up the SQL session")?;
    let results = session.execute(&sql).await?;
    let shown: Vec<&QueryOutput> = results.iter().filter(|r| r.has_columns()).collect();
    if shown.len() > 1 && (args.format != Format::Table || args.output.is_some()) {
        anyhow::bail!(
            "{} statements return rows; with --format {} or --output only one may (the others \
             can be views: CREATE VIEW ...)",
            shown.len(),
            args.format.name()
        );
    }
    for r in &shown {
        match &args.output {
            Some(path) if args.format == Format::Parquet => {
                busflow_sql::write_parquet(r, path)?;
            }
            Some(path) => {
                let f = std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?;
                let mut w = std::io::BufWriter::new(f);
                busflow_sql::write_text(r, args.format, &mut w)?;
            }
            None => busflow_sql::write_text(r, args.format, &mut std::io::stdout().lock())?,
        }
        if let Some(path) = &args.output {
            eprintln!("{} rows written to {}", r.num_rows(), path.display());
        } else if args.format == Format::Table {
            eprintln!("({} rows)", r.num_rows());
        }
    }
    for l in session.loads() {
        if !l.undecodable.is_empty() {
            eprintln!(
                "note: {} record(s) of {} did not decode and were left out of {}",
                l.undecodable.len(),
                l.source,
                l.table
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_files_parse() {
        let (t, f) = parse_table_file("positions=a/b.ndjson").unwrap();
        assert_eq!((t, f), (TableName::Positions, PathBuf::from("a/b.ndjson")));
        assert!(parse_table_file("trains=x").unwrap_err().contains("unknown table"));
        assert!(parse_table_file("positions").is_err());
        assert!(parse_table_file("positions=").is_err());
    }
}
