//! Gateway configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::live::LiveSettings;
use crate::subscription::queue::QueueLimits;

/// Everything the gateway needs besides its inputs. `Default` gives safe limits for one public
/// instance on localhost.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// HTTP listen address (port 0 picks a free port).
    pub http_addr: SocketAddr,
    /// Vehicles silent this long are dropped and their subscribers told.
    pub stale_after: Duration,
    /// Above this many vehicles in a viewport, a stream sends `density` events instead.
    pub max_vehicles_per_stream: usize,
    /// Events buffered per client before coalescing starts.
    pub client_buffer: usize,
    /// How long a client may stay behind before it is disconnected.
    pub slow_client_timeout: Duration,
    /// Open streams (SSE and WebSocket together) allowed at once.
    pub max_connections: usize,
    /// Open streams allowed per client IP address.
    pub max_connections_per_ip: usize,
    /// Open TCP connections of any kind; a connection beyond it is closed as soon as it is
    /// accepted, so a flood of idle sockets cannot exhaust file descriptors.
    pub max_sockets: usize,
    /// `Retry-After` sent with 429.
    pub retry_after: Duration,
    /// Heartbeat interval for streams (SSE comment, WebSocket ping).
    pub heartbeat: Duration,
    /// Time allowed to send request headers.
    pub header_timeout: Duration,
    /// A WebSocket with no frame from the client (pongs included) for this long is closed.
    pub idle_timeout: Duration,
    /// Largest bbox side, in degrees, for streams.
    pub max_bbox_span_deg: f64,
    /// Most routes in a `routes=` filter.
    pub max_routes: usize,
    /// Longest query string accepted, in bytes.
    pub max_query_len: usize,
    /// Origins allowed by CORS (`*` for any); empty means same-origin only.
    pub cors_origins: Vec<String>,
    /// When set, streams and queries need `Authorization: Bearer TOKEN` (or `access_token=`).
    pub auth_token: Option<String>,
    /// Serve HTTPS with these PEM files.
    pub tls: Option<TlsConfig>,
    /// On start, follow `positions` from this long before the `latest` topic was read, so no
    /// update written around the hand-over is missed (replayed ones are ignored by timestamp).
    pub bootstrap_overlap: Duration,
    /// Time allowed for streams to finish on shutdown.
    pub shutdown_grace: Duration,
    /// With no answer from the brokers for this long, `/readyz` and `/metrics` report the
    /// source as stale (the last known state is still served).
    pub source_stale_after: Duration,
    /// `TCP_NOTSENT_LOWAT` on every accepted connection: the most bytes the kernel holds
    /// unsent for a client before a write is refused and the stream waits (its queue keeps only
    /// the newest event per vehicle meanwhile). `None` leaves the kernel's default (unbounded
    /// up to the send buffer, several MB on Linux).
    pub max_unsent_bytes: Option<u32>,
    /// Threads matching updates to subscriptions (each holds a shard of the subscriptions);
    /// the Kafka consumer's thread is one of them.
    pub fanout_threads: usize,
}

/// PEM certificate chain and private key for HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM, PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            stale_after: Duration::from_secs(120),
            max_vehicles_per_stream: 2_000,
            client_buffer: 8_192,
            slow_client_timeout: Duration::from_secs(15),
            max_connections: 20_000,
            max_connections_per_ip: 256,
            max_sockets: 24_000,
            retry_after: Duration::from_secs(5),
            heartbeat: Duration::from_secs(15),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            max_bbox_span_deg: 4.0,
            max_routes: 64,
            max_query_len: 4_096,
            cors_origins: Vec::new(),
            auth_token: None,
            tls: None,
            bootstrap_overlap: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(2),
            source_stale_after: Duration::from_secs(10),
            max_unsent_bytes: Some(4 * 1024),
            fanout_threads: default_fanout_threads(),
        }
    }
}

/// One per core, up to four: past that the shards' copies of the vehicle store cost more than
/// the matching they share out saves, at city scale.
fn default_fanout_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(4)
}

impl GatewayConfig {
    /// The live-state part of the configuration.
    pub fn live_settings(&self) -> LiveSettings {
        LiveSettings {
            stale_after: self.stale_after,
            max_vehicles_per_stream: self.max_vehicles_per_stream,
            queue: QueueLimits {
                capacity: self.client_buffer,
                slow_timeout: self.slow_client_timeout,
            },
            fanout_threads: self.fanout_threads,
        }
    }
}
