//! The HTTP(S) listener and the gateway's task set.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use busflow_core::{Network, Topics};
use busflow_kafka::KafkaConfig;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

use crate::config::{GatewayConfig, TlsConfig};
use crate::error::Error;
use crate::flow::{FlowIo, WriteFlow};
use crate::http::{AppState, ConnectionCloser, ConnectionFlow, app};
use crate::live::{LiveState, now_ms};

/// A running HTTP listener.
#[derive(Debug)]
pub struct HttpServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until the listener has stopped (after shutdown and the grace period).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// Binds `config.http_addr` and serves [`app`] (plus `extra`, e.g. the map at `/`) until `shutdown`.
///
/// Each connection gets a header timeout and, with TLS configured, a TLS handshake; on shutdown
/// streams end with a final event and connections get `shutdown_grace` to finish.
pub async fn serve_http(
    state: AppState,
    extra: Option<axum::Router>,
    shutdown: CancellationToken,
) -> Result<HttpServer, Error> {
    let config = state.config().clone();
    let tls = match &config.tls {
        Some(t) => Some(tls_acceptor(t)?),
        None => None,
    };
    let addr = config.http_addr;
    let listener = TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })?;
    let local_addr = listener.local_addr().map_err(|source| Error::Bind { addr, source })?;
    let mut router = app(state);
    if let Some(extra) = extra {
        router = router.merge(extra);
    }
    let task = tokio::spawn(accept_loop(listener, router, tls, config, shutdown));
    Ok(HttpServer { local_addr, task })
}

/// Request line and headers together; beyond it hyper answers 431 and closes. Browsers send a
/// few KiB; the rest of the read buffer (64 KiB) is for pipelined requests.
const MAX_HEADER_BYTES: usize = 32 * 1024;

async fn accept_loop(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<TlsAcceptor>,
    config: GatewayConfig,
    shutdown: CancellationToken,
) {
    let mut conns = tokio::task::JoinSet::new();
    let mut last_refusal_log: Option<std::time::Instant> = None;
    loop {
        while conns.try_join_next().is_some() {}
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Reap here, not only before waiting: connections that ended while accept() waited
        // must not count against the limit.
        while conns.try_join_next().is_some() {}
        if conns.len() >= config.max_sockets {
            // Closing at once (rather than not accepting) keeps the listen backlog moving, so
            // the flood cannot starve connections that arrive after it ends.
            drop(tcp);
            metrics::counter!("busflow_gateway_refused_sockets_total").increment(1);
            if last_refusal_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(
                    %peer,
                    open = conns.len(),
                    max_sockets = config.max_sockets,
                    "too many open connections; closing new ones until some end"
                );
                last_refusal_log = Some(std::time::Instant::now());
            }
            continue;
        }
        let _ = tcp.set_nodelay(true);
        if let Some(lowat) = config.max_unsent_bytes {
            // Bytes the kernel holds unsent are out of reach of latest-wins: bound them, so a
            // refused write (the stream then waits, see `flow`) comes early.
            if let Err(e) = socket2::SockRef::from(&tcp).set_tcp_notsent_lowat(lowat) {
                tracing::debug!(%peer, "TCP_NOTSENT_LOWAT not set: {e}");
            }
        }
        let flow = WriteFlow::new();
        let tcp = FlowIo::new(tcp, flow.clone());
        let closer = CancellationToken::new();
        let svc = {
            let closer = closer.clone();
            tower::ServiceExt::map_request(
                router.clone(),
                move |mut req: hyper::Request<Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req.extensions_mut().insert(ConnectionCloser(closer.clone()));
                    req.extensions_mut().insert(ConnectionFlow(flow.clone()));
                    req
                },
            )
        };
        let svc = TowerToHyperService::new(svc);
        let mut builder = hyper::server::conn::http1::Builder::new();
        // Caps each connection's read buffer; requests here are bodiless GETs.
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout)
            .max_header_size(MAX_HEADER_BYTES)
            .max_buf_size(64 * 1024);
        let tls = tls.clone();
        let handshake_timeout = config.header_timeout;
        let grace = config.shutdown_grace;
        let shutdown = shutdown.clone();
        // The connection lives in a box of its own and the task holds only the pointer: a
        // connection held by value is stored in the task's future both as `drive`'s argument
        // and as its pinned local, and the TLS arm's handshake state widens every task.
        conns.spawn(async move {
            match tls {
                None => {
                    let conn =
                        Box::pin(builder.serve_connection(TokioIo::new(tcp), svc).with_upgrades());
                    drive(conn, peer, closer, shutdown, grace).await;
                }
                Some(acceptor) => {
                    let accept =
                        Box::pin(tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)));
                    let stream = match accept.await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => return,
                    };
                    let conn = Box::pin(
                        builder.serve_connection(TokioIo::new(stream), svc).with_upgrades(),
                    );
                    drive(conn, peer, closer, shutdown, grace).await;
                }
            }
        });
    }
    drop(listener);
    let all_done = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(config.shutdown_grace + Duration::from_millis(500), all_done)
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within {:?}", config.shutdown_grace);
        conns.abort_all();
    }
}

/// After a stream closed its (slow) client, how long the final event may take before the
/// connection is cut.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Serves one connection until it ends, the slow-client closer fires (serve it `CLOSE_GRACE`
/// more, for the final event, then drop it; also drops a keep-alive connection left idle after
/// its stream ended), or shutdown (let the current response finish, then close; streams end
/// themselves on shutdown).
async fn drive<I, S>(
    mut conn: Pin<Box<hyper::server::conn::http1::UpgradeableConnection<I, S>>>,
    peer: SocketAddr,
    closer: CancellationToken,
    shutdown: CancellationToken,
    grace: Duration,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::select! {
        r = conn.as_mut() => if let Err(e) = r { tracing::debug!(%peer, "connection: {e}") },
        _ = closer.cancelled() => {
            if tokio::time::timeout(CLOSE_GRACE, conn).await.is_err() {
                tracing::debug!(%peer, "connection cut (slow client)");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(grace, conn).await;
        }
    }
}

fn tls_acceptor(t: &TlsConfig) -> Result<TlsAcceptor, Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&t.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Error::Tls(format!("reading certificates from {}: {e}", t.cert.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!("no certificate in {}", t.cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(&t.key)
        .map_err(|e| Error::Tls(format!("reading private key from {}: {e}", t.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(format!("certificate and key do not fit: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// A running gateway.
#[derive(Debug)]
pub struct GatewayHandle {
    local_addr: SocketAddr,
    live: Arc<LiveState>,
    http: HttpServer,
    source: JoinHandle<Result<(), Error>>,
    ticker: JoinHandle<()>,
    probe: JoinHandle<()>,
    // Dropping the handle stops the gateway: its Kafka source and probe are blocking tasks,
    // and a runtime dropped with them still running (a test that panics, a caller that bails
    // out with `?`) would wait for them forever.
    _stop_on_drop: tokio_util::sync::DropGuard,
}

impl GatewayHandle {
    /// The address the HTTP listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The live state (vehicles and subscriptions).
    pub fn live(&self) -> &Arc<LiveState> {
        &self.live
    }

    /// Waits until the initial state is loaded; returns the bound address.
    pub async fn ready(&self) -> SocketAddr {
        self.live.wait_ready().await;
        self.local_addr
    }

    /// Waits for the gateway to stop (after `shutdown` is cancelled); returns the Kafka
    /// source's error if it failed.
    pub async fn join(self) -> Result<(), Error> {
        let source = self.source.await;
        self.http.join().await;
        let _ = self.ticker.await;
        let _ = self.probe.await;
        match source {
            Ok(r) => r,
            Err(e) => Err(Error::Task(e.to_string())),
        }
    }
}

/// Starts the gateway: binds HTTP (so the address is known at once), loads the initial state
/// from `topics.latest`, then follows `topics.positions`. `/readyz` turns ready, and
/// [`GatewayHandle::ready`] returns, once the initial state is loaded. Everything stops when
/// `shutdown` is cancelled; a failing Kafka source cancels it too.
///
/// `extra` is merged into the router (the map at `/`).
pub async fn start(
    config: GatewayConfig,
    network: Arc<Network>,
    kafka: KafkaConfig,
    topics: Topics,
    metrics: Option<PrometheusHandle>,
    extra: Option<axum::Router>,
    shutdown: CancellationToken,
) -> Result<GatewayHandle, Error> {
    let live = LiveState::new(config.live_settings());
    let health = crate::SourceHealth::new(config.source_stale_after, now_ms());
    let state = AppState::new(config.clone(), live.clone(), network, metrics, shutdown.clone())
        .with_source_health(health.clone());
    let http = serve_http(state, extra, shutdown.clone()).await?;
    let local_addr = http.local_addr();
    tracing::info!(addr = %local_addr, tls = config.tls.is_some(), "gateway listening");
    let (kafka_probe, topics_probe) = (kafka.clone(), topics.positions.clone());
    let source = tokio::spawn({
        let (live, shutdown) = (live.clone(), shutdown.clone());
        let overlap = config.bootstrap_overlap;
        async move {
            let r = crate::source::run(live, kafka, topics, overlap, shutdown.clone()).await;
            if let Err(e) = &r {
                tracing::error!("gateway Kafka source failed: {e}");
                shutdown.cancel();
            }
            r
        }
    });
    let probe =
        tokio::spawn(crate::health::probe(health, kafka_probe, topics_probe, shutdown.clone()));
    let _stop_on_drop = shutdown.clone().drop_guard();
    let ticker = tokio::spawn(tick_loop(live.clone(), shutdown));
    Ok(GatewayHandle { local_addr, live, http, source, ticker, probe, _stop_on_drop })
}

/// Stale eviction and density refresh, once a second.
pub async fn tick_loop(live: Arc<LiveState>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = every.tick() => live.tick(now_ms()),
        }
    }
}

/// [`start`], then waits for it to stop; `on_ready` receives the bound address once the initial
/// state is loaded.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    config: GatewayConfig,
    network: Arc<Network>,
    kafka: KafkaConfig,
    topics: Topics,
    metrics: Option<PrometheusHandle>,
    extra: Option<axum::Router>,
    shutdown: CancellationToken,
    on_ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), Error> {
    let handle = start(config, network, kafka, topics, metrics, extra, shutdown.clone()).await?;
    if let Some(tx) = on_ready {
        tokio::select! {
            addr = handle.ready() => { let _ = tx.send(addr); }
            _ = shutdown.cancelled() => {}
        }
    }
    handle.join().await
}
