#![allow(clippy::unwrap_used, clippy::expect_used)]
//! SSE streams end to end on a loopback port.

mod common;

use std::time::Duration;

use common::{SseReader, TestGateway, VIEW, config, get, vp};

fn stream_path(q: &str) -> String {
    format!("/v1/stream?{q}")
}

#[tokio::test]
async fn snapshot_then_updates_and_removes() {
    let gw = TestGateway::start(config()).await;
    gw.live.apply(vp("in", 1, -16.92, 145.72, Some("110")));
    gw.live.apply(vp("out", 1, -16.80, 145.72, Some("110")));
    let mut sse = SseReader::new(get(gw.addr, &stream_path(&format!("bbox={VIEW}")), &[]).await);
    let snap = sse.next().await;
    assert_eq!(snap.event, "snapshot");
    let ids: Vec<&str> = snap.data["vehicles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["vehicle_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["in"]);
    assert_eq!(snap.data["resumed"], false);
    assert!(snap.id.is_some());

    gw.live.apply(vp("in", 2, -16.93, 145.73, Some("110")));
    let up = sse.next().await;
    assert_eq!(up.event, "update");
    assert_eq!(up.data["vehicle"]["vehicle_id"], "in");
    assert_eq!(up.data["vehicle"]["lat"], -16.93);

    gw.live.apply(vp("out", 2, -16.80, 145.73, Some("110"))); // moves, still outside
    gw.live.apply(vp("in", 3, -16.50, 145.73, Some("110"))); // leaves
    let rm = sse.next().await;
    assert_eq!(rm.event, "remove");
    assert_eq!(rm.data["vehicle_id"], "in");
    assert_eq!(rm.data["reason"], "left_viewport");
    assert_ne!(rm.id, up.id);
    sse.assert_quiet(Duration::from_millis(700)).await;
}

#[tokio::test]
async fn enter_and_leave_exactly_at_bbox_edges() {
    let gw = TestGateway::start(config()).await;
    let mut sse = SseReader::new(get(gw.addr, &stream_path(&format!("bbox={VIEW}")), &[]).await);
    assert_eq!(sse.next().await.event, "snapshot");
    // On the west edge: inside (edges are inclusive).
    gw.live.apply(vp("e", 1, -16.92, 145.70, None));
    let e = sse.next().await;
    assert_eq!((e.event.as_str(), e.data["vehicle"]["lon"].as_f64()), ("update", Some(145.70)));
    // A hair west of it: outside.
    gw.live.apply(vp("e", 2, -16.92, 145.699_999, None));
    let e = sse.next().await;
    assert_eq!(e.event, "remove");
    // The north-east corner: inside again.
    gw.live.apply(vp("e", 3, -16.90, 145.75, None));
    assert_eq!(sse.next().await.event, "update");
    // Just north of the north edge.
    gw.live.apply(vp("e", 4, -16.899_999, 145.75, None));
    assert_eq!(sse.next().await.event, "remove");
    // Moving around outside says nothing.
    gw.live.apply(vp("e", 5, -16.0, 145.75, None));
    sse.assert_quiet(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn route_filter_limits_vehicles() {
    let gw = TestGateway::start(config()).await;
    gw.live.apply(vp("a", 1, -16.92, 145.72, Some("110")));
    gw.live.apply(vp("b", 1, -16.92, 145.73, Some("120")));
    gw.live.apply(vp("c", 1, -16.92, 145.74, None));
    let q = stream_path(&format!("bbox={VIEW}&routes=110,131"));
    let mut sse = SseReader::new(get(gw.addr, &q, &[]).await);
    let snap = sse.next().await;
    assert_eq!(snap.data["vehicles"].as_array().unwrap().len(), 1);
    assert_eq!(snap.data["vehicles"][0]["vehicle_id"], "a");
    gw.live.apply(vp("b", 2, -16.92, 145.731, Some("120")));
    gw.live.apply(vp("d", 2, -16.92, 145.731, Some("131")));
    let e = sse.next().await;
    assert_eq!(e.data["vehicle"]["vehicle_id"], "d");
    // A vehicle changing to an unwanted route is removed as filtered.
    gw.live.apply(vp("a", 2, -16.92, 145.72, Some("120")));
    let e = sse.next().await;
    assert_eq!((e.event.as_str(), e.data["reason"].as_str()), ("remove", Some("filtered")));
}

#[tokio::test]
async fn last_event_id_reconnect_gets_fresh_snapshot_without_ghosts() {
    let gw = TestGateway::start(config()).await;
    let now = busflow_gateway::now_ms();
    gw.live.apply(vp("stays", 1, -16.92, 145.72, None));
    gw.live.apply_seen(vp("ghost", 1, -16.92, 145.73, None), now - 60_000);
    let mut sse = SseReader::new(get(gw.addr, &stream_path(&format!("bbox={VIEW}")), &[]).await);
    let snap = sse.next().await;
    assert_eq!(snap.data["vehicles"].as_array().unwrap().len(), 2);
    let last_id = snap.id.clone().unwrap();
    drop(sse); // connection lost

    // While disconnected the ghost goes stale (stale_after is 120 s by default).
    gw.live.tick(now + 61_000);
    let mut sse = SseReader::new(
        get(gw.addr, &stream_path(&format!("bbox={VIEW}")), &[("last-event-id", &last_id)]).await,
    );
    let snap = sse.next().await;
    assert_eq!(snap.event, "snapshot");
    assert_eq!(snap.data["resumed"], true);
    let ids: Vec<&str> = snap.data["vehicles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["vehicle_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["stays"]);
}

#[tokio::test]
async fn stale_vehicles_are_removed() {
    let mut cfg = config();
    cfg.stale_after = Duration::from_secs(5);
    let gw = TestGateway::start(cfg).await;
    let now = busflow_gateway::now_ms();
    gw.live.apply_seen(vp("old", 1, -16.92, 145.72, None), now - 4_000);
    let mut sse = SseReader::new(get(gw.addr, &stream_path(&format!("bbox={VIEW}")), &[]).await);
    assert_eq!(sse.next().await.data["vehicles"].as_array().unwrap().len(), 1);
    gw.live.tick(now);
    sse.assert_quiet(Duration::from_millis(300)).await;
    gw.live.tick(now + 1_500);
    let e = sse.next().await;
    assert_eq!((e.event.as_str(), e.data["reason"].as_str()), ("remove", Some("stale")));
    assert_eq!(gw.live.vehicle_count(), 0);
}

#[tokio::test]
async fn density_events_replace_vehicles_in_dense_viewports() {
    let mut cfg = config();
    cfg.max_vehicles_per_stream = 3;
    let gw = TestGateway::start(cfg).await;
    for i in 0..5 {
        gw.live.apply(vp(&format!("v{i}"), 1, -16.92, 145.71 + i as f64 * 0.005, None));
    }
    let mut sse = SseReader::new(get(gw.addr, &stream_path(&format!("bbox={VIEW}")), &[]).await);
    let d = sse.next().await;
    assert_eq!(d.event, "density");
    assert_eq!(d.data["total"], 5);
    let counted: u64 =
        d.data["cells"].as_array().unwrap().iter().map(|c| c["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, 5);
    // A zoomed-in view holds few enough vehicles for an exact stream.
    let mut zoomed =
        SseReader::new(get(gw.addr, &stream_path("bbox=145.705,-16.93,145.717,-16.91"), &[]).await);
    let s = zoomed.next().await;
    assert_eq!(s.event, "snapshot");
    assert_eq!(s.data["vehicles"].as_array().unwrap().len(), 2);
    // Vehicles leaving the dense view switch it back to vehicles on the next tick.
    for i in 0..3 {
        gw.live.apply(vp(&format!("v{i}"), 2, -16.5, 145.71, None));
    }
    gw.live.tick(busflow_gateway::now_ms());
    let s = sse.next().await;
    assert_eq!(s.event, "snapshot");
    assert_eq!(s.data["vehicles"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn min_interval_coalesces_per_vehicle() {
    let gw = TestGateway::start(config()).await;
    let q = stream_path(&format!("bbox={VIEW}&min_interval_ms=400"));
    let mut sse = SseReader::new(get(gw.addr, &q, &[]).await);
    assert_eq!(sse.next().await.event, "snapshot");
    for ts in 1..=20 {
        gw.live.apply(vp("a", ts, -16.92, 145.72 + ts as f64 * 0.0001, None));
    }
    let e = sse.next().await;
    assert_eq!(e.data["vehicle"]["ts"], 20, "only the latest position within the interval");
    sse.assert_quiet(Duration::from_millis(600)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_is_coalesced_then_disconnected_with_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cfg = config();
    cfg.client_buffer = 64;
    cfg.slow_client_timeout = Duration::from_millis(300);
    let gw = TestGateway::start(cfg).await;
    // A client that sends its request and then does not read at all, with a tiny receive buffer.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut tcp = sock.connect(gw.addr).await.unwrap();
    let req = format!("GET /v1/stream?bbox={VIEW} HTTP/1.1\r\nhost: x\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gw.live.subscription_count(), 1);
    // Flood 40 vehicles (~700 bytes per event): socket buffers fill, the queue coalesces, and
    // once the client has been behind for the time limit an update closes it.
    let mut applied = 0i64;
    let started = std::time::Instant::now();
    while gw.live.subscription_count() > 0 {
        assert!(started.elapsed() < Duration::from_secs(20), "slow client never closed");
        for _ in 0..500 {
            applied += 1;
            let n = applied % 40;
            gw.live.apply(vp(&format!("v{n}"), applied, -16.92, 145.71 + n as f64 * 0.001, None));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The client reads again: it gets what was buffered, then the final error, then EOF.
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw)).await;
    assert!(read.is_ok(), "the server ends the connection");
    let text = String::from_utf8_lossy(&raw);
    let updates = text.matches("event: update").count() as i64;
    assert!(updates > 0);
    assert!(updates < applied, "{updates} of {applied} updates sent: nothing coalesced");
    let err = text.rfind("event: error").unwrap_or_else(|| {
        panic!(
            "no final error event in {} bytes; tail: {}",
            raw.len(),
            &text[text.len().saturating_sub(600)..]
        )
    });
    assert!(text[err..].contains("slow_consumer"), "{}", &text[err..]);
    assert!(!text[err..].contains("event: update"), "error is the last event");
}

#[tokio::test]
async fn shutdown_ends_streams_with_a_final_event() {
    let gw = TestGateway::start(config()).await;
    let mut sse = SseReader::new(get(gw.addr, &stream_path(&format!("bbox={VIEW}")), &[]).await);
    assert_eq!(sse.next().await.event, "snapshot");
    gw.shutdown.cancel();
    let e = sse.next().await;
    assert_eq!((e.event.as_str(), e.data["error"].as_str()), ("error", Some("shutting_down")));
    assert!(sse.next_within(Duration::from_secs(3)).await.is_none());
    assert!(sse.ended);
}

#[tokio::test]
async fn connection_limits_answer_429_with_retry_after() {
    let mut cfg = config();
    cfg.max_connections_per_ip = 2;
    let gw = TestGateway::start(cfg).await;
    let q = stream_path(&format!("bbox={VIEW}"));
    let mut a = SseReader::new(get(gw.addr, &q, &[]).await);
    let _b = SseReader::new(get(gw.addr, &q, &[]).await);
    a.next().await;
    let third = get(gw.addr, &q, &[]).await;
    assert_eq!(third.status(), 429);
    assert_eq!(third.headers()["retry-after"], "5");
    let body = common::body_json(third).await;
    assert_eq!(body["error"], "too_many_connections");
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(gw.addr, &q, &[]).await.status(), 200, "slot released on disconnect");

    let mut cfg = config();
    cfg.max_connections = 1;
    let gw = TestGateway::start(cfg).await;
    let _one = SseReader::new(get(gw.addr, &q, &[]).await);
    let two = get(gw.addr, &q, &[]).await;
    assert_eq!(two.status(), 429);
    assert!(two.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cfg = config();
    cfg.header_timeout = Duration::from_millis(300);
    let gw = TestGateway::start(cfg).await;

    // Headers that never finish: the connection is closed after the header timeout.
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "connection still open after 5 s");
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(!String::from_utf8_lossy(&out).contains("200 OK"));
}
