//! The load tool against scripted fake gateways: it must count what it receives, catch
//! vehicles outside the viewport, and report refused connections by reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use busflow_load::{LoadConfig, Transport};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A vehicle as the gateway sends it (only the fields the tool reads matter).
fn vehicle(id: &str, lat: f64, lon: f64) -> String {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    format!(
        r#"{{"vehicle_id":"{id}","ts":{now},"processed_ts":{now},"lat":{lat},"lon":{lon},"snapped_lat":null,"snapped_lon":null,"route_id":"r1","status":"in_transit"}}"#
    )
}

/// Parses `bbox=w,s,e,n` from the request line.
fn bbox_of(request: &str) -> [f64; 4] {
    let q = request.split("bbox=").nth(1).unwrap();
    let v: Vec<f64> =
        q.split(['&', ' ']).next().unwrap().split(',').map(|x| x.parse().unwrap()).collect();
    [v[0], v[1], v[2], v[3]]
}

async fn read_request(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// A fake SSE gateway: a snapshot with one vehicle at the viewport centre, then an update with
/// a vehicle `outside` the viewport (or inside it, when `outside` is false).
async fn fake_sse(outside: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let req = read_request(&mut s).await;
                let [w, so, e, n] = bbox_of(&req);
                let (clat, clon) = ((so + n) / 2.0, (w + e) / 2.0);
                let second =
                    if outside { vehicle("far", n + 0.5, e + 0.5) } else { vehicle("near", so, w) };
                let body = format!(
                    "event: snapshot\ndata: {{\"type\":\"snapshot\",\"resumed\":false,\"vehicles\":[{}]}}\n\nevent: update\ndata: {{\"type\":\"update\",\"vehicle\":{}}}\n\n",
                    vehicle("c", clat, clon),
                    second
                );
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                let chunk = format!("{:x}\r\n{body}\r\n", body.len());
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(chunk.as_bytes()).await;
                // Hold the stream open like a live gateway.
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    addr
}

/// A fake gateway that refuses every stream with 429.
async fn fake_busy() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                read_request(&mut s).await;
                let body = r#"{"error":"too_many_connections"}"#;
                let resp = format!(
                    "HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

fn config(gateway: SocketAddr, clients: usize) -> LoadConfig {
    LoadConfig {
        gateway,
        clients,
        ramp: Duration::from_millis(200),
        duration: Duration::from_millis(800),
        progress: false,
        ..LoadConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_events_and_finds_no_violation_when_the_gateway_is_right() {
    let addr = fake_sse(false).await;
    let r = busflow_load::run(config(addr, 8), CancellationToken::new()).await.unwrap();
    assert_eq!(r.connected, 8, "{r}");
    assert_eq!(r.events, 16, "{r}");
    assert_eq!(r.violations, 0, "{r}");
    assert_eq!(r.snapshot.count, 8);
    assert_eq!(r.produce_latency.count, 8);
    assert!(r.per_client.iter().all(|c| c.snapshot_ms.is_some() && c.disconnect.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_a_vehicle_outside_the_viewport() {
    let addr = fake_sse(true).await;
    let r = busflow_load::run(config(addr, 5), CancellationToken::new()).await.unwrap();
    assert_eq!(r.connected, 5, "{r}");
    assert_eq!(r.violations, 5, "one outside vehicle per viewer: {r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_reported_by_status() {
    let addr = fake_busy().await;
    let r = busflow_load::run(config(addr, 4), CancellationToken::new()).await.unwrap();
    assert_eq!(r.connected, 0);
    assert_eq!(r.errors.get("http_429"), Some(&4), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_is_connect_refused() {
    // Bind and drop to get a port nobody listens on.
    let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let r = busflow_load::run(config(addr, 3), CancellationToken::new()).await.unwrap();
    assert_eq!(r.errors.get("connect_refused"), Some(&3), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_viewers_subscribe_and_are_checked() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
                // The first client message must be a subscribe with a bbox; answer from it,
                // putting one vehicle outside.
                let Some(Ok(msg)) = ws.next().await else { return };
                let v: serde_json::Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
                assert_eq!(v["type"], "subscribe");
                let b: Vec<f64> = serde_json::from_value(v["bbox"].clone()).unwrap();
                let snap = format!(
                    r#"{{"type":"snapshot","resumed":false,"vehicles":[{},{}]}}"#,
                    vehicle("in", (b[1] + b[3]) / 2.0, (b[0] + b[2]) / 2.0),
                    vehicle("out", b[3] + 1.0, b[2])
                );
                let _ = ws.send(snap.into()).await;
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    let cfg = LoadConfig { transport: Transport::Ws, ..config(addr, 4) };
    let r = busflow_load::run(cfg, CancellationToken::new()).await.unwrap();
    assert_eq!(r.connected, 4, "{r}");
    assert_eq!(r.events, 4);
    assert_eq!(r.violations, 4, "{r}");
}

/// A fake gateway that ends the first stream of every viewer after a snapshot with vehicles
/// `a` and `b` (as a restarting gateway does), serves `a` alone from the second stream on (`b`
/// went away meanwhile), and answers `/v1/vehicles` with `rest` (ids, at the viewport centre).
async fn fake_restarting(rest: &'static [&'static str]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let streams = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let streams = streams.clone();
            tokio::spawn(async move {
                let req = read_request(&mut s).await;
                let [w, so, e, n] = bbox_of(&req);
                let (clat, clon) = ((so + n) / 2.0, (w + e) / 2.0);
                if req.starts_with("GET /v1/vehicles") {
                    let list: Vec<String> = rest.iter().map(|id| vehicle(id, clat, clon)).collect();
                    let body =
                        format!("{{\"count\":{},\"vehicles\":[{}]}}", list.len(), list.join(","));
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                    return;
                }
                let first = streams.lock().unwrap().insert(format!("{w},{so}"));
                let vehicles = if first {
                    format!("{},{}", vehicle("a", clat, clon), vehicle("b", clat, clon))
                } else {
                    assert!(req.to_ascii_lowercase().contains("last-event-id: 7"), "{req}");
                    vehicle("a", clat, clon)
                };
                let body = format!(
                    "id: 7\nevent: snapshot\ndata: {{\"type\":\"snapshot\",\"resumed\":{},\"vehicles\":[{vehicles}]}}\n\n",
                    !first
                );
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(format!("{:x}\r\n{body}\r\n", body.len()).as_bytes()).await;
                if first {
                    let _ = s.write_all(b"0\r\n\r\n").await;
                } else {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_reconnect_and_drop_what_the_fresh_snapshot_no_longer_has() {
    let addr = fake_restarting(&["a"]).await;
    let cfg = LoadConfig {
        reconnect: true,
        verify_state: true,
        duration: Duration::from_millis(1500),
        ..config(addr, 4)
    };
    let r = busflow_load::run(cfg, CancellationToken::new()).await.unwrap();
    assert_eq!(r.connected, 4, "{r}");
    assert!(r.per_client.iter().all(|c| c.reconnects >= 1 && c.snapshots >= 2), "{r}");
    assert_eq!(r.verified, 4, "{r}");
    assert_eq!((r.ghosts, r.missing), (0, 0), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_finds_ghosts_and_missing_vehicles() {
    // The gateway says `a` and `c`; viewers hold `a` (and `b`, without reconnection).
    let addr = fake_restarting(&["a", "c"]).await;
    let cfg = LoadConfig { reconnect: true, verify_state: true, ..config(addr, 2) };
    let r = busflow_load::run(cfg, CancellationToken::new()).await.unwrap();
    assert_eq!((r.ghosts, r.missing), (0, 2), "{r}");
    // Without reconnecting, nothing replaces the first snapshot: `b` stays, a ghost.
    let addr = fake_restarting(&["a", "c"]).await;
    let cfg = LoadConfig { reconnect: false, verify_state: true, ..config(addr, 2) };
    let r = busflow_load::run(cfg, CancellationToken::new()).await.unwrap();
    assert_eq!(r.reconnects, 0, "{r}");
    assert_eq!((r.ghosts, r.missing), (2, 2), "{r}");
}
