//! The HTTP API: [`app`] builds the router; [`AppState`] is what every handler shares.

mod api;
pub mod gtfs_rt;
mod limits;
pub(crate) mod openapi;
pub(crate) mod params;
mod sse;
mod wire;
pub(crate) mod ws;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use axum::{Json, Router};
use busflow_core::Network;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::GatewayConfig;
use crate::error::ApiError;
use crate::live::LiveState;
pub(crate) use limits::ConnLimiter;

/// Put in a request's extensions by the server: cancelling it drops the underlying connection
/// (how a stalled slow client is cut off when it no longer reads).
#[derive(Debug, Clone)]
pub struct ConnectionCloser(pub CancellationToken);

/// Put in a request's extensions by the server: the connection's write back-pressure (see
/// [`crate::flow`]); a stream takes nothing from its queue while the socket refuses bytes.
#[derive(Debug, Clone)]
pub struct ConnectionFlow(pub Arc<crate::flow::WriteFlow>);

/// State shared by all handlers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    live: Arc<LiveState>,
    network: Arc<Network>,
    config: GatewayConfig,
    metrics: Option<PrometheusHandle>,
    shutdown: CancellationToken,
    limiter: Arc<ConnLimiter>,
    routes_geojson: String,
    conn_seq: AtomicU64,
    health: Option<Arc<crate::SourceHealth>>,
}

impl AppState {
    /// State for [`app`]. `shutdown` ends every stream cleanly when cancelled.
    pub fn new(
        config: GatewayConfig,
        live: Arc<LiveState>,
        network: Arc<Network>,
        metrics: Option<PrometheusHandle>,
        shutdown: CancellationToken,
    ) -> Self {
        let routes_geojson = api::routes_geojson(&network);
        let limiter = Arc::new(ConnLimiter::new(
            config.max_connections,
            config.max_connections_per_ip,
            config.retry_after.as_secs().max(1),
        ));
        AppState {
            inner: Arc::new(Shared {
                live,
                network,
                config,
                metrics,
                shutdown,
                limiter,
                routes_geojson,
                conn_seq: AtomicU64::new(1),
                health: None,
            }),
        }
    }

    /// Reports the source's health in `/readyz`. Call right after [`AppState::new`], before the
    /// state is shared.
    pub fn with_source_health(mut self, health: Arc<crate::SourceHealth>) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(shared) => shared.health = Some(health),
            None => tracing::warn!("source health attached to a shared AppState; not reported"),
        }
        self
    }

    /// The live state.
    pub fn live(&self) -> &Arc<LiveState> {
        &self.inner.live
    }

    /// The configuration.
    pub fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    fn require_ready(&self) -> Result<(), ApiError> {
        if self.inner.live.is_ready() { Ok(()) } else { Err(ApiError::not_ready()) }
    }

    fn next_conn(&self) -> u64 {
        self.inner.conn_seq.fetch_add(1, Ordering::Relaxed)
    }
}

/// What the server knows about the connection a request came on.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnMeta {
    pub(crate) ip: Option<IpAddr>,
    pub(crate) closer: Option<CancellationToken>,
    pub(crate) flow: Option<Arc<crate::flow::WriteFlow>>,
}

impl<S: Send + Sync> FromRequestParts<S> for ConnMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ConnMeta {
            ip: parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()),
            closer: parts.extensions.get::<ConnectionCloser>().map(|c| c.0.clone()),
            flow: parts.extensions.get::<ConnectionFlow>().map(|f| f.0.clone()),
        })
    }
}

/// Every API route with its handlers; the OpenAPI test checks this list against the document.
pub(crate) fn api_routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/v1/stream", get(sse::stream)),
        ("/v1/ws", get(ws::upgrade)),
        ("/v1/vehicles", get(api::vehicles)),
        ("/v1/vehicles/{id}", get(api::vehicle)),
        ("/v1/routes", get(api::routes)),
        ("/v1/stops", get(api::stops)),
        ("/gtfs-rt/vehicle-positions", get(gtfs_rt::vehicle_positions)),
    ]
}

/// The gateway's router: streams, queries, GTFS-realtime, OpenAPI, health and metrics.
///
/// `/` is left free for the map (merge a router serving it). With an auth token configured,
/// everything under `/v1/` and `/gtfs-rt/` except the OpenAPI document needs it; health, readiness
/// and metrics do not.
pub fn app(state: AppState) -> Router {
    let mut protected = Router::new();
    for (path, route) in api_routes() {
        protected = protected.route(path, route);
    }
    let protected =
        protected.route_layer(axum::middleware::from_fn_with_state(state.clone(), auth));
    let mut router = Router::new()
        .merge(protected)
        .route("/v1/openapi.json", get(openapi_doc))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .with_state(state.clone());
    if let Some(cors) = cors_layer(&state.inner.config.cors_origins) {
        router = router.layer(cors);
    }
    router
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let list: Vec<HeaderValue> =
            origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
        AllowOrigin::list(list)
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::OPTIONS])
            .allow_headers([header::AUTHORIZATION, header::ACCEPT, "last-event-id".parse().ok()?]),
    )
}

/// Bearer-token check; `access_token=` in the query works for clients that cannot set headers.
async fn auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(expected) = state.inner.config.auth_token.as_deref() else {
        return next.run(req).await;
    };
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let from_query = req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "access_token")
            .map(|(_, v)| v.into_owned())
    });
    let ok = [from_header, from_query]
        .iter()
        .flatten()
        .any(|given| constant_time_eq(given.as_bytes(), expected.as_bytes()));
    if ok {
        next.run(req).await
    } else {
        metrics::counter!("busflow_gateway_auth_failures_total").increment(1);
        ApiError::unauthorized().into_response()
    }
}

/// Compares without an early exit, so timing does not reveal how much of a guess was right
/// (the length still shows; tokens should be long and random).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    let live = &state.inner.live;
    let source = state.inner.health.as_ref().map(|h| h.status(crate::now_ms()));
    // Stale still answers 200: the last known state is worth serving while the brokers are
    // away, and every instance would be stale together; the body says so for people and probes.
    let status_word = match (live.is_ready(), source) {
        (false, _) => "loading",
        (true, Some(s)) if s.stale => "degraded",
        (true, _) => "ok",
    };
    let body = serde_json::json!({
        "ready": live.is_ready(),
        "status": status_word,
        "source": source.map(|s| serde_json::json!({"stale": s.stale, "age_s": s.age_s})),
        "vehicles": live.vehicle_count(),
        "subscriptions": live.subscription_count(),
    });
    let status = if live.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    match &state.inner.metrics {
        Some(h) => {
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], h.render())
                .into_response()
        }
        None => ApiError::not_found("metrics are not enabled in this process").into_response(),
    }
}

async fn openapi_doc() -> Response {
    Json(openapi::document()).into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!("no route for {} {}", req.method(), req.uri().path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
