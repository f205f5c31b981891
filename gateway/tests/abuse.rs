#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Hostile HTTP and WebSocket clients against a real listener, while a normal viewer streams:
//! each abuse gets its documented status or close code, and the viewer never stops receiving.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{SseReader, TestGateway, VIEW, body_json, config, get, vp};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// A viewer of VIEW fed one update every 20 ms; counts the updates it receives.
struct NormalViewer {
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl NormalViewer {
    async fn start(gw: &TestGateway) -> NormalViewer {
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let live = gw.live.clone();
        let s = stop.clone();
        tokio::spawn(async move {
            let mut ts = 1_000_000;
            while !s.load(Ordering::Relaxed) {
                ts += 1_000;
                let lon = 145.71 + (ts % 10_000) as f64 * 1e-6;
                live.apply(vp("normal-bus", ts, -16.92, lon, Some("110")));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let mut sse = SseReader::new(get(gw.addr, &format!("/v1/stream?bbox={VIEW}"), &[]).await);
        assert_eq!(sse.next().await.event, "snapshot");
        let r = received.clone();
        let s = stop.clone();
        tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                match sse.next_within(Duration::from_secs(2)).await {
                    Some(e) if e.event == "update" => {
                        r.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(_) => {}
                    None => break,
                }
            }
        });
        NormalViewer { received, stop }
    }

    /// Asserts the viewer received updates over the last `window`.
    async fn assert_streaming(&self, what: &str) {
        let before = self.received.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = self.received.load(Ordering::Relaxed);
        assert!(after > before + 3, "the normal viewer stopped receiving during {what}");
    }
}

impl Drop for NormalViewer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sends raw bytes and reads what comes back until the server closes or `wait` passes.
async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8], wait: Duration) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before the whole request is written.
    let _ = tcp.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

async fn error_code(gw: &TestGateway, path: &str) -> (u16, String) {
    let resp = get(gw.addr, path, &[]).await;
    let status = resp.status().as_u16();
    let body = body_json(resp).await;
    (status, body["error"].as_str().unwrap_or_default().to_string())
}

#[tokio::test]
async fn oversized_headers_and_query_strings_are_refused() {
    let gw = TestGateway::start(config()).await;
    let viewer = NormalViewer::start(&gw).await;

    // Headers over the 32 KiB limit: hyper answers 431 and closes.
    let mut req = b"GET /v1/vehicles HTTP/1.1\r\nhost: x\r\nx-junk: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 100 * 1024));
    req.extend(b"\r\n\r\n");
    let reply = raw_exchange(gw.addr, &req, Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "oversized headers got {:?}", first_line(&reply));
    viewer.assert_streaming("oversized headers").await;

    // A query string over max_query_len (4 KiB) is a JSON 400 on every endpoint.
    let long = "a".repeat(5_000);
    for path in [
        format!("/v1/stream?bbox={VIEW}&routes={long}"),
        format!("/v1/vehicles?bbox={VIEW}&routes={long}"),
        format!("/v1/stops?bbox={VIEW}&x={long}"),
    ] {
        assert_eq!(error_code(&gw, &path).await, (400, "request_too_large".into()), "{path:.40}");
    }

    // 10,000 route ids (about 49 KB): the request line alone is over the 32 KiB header limit.
    let ids = (0..10_000).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let reply = raw_exchange(
        gw.addr,
        format!("GET /v1/stream?bbox={VIEW}&routes={ids} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 431"), "10,000 routes got {:?}", first_line(&reply));
    // Within the length limit, more routes than max_routes (64) is refused by count.
    let many = (0..65).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    assert_eq!(
        error_code(&gw, &format!("/v1/stream?bbox={VIEW}&routes={many}")).await,
        (400, "too_many_routes".into())
    );
    viewer.assert_streaming("oversized query strings").await;
}

#[tokio::test]
async fn non_finite_and_huge_bbox_numbers_are_refused() {
    let gw = TestGateway::start(config()).await;
    let viewer = NormalViewer::start(&gw).await;
    for bbox in [
        "NaN,-17,145.8,-16.9",
        "145.7,nan,145.8,-16.9",
        "inf,-17,145.8,-16.9",
        "-inf,-17,145.8,-16.9",
        "145.7,-17,Infinity,-16.9",
        "1e308,-17,1e309,-16.9",
        "-1e400,-17,145.8,-16.9",
        "145.7,-17,145.8,99999999999999999999999",
        "0x10,-17,145.8,-16.9",
        "145.7,-17,145.8,-16.9,1",
        "145.7;-17;145.8;-16.9",
        "",
    ] {
        let q = form_encode(bbox);
        for endpoint in ["/v1/stream", "/v1/vehicles", "/v1/stops"] {
            let (status, code) = error_code(&gw, &format!("{endpoint}?bbox={q}")).await;
            assert_eq!(status, 400, "{endpoint} bbox={bbox:?}");
            assert_eq!(code, "invalid_bbox", "{endpoint} bbox={bbox:?}");
        }
    }
    viewer.assert_streaming("bad bbox numbers").await;
}

#[tokio::test]
async fn slowloris_connections_are_cut_off_while_others_are_served() {
    let mut cfg = config();
    cfg.header_timeout = Duration::from_millis(500);
    let gw = TestGateway::start(cfg).await;
    let viewer = NormalViewer::start(&gw).await;

    // 50 clients that send a header byte every 100 ms and never finish.
    let started = std::time::Instant::now();
    let mut slow = Vec::new();
    for _ in 0..50 {
        let addr = gw.addr;
        slow.push(tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            let _ = tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ").await;
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if tcp.write_all(b"a").await.is_err() {
                    return true; // closed by the server
                }
            }
            false
        }));
    }
    viewer.assert_streaming("slowloris").await;
    assert_eq!(get(gw.addr, "/healthz", &[]).await.status(), 200);
    for s in slow {
        assert!(s.await.unwrap(), "a slowloris connection stayed open for 10 s");
    }
    // Cut off by the header timeout, not by the end of the trickle.
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_socket_flood_beyond_the_limit_is_closed_at_once() {
    let mut cfg = config();
    cfg.max_sockets = 40;
    cfg.header_timeout = Duration::from_secs(30);
    let gw = TestGateway::start(cfg).await;
    let viewer = NormalViewer::start(&gw).await;

    // Idle sockets that send nothing: the first ones are held (up to the header timeout), the
    // rest are closed as soon as they are accepted.
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut closed = 0;
    for tcp in &mut held {
        let mut b = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(20), tcp.read(&mut b)).await {
            closed += 1;
        }
    }
    // 40 sockets allowed, the viewer and its feed hold one of them.
    assert!((55..=65).contains(&closed), "{closed} of 100 flooding sockets were closed");
    viewer.assert_streaming("a socket flood").await;
    // The flood ends: new connections are served again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(gw.addr, "/healthz", &[]).await.status(), 200);
}

#[tokio::test]
async fn oversized_websocket_messages_close_with_1009_and_bad_ones_get_invalid() {
    let gw = TestGateway::start(config()).await;
    let viewer = NormalViewer::start(&gw).await;
    let url = format!("ws://{}/v1/ws", gw.addr);

    // A subscribe with bad numbers or too many routes: an `invalid` reply, the socket stays.
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let many: Vec<String> = (0..65).map(|i| i.to_string()).collect();
    for msg in [
        serde_json::json!({"type": "subscribe", "bbox": [1e308, -17.0, 145.8, -16.9]}).to_string(),
        serde_json::json!({"type": "subscribe", "bbox": "NaN,-17,145.8,-16.9"}).to_string(),
        serde_json::json!({"type": "subscribe", "bbox": VIEW, "routes": many}).to_string(),
        r#"{"type":"subscribe","bbox":[145.7,-17,145.8,-16.9],"extra":1}"#.to_string(),
        "not json".to_string(),
    ] {
        ws.send(Message::Text(msg.clone().into())).await.unwrap();
        let reply = next_text(&mut ws).await;
        assert_eq!(reply["type"], "invalid", "{msg:.60}: {reply}");
    }
    ws.send(Message::Text(format!(r#"{{"type":"subscribe","bbox":"{VIEW}"}}"#).into()))
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await["type"], "snapshot");

    // 10,000 route ids in one message (about 60 KB, over the 16 KiB limit): closed with 1009.
    let ids: Vec<String> = (0..10_000).map(|i| format!("r{i}")).collect();
    let big = serde_json::json!({"type": "subscribe", "bbox": VIEW, "routes": ids}).to_string();
    assert!(big.len() > 16 * 1024);
    ws.send(Message::Text(big.into())).await.unwrap();
    let frame = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Close(f)))) => break f,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let frame = frame.expect("close frame without a code");
    assert_eq!(frame.code, CloseCode::Size, "close code");
    assert!(frame.reason.contains("16384"), "reason {:?}", frame.reason);

    // A single binary frame over the limit, too.
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    ws.send(Message::Binary(vec![0u8; 1 << 20].into())).await.unwrap();
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Close(f)))) => break f.map(|f| f.code),
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, Some(CloseCode::Size));
    viewer.assert_streaming("oversized WebSocket messages").await;
}

async fn next_text<S>(ws: &mut S) -> serde_json::Value
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("no message within 5 s")
            .expect("socket ended")
            .expect("socket error");
        if let Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
