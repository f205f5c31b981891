//! Load simulation against a busflow gateway: many concurrent map viewers, measured and checked.
//!
//! Each simulated viewer opens a stream for a viewport drawn over the network's area
//! ([`ViewportMix`]), optionally with a route filter, over SSE or WebSocket ([`Transport`]); over
//! WebSocket it can move its viewport every few seconds. Every event is timed (event time and
//! derived-topic produce time against arrival) and every vehicle it delivers is checked against
//! the viewer's viewport and filter: a vehicle outside them is a *violation*.
//!
//! - [`LoadConfig`]: what to run.
//! - [`run`]: opens the viewers (with ramp-up), reports progress, and returns a [`LoadReport`]
//!   with per-client rows and aggregate percentiles, printable as a table or written as JSON/CSV.
#![deny(missing_docs)]

mod client;
mod config;
mod report;
mod run;
mod viewport;

pub use config::{LoadConfig, Transport, ViewportMix};
pub use report::{ClientRow, LoadReport, Percentiles};
pub use run::run;
pub use viewport::{Viewport, inside};

/// Errors from a load run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value out of range.
    #[error("invalid load configuration: {0}")]
    Config(String),
    /// The process cannot hold as many connections as asked.
    #[error(
        "cannot raise the open-file limit to {wanted} (hard limit {hard}); raise it with \
         `ulimit -n {wanted}` (as root for the hard limit) or lower --clients"
    )]
    FileLimit {
        /// Descriptors needed.
        wanted: u64,
        /// The hard limit.
        hard: u64,
    },
    /// Writing the report failed.
    #[error("writing report {path}: {source}")]
    Report {
        /// Report path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}
