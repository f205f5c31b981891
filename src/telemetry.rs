//! Logging (tracing) and metrics (Prometheus) for the process.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::cli::{GlobalArgs, LogFormat};

pub fn init_logging(global: &GlobalArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new("info"))
        .context("invalid RUST_LOG")?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match global.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

/// Installs the process-wide metrics recorder. With an address, also serves
/// `http://ADDR/metrics`. The returned handle renders the same metrics (the gateway serves them
/// on its own port).
pub fn install_metrics(addr: Option<SocketAddr>) -> anyhow::Result<PrometheusHandle> {
    let buckets =
        [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
    let builder =
        PrometheusBuilder::new().set_buckets(&buckets).context("invalid histogram buckets")?;
    match addr {
        Some(addr) => {
            let (recorder, exporter) = builder
                .with_http_listener(addr)
                .build()
                .with_context(|| format!("cannot serve metrics on {addr}"))?;
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder)
                .context("a metrics recorder is already installed")?;
            tokio::spawn(async move {
                if let Err(e) = exporter.await {
                    tracing::error!("metrics listener on {addr} stopped: {e:?}");
                }
            });
            tracing::info!("metrics at http://{addr}/metrics");
            Ok(handle)
        }
        None => {
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder)
                .context("a metrics recorder is already installed")?;
            let upkeep = handle.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    upkeep.run_upkeep();
                }
            });
            Ok(handle)
        }
    }
}
