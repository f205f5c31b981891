//! A RawPosition produced to Kafka comes back byte-for-byte.
//!
//! Runs against the in-process development broker, or against a real broker when
//! `BUSFLOW_TEST_BROKERS` is set (`.ci/run` points it at nisshi).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use busflow_core::{RawPosition, TopicSpec};
use busflow_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use busflow_kafka::rdkafka::message::Message;
use busflow_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use busflow_kafka::rdkafka::{Offset, TopicPartitionList};
use busflow_kafka::{DevBroker, KafkaConfig, ensure_topic_specs, wait_for_broker};

/// The broker under test: `BUSFLOW_TEST_BROKERS`, else a fresh in-process one with `topic`.
fn broker(topic: &str) -> (KafkaConfig, Option<DevBroker>) {
    match std::env::var("BUSFLOW_TEST_BROKERS") {
        Ok(b) if !b.is_empty() => (KafkaConfig::new(b), None),
        _ => {
            let dev = DevBroker::start_with(vec![topic.to_string()], 3).unwrap();
            (KafkaConfig::new(dev.bootstrap_servers()), Some(dev))
        }
    }
}

fn unique(name: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("test.{name}.{}.{nanos}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_position_round_trips_byte_for_byte() {
    let topic = unique("roundtrip");
    let (config, _dev) = broker(&topic);
    let report = ensure_topic_specs(
        &config,
        &[TopicSpec { name: &topic, compacted: false }],
        3,
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert!(report.created.contains(&topic) || report.existing.iter().any(|(t, _)| t == &topic));

    let mut raw = RawPosition::new("bus-7", 1_763_900_000_123, -16.918_612_5, 145.778_101_3);
    raw.speed_mps = Some(11.25);
    raw.route_id = Some("110-423".into());
    raw.seq = Some(42);
    let payload = serde_json::to_vec(&raw).unwrap();

    let producer: FutureProducer = config.producer_config().create().unwrap();
    let delivery = producer
        .send(
            FutureRecord::to(&topic).key(&raw.vehicle_id).payload(&payload),
            Duration::from_secs(20),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let (partition, offset) = (delivery.partition, delivery.offset);

    let consumer: BaseConsumer = config
        .client_config_with(&[
            ("group.id", "busflow-roundtrip-test"),
            ("enable.auto.commit", "false"),
        ])
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, partition, Offset::Offset(offset)).unwrap();
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let msg = loop {
        assert!(Instant::now() < deadline, "no message within 30s");
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            break m.unwrap().detach();
        }
    };
    assert_eq!(msg.key(), Some(raw.vehicle_id.as_bytes()));
    assert_eq!(msg.payload(), Some(payload.as_slice()), "bytes differ");
    assert_eq!(msg.offset(), offset);
    let back: RawPosition = serde_json::from_slice(msg.payload().unwrap()).unwrap();
    assert_eq!(back, raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_is_a_clear_error() {
    // Port 9 (discard) on loopback is closed on test machines.
    let err = wait_for_broker(&KafkaConfig::new("127.0.0.1:9"), Duration::from_secs(2))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("127.0.0.1:9"), "{err}");
}

#[test]
fn dev_broker_creates_busflow_topics_and_stops() {
    let topics = busflow_core::Topics::default();
    let dev = DevBroker::start(&topics, 2).unwrap();
    assert!(
        dev.bootstrap_servers().starts_with("127.0.0.1:") || dev.bootstrap_servers().contains(':')
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let info = rt
        .block_on(wait_for_broker(
            &KafkaConfig::new(dev.bootstrap_servers()),
            Duration::from_secs(10),
        ))
        .unwrap();
    for spec in topics.specs() {
        assert_eq!(info.partitions(spec.name), Some(2), "{}", spec.name);
    }
    dev.stop();
}
