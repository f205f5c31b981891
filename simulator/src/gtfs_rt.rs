//! The part of GTFS-realtime (`gtfs-realtime.proto`, proto2) that carries vehicle positions,
//! declared with `prost` derives.
//!
//! Why not a GTFS-RT crate: every one on crates.io (`gtfs-realtime`, `gtfs-rt`) generates its
//! bindings at build time with `prost-build`, which needs a `protoc` binary that these machines
//! (and a fresh CI machine) do not have. Field numbers and types follow the specification
//! (<https://gtfs.org/realtime/reference/>); protobuf decoding skips the fields and messages not
//! declared here (trip updates, alerts, extensions), so full feeds decode unchanged.

/// A feed snapshot.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FeedMessage {
    /// Metadata.
    #[prost(message, optional, tag = "1")]
    pub header: Option<FeedHeader>,
    /// Entities (vehicle positions, trip updates, alerts).
    #[prost(message, repeated, tag = "2")]
    pub entity: Vec<FeedEntity>,
}

/// Feed metadata.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FeedHeader {
    /// Specification version, e.g. "2.0".
    #[prost(string, optional, tag = "1")]
    pub gtfs_realtime_version: Option<String>,
    /// 0 = full dataset, 1 = differential.
    #[prost(int32, optional, tag = "2")]
    pub incrementality: Option<i32>,
    /// When the feed was generated, POSIX seconds.
    #[prost(uint64, optional, tag = "3")]
    pub timestamp: Option<u64>,
}

/// One entity of the feed.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FeedEntity {
    /// Entity id, unique within the feed.
    #[prost(string, optional, tag = "1")]
    pub id: Option<String>,
    /// The entity was deleted (differential feeds).
    #[prost(bool, optional, tag = "2")]
    pub is_deleted: Option<bool>,
    /// The vehicle position, for VehiclePositions feeds.
    #[prost(message, optional, tag = "4")]
    pub vehicle: Option<VehiclePosition>,
}

/// A vehicle's position.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VehiclePosition {
    /// The trip it serves.
    #[prost(message, optional, tag = "1")]
    pub trip: Option<TripDescriptor>,
    /// Where it is.
    #[prost(message, optional, tag = "2")]
    pub position: Option<Position>,
    /// When the position was measured, POSIX seconds.
    #[prost(uint64, optional, tag = "5")]
    pub timestamp: Option<u64>,
    /// Which vehicle.
    #[prost(message, optional, tag = "8")]
    pub vehicle: Option<VehicleDescriptor>,
}

/// A geographic position.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Position {
    /// WGS84 latitude, degrees.
    #[prost(float, optional, tag = "1")]
    pub latitude: Option<f32>,
    /// WGS84 longitude, degrees.
    #[prost(float, optional, tag = "2")]
    pub longitude: Option<f32>,
    /// Degrees clockwise from true north.
    #[prost(float, optional, tag = "3")]
    pub bearing: Option<f32>,
    /// Odometer, metres.
    #[prost(double, optional, tag = "4")]
    pub odometer: Option<f64>,
    /// Speed, metres per second.
    #[prost(float, optional, tag = "5")]
    pub speed: Option<f32>,
}

/// The trip a vehicle serves.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TripDescriptor {
    /// GTFS trip_id.
    #[prost(string, optional, tag = "1")]
    pub trip_id: Option<String>,
    /// GTFS route_id.
    #[prost(string, optional, tag = "5")]
    pub route_id: Option<String>,
}

/// Vehicle identification.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VehicleDescriptor {
    /// Internal system id.
    #[prost(string, optional, tag = "1")]
    pub id: Option<String>,
    /// User-visible label.
    #[prost(string, optional, tag = "2")]
    pub label: Option<String>,
    /// License plate.
    #[prost(string, optional, tag = "3")]
    pub license_plate: Option<String>,
}
