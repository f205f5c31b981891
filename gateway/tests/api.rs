#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Router-level tests (no socket): validation, queries, auth, CORS, OpenAPI, GTFS-realtime.

mod common;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use busflow_gateway::{AppState, GatewayConfig, LiveState, app};
use common::{config, network, vp};
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

fn state(cfg: GatewayConfig) -> AppState {
    let live = LiveState::new(cfg.live_settings());
    live.mark_ready();
    AppState::new(cfg, live, network(), None, CancellationToken::new())
}

async fn call(
    state: &AppState,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut req = Request::get(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(Body::empty()).unwrap();
    req.extensions_mut().insert(ConnectInfo("10.1.2.3:4000".parse::<SocketAddr>().unwrap()));
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, headers, body)
}

async fn json(state: &AppState, uri: &str) -> (StatusCode, serde_json::Value) {
    let (s, _, b) = call(state, uri, &[]).await;
    (s, serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn every_bad_stream_parameter_is_a_400_with_a_json_error() {
    let st = state(config());
    let long_routes = (0..70).map(|i| format!("r{i}")).collect::<Vec<_>>().join(",");
    let cases = [
        ("/v1/stream", "missing_parameter"),
        ("/v1/stream?bbox=1,2,3", "invalid_bbox"),
        ("/v1/stream?bbox=a,b,c,d", "invalid_bbox"),
        ("/v1/stream?bbox=145.8,-17.0,145.7,-16.9", "invalid_bbox"), // west > east
        ("/v1/stream?bbox=145.7,-16.9,145.8,-17.0", "invalid_bbox"), // inverted
        ("/v1/stream?bbox=145.7,-95,145.8,-16.9", "invalid_bbox"),
        ("/v1/stream?bbox=140,-20,150,-10", "bbox_too_large"),
        ("/v1/stream?bbox=145.7,-17,145.8,-16.9&routes=", "invalid_routes"),
        (&format!("/v1/stream?bbox=145.7,-17,145.8,-16.9&routes={long_routes}"), "too_many_routes"),
        ("/v1/stream?bbox=145.7,-17,145.8,-16.9&min_interval_ms=fast", "invalid_parameter"),
        ("/v1/stream?bbox=145.7,-17,145.8,-16.9&min_interval_ms=999999", "invalid_parameter"),
        ("/v1/stream?bbox=145.7,-17,145.8,-16.9&zoom=12", "unknown_parameter"),
        ("/v1/stream?bbox=145.7,-17,145.8,-16.9&bbox=145.7,-17,145.8,-16.9", "duplicate_parameter"),
        (
            &format!("/v1/stream?bbox=145.7,-17,145.8,-16.9&x={}", "y".repeat(5000)),
            "request_too_large",
        ),
        ("/v1/ws?bbox=145.8,-17.0,145.7,-16.9", "invalid_bbox"),
        ("/v1/vehicles?bbox=1,2", "invalid_bbox"),
        ("/v1/vehicles?format=xml", "invalid_parameter"),
        ("/v1/vehicles?limit=3", "unknown_parameter"),
        ("/v1/stops?bbox=3,2,1,4", "invalid_bbox"),
        ("/v1/routes?x=1", "unknown_parameter"),
        ("/gtfs-rt/vehicle-positions?format=csv", "invalid_parameter"),
    ];
    for (uri, code) in cases {
        let (status, headers, body) = call(&st, uri, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(headers["content-type"], "application/json", "{uri}");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], code, "{uri}: {v}");
        assert!(!v["message"].as_str().unwrap().is_empty());
    }
    let (_, v) = json(&st, "/v1/stream?bbox=145.8,-17.0,145.7,-16.9").await;
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("west") && msg.contains("antimeridian"), "{msg}");
}

#[tokio::test]
async fn vehicles_as_json_and_geojson() {
    let st = state(config());
    st.live().apply(vp("a", 1, -16.92, 145.72, Some("110")));
    st.live().apply(vp("b", 1, -16.92, 145.73, Some("120")));
    st.live().apply(vp("far", 1, -16.5, 145.73, Some("110")));
    let (s, v) = json(&st, "/v1/vehicles?bbox=145.70,-16.95,145.75,-16.90").await;
    assert_eq!(s, 200);
    assert_eq!(v["count"], 2);
    let (_, v) = json(&st, "/v1/vehicles?routes=110").await;
    let ids: Vec<&str> = v["vehicles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["vehicle_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "far"]);
    let (s, h, b) = call(
        &st,
        "/v1/vehicles?bbox=145.70,-16.95,145.75,-16.90",
        &[("accept", "application/geo+json")],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(h["content-type"], "application/geo+json");
    let g: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(g["type"], "FeatureCollection");
    assert_eq!(g["features"].as_array().unwrap().len(), 2);
    assert_eq!(g["features"][0]["geometry"]["coordinates"][0], 145.72);
    let (_, v) = json(&st, "/v1/vehicles?format=geojson&routes=120").await;
    assert_eq!(v["features"][0]["properties"]["vehicle_id"], "b");

    let (s, v) = json(&st, "/v1/vehicles/a").await;
    assert_eq!((s, v["route_id"].as_str()), (StatusCode::OK, Some("110")));
    let (s, v) = json(&st, "/v1/vehicles/nope").await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
}

#[tokio::test]
async fn routes_and_stops_from_the_feed() {
    let st = state(config());
    let (s, v) = json(&st, "/v1/routes").await;
    assert_eq!(s, 200);
    let features = v["features"].as_array().unwrap();
    assert_eq!(features.len(), network().routes.len());
    let f = &features[0];
    assert_eq!(f["geometry"]["type"], "MultiLineString");
    assert!(f["geometry"]["coordinates"][0].as_array().unwrap().len() >= 2);
    assert_eq!(f["properties"]["color"].as_str().unwrap().len(), 6);
    let (_, all) = json(&st, "/v1/stops").await;
    assert_eq!(all["count"], network().stops.len());
    let (_, some) = json(&st, "/v1/stops?bbox=145.74,-16.94,145.79,-16.90").await;
    let n = some["count"].as_u64().unwrap();
    assert!(n > 0 && n < network().stops.len() as u64, "{n}");
}

#[tokio::test]
async fn readiness_and_health() {
    let cfg = config();
    let live = LiveState::new(cfg.live_settings());
    let st = AppState::new(cfg, live.clone(), network(), None, CancellationToken::new());
    assert_eq!(call(&st, "/healthz", &[]).await.0, 200);
    assert_eq!(call(&st, "/readyz", &[]).await.0, 503);
    let (s, h, _) = call(&st, "/v1/stream?bbox=145.7,-17,145.8,-16.9", &[]).await;
    assert_eq!((s, h.contains_key("retry-after")), (StatusCode::SERVICE_UNAVAILABLE, true));
    live.mark_ready();
    let (s, v) = json(&st, "/readyz").await;
    assert_eq!((s, v["ready"].as_bool()), (StatusCode::OK, Some(true)));
    assert_eq!(call(&st, "/metrics", &[]).await.0, 404, "no handle given");
    assert_eq!(call(&st, "/nope", &[]).await.0, 404);
}

#[tokio::test]
async fn metrics_render_the_given_handle() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let cfg = config();
    let live = LiveState::new(cfg.live_settings());
    let st = AppState::new(cfg, live, network(), Some(handle), CancellationToken::new());
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!("busflow_gateway_test_total").increment(3);
    });
    let (s, _, b) = call(&st, "/metrics", &[]).await;
    assert_eq!(s, 200);
    assert!(String::from_utf8(b).unwrap().contains("busflow_gateway_test_total 3"));
}

#[tokio::test]
async fn auth_token_on_and_off() {
    let open = state(config());
    assert_eq!(call(&open, "/v1/vehicles", &[]).await.0, 200);

    let mut cfg = config();
    cfg.auth_token = Some("s3cret-token".into());
    let st = state(cfg);
    let (s, h, _) = call(&st, "/v1/vehicles", &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(h["www-authenticate"], "Bearer");
    assert_eq!(call(&st, "/v1/vehicles", &[("authorization", "Bearer wrong-token!")]).await.0, 401);
    assert_eq!(call(&st, "/v1/vehicles", &[("authorization", "Bearer s3cret-token")]).await.0, 200);
    assert_eq!(call(&st, "/v1/vehicles?access_token=s3cret-token", &[]).await.0, 200);
    assert_eq!(call(&st, "/v1/stream?bbox=1,2,3", &[]).await.0, 401, "auth before validation");
    assert_eq!(call(&st, "/gtfs-rt/vehicle-positions", &[]).await.0, 401);
    for open_path in ["/healthz", "/readyz", "/v1/openapi.json"] {
        assert_eq!(call(&st, open_path, &[]).await.0, 200, "{open_path}");
    }
}

#[tokio::test]
async fn cors_is_same_origin_unless_allowed() {
    let st = state(config());
    let (_, h, _) = call(&st, "/v1/vehicles", &[("origin", "https://maps.example")]).await;
    assert!(!h.contains_key("access-control-allow-origin"));

    let mut cfg = config();
    cfg.cors_origins = vec!["https://maps.example".into()];
    let st = state(cfg);
    let (_, h, _) = call(&st, "/v1/vehicles", &[("origin", "https://maps.example")]).await;
    assert_eq!(h["access-control-allow-origin"], "https://maps.example");
    let (_, h, _) = call(&st, "/v1/vehicles", &[("origin", "https://evil.example")]).await;
    assert!(!h.contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn openapi_document_matches_the_routes() {
    let cfg = config();
    let live = LiveState::new(cfg.live_settings());
    live.mark_ready();
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder().handle();
    let st = AppState::new(cfg, live, network(), Some(handle), CancellationToken::new());
    let (s, doc) = json(&st, "/v1/openapi.json").await;
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    // Every documented path is routed (answers something other than 404/405 with valid input).
    st.live().apply(vp("a", 1, -16.92, 145.72, None));
    for path in paths.keys() {
        let uri = match path.as_str() {
            "/v1/stream" => "/v1/stream?bbox=145.7,-17,145.8,-16.9".to_string(),
            "/v1/vehicles/{id}" => "/v1/vehicles/a".to_string(),
            p => p.to_string(),
        };
        if path == "/v1/stream" || path == "/v1/ws" {
            // Streams never end; check them by status only.
            let mut req = Request::get(&uri).body(Body::empty()).unwrap();
            req.extensions_mut().insert(ConnectInfo("10.0.0.1:1".parse::<SocketAddr>().unwrap()));
            let status = app(st.clone()).oneshot(req).await.unwrap().status();
            assert!(status != 404 && status != 405, "{path}: {status}");
            continue;
        }
        let (status, _, _) = call(&st, &uri, &[]).await;
        assert!(status != 404 && status != 405, "{path}: {status}");
        assert!(paths[path]["get"]["responses"].is_object(), "{path}");
    }
    // Every routed API path is documented.
    for p in [
        "/v1/stream",
        "/v1/ws",
        "/v1/vehicles",
        "/v1/vehicles/{id}",
        "/v1/routes",
        "/v1/stops",
        "/gtfs-rt/vehicle-positions",
        "/v1/openapi.json",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "{p} undocumented");
    }
    let (s, _, _) = call(&st, "/v1/undocumented", &[]).await;
    assert_eq!(s, 404);
}
