//! Shared helpers: a gateway on a loopback port fed directly (no Kafka), and a small SSE client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use busflow_core::{Network, SCHEMA_VERSION, VehiclePosition, VehicleStatus};
use busflow_gateway::{AppState, GatewayConfig, LiveState, serve_http};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

pub fn network() -> Arc<Network> {
    static NET: OnceLock<Arc<Network>> = OnceLock::new();
    NET.get_or_init(|| Arc::new(Network::load(busflow_core::bundled_gtfs_path()).unwrap())).clone()
}

pub fn vp(id: &str, ts: i64, lat: f64, lon: f64, route: Option<&str>) -> VehiclePosition {
    VehiclePosition {
        v: SCHEMA_VERSION,
        vehicle_id: id.into(),
        ts,
        lat,
        lon,
        snapped_lat: None,
        snapped_lon: None,
        route_id: route.map(String::from),
        route_short_name: route.map(String::from),
        route_color: Some("ff0000".into()),
        trip_id: Some(format!("trip-{id}")),
        shape_id: None,
        direction_id: Some(0),
        headsign: Some("City".into()),
        dist_along_m: None,
        off_route_m: None,
        speed_mps: Some(8.5),
        bearing_deg: Some(90.0),
        next_stop_id: Some("stop-1".into()),
        next_stop_dist_m: None,
        h3_cell: String::new(),
        status: VehicleStatus::InTransit,
        seq: None,
        processed_ts: busflow_gateway::now_ms(),
        partition: 0,
        offset: 0,
    }
}

pub fn config() -> GatewayConfig {
    GatewayConfig {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        heartbeat: Duration::from_millis(500),
        ..GatewayConfig::default()
    }
}

pub struct TestGateway {
    pub addr: SocketAddr,
    pub live: Arc<LiveState>,
    pub shutdown: CancellationToken,
    pub state: AppState,
    pub server: Option<busflow_gateway::HttpServer>,
}

impl TestGateway {
    pub async fn start(config: GatewayConfig) -> TestGateway {
        let live = LiveState::new(config.live_settings());
        live.mark_ready();
        let shutdown = CancellationToken::new();
        let state = AppState::new(config, live.clone(), network(), None, shutdown.clone());
        let server = serve_http(state.clone(), None, shutdown.clone()).await.unwrap();
        TestGateway { addr: server.local_addr(), live, shutdown, state, server: Some(server) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A GET over a fresh connection; returns the response with its body still streaming.
pub async fn get(
    addr: SocketAddr,
    path_and_query: &str,
    headers: &[(&str, &str)],
) -> hyper::Response<Incoming> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = hyper::Request::get(path_and_query).header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    sender
        .send_request(req.body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap())
        .await
        .unwrap()
}

pub async fn body_json(resp: hyper::Response<Incoming>) -> serde_json::Value {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: serde_json::Value,
}

/// Reads SSE events from a streaming body.
pub struct SseReader {
    body: Incoming,
    buf: String,
    pub ended: bool,
}

impl SseReader {
    pub fn new(resp: hyper::Response<Incoming>) -> SseReader {
        assert_eq!(resp.status(), 200, "stream refused");
        SseReader { body: resp.into_body(), buf: String::new(), ended: false }
    }

    /// The next event (comments skipped), or None when the stream ended or `wait` passed.
    pub async fn next_within(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf[..i].to_string();
                self.buf.drain(..i + 2);
                let mut event = "message".to_string();
                let mut id = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // heartbeat comment
                }
                return Some(SseEvent { event, id, data: serde_json::from_str(&data).unwrap() });
            }
            let frame = match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => {
                    self.ended = true;
                    return None;
                }
                Ok(Some(Ok(f))) => f,
            };
            if let Ok(data) = frame.into_data() {
                self.buf.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }

    pub async fn next(&mut self) -> SseEvent {
        self.next_within(Duration::from_secs(5)).await.expect("no event within 5 s")
    }

    /// Asserts nothing but heartbeats arrive for `wait`.
    pub async fn assert_quiet(&mut self, wait: Duration) {
        if let Some(e) = self.next_within(wait).await {
            panic!("unexpected event {e:?}");
        }
    }
}

pub const VIEW: &str = "145.70,-16.95,145.75,-16.90";
