//! `GET /gtfs-rt/vehicle-positions`: a GTFS-realtime VehiclePositions feed of the current state.
//!
//! The messages below are the subset of `gtfs-realtime.proto` (version 2.0) a VehiclePositions
//! feed needs, with the field numbers of the specification, encoded with prost.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use busflow_core::{VehiclePosition as Vp, VehicleStatus};
use prost::Message as _;
use serde::Serialize;

use super::AppState;
use super::params::Params;
use crate::error::ApiError;

/// `FeedMessage`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct FeedMessage {
    /// Metadata.
    #[prost(message, required, tag = "1")]
    pub header: FeedHeader,
    /// One entity per vehicle.
    #[prost(message, repeated, tag = "2")]
    pub entity: Vec<FeedEntity>,
}

/// `FeedHeader`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct FeedHeader {
    /// Always "2.0".
    #[prost(string, required, tag = "1")]
    pub gtfs_realtime_version: String,
    /// `FULL_DATASET` (0).
    #[prost(int32, optional, tag = "2")]
    pub incrementality: Option<i32>,
    /// Feed creation time, POSIX seconds.
    #[prost(uint64, optional, tag = "3")]
    pub timestamp: Option<u64>,
}

/// `FeedEntity` (only `vehicle` is used).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct FeedEntity {
    /// Unique in the feed: the vehicle id.
    #[prost(string, required, tag = "1")]
    pub id: String,
    /// The vehicle's position.
    #[prost(message, optional, tag = "4")]
    pub vehicle: Option<VehiclePosition>,
}

/// `VehiclePosition`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct VehiclePosition {
    /// Trip being served.
    #[prost(message, optional, tag = "1")]
    pub trip: Option<TripDescriptor>,
    /// Where.
    #[prost(message, optional, tag = "2")]
    pub position: Option<Position>,
    /// `VehicleStopStatus`: 1 `STOPPED_AT`, 2 `IN_TRANSIT_TO`.
    #[prost(int32, optional, tag = "4")]
    pub current_status: Option<i32>,
    /// Time of the fix, POSIX seconds.
    #[prost(uint64, optional, tag = "5")]
    pub timestamp: Option<u64>,
    /// Next stop.
    #[prost(string, optional, tag = "7")]
    pub stop_id: Option<String>,
    /// Which vehicle.
    #[prost(message, optional, tag = "8")]
    pub vehicle: Option<VehicleDescriptor>,
}

/// `TripDescriptor`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct TripDescriptor {
    /// GTFS trip_id.
    #[prost(string, optional, tag = "1")]
    pub trip_id: Option<String>,
    /// GTFS route_id.
    #[prost(string, optional, tag = "5")]
    pub route_id: Option<String>,
    /// GTFS direction_id.
    #[prost(uint32, optional, tag = "6")]
    pub direction_id: Option<u32>,
}

/// `VehicleDescriptor`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct VehicleDescriptor {
    /// Vehicle id.
    #[prost(string, optional, tag = "1")]
    pub id: Option<String>,
    /// Display label (route short name and headsign).
    #[prost(string, optional, tag = "2")]
    pub label: Option<String>,
}

/// `Position`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Position {
    /// Degrees north.
    #[prost(float, required, tag = "1")]
    pub latitude: f32,
    /// Degrees east.
    #[prost(float, required, tag = "2")]
    pub longitude: f32,
    /// Degrees clockwise from north.
    #[prost(float, optional, tag = "3")]
    pub bearing: Option<f32>,
    /// Metres per second.
    #[prost(float, optional, tag = "5")]
    pub speed: Option<f32>,
}

/// Builds the feed from current positions.
pub fn feed(vehicles: &[std::sync::Arc<Vp>], now_ms: i64) -> FeedMessage {
    let entity = vehicles
        .iter()
        .map(|v| {
            let (lat, lon) = crate::viewport::display_point(v);
            let label = match (&v.route_short_name, &v.headsign) {
                (Some(r), Some(h)) => Some(format!("{r} {h}")),
                (Some(r), None) => Some(r.clone()),
                _ => None,
            };
            let trip = (v.trip_id.is_some() || v.route_id.is_some()).then(|| TripDescriptor {
                trip_id: v.trip_id.clone(),
                route_id: v.route_id.clone(),
                direction_id: v.direction_id.map(u32::from),
            });
            FeedEntity {
                id: v.vehicle_id.clone(),
                vehicle: Some(VehiclePosition {
                    trip,
                    position: Some(Position {
                        latitude: lat as f32,
                        longitude: lon as f32,
                        bearing: v.bearing_deg,
                        speed: v.speed_mps,
                    }),
                    current_status: Some(match v.status {
                        VehicleStatus::Stopped => 1,
                        _ => 2,
                    }),
                    timestamp: u64::try_from(v.ts / 1000).ok(),
                    stop_id: v.next_stop_id.clone(),
                    vehicle: Some(VehicleDescriptor { id: Some(v.vehicle_id.clone()), label }),
                }),
            }
        })
        .collect();
    FeedMessage {
        header: FeedHeader {
            gtfs_realtime_version: "2.0".into(),
            incrementality: Some(0),
            timestamp: u64::try_from(now_ms / 1000).ok(),
        },
        entity,
    }
}

pub(crate) async fn vehicle_positions(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    state.require_ready()?;
    let p = Params::parse(query.as_deref(), &["format"], state.config().max_query_len)?;
    let msg = feed(&state.live().all_vehicles(), crate::live::now_ms());
    match p.get("format") {
        None | Some("protobuf") => {
            Ok(([(header::CONTENT_TYPE, "application/x-protobuf")], msg.encode_to_vec())
                .into_response())
        }
        Some("json") => Ok(Json(msg).into_response()),
        Some(other) => Err(ApiError::bad_request(
            "invalid_parameter",
            format!("format must be protobuf or json; got {other:?}"),
        )),
    }
}
