#![allow(clippy::unwrap_used, clippy::expect_used)]
//! WebSocket streams: snapshot, updates and in-place viewport changes answered by a diff.

mod common;

use std::time::Duration;

use common::{TestGateway, config, vp};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Ws) -> serde_json::Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("timeout")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

#[tokio::test]
async fn viewport_change_is_answered_by_a_diff() {
    let gw = TestGateway::start(config()).await;
    gw.live.apply(vp("a", 1, -16.92, 145.71, Some("110")));
    gw.live.apply(vp("b", 1, -16.92, 145.74, Some("110")));
    gw.live.apply(vp("c", 1, -16.92, 145.78, Some("120")));
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{}/v1/ws?bbox=145.70,-16.95,145.75,-16.90",
        gw.addr
    ))
    .await
    .unwrap();
    let snap = next_json(&mut ws).await;
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snap["vehicles"].as_array().unwrap().len(), 2);

    gw.live.apply(vp("a", 2, -16.921, 145.711, Some("110")));
    let up = next_json(&mut ws).await;
    assert_eq!(
        (up["type"].as_str(), up["vehicle"]["vehicle_id"].as_str()),
        (Some("update"), Some("a"))
    );

    // Pan east: a leaves, b stays, c enters.
    ws.send(Message::Text(r#"{"type":"subscribe","bbox":[145.73,-16.95,145.80,-16.90]}"#.into()))
        .await
        .unwrap();
    let diff = next_json(&mut ws).await;
    assert_eq!(diff["type"], "diff");
    assert_eq!(diff["removed"], serde_json::json!(["a"]));
    let added: Vec<&str> = diff["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["vehicle_id"].as_str().unwrap())
        .collect();
    assert_eq!(added, ["b", "c"]);

    // The old viewport is no longer followed, the new one is.
    gw.live.apply(vp("a", 3, -16.921, 145.712, Some("110")));
    gw.live.apply(vp("c", 2, -16.921, 145.781, Some("120")));
    let up = next_json(&mut ws).await;
    assert_eq!(up["vehicle"]["vehicle_id"], "c");

    // Filter change in place: only route 110 (b stays, c goes).
    ws.send(Message::Text(
        r#"{"type":"subscribe","bbox":"145.73,-16.95,145.80,-16.90","routes":["110"]}"#.into(),
    ))
    .await
    .unwrap();
    let diff = next_json(&mut ws).await;
    assert_eq!(diff["removed"], serde_json::json!(["c"]));

    // A bad message gets an answer and the connection stays usable.
    ws.send(Message::Text(r#"{"type":"subscribe","bbox":[145.8,-16.95,145.7,-16.90]}"#.into()))
        .await
        .unwrap();
    let bad = next_json(&mut ws).await;
    assert_eq!(
        (bad["type"].as_str(), bad["error"].as_str()),
        (Some("invalid"), Some("invalid_bbox"))
    );
    gw.live.apply(vp("b", 2, -16.92, 145.741, Some("110")));
    assert_eq!(next_json(&mut ws).await["vehicle"]["vehicle_id"], "b");
    assert_eq!(gw.live.subscription_count(), 1);
    ws.close(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gw.live.subscription_count(), 0);
}

#[tokio::test]
async fn subscribe_after_connect_and_density_switch_on_zoom() {
    let mut cfg = config();
    cfg.max_vehicles_per_stream = 2;
    let gw = TestGateway::start(cfg).await;
    for i in 0..4 {
        gw.live.apply(vp(&format!("v{i}"), 1, -16.92, 145.71 + i as f64 * 0.01, None));
    }
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/v1/ws", gw.addr)).await.unwrap();
    ws.send(Message::Text(r#"{"type":"subscribe","bbox":[145.70,-16.95,145.75,-16.90]}"#.into()))
        .await
        .unwrap();
    let d = next_json(&mut ws).await;
    assert_eq!((d["type"].as_str(), d["total"].as_u64()), (Some("density"), Some(4)));
    // Zoom in: back to vehicles, as a full snapshot (a density view holds no vehicles).
    ws.send(Message::Text(r#"{"type":"subscribe","bbox":[145.705,-16.93,145.715,-16.91]}"#.into()))
        .await
        .unwrap();
    let s = next_json(&mut ws).await;
    assert_eq!(s["type"], "snapshot");
    assert_eq!(s["vehicles"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn shutdown_closes_websockets_with_a_final_event() {
    let gw = TestGateway::start(config()).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{}/v1/ws?bbox=145.70,-16.95,145.75,-16.90",
        gw.addr
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "snapshot");
    gw.shutdown.cancel();
    let e = next_json(&mut ws).await;
    assert_eq!(e["error"], "shutting_down");
}
