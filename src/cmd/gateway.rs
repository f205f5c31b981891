//! `busflow gateway`: live viewport streams, queries and GTFS-realtime over HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use busflow_gateway::{GatewayConfig, TlsConfig};
use clap::Args;

use crate::cli::{GtfsArgs, KafkaArgs, MapArgs, MetricsArgs, parse_duration};

#[derive(Debug, Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub gtfs: GtfsArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// Address the gateway (streams, API, metrics) listens on.
    #[arg(long, env = "BUSFLOW_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    #[command(flatten)]
    pub map: MapArgs,
    #[command(flatten)]
    pub options: GatewayOptions,
}

/// Gateway settings other than the listen address (so `up` can share them).
#[derive(Debug, Clone, Args)]
pub struct GatewayOptions {
    /// Drop vehicles silent for this long (and tell their subscribers).
    #[arg(long, env = "BUSFLOW_STALE_AFTER", default_value = "120s", value_parser = parse_duration)]
    pub stale_after: Duration,
    /// Report the source as stale in /readyz and /metrics when the brokers have not answered
    /// for this long (the last known state is still served).
    #[arg(long, env = "BUSFLOW_SOURCE_STALE_AFTER", default_value = "10s", value_parser = parse_duration)]
    pub source_stale_after: Duration,
    /// Above this many vehicles in a viewport, streams send aggregated `density` events.
    #[arg(long, env = "BUSFLOW_MAX_VEHICLES_PER_STREAM", default_value_t = 2_000)]
    pub max_vehicles_per_stream: usize,
    /// Most distinct vehicles pending for one client (each client holds at most one pending
    /// event per vehicle, the newest); a client with more is disconnected.
    #[arg(long, env = "BUSFLOW_CLIENT_BUFFER", default_value_t = 8_192)]
    pub client_buffer: usize,
    /// Most bytes the kernel may hold unsent per connection (TCP_NOTSENT_LOWAT); 0 leaves the
    /// kernel's default. Smaller keeps what a slow client receives fresher.
    #[arg(long, env = "BUSFLOW_MAX_UNSENT_BYTES", default_value_t = 4 * 1024)]
    pub max_unsent_bytes: u32,
    /// Disconnect a client that takes nothing for this long while updates wait for it.
    #[arg(long, env = "BUSFLOW_SLOW_CLIENT_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub slow_client_timeout: Duration,
    /// Threads matching updates to subscriptions, each holding a shard of them (default: one
    /// per core, up to 4).
    #[arg(long, env = "BUSFLOW_FANOUT_THREADS", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub fanout_threads: Option<u16>,
    /// Open streams allowed in total (then 429).
    #[arg(long, env = "BUSFLOW_MAX_CONNECTIONS", default_value_t = 20_000)]
    pub max_connections: usize,
    /// Open streams allowed per client IP address (then 429).
    #[arg(long, env = "BUSFLOW_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: usize,
    /// Open TCP connections of any kind (streams, queries, idle sockets); beyond it a new
    /// connection is closed at once.
    #[arg(long, env = "BUSFLOW_MAX_SOCKETS", default_value_t = 24_000)]
    pub max_sockets: usize,
    /// Heartbeat interval on streams.
    #[arg(long, env = "BUSFLOW_HEARTBEAT", default_value = "15s", value_parser = parse_duration)]
    pub heartbeat: Duration,
    /// Time allowed to send request headers.
    #[arg(long, env = "BUSFLOW_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Close a WebSocket with no client frame (pongs included) for this long.
    #[arg(long, env = "BUSFLOW_IDLE_TIMEOUT", default_value = "90s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Largest stream viewport side, degrees.
    #[arg(long, env = "BUSFLOW_MAX_BBOX_DEG", default_value_t = 4.0)]
    pub max_bbox_deg: f64,
    /// Most routes in one filter.
    #[arg(long, env = "BUSFLOW_MAX_ROUTES", default_value_t = 64)]
    pub max_routes: usize,
    /// Origin allowed by CORS, repeatable (`*` for any). Default: same-origin only. In the
    /// environment, separate several with ','.
    #[arg(long = "cors-origin", env = "BUSFLOW_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Require `Authorization: Bearer TOKEN` (or `?access_token=`) for streams and queries.
    #[arg(long, env = "BUSFLOW_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, env = "BUSFLOW_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "BUSFLOW_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl GatewayOptions {
    /// The library config for a listen address.
    pub fn config(&self, http_addr: SocketAddr) -> GatewayConfig {
        let defaults = GatewayConfig::default();
        GatewayConfig {
            http_addr,
            fanout_threads: self.fanout_threads.map_or(defaults.fanout_threads, usize::from),
            stale_after: self.stale_after,
            source_stale_after: self.source_stale_after,
            max_vehicles_per_stream: self.max_vehicles_per_stream,
            client_buffer: self.client_buffer,
            max_unsent_bytes: Some(self.max_unsent_bytes).filter(|&b| b > 0),
            slow_client_timeout: self.slow_client_timeout,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            max_sockets: self.max_sockets,
            heartbeat: self.heartbeat,
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            max_bbox_span_deg: self.max_bbox_deg,
            max_routes: self.max_routes,
            cors_origins: self.cors_origins.clone(),
            auth_token: self.auth_token.clone().filter(|t| !t.is_empty()),
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsConfig { cert: cert.clone(), key: key.clone() }),
                _ => None,
            },
            ..defaults
        }
    }
}

pub async fn run(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let metrics = crate::telemetry::install_metrics(args.metrics.metrics_addr)?;
    let shutdown = crate::shutdown::on_signal();
    let Some((kafka, topics)) = crate::cmd::connect(&args.kafka, "gateway", &shutdown).await?
    else {
        return Ok(ExitCode::SUCCESS);
    };
    let network = crate::cmd::load_network(&args.gtfs.path()).await?;
    let map = busflow_gateway::map::router(&args.map.config(network.bbox()));

    let config = args.options.config(args.http_addr);
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    let handle = busflow_gateway::start(
        config,
        network,
        kafka,
        topics,
        Some(metrics),
        Some(map),
        shutdown.clone(),
    )
    .await
    .context("starting the gateway")?;
    tokio::select! {
        addr = handle.ready() => {
            println!("busflow gateway: ready at {scheme}://{addr}/ (streams at /v1/stream, API at /v1/openapi.json)");
        }
        _ = shutdown.cancelled() => {}
    }
    handle.join().await.context("gateway stopped with an error")?;
    tracing::info!("gateway stopped");
    Ok(ExitCode::SUCCESS)
}
