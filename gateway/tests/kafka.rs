#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The whole gateway against the in-process broker: state loaded from `latest`, then live
//! updates from `positions`.

mod common;

use std::time::Duration;

use busflow_core::Topics;
use busflow_gateway::{GatewayConfig, start};
use busflow_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use busflow_kafka::{DevBroker, KafkaConfig};
use common::{SseReader, get, network, vp};
use tokio_util::sync::CancellationToken;

async fn produce(p: &FutureProducer, topic: &str, pos: &busflow_core::VehiclePosition) {
    let json = serde_json::to_string(pos).unwrap();
    p.send(FutureRecord::to(topic).key(&pos.vehicle_id).payload(&json), Duration::from_secs(5))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_latest_then_follows_positions() {
    let topics = Topics::default();
    let broker = DevBroker::start(&topics, 3).unwrap();
    let kafka = KafkaConfig::new(broker.bootstrap_servers());
    let producer: FutureProducer = kafka.producer_config().create().unwrap();
    let now = busflow_gateway::now_ms();

    // `latest` holds two positions of bus a (uncompacted dev broker), one of b, and a vehicle
    // that went silent long ago.
    produce(&producer, &topics.latest, &vp("a", now - 2000, -16.92, 145.71, Some("110"))).await;
    produce(&producer, &topics.latest, &vp("a", now - 1000, -16.921, 145.711, Some("110"))).await;
    produce(&producer, &topics.latest, &vp("b", now - 1000, -16.93, 145.72, Some("111"))).await;
    let mut dead = vp("dead", now - 900_000, -16.93, 145.72, None);
    dead.processed_ts = now - 900_000;
    produce(&producer, &topics.latest, &dead).await;

    let shutdown = CancellationToken::new();
    let cfg =
        GatewayConfig { http_addr: "127.0.0.1:0".parse().unwrap(), ..GatewayConfig::default() };
    let gw =
        start(cfg, network(), kafka, topics.clone(), None, None, shutdown.clone()).await.unwrap();
    let addr =
        tokio::time::timeout(Duration::from_secs(20), gw.ready()).await.expect("ready in time");
    assert_eq!(gw.live().vehicle_count(), 2, "a and b; the long-silent vehicle is not loaded");
    let a = common::body_json(get(addr, "/v1/vehicles/a", &[]).await).await;
    assert_eq!(a["lat"], -16.921, "the newest of a's records");
    assert_eq!(get(addr, "/readyz", &[]).await.status(), 200);

    let mut sse =
        SseReader::new(get(addr, "/v1/stream?bbox=145.70,-16.95,145.75,-16.90", &[]).await);
    assert_eq!(sse.next().await.data["vehicles"].as_array().unwrap().len(), 2);
    produce(&producer, &topics.positions, &vp("c", now, -16.94, 145.74, Some("112"))).await;
    let e = sse.next_within(Duration::from_secs(10)).await.expect("live update");
    assert_eq!(e.event, "update");
    assert_eq!(e.data["vehicle"]["vehicle_id"], "c");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), gw.join()).await.expect("stops in time").unwrap();
}
