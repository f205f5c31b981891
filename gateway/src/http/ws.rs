//! `GET /v1/ws`: the stream events over a WebSocket, with in-place viewport changes.
//!
//! Client messages: `{"type":"subscribe","bbox":[w,s,e,n] or "w,s,e,n","routes":["110"],
//! "min_interval_ms":250}`. The first subscribe (or the `bbox` query parameter) answers with a
//! `snapshot`; later ones with a `diff`. A message the server cannot use gets an `invalid` reply and
//! the connection stays open.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::time::Instant;

use super::limits::ConnPermit;
use super::params::{MAX_MIN_INTERVAL_MS, Params, parse_routes, stream_params};
use super::{AppState, ConnMeta, wire};
use crate::config::GatewayConfig;
use crate::error::ApiError;
use crate::flow::WriteFlow;
use crate::live::Subscriber;
use crate::subscription::pace::Pace;
use crate::subscription::queue::{Outgoing, Taken};
use crate::viewport::{Bbox, Filter};

/// Largest client message accepted.
const MAX_MESSAGE: usize = 16 * 1024;

pub(crate) async fn upgrade(
    State(state): State<AppState>,
    meta: ConnMeta,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    state.require_ready()?;
    let has_bbox = Params::parse(
        query.as_deref(),
        &["bbox", "routes", "min_interval_ms"],
        state.config().max_query_len,
    )?
    .get("bbox")
    .is_some();
    let initial =
        if has_bbox { Some(stream_params(query.as_deref(), state.config())?) } else { None };
    // Parameters are checked before the upgrade headers, so bad input gets the same JSON 400 as
    // on the other endpoints.
    let ws = ws.map_err(|e| ApiError::bad_request("websocket_upgrade_required", e.body_text()))?;
    let permit = state.inner.limiter.acquire(meta.ip, "ws")?;
    Ok(ws
        .max_message_size(MAX_MESSAGE)
        // A frame over the limit is refused from its header, before its payload is buffered.
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| session(socket, state, initial, meta.flow, permit))
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    Subscribe {
        bbox: BboxField,
        #[serde(default)]
        routes: Option<RoutesField>,
        #[serde(default)]
        min_interval_ms: Option<u64>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum BboxField {
    Array([f64; 4]),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RoutesField {
    List(Vec<String>),
    Text(String),
}

/// Parses and validates one client message (a `subscribe`): the filter and the minimum interval.
pub fn parse_subscribe(text: &str, cfg: &GatewayConfig) -> Result<(Filter, Duration), ApiError> {
    let msg: ClientMessage = serde_json::from_str(text).map_err(|e| {
        ApiError::bad_request("invalid_message", format!("expected a subscribe message: {e}"))
    })?;
    let ClientMessage::Subscribe { bbox, routes, min_interval_ms } = msg;
    let bbox = match bbox {
        BboxField::Array([w, s, e, n]) => Bbox::new(w, s, e, n),
        BboxField::Text(t) => Bbox::parse(&t),
    }
    .map_err(|e| ApiError::bad_request("invalid_bbox", e.to_string()))?
    .check_span(cfg.max_bbox_span_deg)
    .map_err(|e| ApiError::bad_request("bbox_too_large", e.to_string()))?;
    let max = cfg.max_routes;
    let routes = match routes {
        None => None,
        Some(RoutesField::List(v)) => Some(parse_routes(v.iter().map(String::as_str), max)?),
        Some(RoutesField::Text(t)) => Some(parse_routes(t.split(','), max)?),
    };
    let iv = min_interval_ms.unwrap_or(0);
    if iv > MAX_MIN_INTERVAL_MS {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("min_interval_ms must be at most {MAX_MIN_INTERVAL_MS}"),
        ));
    }
    Ok((Filter { bbox, routes }, Duration::from_millis(iv)))
}

/// Whether a read failed because the client's message was over [`MAX_MESSAGE`].
fn too_big(e: axum::Error) -> bool {
    e.into_inner()
        .downcast_ref::<tungstenite::Error>()
        .is_some_and(|t| matches!(t, tungstenite::Error::Capacity(_)))
}

fn invalid(e: &ApiError) -> Message {
    let v = serde_json::json!({"type": "invalid", "error": e.code, "message": e.message});
    Message::Text(v.to_string().into())
}

async fn next_batch(sub: &Option<Subscriber>, not_before: Option<Instant>, max: usize) -> Taken {
    match sub {
        Some(s) => {
            if let Some(t) = not_before {
                tokio::time::sleep_until(t).await;
            }
            s.queue.next_batch(max).await
        }
        None => std::future::pending().await,
    }
}

/// Resolves when the subscription's queue is closed (a slow consumer): a write that waits on a
/// client that no longer reads is abandoned then.
async fn closed(sub: &Option<Subscriber>) {
    match sub {
        Some(s) => s.queue.closed_token().cancelled().await,
        None => std::future::pending().await,
    }
}

async fn session(
    socket: WebSocket,
    state: AppState,
    initial: Option<(Filter, Duration)>,
    flow: Option<Arc<WriteFlow>>,
    _permit: ConnPermit,
) {
    let live = state.live().clone();
    let shutdown = state.inner.shutdown.clone();
    let idle_timeout = state.config().idle_timeout;
    let (mut tx, mut rx) = socket.split();
    let (mut sub, mut min_interval) = match initial {
        Some((f, iv)) => (Some(live.subscribe(f, false)), iv),
        None => (None, Duration::ZERO),
    };
    let mut last_heard = Instant::now();
    let mut last_flush: Option<Instant> = None;
    let mut more = false;
    let mut pace = Pace::new(state.config().slow_client_timeout);
    let mut interval = min_interval;
    let mut blocked = false;
    let mut ping = tokio::time::interval(state.config().heartbeat);
    ping.tick().await;
    let mut close: Option<CloseFrame> = None;
    let reason = loop {
        // What did not fit in the last batch goes out next, without waiting for the interval,
        // unless the batch was kept small on purpose.
        let not_before = last_flush
            .filter(|_| !interval.is_zero() && (!more || pace.throttled()))
            .map(|t| t + interval);
        tokio::select! {
            taken = next_batch(&sub, not_before, pace.cap()) => {
                pace.observe(taken.events.len(), taken.waited, interval, blocked);
                more = taken.more;
                let batch = taken.events;
                last_flush = Some(Instant::now());
                let mut bytes = 0;
                let mut fatal = false;
                let refusals = flow.as_ref().map_or(0, |f| f.refusals());
                // Queue the whole batch and flush once: one write for the connection instead
                // of one per event (`send` flushes every message). While it waits on the
                // socket, the queue keeps the newest event per vehicle; a client that takes
                // nothing for the slow-client timeout is closed, and its write abandoned.
                let write = async {
                    for e in &batch {
                        let text = wire::to_json(e);
                        bytes += text.len();
                        fatal |= matches!(e, Outgoing::Error { .. });
                        if tx.feed(Message::Text(text.to_string().into())).await.is_err() {
                            return false;
                        }
                    }
                    // The final error event, if any, goes out with the batch.
                    tx.flush().await.is_ok()
                };
                let written = tokio::select! {
                    ok = write => ok,
                    _ = closed(&sub) => false,
                };
                fatal |= !written;
                blocked = flow.as_ref().is_some_and(|f| f.refusals() != refusals);
                interval = pace.interval(min_interval);
                wire::observe_sent(&batch, bytes, "ws");
                if fatal {
                    break "slow_consumer";
                }
            }
            msg = rx.next() => match msg {
                None | Some(Ok(Message::Close(_))) => break "client_closed",
                Some(Err(e)) => {
                    if too_big(e) {
                        close = Some(CloseFrame {
                            code: close_code::SIZE,
                            reason: format!("a client message may be at most {MAX_MESSAGE} bytes").into(),
                        });
                        break "message_too_big";
                    }
                    break "client_closed";
                }
                Some(Ok(Message::Text(t))) => {
                    last_heard = Instant::now();
                    match parse_subscribe(t.as_str(), state.config()) {
                        Ok((filter, iv)) => {
                            min_interval = iv;
                            interval = pace.interval(min_interval);
                            match &sub {
                                Some(s) => { live.resubscribe(s.id, filter); }
                                None => sub = Some(live.subscribe(filter, false)),
                            }
                        }
                        Err(e) => {
                            if tx.send(invalid(&e)).await.is_err() {
                                break "client_closed";
                            }
                        }
                    }
                }
                Some(Ok(_)) => last_heard = Instant::now(),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > idle_timeout {
                    let e = Outgoing::Error { code: "idle_timeout", message: format!("nothing heard from the client for {idle_timeout:?}") };
                    let _ = tx.send(Message::Text(wire::to_json(&e).to_string().into())).await;
                    break "idle_timeout";
                }
                if tx.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break "client_closed";
                }
            }
            _ = shutdown.cancelled() => {
                let e = Outgoing::Error { code: "shutting_down", message: "the gateway is shutting down; reconnect to another instance".into() };
                let _ = tx.send(Message::Text(wire::to_json(&e).to_string().into())).await;
                break "shutdown";
            }
        }
    };
    let _ = tx.send(Message::Close(close)).await;
    if let Some(s) = &sub {
        live.unsubscribe(s.id);
    }
    if reason != "slow_consumer" {
        // Slow consumers are counted where they are closed.
        metrics::counter!("busflow_gateway_disconnects_total", "reason" => reason).increment(1);
    }
}
