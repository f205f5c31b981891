//! The OpenAPI 3.1 description served at `/v1/openapi.json`. A test checks that every path here
//! is routed and every routed API path is here.

use serde_json::{Value, json};

fn param(name: &str, required: bool, description: &str, example: &str) -> Value {
    json!({
        "name": name, "in": "query", "required": required,
        "description": description, "schema": {"type": "string"}, "example": example,
    })
}

fn bbox(required: bool) -> Value {
    param(
        "bbox",
        required,
        "west,south,east,north in WGS84 degrees; west < east (no antimeridian crossing)",
        "145.70,-16.98,145.80,-16.88",
    )
}

fn routes() -> Value {
    param("routes", false, "comma-separated GTFS route_ids", "110,111")
}

fn min_interval() -> Value {
    json!({"name": "min_interval_ms", "in": "query", "required": false,
           "description": "at most one event per vehicle per interval (0..60000)",
           "schema": {"type": "integer", "minimum": 0, "maximum": 60000}})
}

fn errors() -> Value {
    json!({
        "400": {"description": "invalid parameter", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "401": {"description": "missing or wrong bearer token (when auth is on)"},
        "503": {"description": "initial state still loading"},
    })
}

fn with_errors(mut ok: Value) -> Value {
    if let (Some(m), Some(e)) = (ok.as_object_mut(), errors().as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    ok
}

/// The document.
pub fn document() -> Value {
    let stream_events = "Events: `snapshot` {type, vehicles[], resumed}, `update` {type, vehicle}, \
        `remove` {type, vehicle_id, reason: left_viewport|stale|filtered}, `density` {type, resolution, \
        total, cells[{cell, lat, lon, count}]}, `error` {type, error, message} (last event). \
        Every event has an id; reconnecting with Last-Event-ID gets a fresh snapshot.";
    json!({
        "openapi": "3.1.0",
        "info": {"title": "busflow gateway", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Live bus positions by viewport, latest-state queries and GTFS-realtime."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "message"],
                          "properties": {"error": {"type": "string"}, "message": {"type": "string"}}},
            },
        },
        "security": [{}, {"bearer": []}],
        "paths": {
            "/v1/stream": {"get": {
                "summary": "Server-Sent Events for a viewport",
                "description": stream_events,
                "parameters": [bbox(true), routes(), min_interval()],
                "responses": with_errors(json!({
                    "200": {"description": "event stream", "content": {"text/event-stream": {}}},
                    "429": {"description": "too many streams (total or per address); see Retry-After"},
                })),
            }},
            "/v1/ws": {"get": {
                "summary": "WebSocket stream with in-place viewport changes",
                "description": "Same events as /v1/stream as JSON text frames, plus `diff` {type, removed[], added[]} \
                    answering a client message {\"type\":\"subscribe\",\"bbox\":[w,s,e,n],\"routes\":[..],\"min_interval_ms\":N}.",
                "parameters": [bbox(false), routes(), min_interval()],
                "responses": with_errors(json!({
                    "101": {"description": "switching protocols"},
                    "429": {"description": "too many streams; see Retry-After"},
                })),
            }},
            "/v1/vehicles": {"get": {
                "summary": "Current vehicles, JSON or GeoJSON (Accept: application/geo+json or format=geojson)",
                "parameters": [bbox(false), routes(), param("format", false, "json or geojson", "geojson")],
                "responses": with_errors(json!({
                    "200": {"description": "vehicles", "content": {"application/json": {}, "application/geo+json": {}}},
                })),
            }},
            "/v1/vehicles/{id}": {"get": {
                "summary": "One vehicle's latest position",
                "parameters": [
                    {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
                    param("format", false, "json or geojson", "json"),
                ],
                "responses": with_errors(json!({
                    "200": {"description": "the vehicle", "content": {"application/json": {}}},
                    "404": {"description": "no such active vehicle"},
                })),
            }},
            "/v1/routes": {"get": {
                "summary": "Routes with colours and shapes (GeoJSON MultiLineString per route)",
                "responses": with_errors(json!({"200": {"description": "routes", "content": {"application/geo+json": {}}}})),
            }},
            "/v1/stops": {"get": {
                "summary": "Stops, optionally inside a bbox",
                "parameters": [bbox(false)],
                "responses": with_errors(json!({"200": {"description": "stops", "content": {"application/json": {}}}})),
            }},
            "/gtfs-rt/vehicle-positions": {"get": {
                "summary": "GTFS-realtime VehiclePositions FeedMessage (protobuf; format=json for humans)",
                "parameters": [param("format", false, "protobuf (default) or json", "json")],
                "responses": with_errors(json!({"200": {"description": "feed", "content": {"application/x-protobuf": {}, "application/json": {}}}})),
            }},
            "/v1/openapi.json": {"get": {"summary": "This document", "security": [{}],
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}}}},
            "/healthz": {"get": {"summary": "Liveness", "security": [{}], "responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"summary": "Readiness: 200 once the initial state is loaded", "security": [{}],
                "responses": {"200": {"description": "ready"}, "503": {"description": "loading"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "security": [{}],
                "responses": {"200": {"description": "text exposition format"}}}},
        },
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_api_route_is_documented() {
        let doc = super::document();
        let paths = doc["paths"].as_object().cloned().unwrap_or_default();
        for (path, _) in crate::http::api_routes() {
            assert!(paths.contains_key(path), "{path} is routed but not documented");
        }
    }
}
