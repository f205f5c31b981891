//! Ground truth: what really happened behind every record the simulator emitted.
//!
//! One [`TruthRecord`] is written per emitted Kafka message (a duplicate gets its own line), in
//! emission order, as NDJSON. Tests and benchmarks of the pipeline read it back to score
//! snapping (true position and distance along the shape), deduplication (`duplicate`),
//! ordering (`out_of_order`) and rejection (`invalid`).

use serde::{Deserialize, Serialize};

/// A fault the simulator applied to one emitted record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The position was displaced by 100-500 m (multipath reflection).
    Multipath,
    /// A second copy of a record already emitted, byte-for-byte identical.
    Duplicate,
    /// This record was held back and emitted after one or more newer reports of its vehicle.
    OutOfOrder,
    /// The device clock is off: `ts` differs from the true time by `skew_ms`.
    ClockSkew,
    /// The GPS repeated an earlier fix: position, speed and bearing are frozen.
    Stuck,
    /// The device reports no route or trip id.
    NoIds,
    /// The record is not a valid RawPosition; [`TruthRecord::invalid`] says how.
    Invalid,
}

impl Fault {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Multipath => "multipath",
            Fault::Duplicate => "duplicate",
            Fault::OutOfOrder => "out_of_order",
            Fault::ClockSkew => "clock_skew",
            Fault::Stuck => "stuck",
            Fault::NoIds => "no_ids",
            Fault::Invalid => "invalid",
        }
    }
}

/// How an invalid record is broken. The pipeline should reject each with the matching reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidKind {
    /// Latitude or longitude outside WGS84 ranges (e.g. `lat: 123.4`): `invalid_coordinates`.
    OutOfRange,
    /// A coordinate written as the string `"NaN"`, as some firmware does: `invalid_field`
    /// (or `invalid_coordinates`, depending on where the pipeline checks it).
    NanCoordinate,
    /// A required field (`ts`, `lat` or `vehicle_id`) is absent: `missing_field`.
    MissingField,
    /// The JSON is cut off mid-record: `malformed_json`.
    MalformedJson,
    /// A byte sequence that is not UTF-8 inside a string: `not_utf8`.
    NotUtf8,
}

impl InvalidKind {
    /// Every kind, in the order the simulator cycles through them.
    pub const ALL: [InvalidKind; 5] = [
        InvalidKind::OutOfRange,
        InvalidKind::NanCoordinate,
        InvalidKind::MissingField,
        InvalidKind::MalformedJson,
        InvalidKind::NotUtf8,
    ];
}

/// The truth behind one emitted record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruthRecord {
    /// Vehicle id, also the Kafka key of the record.
    pub vehicle_id: String,
    /// The record's `seq` (per-vehicle counter of reports; a duplicate repeats it).
    pub seq: u64,
    /// `ts` as written in the record, unix ms (includes clock skew).
    pub ts: i64,
    /// The true time of the fix, unix ms on the simulated clock.
    pub true_ts: i64,
    /// `lat` as written in the record (absent for records without a usable latitude).
    pub lat: Option<f64>,
    /// `lon` as written in the record.
    pub lon: Option<f64>,
    /// Where the vehicle really was, degrees.
    pub true_lat: f64,
    /// Where the vehicle really was, degrees.
    pub true_lon: f64,
    /// True speed, metres per second.
    pub speed_mps: f64,
    /// GTFS route the vehicle is serving.
    pub route_id: String,
    /// GTFS trip the vehicle is serving.
    pub trip_id: String,
    /// GTFS shape of the trip.
    pub shape_id: String,
    /// True distance along the shape, metres.
    pub dist_along_m: f64,
    /// Faults applied to this record; empty for a clean one (noise aside).
    pub faults: Vec<Fault>,
    /// How the record is broken, when `faults` contains [`Fault::Invalid`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid: Option<InvalidKind>,
    /// The device's clock error, ms (`ts - true_ts`).
    pub skew_ms: i64,
}

impl TruthRecord {
    /// Whether a fault was applied.
    pub fn has(&self, fault: Fault) -> bool {
        self.faults.contains(&fault)
    }
}
