//! Shared domain of busflow: the wire contracts on Kafka, the GTFS network model, and the
//! geometry both the simulator and the pipeline compute with.
//!
//! This crate has no async runtime and no Kafka client, so every consumer of the contracts
//! (including tools outside this workspace) can depend on it cheaply.
//!
//! - [`contract`]: [`RawPosition`], [`VehiclePosition`], [`Rejected`] and topic names.
//! - [`network`]: [`Network::load`] reads a GTFS feed into routes, trips, shapes with
//!   distances, stops along shapes, schedules and a spatial index of shape segments.
//! - [`geometry`]: haversine helpers and [`Polyline`] projection used for snapping.
//! - [`h3`]: H3 cell ids in their 15-hex-digit string form.
//! - [`duration`]: durations written like `90s`, `5m`, `24h`.
//!
//! ```
//! use busflow_core::{RawPosition, geometry::haversine_m};
//! let raw: RawPosition =
//!     serde_json::from_str(r#"{"vehicle_id":"b1","ts":1,"lat":-16.92,"lon":145.77}"#).unwrap();
//! assert!(haversine_m(raw.lat, raw.lon, -16.92, 145.78) > 1000.0);
//! ```
#![deny(missing_docs)]

pub mod contract;
pub mod duration;
pub mod geometry;
mod gtfs_check;
pub mod h3;
pub mod network;

use std::path::PathBuf;

pub use contract::{
    RawPosition, RejectReason, Rejected, SCHEMA_VERSION, TopicSpec, Topics, VehiclePosition,
    VehicleStatus,
};
pub use geometry::{Polyline, Projection};
pub use network::Network;

/// The bundled Cairns feed, relative to the workspace root.
pub const BUNDLED_GTFS: &str = "data/cairns_gtfs.zip";

/// Errors from this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A GTFS feed could not be loaded; `detail` names the file and line where known.
    #[error("GTFS feed {path}: {detail}")]
    Gtfs {
        /// The feed's path.
        path: PathBuf,
        /// What is wrong, naming the file inside the feed.
        detail: String,
    },
    /// A duration string could not be parsed.
    #[error("invalid duration {input:?}: {detail} (write it like 90s, 5m, 24h or 1h30m)")]
    Duration {
        /// What was given.
        input: String,
        /// Why it failed.
        detail: String,
    },
    /// A coordinate or resolution outside what H3 accepts.
    #[error("H3: {0}")]
    H3(String),
}

/// Finds the bundled feed: beside the current directory (a checkout) or beside the executable's
/// workspace (`cargo run` from elsewhere).
pub fn bundled_gtfs_path() -> PathBuf {
    // The working directory and its parents first: cargo runs tests and benches in the crate's
    // directory, and a build directory shared between checkouts can hold a binary whose
    // compile-time path below belongs to another checkout.
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors().take(4) {
            let here = dir.join(BUNDLED_GTFS);
            if here.exists() {
                return here;
            }
        }
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(BUNDLED_GTFS)
}
