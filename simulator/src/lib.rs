//! A GTFS-driven bus fleet with realistic GPS faults, producing [`RawPosition`] records.
//!
//! Vehicles run a feed's trips along their shapes on the timetable (stop_times, frequencies,
//! services of the day, with an expired calendar running on its weekday patterns): they dwell
//! at stops, accelerate and brake, keep under a per-route speed limit, run late when the
//! timetable is too tight, and work blocks of trips where the feed has blocks. `vehicles`
//! overrides the timetable with any number of buses spread over the day's trips.
//!
//! Their GPS is imperfect on purpose ([`FaultConfig`]): noise, multipath jumps, dropouts,
//! duplicates, out-of-order delivery, clock skew, stuck fixes, invalid records and devices
//! without route/trip ids. Every emitted record can be paired with a [`TruthRecord`] saying
//! where the bus really was and which faults were applied.
//!
//! - [`Simulation`]: the deterministic, multi-threaded generator, writing to any [`Sink`].
//! - [`generate`]: a whole run in memory with its truth, for tests of downstream stages.
//! - [`replay`]: recorded positions (NDJSON or CSV) back onto the raw topic, same spacing.
//! - [`ingest_gtfs_rt`]: a live GTFS-realtime VehiclePositions feed polled onto the raw topic.
//! - [`run`]: produce to Kafka with backpressure, a rate cap, progress and a final
//!   [`SimReport`]; what `busflow simulate` and `busflow up` call.
//!
//! ```no_run
//! # fn demo() -> Result<(), busflow_simulator::Error> {
//! use std::sync::Arc;
//! use busflow_simulator::{FaultConfig, SimulatorConfig, generate};
//! let network = Arc::new(busflow_core::Network::load(busflow_core::bundled_gtfs_path())?);
//! let config = SimulatorConfig {
//!     sim_duration: Some(std::time::Duration::from_secs(300)),
//!     faults: FaultConfig { duplicate: 0.05, ..FaultConfig::default() },
//!     ..SimulatorConfig::default()
//! };
//! let (records, counts) = generate(network, &config, 1_700_000_000_000)?;
//! let dups = records.iter().filter(|r| r.truth.has(busflow_simulator::Fault::Duplicate)).count();
//! assert_eq!(dups as u64, counts.duplicate);
//! # Ok(()) }
//! ```
//!
//! [`RawPosition`]: busflow_core::RawPosition
#![deny(missing_docs)]

mod config;
mod encode;
pub mod gtfs_rt;
mod ingest;
mod kafka;
mod motion;
mod plan;
mod replay;
mod sim;
mod sink;
mod truth;
mod vehicle;

/// The date and time types of [`SimulatorConfig`], re-exported so callers need not pin chrono.
pub use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
pub use config::{FaultConfig, SimulatorConfig};
pub use ingest::{IngestConfig, IngestReport, convert as convert_gtfs_rt, ingest_gtfs_rt};
pub use kafka::{SimReport, run};
pub use replay::{CSV_FIELDS, ReplayConfig, ReplayFormat, ReplayReport, parse_ts, replay};
pub use sim::{GeneratedRecord, Simulation, generate};
pub use sink::{CountingSink, Sink, VecSink};
pub use truth::{Fault, InvalidKind, TruthRecord};
pub use vehicle::FaultCounts;

/// Errors from the simulator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value out of range.
    #[error("invalid simulator configuration: {0}")]
    Config(String),
    /// The GTFS feed could not be loaded.
    #[error(transparent)]
    Network(#[from] busflow_core::Error),
    /// Kafka setup or production failed.
    #[error("Kafka: {0}")]
    Kafka(#[from] busflow_kafka::rdkafka::error::KafkaError),
    /// Topic preparation failed.
    #[error(transparent)]
    Topics(#[from] busflow_kafka::Error),
    /// The truth file could not be written.
    #[error("truth file {path}: {source}")]
    Truth {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A recording could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A generator thread failed.
    #[error("generator: {0}")]
    Thread(String),
}
