//! Wire contracts: the JSON records busflow exchanges over Kafka.
//!
//! Every record is keyed by vehicle id. The schemas in `docs/schemas/` describe exactly what these
//! types serialize, and `tests/schemas.rs` keeps the two in step. A change that breaks consumers
//! bumps [`SCHEMA_VERSION`]; additive optional fields do not.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The contract version this build writes, carried as `v` in every record.
pub const SCHEMA_VERSION: u16 = 1;

fn default_version() -> u16 {
    SCHEMA_VERSION
}

/// Kafka topic names. These are the defaults; every component takes them from configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topics {
    /// Raw device positions ([`RawPosition`]).
    pub raw: String,
    /// One [`VehiclePosition`] per accepted raw event.
    pub positions: String,
    /// One [`Rejected`] per raw message that could not be accepted.
    pub rejected: String,
    /// Compacted topic holding the latest [`VehiclePosition`] per vehicle, so a consumer that
    /// starts late can load current state without replaying history.
    pub latest: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            raw: "bus.raw".into(),
            positions: "bus.positions".into(),
            rejected: "bus.rejected".into(),
            latest: "bus.latest".into(),
        }
    }
}

impl Topics {
    /// Every topic with the retention policy it needs.
    pub fn specs(&self) -> [TopicSpec<'_>; 4] {
        [
            TopicSpec { name: &self.raw, compacted: false },
            TopicSpec { name: &self.positions, compacted: false },
            TopicSpec { name: &self.rejected, compacted: false },
            TopicSpec { name: &self.latest, compacted: true },
        ]
    }
}

/// What a topic needs from the broker when busflow creates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec<'a> {
    /// Topic name.
    pub name: &'a str,
    /// `cleanup.policy=compact` (latest value per key) instead of time retention.
    pub compacted: bool,
}

/// A raw GPS report from a device, as published on `bus.raw`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawPosition {
    /// Contract version; producers may omit it (read as the current version).
    #[serde(default = "default_version")]
    pub v: u16,
    /// Vehicle identifier; also the Kafka message key.
    pub vehicle_id: String,
    /// Device time of the fix, unix epoch milliseconds.
    pub ts: i64,
    /// WGS84 latitude, degrees.
    pub lat: f64,
    /// WGS84 longitude, degrees.
    pub lon: f64,
    /// Ground speed reported by the device, metres per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_mps: Option<f32>,
    /// Heading reported by the device, degrees clockwise from true north.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearing_deg: Option<f32>,
    /// Horizontal accuracy estimate, metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_m: Option<f32>,
    /// GTFS route_id the device believes it is serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_id: Option<String>,
    /// GTFS trip_id the device believes it is serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trip_id: Option<String>,
    /// Per-vehicle message counter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

impl RawPosition {
    /// A report with only the required fields set.
    pub fn new(vehicle_id: impl Into<String>, ts: i64, lat: f64, lon: f64) -> Self {
        RawPosition {
            v: SCHEMA_VERSION,
            vehicle_id: vehicle_id.into(),
            ts,
            lat,
            lon,
            speed_mps: None,
            bearing_deg: None,
            accuracy_m: None,
            route_id: None,
            trip_id: None,
            seq: None,
        }
    }
}

/// How the pipeline classifies a vehicle at one position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VehicleStatus {
    /// Snapped to a shape and moving.
    InTransit,
    /// Snapped to a shape and has not moved beyond GPS noise for a while.
    Stopped,
    /// Has a candidate shape but is further from it than the off-route threshold.
    OffRoute,
    /// No shape could be assigned.
    Unassigned,
}

impl VehicleStatus {
    /// The wire name, as used in metrics labels and queries.
    pub fn as_str(self) -> &'static str {
        match self {
            VehicleStatus::InTransit => "in_transit",
            VehicleStatus::Stopped => "stopped",
            VehicleStatus::OffRoute => "off_route",
            VehicleStatus::Unassigned => "unassigned",
        }
    }
}

/// One accepted, enriched position, as published on `bus.positions` (and `bus.latest`).
///
/// Optional fields serialize as `null` rather than being left out, so every record has the same
/// columns for SQL consumers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VehiclePosition {
    /// Contract version.
    pub v: u16,
    /// Vehicle identifier; also the Kafka message key.
    pub vehicle_id: String,
    /// Device time of the fix, unix epoch milliseconds.
    pub ts: i64,
    /// Latitude as reported, degrees.
    pub lat: f64,
    /// Longitude as reported, degrees.
    pub lon: f64,
    /// Latitude of the point on the assigned shape, degrees; null when unassigned.
    pub snapped_lat: Option<f64>,
    /// Longitude of the point on the assigned shape, degrees; null when unassigned.
    pub snapped_lon: Option<f64>,
    /// GTFS route_id.
    pub route_id: Option<String>,
    /// Route short name for display (e.g. "110").
    pub route_short_name: Option<String>,
    /// Route colour, six hex digits without `#`.
    pub route_color: Option<String>,
    /// GTFS trip_id.
    pub trip_id: Option<String>,
    /// GTFS shape_id the position was snapped to.
    pub shape_id: Option<String>,
    /// GTFS direction_id (0 or 1).
    pub direction_id: Option<u8>,
    /// Trip headsign.
    pub headsign: Option<String>,
    /// Distance along the shape from its first point, metres.
    pub dist_along_m: Option<f64>,
    /// Distance from the reported position to the shape, metres.
    pub off_route_m: Option<f64>,
    /// Speed, metres per second (smoothed from snapped fixes, or the device's when plausible).
    pub speed_mps: Option<f32>,
    /// Heading, degrees clockwise from true north.
    pub bearing_deg: Option<f32>,
    /// Next stop's GTFS stop_id along the shape.
    pub next_stop_id: Option<String>,
    /// Distance along the shape to the next stop, metres.
    pub next_stop_dist_m: Option<f64>,
    /// H3 cell of the (snapped, else reported) position, 15 hex digits.
    pub h3_cell: String,
    /// Classification of this position.
    pub status: VehicleStatus,
    /// Device message counter, passed through.
    pub seq: Option<u64>,
    /// When the pipeline produced this record, unix epoch milliseconds.
    pub processed_ts: i64,
    /// Source partition on the raw topic.
    pub partition: i32,
    /// Source offset on the raw topic.
    pub offset: i64,
}

impl VehiclePosition {
    /// Where a viewer sees the vehicle: on its shape when snapped, else where it reported.
    /// Viewport filtering (gateway) and its verification (load tool) both use this point.
    pub fn display_point(&self) -> (f64, f64) {
        match (self.snapped_lat, self.snapped_lon) {
            (Some(lat), Some(lon)) => (lat, lon),
            _ => (self.lat, self.lon),
        }
    }
}

/// Why a raw message was refused. The wire form is the snake_case code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The payload is not valid UTF-8.
    NotUtf8,
    /// The payload is not a JSON object of the expected shape.
    MalformedJson,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong type or an unusable value (e.g. empty vehicle id).
    InvalidField,
    /// The record declares a contract version this build does not understand.
    UnsupportedVersion,
    /// The message exceeds the size limit.
    Oversized,
    /// The Kafka key does not match `vehicle_id`.
    KeyMismatch,
    /// Latitude/longitude are NaN, infinite or outside WGS84 ranges.
    InvalidCoordinates,
    /// Latitude and longitude are both zero: an unset GPS fix.
    NullIsland,
    /// `ts` is further in the future than allowed.
    FutureTimestamp,
    /// `ts` is older than the maximum age.
    TooOld,
    /// The implied speed from the vehicle's previous fix is physically implausible (multipath).
    ImplausibleSpeed,
    /// Older than the vehicle's last accepted report (delivered out of order).
    Stale,
}

impl RejectReason {
    /// Every reason, for metrics and documentation.
    pub const ALL: [RejectReason; 13] = [
        RejectReason::NotUtf8,
        RejectReason::MalformedJson,
        RejectReason::MissingField,
        RejectReason::InvalidField,
        RejectReason::UnsupportedVersion,
        RejectReason::Oversized,
        RejectReason::KeyMismatch,
        RejectReason::InvalidCoordinates,
        RejectReason::NullIsland,
        RejectReason::FutureTimestamp,
        RejectReason::TooOld,
        RejectReason::ImplausibleSpeed,
        RejectReason::Stale,
    ];

    /// The wire code, as used in metrics labels and queries.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::NotUtf8 => "not_utf8",
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::MissingField => "missing_field",
            RejectReason::InvalidField => "invalid_field",
            RejectReason::UnsupportedVersion => "unsupported_version",
            RejectReason::Oversized => "oversized",
            RejectReason::KeyMismatch => "key_mismatch",
            RejectReason::InvalidCoordinates => "invalid_coordinates",
            RejectReason::NullIsland => "null_island",
            RejectReason::FutureTimestamp => "future_timestamp",
            RejectReason::TooOld => "too_old",
            RejectReason::ImplausibleSpeed => "implausible_speed",
            RejectReason::Stale => "stale",
        }
    }
}

/// A raw message the pipeline refused, as published on `bus.rejected`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    /// Contract version.
    pub v: u16,
    /// Machine-readable reason code.
    pub reason: RejectReason,
    /// Human-readable explanation.
    pub detail: String,
    /// Vehicle id when it could be read from the message (key or payload).
    pub vehicle_id: Option<String>,
    /// The original message value, standard base64 (lossless for any bytes).
    pub raw_b64: String,
    /// The original message key, standard base64; null when the message had no key.
    pub key_b64: Option<String>,
    /// Source partition on the raw topic.
    pub partition: i32,
    /// Source offset on the raw topic.
    pub offset: i64,
    /// When the pipeline rejected it, unix epoch milliseconds.
    pub rejected_ts: i64,
}

impl Rejected {
    /// Builds a rejection that carries the original bytes losslessly.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        reason: RejectReason,
        detail: impl Into<String>,
        vehicle_id: Option<String>,
        raw: &[u8],
        key: Option<&[u8]>,
        partition: i32,
        offset: i64,
        rejected_ts: i64,
    ) -> Self {
        let b64 = base64::engine::general_purpose::STANDARD;
        Rejected {
            v: SCHEMA_VERSION,
            reason,
            detail: detail.into(),
            vehicle_id,
            raw_b64: b64.encode(raw),
            key_b64: key.map(|k| b64.encode(k)),
            partition,
            offset,
            rejected_ts,
        }
    }

    /// The original message value. Fails only if `raw_b64` was not written by [`Rejected::new`].
    pub fn raw_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        base64::engine::general_purpose::STANDARD.decode(&self.raw_b64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_position_minimal_json_reads_with_defaults() {
        let raw: RawPosition = serde_json::from_str(
            r#"{"vehicle_id":"b1","ts":1700000000000,"lat":-16.9,"lon":145.7}"#,
        )
        .unwrap();
        assert_eq!(raw, RawPosition::new("b1", 1_700_000_000_000, -16.9, 145.7));
    }

    #[test]
    fn raw_position_omits_absent_optionals() {
        let json = serde_json::to_string(&RawPosition::new("b1", 1, 2.0, 3.0)).unwrap();
        assert_eq!(json, r#"{"v":1,"vehicle_id":"b1","ts":1,"lat":2.0,"lon":3.0}"#);
    }

    #[test]
    fn raw_position_requires_vehicle_id() {
        let err = serde_json::from_str::<RawPosition>(r#"{"ts":1,"lat":2.0,"lon":3.0}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("vehicle_id"), "{err}");
    }

    #[test]
    fn reject_reason_codes_match_serde() {
        for reason in RejectReason::ALL {
            let json = serde_json::to_string(&reason).unwrap();
            assert_eq!(json, format!("\"{}\"", reason.as_str()));
        }
    }

    #[test]
    fn rejected_keeps_non_utf8_bytes() {
        let bytes = [0xff, 0x00, b'{', 0xc3];
        let r = Rejected::new(RejectReason::NotUtf8, "x", None, &bytes, Some(b"k"), 0, 7, 9);
        let back: Rejected = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.raw_bytes().unwrap(), bytes);
    }
}
