//! One simulated viewer over SSE or WebSocket.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, BodyStream, Empty};
use hyper::Request;
use hyper::header::{ACCEPT, AUTHORIZATION, HOST};
use hyper_util::rt::TokioIo;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

use crate::config::{LoadConfig, Transport};
use crate::report::{ClientRow, LatencyBuffer, Shared};
use crate::viewport::{Viewport, inside};

/// The fields of a delivered vehicle the load tool needs; the rest is skipped when parsing.
#[derive(Debug, Deserialize)]
struct Vehicle {
    vehicle_id: String,
    ts: i64,
    processed_ts: i64,
    lat: f64,
    lon: f64,
    snapped_lat: Option<f64>,
    snapped_lon: Option<f64>,
    route_id: Option<String>,
}

impl Vehicle {
    fn point(&self) -> (f64, f64) {
        match (self.snapped_lat, self.snapped_lon) {
            (Some(a), Some(b)) => (a, b),
            _ => (self.lat, self.lon),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Incoming {
    Snapshot {
        vehicles: Vec<Vehicle>,
    },
    Update {
        vehicle: Vehicle,
    },
    Remove {
        vehicle_id: String,
    },
    Diff {
        #[serde(default)]
        removed: Vec<String>,
        added: Vec<Vehicle>,
    },
    Density {},
    Error {
        error: String,
    },
    Invalid {
        error: String,
    },
    #[serde(other)]
    Other,
}

pub(crate) struct Viewer {
    pub id: usize,
    pub viewport: Viewport,
    pub config: Arc<LoadConfig>,
    pub shared: Arc<Shared>,
    pub stop: CancellationToken,
}

/// Per-viewer state while streaming.
struct Session<'a> {
    row: ClientRow,
    started: Instant,
    current: Viewport,
    /// A viewport change sent but not yet answered: until the answer, events still belong to
    /// the old viewport.
    pending: Option<Viewport>,
    lat: LatencyBuffer,
    shared: &'a Shared,
    /// Vehicles the viewer holds now, as a map client would.
    held: std::collections::HashSet<String>,
    /// Connected now (counted in the live gauge).
    live: bool,
    /// The last SSE event id, sent back as `Last-Event-ID` on reconnect.
    last_event_id: Option<String>,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Session<'_> {
    fn check(&mut self, v: &Vehicle) {
        if !inside(&self.current, v.point(), v.route_id.as_deref()) {
            self.row.violations += 1;
            self.shared.violations.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(viewer = self.row.id, vehicle = %v.vehicle_id, "vehicle outside viewport");
        }
    }

    fn latency(&mut self, v: &Vehicle) {
        let now = now_ms();
        self.lat.produce.push(((now - v.processed_ts).max(0) as u64) * 1000);
        // Event time can run ahead of wall time (simulator --speedup); skip those.
        if v.ts <= now {
            self.lat.event.push(((now - v.ts) as u64) * 1000);
        }
        if self.lat.full() {
            self.shared.flush(&mut self.lat);
        }
    }

    /// Handles one event's JSON; returns false when the server ended the stream with an error.
    fn handle(&mut self, data: &str) -> bool {
        self.row.events += 1;
        self.row.bytes += data.len() as u64;
        self.shared.events.fetch_add(1, Ordering::Relaxed);
        self.shared.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        let msg: Incoming = match serde_json::from_str(data) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(viewer = self.row.id, "unparseable event: {e}");
                return true;
            }
        };
        match msg {
            Incoming::Snapshot { vehicles } => {
                self.first_snapshot();
                self.row.snapshots += 1;
                self.row.density = false;
                // A snapshot replaces everything held: what a reconnecting map must do to drop
                // vehicles that went away while it was gone.
                self.held = vehicles.iter().map(|v| v.vehicle_id.clone()).collect();
                vehicles.iter().for_each(|v| self.check(v));
            }
            Incoming::Update { vehicle } => {
                self.latency(&vehicle);
                self.check(&vehicle);
                self.held.insert(vehicle.vehicle_id);
            }
            Incoming::Remove { vehicle_id } => {
                self.held.remove(&vehicle_id);
            }
            Incoming::Diff { removed, added } => {
                if let Some(p) = self.pending.take() {
                    self.current = p;
                }
                self.first_snapshot();
                for id in &removed {
                    self.held.remove(id);
                }
                added.iter().for_each(|v| self.check(v));
                self.held.extend(added.into_iter().map(|v| v.vehicle_id));
            }
            Incoming::Density {} => {
                self.row.density = true;
                self.held.clear();
            }
            Incoming::Error { error } => {
                self.row.disconnect = Some(error);
                return false;
            }
            Incoming::Invalid { error } => {
                self.row.disconnect = Some(format!("invalid_{error}"));
                return false;
            }
            Incoming::Other => {}
        }
        true
    }

    fn first_snapshot(&mut self) {
        if self.row.snapshot_ms.is_none() {
            let el = self.started.elapsed();
            self.row.snapshot_ms = Some(el.as_secs_f64() * 1000.0);
            self.shared.record_snapshot(el.as_micros() as u64);
        }
    }

    fn connected(&mut self) {
        // Connect time is the first connection's; a reconnection only clears the last error.
        if self.row.connect_ms.is_none() {
            let el = self.started.elapsed();
            self.row.connect_ms = Some(el.as_secs_f64() * 1000.0);
            self.shared.record_connect(el.as_micros() as u64);
        }
        self.row.error = None;
        self.live = true;
        self.shared.connected.fetch_add(1, Ordering::Relaxed);
    }

    fn dropped(&mut self) {
        if std::mem::take(&mut self.live) {
            self.shared.connected.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn finish(mut self) -> ClientRow {
        self.shared.flush(&mut self.lat);
        self.dropped();
        if self.row.error.is_some() {
            self.shared.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.row.held = self.held.into_iter().collect();
        self.row.final_query = self.pending.as_ref().unwrap_or(&self.current).query();
        self.row
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect_refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection_reset".into(),
        std::io::ErrorKind::TimedOut => "connect_timeout".into(),
        _ => match e.raw_os_error() {
            Some(24) => "too_many_open_files".into(),
            Some(99) => "no_local_port".into(),
            _ => format!("io_{:?}", e.kind()).to_lowercase(),
        },
    }
}

/// The vehicle ids the gateway's `/v1/vehicles` returns for a viewport query.
pub(crate) async fn gateway_ids(
    gateway: std::net::SocketAddr,
    query: &str,
    token: Option<&str>,
) -> Result<std::collections::HashSet<String>, String> {
    #[derive(Deserialize)]
    struct Id {
        vehicle_id: String,
    }
    #[derive(Deserialize)]
    struct Vehicles {
        vehicles: Vec<Id>,
    }
    let stream = TcpStream::connect(gateway).await.map_err(|e| io_reason(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("http_handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::get(format!("/v1/vehicles?{query}")).header(HOST, gateway.to_string());
    if let Some(t) = token {
        req = req.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|e| format!("bad_request: {e}"))?;
    let resp = sender.send_request(req).await.map_err(|e| format!("http: {e}"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await.map_err(|e| format!("http: {e}"))?.to_bytes();
    if !status.is_success() {
        return Err(format!("http_{}: {}", status.as_u16(), String::from_utf8_lossy(&body)));
    }
    let v: Vehicles = serde_json::from_slice(&body).map_err(|e| format!("bad body: {e}"))?;
    Ok(v.vehicles.into_iter().map(|v| v.vehicle_id).collect())
}

impl Viewer {
    pub async fn run(self) -> ClientRow {
        let transport = self.config.transport;
        let mut s = Session {
            row: ClientRow::new(self.id, transport.as_str(), &self.viewport),
            started: Instant::now(),
            current: self.viewport.clone(),
            pending: None,
            lat: LatencyBuffer::default(),
            shared: &self.shared,
            held: Default::default(),
            live: false,
            last_event_id: None,
        };
        let mut backoff = Duration::from_millis(250);
        loop {
            match transport {
                Transport::Sse => self.sse(&mut s).await,
                Transport::Ws => self.ws(&mut s).await,
            }
            let was_live = s.live;
            s.dropped();
            if !self.config.reconnect || self.stop.is_cancelled() {
                break;
            }
            if was_live {
                backoff = Duration::from_millis(250);
            }
            // Spread reconnections so a restarted gateway is not hit by every viewer at once.
            let jitter = Duration::from_millis((self.id as u64 * 37) % 250);
            tokio::select! {
                _ = self.stop.cancelled() => break,
                _ = tokio::time::sleep(backoff + jitter) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
            s.row.reconnects += 1;
        }
        s.finish()
    }

    async fn connect(&self, s: &mut Session<'_>) -> Option<TcpStream> {
        let stream = tokio::select! {
            _ = self.stop.cancelled() => return None,
            r = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(self.config.gateway)) => r,
        };
        match stream {
            Ok(Ok(st)) => {
                let _ = st.set_nodelay(true);
                Some(st)
            }
            Ok(Err(e)) => {
                s.row.error = Some(io_reason(&e));
                None
            }
            Err(_) => {
                s.row.error = Some("connect_timeout".into());
                None
            }
        }
    }

    async fn sse(&self, s: &mut Session<'_>) {
        let Some(stream) = self.connect(s).await else { return };
        let (mut sender, conn) =
            match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                Ok(x) => x,
                Err(e) => {
                    s.row.error = Some(format!("http_handshake: {e}"));
                    return;
                }
            };
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::get(format!("/v1/stream?{}", self.viewport.query()))
            .header(HOST, self.config.gateway.to_string())
            .header(ACCEPT, "text/event-stream");
        if let Some(t) = &self.config.auth_token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(id) = &s.last_event_id {
            req = req.header("last-event-id", id.as_str());
        }
        let req = match req.body(Empty::<Bytes>::new()) {
            Ok(r) => r,
            Err(e) => {
                s.row.error = Some(format!("bad_request: {e}"));
                return;
            }
        };
        let resp = tokio::select! {
            _ = self.stop.cancelled() => return,
            r = sender.send_request(req) => r,
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                s.row.error = Some(if e.is_closed() {
                    "connection_closed".into()
                } else {
                    format!("http: {e}")
                });
                return;
            }
        };
        if !resp.status().is_success() {
            s.row.error = Some(format!("http_{}", resp.status().as_u16()));
            // The body says why; keep it in the debug log only (10k of them would drown the log).
            if let Ok(body) = resp.into_body().collect().await {
                tracing::debug!(
                    viewer = self.id,
                    "refused: {}",
                    String::from_utf8_lossy(&body.to_bytes())
                );
            }
            return;
        }
        s.connected();
        let body = BodyStream::new(resp.into_body()).filter_map(|frame| async move {
            match frame {
                Ok(f) => f.into_data().ok().map(Ok::<Bytes, hyper::Error>),
                Err(e) => Some(Err(e)),
            }
        });
        let mut events = Box::pin(body.eventsource());
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                ev = events.next() => match ev {
                    None => {
                        s.row.disconnect.get_or_insert_with(|| "server_closed".into());
                        return;
                    }
                    Some(Err(e)) => {
                        s.row.disconnect = Some(format!("stream_error: {e}"));
                        return;
                    }
                    Some(Ok(ev)) => {
                        if !ev.id.is_empty() {
                            s.last_event_id = Some(ev.id);
                        }
                        if !s.handle(&ev.data) {
                            return;
                        }
                    }
                }
            }
        }
    }

    async fn ws(&self, s: &mut Session<'_>) {
        let Some(stream) = self.connect(s).await else { return };
        let url = format!("ws://{}/v1/ws", self.config.gateway);
        let mut req = match url.into_client_request() {
            Ok(r) => r,
            Err(e) => {
                s.row.error = Some(format!("bad_request: {e}"));
                return;
            }
        };
        if let Some(t) = &self.config.auth_token
            && let Ok(v) = format!("Bearer {t}").parse()
        {
            req.headers_mut().insert(AUTHORIZATION, v);
        }
        let ws = tokio::select! {
            _ = self.stop.cancelled() => return,
            r = tokio_tungstenite::client_async(req, stream) => r,
        };
        let (ws, _) = match ws {
            Ok(x) => x,
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                s.row.error = Some(format!("http_{}", resp.status().as_u16()));
                return;
            }
            Err(e) => {
                s.row.error = Some(format!("ws_handshake: {e}"));
                return;
            }
        };
        s.connected();
        let (mut tx, mut rx) = ws.split();
        // After a reconnection, the viewport the viewer had moved to, not the first one.
        if let Some(p) = s.pending.take() {
            s.current = p;
        }
        if tx.send(Message::Text(s.current.subscribe_message().into())).await.is_err() {
            s.row.disconnect = Some("send_failed".into());
            return;
        }
        let mut rng =
            StdRng::seed_from_u64(self.config.seed ^ (self.id as u64).wrapping_mul(0x9E37_79B9));
        let period = self.config.change_every.unwrap_or(Duration::from_secs(3600 * 24 * 365));
        let mut change = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => {
                    let _ = tx.send(Message::Close(None)).await;
                    return;
                }
                _ = change.tick() => {
                    let next = Viewport::draw(&mut rng, &self.config);
                    if tx.send(Message::Text(next.subscribe_message().into())).await.is_err() {
                        s.row.disconnect = Some("send_failed".into());
                        return;
                    }
                    s.pending = Some(next);
                    s.row.viewport_changes += 1;
                }
                msg = rx.next() => match msg {
                    None => {
                        s.row.disconnect.get_or_insert_with(|| "server_closed".into());
                        return;
                    }
                    Some(Err(e)) => {
                        s.row.disconnect = Some(format!("ws_error: {e}"));
                        return;
                    }
                    Some(Ok(Message::Text(t))) => {
                        if !s.handle(t.as_str()) {
                            return;
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let reason = frame.map(|f| format!("close_{}", u16::from(f.code))).unwrap_or_else(|| "server_closed".into());
                        s.row.disconnect.get_or_insert(reason);
                        return;
                    }
                    Some(Ok(_)) => {}
                }
            }
        }
    }
}
