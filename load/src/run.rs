use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::client::Viewer;
use crate::config::LoadConfig;
use crate::report::{LoadReport, Shared};
use crate::viewport::Viewport;

/// Descriptors kept free for everything that is not a viewer socket.
const FD_HEADROOM: u64 = 256;

/// Makes sure the process may open one socket per viewer.
fn raise_file_limit(clients: usize) -> Result<u64, Error> {
    let wanted = clients as u64 + FD_HEADROOM;
    let got = rlimit::increase_nofile_limit(wanted).unwrap_or(0);
    if got < wanted {
        let hard = rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(_, h)| h).unwrap_or(got);
        return Err(Error::FileLimit { wanted, hard });
    }
    Ok(got)
}

/// Runs the viewers: connects them evenly over the ramp, streams for the duration, then closes
/// them and reports. Cancelling `shutdown` ends the run early (the report covers what ran).
pub async fn run(config: LoadConfig, shutdown: CancellationToken) -> Result<LoadReport, Error> {
    config.validate()?;
    let limit = raise_file_limit(config.clients)?;
    tracing::debug!(limit, "open-file limit");
    let config = Arc::new(config);
    let shared = Arc::new(Shared::new());
    let stop = shutdown.child_token();

    let progress = progress_bar(config.progress);
    let ticker = tokio::spawn(report_progress(
        shared.clone(),
        config.clone(),
        progress.clone(),
        stop.clone(),
    ));

    let mut rng = StdRng::seed_from_u64(config.seed);
    let start = tokio::time::Instant::now();
    let step = config.ramp.checked_div(config.clients as u32).unwrap_or_default();
    let mut handles = Vec::with_capacity(config.clients);
    for id in 0..config.clients {
        if stop.is_cancelled() {
            break;
        }
        tokio::time::sleep_until(start + step * id as u32).await;
        let viewer = Viewer {
            id,
            viewport: Viewport::draw(&mut rng, &config),
            config: config.clone(),
            shared: shared.clone(),
            stop: stop.clone(),
        };
        handles.push(tokio::spawn(viewer.run()));
    }
    let ramp_done = Instant::now();
    tokio::select! {
        _ = tokio::time::sleep(config.duration) => {}
        _ = stop.cancelled() => {}
    }
    let measured = ramp_done.elapsed();
    stop.cancel();

    let mut rows = Vec::with_capacity(handles.len());
    for h in handles {
        match tokio::time::timeout(Duration::from_secs(10), h).await {
            Ok(Ok(row)) => rows.push(row),
            Ok(Err(e)) => tracing::warn!("viewer task failed: {e}"),
            Err(_) => tracing::warn!("viewer did not stop within 10 s"),
        }
    }
    let _ = ticker.await;
    if config.verify_state {
        verify(&config, &mut rows).await;
    }
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    Ok(LoadReport::build(
        config.transport.as_str(),
        config.clients,
        config.viewport_km,
        measured.as_secs_f64(),
        &shared,
        rows,
    ))
}

/// Compares what every connected viewer holds with the gateway's state for its viewport.
async fn verify(config: &LoadConfig, rows: &mut [crate::report::ClientRow]) {
    use futures::StreamExt as _;
    let token = config.auth_token.as_deref();
    let checks = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.connect_ms.is_some() && r.error.is_none() && !r.density)
        .map(|(i, r)| {
            let query = r.final_query.clone();
            async move { (i, crate::client::gateway_ids(config.gateway, &query, token).await) }
        });
    // A few at a time: the point is the comparison, not another load test.
    let results: Vec<_> = futures::stream::iter(checks).buffer_unordered(16).collect().await;
    for (i, res) in results {
        let row = &mut rows[i];
        match res {
            Ok(gateway) => {
                let held: std::collections::HashSet<&str> =
                    row.held.iter().map(String::as_str).collect();
                row.ghosts = Some(held.iter().filter(|id| !gateway.contains(**id)).count() as u64);
                row.missing =
                    Some(gateway.iter().filter(|id| !held.contains(id.as_str())).count() as u64);
            }
            Err(e) => tracing::warn!(viewer = row.id, "state verification failed: {e}"),
        }
    }
}

fn progress_bar(enabled: bool) -> Option<indicatif::ProgressBar> {
    enabled.then(|| {
        let p = indicatif::ProgressBar::new_spinner();
        p.enable_steady_tick(Duration::from_millis(200));
        p
    })
}

async fn report_progress(
    shared: Arc<Shared>,
    config: Arc<LoadConfig>,
    bar: Option<indicatif::ProgressBar>,
    stop: CancellationToken,
) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let (mut last_events, mut last_bytes) = (0u64, 0u64);
    let mut last_log = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let events = shared.events.load(Ordering::Relaxed);
        let bytes = shared.bytes.load(Ordering::Relaxed);
        let line = format!(
            "{:>5.0}s connected {}/{} | {} ev/s | {:.2} MB/s | p99 produce->arrival {:.1} ms | violations {} | failed {}",
            started.elapsed().as_secs_f64(),
            shared.connected.load(Ordering::Relaxed),
            config.clients,
            events - last_events,
            (bytes - last_bytes) as f64 / 1e6,
            shared.produce_p99_ms(),
            shared.violations.load(Ordering::Relaxed),
            shared.failures.load(Ordering::Relaxed),
        );
        (last_events, last_bytes) = (events, bytes);
        match &bar {
            Some(b) => b.set_message(line),
            None if last_log.elapsed() >= Duration::from_secs(10) => {
                tracing::info!("{line}");
                last_log = Instant::now();
            }
            None => {}
        }
    }
}
