//! Stateful timely-dataflow stage: validate, deduplicate, snap, enrich and H3-index raw positions.
//!
//! - [`Processor`]: the pure per-event path for the vehicles one worker owns: [`parse()`],
//!   [`validate`], deduplication, map matching onto GTFS shapes, enrichment and the H3 cell.
//!   No Kafka, so it is unit-tested and benchmarked on its own.
//! - [`run`]: the timely dataflow around it: Kafka source with a deterministic share of raw
//!   partitions per worker, exchange by vehicle id, Kafka sink, offsets committed after every
//!   output they caused is acknowledged, and recovery that makes a restart neither lose nor
//!   duplicate output (see `docs/pipeline.md`).
//! - [`PipelineConfig`]: every tunable, with the defaults `busflow pipeline` uses.
#![deny(missing_docs)]

mod config;
mod dataflow;
mod epochs;
mod parse;
mod process;
mod recovery;
mod snap;
#[cfg(test)]
mod testnet;

pub use config::PipelineConfig;
pub use dataflow::{Report, run};
pub use parse::{Refusal, parse};
pub use process::{Counts, Outcome, Processor, RawMessage, validate};
pub use recovery::{Recovery, recover};

/// Errors from the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid configuration or core failure (H3 resolution, GTFS).
    #[error(transparent)]
    Core(#[from] busflow_core::Error),
    /// A Kafka client could not be created or used.
    #[error("Kafka: {0}")]
    Kafka(#[from] busflow_kafka::rdkafka::error::KafkaError),
    /// The timely cluster could not start or a worker failed.
    #[error("timely dataflow: {0}")]
    Timely(String),
    /// Recovery could not read what was produced before.
    #[error("recovery: {0}")]
    Recovery(String),
}
