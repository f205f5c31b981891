//! `GET /v1/stream`: Server-Sent Events for one viewport.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::limits::ConnPermit;
use super::{AppState, ConnMeta, wire};
use crate::error::ApiError;
use crate::live::{LiveState, Subscriber};
use crate::subscription::queue::Outgoing;

/// Browsers wait this long before reconnecting an EventSource.
const RECONNECT_HINT: Duration = Duration::from_secs(2);
/// After a slow client is closed, how long the final event may take before the connection is cut.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

pub(crate) async fn stream(
    State(state): State<AppState>,
    meta: ConnMeta,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.require_ready()?;
    let (filter, min_interval) = super::params::stream_params(query.as_deref(), state.config())?;
    let permit = state.inner.limiter.acquire(meta.ip, "sse")?;
    let resumed = headers.contains_key("last-event-id");
    let sub = state.live().subscribe(filter, resumed);
    let session = Session {
        live: state.live().clone(),
        watchdog: spawn_watchdog(&sub, meta.closer),
        sub,
        min_interval,
        conn: state.next_conn(),
        seq: 0,
        shutdown: state.inner.shutdown.clone(),
        done: false,
        last_flush: None,
        more: false,
        _permit: permit,
    };
    let keep_alive = KeepAlive::new().interval(state.config().heartbeat);
    Ok(Sse::new(events(session)).keep_alive(keep_alive).into_response())
}

/// Cuts the connection if a closed (slow) client has not taken its final event in time.
fn spawn_watchdog(
    sub: &Subscriber,
    closer: Option<CancellationToken>,
) -> Option<tokio::task::AbortHandle> {
    let closer = closer?;
    let closed = sub.queue.closed_token().clone();
    let task = tokio::spawn(async move {
        closed.cancelled().await;
        tokio::time::sleep(CLOSE_GRACE).await;
        closer.cancel();
    });
    Some(task.abort_handle())
}

struct Session {
    live: Arc<LiveState>,
    sub: Subscriber,
    min_interval: Duration,
    conn: u64,
    seq: u64,
    shutdown: CancellationToken,
    done: bool,
    last_flush: Option<Instant>,
    /// The last batch left events queued.
    more: bool,
    watchdog: Option<tokio::task::AbortHandle>,
    _permit: ConnPermit,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.live.unsubscribe(self.sub.id);
        if !self.done {
            metrics::counter!("busflow_gateway_disconnects_total", "reason" => "client_closed")
                .increment(1);
        }
        // A closed (slow) client's connection is still cut by the watchdog, so a client that read
        // its final event does not linger on a keep-alive connection.
        if let Some(w) = &self.watchdog
            && !self.sub.queue.closed_token().is_cancelled()
        {
            w.abort();
        }
    }
}

impl Session {
    async fn next_events(&mut self) -> Option<Vec<Event>> {
        if self.done {
            return None;
        }
        if let Some(last) = self.last_flush
            && !self.min_interval.is_zero()
            && !self.more
        {
            tokio::select! {
                _ = tokio::time::sleep_until(last + self.min_interval) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
        let coalesce = !self.min_interval.is_zero();
        let batch = tokio::select! {
            b = self.sub.queue.next_batch(coalesce) => b,
            _ = self.shutdown.cancelled() => (vec![Outgoing::Error {
                code: "shutting_down",
                message: "the gateway is shutting down; reconnect to another instance".into(),
            }], false),
        };
        // What did not fit in this batch goes out next, without waiting for the interval.
        let (batch, more) = batch;
        self.more = more;
        self.last_flush = Some(Instant::now());
        let mut out = Vec::with_capacity(batch.len());
        let mut bytes = 0;
        for e in &batch {
            self.seq += 1;
            let data = wire::to_json(e);
            bytes += data.len();
            let mut ev = Event::default().event(e.name()).id(format!("{}-{}", self.conn, self.seq));
            if matches!(e, Outgoing::Snapshot { .. }) {
                ev = ev.retry(RECONNECT_HINT);
            }
            out.push(ev.data(data));
            if let Outgoing::Error { code, .. } = e {
                self.done = true;
                if *code == "shutting_down" {
                    metrics::counter!("busflow_gateway_disconnects_total", "reason" => "shutdown")
                        .increment(1);
                }
            }
        }
        wire::observe_sent(&batch, bytes, "sse");
        Some(out)
    }
}

fn events(session: Session) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(session, |mut s| async move {
        let evs = s.next_events().await?;
        Some((evs, s))
    })
    .flat_map(|evs| stream::iter(evs.into_iter().map(Ok)))
}
