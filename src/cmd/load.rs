//! `busflow load`: many concurrent map viewers against a gateway, measured and verified.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use busflow_core::Network;
use busflow_load::{LoadConfig, Transport, ViewportMix};
use clap::{Args, ValueEnum};

use crate::cli::{GtfsArgs, parse_duration};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportArg {
    Sse,
    Ws,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MixArg {
    /// Viewports uniformly over the network's area.
    Random,
    /// --hotspot-share of viewers around the city centre, the rest uniform.
    Hotspot,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub gtfs: GtfsArgs,
    /// Gateway to load (host:port).
    #[arg(long, env = "BUSFLOW_LOAD_GATEWAY", default_value = "127.0.0.1:8080")]
    pub gateway: SocketAddr,
    /// Concurrent viewers.
    #[arg(long, env = "BUSFLOW_LOAD_CLIENTS", default_value_t = 100)]
    pub clients: usize,
    /// Stream transport.
    #[arg(long, env = "BUSFLOW_LOAD_TRANSPORT", value_enum, default_value_t = TransportArg::Sse)]
    pub transport: TransportArg,
    /// Viewport width and height, kilometres.
    #[arg(long, env = "BUSFLOW_LOAD_VIEWPORT_KM", default_value_t = 3.0)]
    pub viewport_km: f64,
    /// Where viewports are placed.
    #[arg(long, env = "BUSFLOW_LOAD_MIX", value_enum, default_value_t = MixArg::Random)]
    pub mix: MixArg,
    /// Share of viewers near the hot spot with --mix hotspot.
    #[arg(long, env = "BUSFLOW_LOAD_HOTSPOT_SHARE", default_value_t = 0.5)]
    pub hotspot_share: f64,
    /// Share of viewers with a route filter.
    #[arg(long, env = "BUSFLOW_LOAD_FILTERED_SHARE", default_value_t = 0.0)]
    pub filtered_share: f64,
    /// Routes in each filter.
    #[arg(long, env = "BUSFLOW_LOAD_ROUTES_PER_FILTER", default_value_t = 2)]
    pub routes_per_filter: usize,
    /// WebSocket viewers move their viewport this often (e.g. 10s).
    #[arg(long, env = "BUSFLOW_LOAD_CHANGE_EVERY", value_parser = parse_duration)]
    pub change_every: Option<Duration>,
    /// Spread connections over this long.
    #[arg(long, env = "BUSFLOW_LOAD_RAMP", default_value = "5s", value_parser = parse_duration)]
    pub ramp: Duration,
    /// Measure for this long after the ramp.
    #[arg(long, env = "BUSFLOW_LOAD_DURATION", default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Seed for viewports and filters.
    #[arg(long, env = "BUSFLOW_LOAD_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Bearer token for a gateway started with --auth-token.
    #[arg(long, env = "BUSFLOW_LOAD_AUTH_TOKEN")]
    pub auth_token: Option<String>,
    /// Write the full report: `.csv` (one row per viewer) or JSON (anything else).
    #[arg(long, env = "BUSFLOW_LOAD_REPORT")]
    pub report: Option<PathBuf>,
    /// Reconnect viewers whose stream ends or cannot connect, like a browser's EventSource.
    #[arg(long, env = "BUSFLOW_LOAD_RECONNECT")]
    pub reconnect: bool,
    /// At the end, compare what every viewer holds with the gateway's /v1/vehicles for its
    /// viewport (ghosts and missing vehicles; use when the input has stopped).
    #[arg(long, env = "BUSFLOW_LOAD_VERIFY_STATE")]
    pub verify_state: bool,
    /// No live progress line (log a line every 10 s instead).
    #[arg(long, env = "BUSFLOW_LOAD_NO_PROGRESS")]
    pub no_progress: bool,
}

/// The median stop position: where the buses are, a fair stand-in for the city centre.
fn hot_spot(network: &Network) -> (f64, f64) {
    let mut lats: Vec<f64> = network.stops.iter().map(|s| s.lat).collect();
    let mut lons: Vec<f64> = network.stops.iter().map(|s| s.lon).collect();
    lats.sort_by(f64::total_cmp);
    lons.sort_by(f64::total_cmp);
    let mid = |v: &[f64]| v.get(v.len() / 2).copied().unwrap_or_default();
    (mid(&lats), mid(&lons))
}

pub async fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let shutdown = crate::shutdown::on_signal();
    let gtfs = args.gtfs.path();
    let network = crate::cmd::load_network(&gtfs).await?;
    let config = LoadConfig {
        gateway: args.gateway,
        clients: args.clients,
        transport: match args.transport {
            TransportArg::Sse => Transport::Sse,
            TransportArg::Ws => Transport::Ws,
        },
        viewport_km: args.viewport_km,
        mix: match args.mix {
            MixArg::Random => ViewportMix::Random,
            MixArg::Hotspot => {
                ViewportMix::Hotspot { share: args.hotspot_share, center: hot_spot(&network) }
            }
        },
        area: network.bbox(),
        routes: network.routes.iter().map(|r| r.id.clone()).collect(),
        filtered_share: args.filtered_share,
        routes_per_filter: args.routes_per_filter,
        change_every: args.change_every,
        ramp: args.ramp,
        duration: args.duration,
        seed: args.seed,
        auth_token: args.auth_token.clone(),
        progress: !args.no_progress,
        reconnect: args.reconnect,
        verify_state: args.verify_state,
    };
    tracing::info!(
        gateway = %config.gateway,
        clients = config.clients,
        transport = config.transport.as_str(),
        "starting viewers"
    );
    let report = busflow_load::run(config, shutdown).await.context("load run failed")?;
    println!("{report}");
    if let Some(path) = &args.report {
        report.write(path)?;
        println!("  report written to {}", path.display());
    }
    if report.connected == 0 {
        eprintln!("busflow load: no viewer could connect to {}", args.gateway);
        return Ok(ExitCode::FAILURE);
    }
    if report.violations > 0 {
        eprintln!(
            "busflow load: {} vehicles were delivered outside their viewport",
            report.violations
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
