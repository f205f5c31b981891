//! Latest-state queries: vehicles, routes, stops.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use busflow_core::{Network, VehiclePosition};
use serde_json::{Value, json};

use super::AppState;
use super::params::Params;
use crate::error::ApiError;
use crate::viewport::{Filter, display_point};

const GEOJSON: &str = "application/geo+json";

fn wants_geojson(p: &Params, headers: &HeaderMap) -> Result<bool, ApiError> {
    match p.get("format") {
        Some("geojson") => Ok(true),
        Some("json") => Ok(false),
        Some(other) => Err(ApiError::bad_request(
            "invalid_parameter",
            format!("format must be json or geojson; got {other:?}"),
        )),
        None => Ok(headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains(GEOJSON))),
    }
}

fn feature(p: &VehiclePosition) -> Value {
    let (lat, lon) = display_point(p);
    json!({
        "type": "Feature",
        "id": p.vehicle_id,
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": p,
    })
}

fn geojson(body: Value) -> Response {
    ([(header::CONTENT_TYPE, GEOJSON)], body.to_string()).into_response()
}

pub(crate) async fn vehicles(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.require_ready()?;
    let p = Params::parse(
        query.as_deref(),
        &["bbox", "routes", "format"],
        state.config().max_query_len,
    )?;
    let bbox = p.bbox(None)?;
    let routes = p.routes(state.config().max_routes)?;
    let geo = wants_geojson(&p, &headers)?;
    let list: Vec<Arc<VehiclePosition>> = match bbox {
        Some(bbox) => state.live().vehicles(&Filter { bbox, routes }),
        None => {
            let all = state.live().all_vehicles();
            match routes {
                None => all,
                Some(r) => all
                    .into_iter()
                    .filter(|v| v.route_id.as_ref().is_some_and(|id| r.contains(id)))
                    .collect(),
            }
        }
    };
    if geo {
        let features: Vec<Value> = list.iter().map(|p| feature(p)).collect();
        Ok(geojson(json!({"type": "FeatureCollection", "features": features})))
    } else {
        Ok(Json(json!({"count": list.len(), "vehicles": list})).into_response())
    }
}

pub(crate) async fn vehicle(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.require_ready()?;
    let p = Params::parse(query.as_deref(), &["format"], state.config().max_query_len)?;
    let geo = wants_geojson(&p, &headers)?;
    let v = state
        .live()
        .vehicle(&id)
        .ok_or_else(|| ApiError::not_found(format!("no active vehicle {id:?}")))?;
    Ok(if geo { geojson(feature(&v)) } else { Json(v.as_ref()).into_response() })
}

pub(crate) async fn routes(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    Params::parse(query.as_deref(), &[], state.config().max_query_len)?;
    Ok(geojson_text(state.inner.routes_geojson.clone()))
}

fn geojson_text(s: String) -> Response {
    ([(header::CONTENT_TYPE, GEOJSON)], s).into_response()
}

pub(crate) async fn stops(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(query.as_deref(), &["bbox"], state.config().max_query_len)?;
    let net = &state.inner.network;
    let bbox = p.bbox(None)?.map(|b| b.to_array()).unwrap_or([-180.0, -90.0, 180.0, 90.0]);
    let stops: Vec<Value> = net
        .stops_in(bbox)
        .map(|(_, s)| json!({"stop_id": s.id, "name": s.name, "lat": s.lat, "lon": s.lon}))
        .collect();
    Ok(Json(json!({"count": stops.len(), "stops": stops})).into_response())
}

/// Every route as a GeoJSON feature: its shapes as a MultiLineString, colours as properties.
pub(crate) fn routes_geojson(net: &Network) -> String {
    let features: Vec<Value> = net
        .routes
        .iter()
        .map(|r| {
            let lines: Vec<Vec<[f64; 2]>> = r
                .shapes
                .iter()
                .map(|s| {
                    let line = &net.shape(*s).line;
                    (0..line.len())
                        .map(|i| {
                            let (lat, lon) = line.point(i);
                            [lon, lat]
                        })
                        .collect()
                })
                .collect();
            json!({
                "type": "Feature",
                "id": r.id,
                "geometry": {"type": "MultiLineString", "coordinates": lines},
                "properties": {
                    "route_id": r.id,
                    "short_name": r.short_name,
                    "long_name": r.long_name,
                    "color": r.color,
                    "text_color": r.text_color,
                },
            })
        })
        .collect();
    json!({"type": "FeatureCollection", "features": features}).to_string()
}
