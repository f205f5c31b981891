#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A gateway whose brokers go away keeps serving its last state and says the source is stale in
//! `/readyz`.

mod common;

use std::time::{Duration, Instant};

use busflow_core::Topics;
use busflow_gateway::{GatewayConfig, start};
use busflow_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use busflow_kafka::{DevBroker, KafkaConfig};
use common::{body_json, get, network, vp};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_a_stale_source_while_the_last_state_is_still_served() {
    let topics = Topics::default();
    let broker = DevBroker::start(&topics, 1).unwrap();
    let kafka = KafkaConfig::new(broker.bootstrap_servers());
    let producer: FutureProducer = kafka.producer_config().create().unwrap();
    let pos = vp("a", busflow_gateway::now_ms(), -16.92, 145.71, Some("110"));
    let json = serde_json::to_string(&pos).unwrap();
    producer
        .send(FutureRecord::to(&topics.latest).key("a").payload(&json), Duration::from_secs(5))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    drop(producer);

    let shutdown = CancellationToken::new();
    let cfg = GatewayConfig {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        source_stale_after: Duration::from_secs(2),
        ..GatewayConfig::default()
    };
    let gw =
        start(cfg, network(), kafka, topics.clone(), None, None, shutdown.clone()).await.unwrap();
    let addr =
        tokio::time::timeout(Duration::from_secs(20), gw.ready()).await.expect("ready in time");
    let ready = body_json(get(addr, "/readyz", &[]).await).await;
    assert_eq!(ready["status"], "ok", "{ready}");
    assert_eq!(ready["source"]["stale"], false, "{ready}");

    broker.stop();
    let deadline = Instant::now() + Duration::from_secs(20);
    let degraded = loop {
        let resp = get(addr, "/readyz", &[]).await;
        assert_eq!(resp.status(), 200, "a stale source still serves");
        let body = body_json(resp).await;
        if body["status"] == "degraded" {
            break body;
        }
        assert!(Instant::now() < deadline, "never reported stale: {body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(degraded["source"]["stale"], true, "{degraded}");
    assert!(degraded["source"]["age_s"].as_f64().unwrap() > 2.0, "{degraded}");
    let a = body_json(get(addr, "/v1/vehicles/a", &[]).await).await;
    assert_eq!(a["vehicle_id"], "a", "the last known state is served: {a}");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), gw.join()).await.expect("stops in time").unwrap();
}
