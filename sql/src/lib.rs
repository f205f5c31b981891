//! SQL over busflow's Kafka topics, with [Apache DataFusion](https://datafusion.apache.org).
//!
//! Four tables, typed after the wire contracts (`docs/topics.md`), each read from its topic the
//! first time a query scans it:
//!
//! | table | topic | rows |
//! |---|---|---|
//! | `positions` | `bus.positions` | every accepted, enriched position |
//! | `rejected` | `bus.rejected` | every refused raw message, with its reason and bytes |
//! | `raw` | `bus.raw` | every raw message, parsed where it parses |
//! | `vehicles` | `bus.latest` | the newest position of each active vehicle |
//!
//! Reads are bounded ([`ReadRange`]): from the beginning, a time or an offset, up to the end
//! the topic had when the read began or up to a time, so a query over a busy topic finishes.
//! Any table can come from a recording instead ([`SqlConfig::files`]: NDJSON, one topic value
//! per line). [`udf`] adds the pipeline's own H3 and distance functions.
//!
//! ```no_run
//! # async fn demo() -> Result<(), busflow_sql::Error> {
//! use std::collections::BTreeMap;
//! use busflow_sql::{SqlConfig, SqlSession, TableName};
//! let files = BTreeMap::from([(TableName::Positions, "positions.ndjson".into())]);
//! let session = SqlSession::new(SqlConfig::files(files), Default::default())?;
//! let out = session.execute("SELECT status, count(*) FROM positions GROUP BY 1").await?;
//! busflow_sql::write_text(&out[0], busflow_sql::Format::Table, &mut std::io::stdout())?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod output;
mod session;
mod source;
pub mod table;
pub mod udf;

use std::path::PathBuf;

pub use datafusion;
pub use output::{Format, write_parquet, write_text};
pub use session::{LoadReport, QueryOutput, SqlConfig, SqlSession, now_ms};
pub use source::{End, KafkaRead, ReadRange, Start, parse_time, read_file, read_topic};
pub use table::{Record, TableName};

/// Errors from `busflow sql`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL is invalid or failed to run; DataFusion's message says where.
    #[error("{}", sql_message(.0))]
    Sql(datafusion::error::DataFusionError),
    /// A Kafka client error while reading a topic.
    #[error("reading topic {topic}: {source}")]
    Kafka {
        /// Topic being read.
        topic: String,
        /// The client's error.
        #[source]
        source: busflow_kafka::rdkafka::error::KafkaError,
    },
    /// The topic is not on the cluster.
    #[error(
        "topic {topic} does not exist on {brokers} (wrong cluster, or set the --topic-* flags)"
    )]
    NoTopic {
        /// Topic name.
        topic: String,
        /// Bootstrap servers asked.
        brokers: String,
    },
    /// The read would hold more records than allowed.
    #[error(
        "topic {topic}: {records} records in the requested range, more than --max-records \
         {limit}; bound the read with --since, --from-offset or --until, or raise the limit"
    )]
    TooMany {
        /// Topic name.
        topic: String,
        /// Records in range.
        records: u64,
        /// The limit.
        limit: u64,
    },
    /// A partition stopped delivering before its end offset.
    #[error(
        "topic {topic} partition {partition}: no record arrived at offset {at} (reading up to \
         {end}) within the read timeout; is the broker reachable?"
    )]
    Stalled {
        /// Topic name.
        topic: String,
        /// Partition.
        partition: i32,
        /// Next offset expected.
        at: i64,
        /// End of the read.
        end: i64,
    },
    /// A Kafka-backed table was used without a broker.
    #[error(
        "table {table} reads topic {topic}, but no broker is configured: pass --brokers (or set \
         KAFKA_BROKERS), or read a recording with --table {table}=FILE"
    )]
    NoBroker {
        /// The table.
        table: TableName,
        /// Its topic.
        topic: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Formatting or writing the result failed.
    #[error("writing the result: {0}")]
    Output(String),
    /// The command was used in a way that cannot work.
    #[error("{0}")]
    Usage(String),
    /// Interrupted (Ctrl-C) before the query finished.
    #[error("interrupted before the query finished")]
    Cancelled,
    /// A background task failed.
    #[error("background task failed: {0}")]
    Task(String),
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Error::Sql(e)
    }
}

/// DataFusion's message for the innermost error, without the wrappers that repeat it.
fn sql_message(e: &datafusion::error::DataFusionError) -> String {
    use datafusion::error::DataFusionError;
    match e.find_root() {
        // The parser's own text ("sql parser error: Expected: ..., found: ... at Line: 1,
        // Column: 8") rather than its Debug form.
        DataFusionError::SQL(p, _) => p.to_string(),
        root => root.strip_backtrace(),
    }
}

impl From<datafusion::arrow::error::ArrowError> for Error {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        Error::Sql(e.into())
    }
}
