//! `GET /v1/stream`: Server-Sent Events for one viewport.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use std::pin::Pin;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::limits::ConnPermit;
use super::{AppState, ConnMeta, wire};
use crate::error::ApiError;
use crate::flow::WriteFlow;
use crate::live::{LiveState, Subscriber};
use crate::subscription::pace::Pace;
use crate::subscription::queue::{Outgoing, Taken};

/// Browsers wait this long before reconnecting an EventSource.
const RECONNECT_HINT: Duration = Duration::from_secs(2);

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
    // The queue cancels the connection's closer when it closes; the connection then gets
    // CLOSE_GRACE to take its final event before it is cut (see `server::drive`). This costs
    // nothing per connection, where a watchdog task waiting on the queue cost a task.
    let sub = match meta.closer {
        Some(closer) => state.live().subscribe_closing(filter, resumed, closer),
        None => state.live().subscribe(filter, resumed),
    };
    let heartbeat = state.config().heartbeat.max(Duration::from_millis(1));
    let conn = state.next_conn();
    let session = Session {
        live: state.live().clone(),
        pace: Pace::new(sub.queue.limits().slow_timeout),
        flow: meta.flow,
        sub,
        min_interval,
        id_prefix: format!("id: {conn}-").into_bytes(),
        seq: 0,
        shutdown: state.inner.shutdown.clone(),
        done: false,
        last_flush: None,
        last_sent: Instant::now(),
        heartbeat,
        heartbeat_timer: Box::pin(tokio::time::sleep(heartbeat)),
        more: false,
        _permit: permit,
    };
    let body = Body::from_stream(frames(session));
    Ok(([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], body)
        .into_response())
}

struct Session {
    live: Arc<LiveState>,
    sub: Subscriber,
    /// What the client asked for (`min_interval_ms`); [`Pace`] may raise it.
    min_interval: Duration,
    pace: Pace,
    /// The socket's back-pressure (absent only for requests not served by our listener).
    flow: Option<Arc<WriteFlow>>,
    /// `id: CONNECTION-`, the constant part of every event id line.
    id_prefix: Vec<u8>,
    seq: u64,
    shutdown: CancellationToken,
    done: bool,
    last_flush: Option<Instant>,
    /// When the last bytes went out (events or a heartbeat).
    last_sent: Instant,
    heartbeat: Duration,
    /// Fires at most once per `heartbeat`; reset only when it fires, never per event (a timer
    /// reset per event, as a keep-alive wrapper around an event stream does, takes the timer
    /// driver's lock for every event of every client).
    heartbeat_timer: Pin<Box<Sleep>>,
    /// The last batch left events queued.
    more: bool,
    _permit: ConnPermit,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.live.unsubscribe(self.sub.id);
        if !self.done {
            metrics::counter!("busflow_gateway_disconnects_total", "reason" => "client_closed")
                .increment(1);
        }
    }
}

impl Session {
    /// The next piece of the response body: a batch of events, or a heartbeat comment.
    async fn next_frame(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let interval = self.pace.interval(self.min_interval);
        // What did not fit in the last batch goes out next, without waiting for the interval,
        // unless the batch was kept small on purpose.
        if let Some(last) = self.last_flush
            && !interval.is_zero()
            && (!self.more || self.pace.throttled())
        {
            let until = last + interval;
            while Instant::now() < until {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = self.shutdown.cancelled() => break,
                    _ = self.heartbeat_timer.as_mut() => {
                        if let Some(h) = self.heartbeat_due() {
                            return Some(h);
                        }
                    }
                }
            }
        }
        // While the socket refuses bytes, take nothing: what hyper would buffer now would be
        // old when it goes out, and the queue meanwhile keeps only the newest per vehicle.
        let mut blocked = false;
        if let Some(flow) = self.flow.as_ref().filter(|f| f.is_blocked()).cloned() {
            blocked = true;
            let closed = self.sub.queue.closed_token().clone();
            loop {
                tokio::select! {
                    _ = flow.wait_unblocked() => break,
                    _ = self.shutdown.cancelled() => break,
                    // Its final error event: it goes out if the socket ever takes it.
                    _ = closed.cancelled() => break,
                    _ = self.heartbeat_timer.as_mut() => {
                        // Bytes are waiting to go out: no heartbeat is needed.
                        self.heartbeat_timer.as_mut().reset(Instant::now() + self.heartbeat);
                    }
                }
            }
        }
        let taken = loop {
            tokio::select! {
                b = self.sub.queue.next_batch(self.pace.cap()) => break b,
                _ = self.shutdown.cancelled() => break Taken {
                    events: vec![Outgoing::Error {
                        code: "shutting_down",
                        message: "the gateway is shutting down; reconnect to another instance".into(),
                    }],
                    ..Taken::default()
                },
                _ = self.heartbeat_timer.as_mut() => {
                    if let Some(h) = self.heartbeat_due() {
                        return Some(h);
                    }
                }
            }
        };
        self.pace.observe(taken.events.len(), taken.waited, interval, blocked);
        self.more = taken.more;
        let now = Instant::now();
        self.last_flush = Some(now);
        self.last_sent = now;
        let frame = self.encode(&taken.events);
        wire::observe_sent(&taken.events, frame.len(), "sse");
        Some(frame)
    }

    /// Called when the heartbeat timer fired: the comment if nothing went out for a whole
    /// heartbeat, and the timer set for the next time one could be due.
    fn heartbeat_due(&mut self) -> Option<Bytes> {
        let now = Instant::now();
        let due = self.last_sent + self.heartbeat;
        if now >= due {
            self.last_sent = now;
            self.heartbeat_timer.as_mut().reset(now + self.heartbeat);
            Some(Bytes::from_static(HEARTBEAT))
        } else {
            self.heartbeat_timer.as_mut().reset(due);
            None
        }
    }

    /// The whole batch as one body frame: one write for the connection instead of one per
    /// event, and no per-event buffers.
    fn encode(&mut self, batch: &[Outgoing]) -> Bytes {
        let jsons: Vec<Arc<str>> = batch.iter().map(wire::to_json).collect();
        let size: usize = jsons.iter().map(|j| j.len() + FRAMING_BYTES).sum();
        let mut out = Vec::with_capacity(size);
        for (e, data) in batch.iter().zip(&jsons) {
            self.seq += 1;
            write_event(&mut out, e.name(), &self.id_prefix, self.seq, data);
            if let Outgoing::Error { code, .. } = e {
                self.done = true;
                if *code == "shutting_down" {
                    metrics::counter!("busflow_gateway_disconnects_total", "reason" => "shutdown")
                        .increment(1);
                }
            }
        }
        Bytes::from(out)
    }
}

/// An SSE comment: keeps proxies and the client from timing the stream out.
const HEARTBEAT: &[u8] = b":\n\n";
/// Bytes around an event's JSON (event name, id, retry, field names), generously.
const FRAMING_BYTES: usize = 64;

/// Appends one event, byte for byte what axum's `Event` writes for
/// `.event(name).id(id)[.retry(2s)].data(json)`:
/// `event: NAME\nid: CONN-SEQ\n[retry: 2000\n]data: JSON\n\n`. The JSON comes from
/// serde_json's compact writer, which escapes every control character inside strings and puts
/// no whitespace between tokens, so it never holds a line break and needs no `data:` splitting.
fn write_event(out: &mut Vec<u8>, name: &str, id_prefix: &[u8], seq: u64, json: &str) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(id_prefix);
    push_u64(out, seq);
    out.push(b'\n');
    if name == "snapshot" {
        out.extend_from_slice(b"retry: ");
        push_u64(out, RECONNECT_HINT.as_millis() as u64);
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// Decimal digits of `n`, without going through `fmt`.
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn frames(session: Session) -> impl Stream<Item = Result<Bytes, Infallible>> {
    stream::unfold(session, |mut s| async move {
        let frame = s.next_frame().await?;
        Some((Ok(frame), s))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::vp;
    use crate::subscription::queue::{RemoveReason, SharedUpdate};
    use axum::response::sse::{Event, Sse};
    use http_body_util::BodyExt;

    fn batch() -> Vec<Outgoing> {
        let mut odd = vp("v\"1\u{2028}", 5, -16.9, 145.7, Some("110"));
        odd.headsign = Some("City\nvia\r\nEsplanade\t\u{0}".into());
        let odd = Arc::new(odd);
        vec![
            Outgoing::Snapshot { vehicles: vec![odd.clone()], resumed: true },
            Outgoing::Update(SharedUpdate::new(odd.clone())),
            Outgoing::Update(SharedUpdate::new(Arc::new(vp("b", 6, -16.8, 145.6, None)))),
            Outgoing::Remove { vehicle_id: "b".into(), reason: RemoveReason::LeftViewport },
            Outgoing::Error { code: "slow_consumer", message: "too slow\nreally".into() },
        ]
    }

    /// The old framing: axum's `Event` per event, as the stream sent before batches.
    async fn axum_framing(batch: &[Outgoing], conn: u64, first_seq: u64) -> String {
        let events: Vec<Event> = batch
            .iter()
            .zip(first_seq..)
            .map(|(e, seq)| {
                let mut ev = Event::default().event(e.name()).id(format!("{conn}-{seq}"));
                if matches!(e, Outgoing::Snapshot { .. }) {
                    ev = ev.retry(RECONNECT_HINT);
                }
                ev.data(wire::to_json(e))
            })
            .collect();
        let resp =
            Sse::new(stream::iter(events.into_iter().map(Ok::<_, Infallible>))).into_response();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn batch_framing_is_byte_identical_to_axum_events() {
        let batch = batch();
        for (conn, first_seq) in [(1u64, 1u64), (42, 9), (u64::MAX, 999_999_999_999)] {
            let mut ours = Vec::new();
            let prefix = format!("id: {conn}-").into_bytes();
            for (e, seq) in batch.iter().zip(first_seq..) {
                write_event(&mut ours, e.name(), &prefix, seq, &wire::to_json(e));
            }
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                axum_framing(&batch, conn, first_seq).await
            );
        }
    }

    #[test]
    fn event_json_never_holds_a_line_break() {
        for e in batch() {
            let json = wire::to_json(&e);
            assert!(!json.contains(['\n', '\r']), "{json}");
        }
    }

    #[test]
    fn decimal_digits() {
        for n in [0u64, 7, 10, 99, 100, 12_345, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }
}
