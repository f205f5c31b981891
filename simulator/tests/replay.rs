//! Recorded positions go back onto the raw topic with their spacing (in-process broker, or
//! `BUSFLOW_TEST_BROKERS`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use busflow_core::{RawPosition, Topics};
use busflow_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use busflow_kafka::rdkafka::message::Message;
use busflow_kafka::rdkafka::{Offset, TopicPartitionList};
use busflow_kafka::{DevBroker, KafkaConfig, ensure_topics};
use busflow_simulator::{ReplayConfig, ReplayFormat, replay};
use tokio_util::sync::CancellationToken;

fn unique(name: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("test.{name}.{}.{nanos}", std::process::id())
}

async fn broker(name: &str) -> (KafkaConfig, Topics, Option<DevBroker>) {
    let topics = Topics { raw: unique(name), ..Topics::default() };
    let (config, dev) = match std::env::var("BUSFLOW_TEST_BROKERS") {
        Ok(b) if !b.is_empty() => (KafkaConfig::new(b), None),
        _ => {
            let dev = DevBroker::start(&topics, 1).unwrap();
            (KafkaConfig::new(dev.bootstrap_servers()), Some(dev))
        }
    };
    ensure_topics(&config, &topics, 1, Duration::from_secs(20)).await.unwrap();
    (config, topics, dev)
}

/// `(key, payload, arrival)` of `n` messages, in topic order (one partition).
fn consume(config: &KafkaConfig, topic: &str, n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let consumer: BaseConsumer = config
        .client_config_with(&[("group.id", "busflow-replay-test"), ("enable.auto.commit", "false")])
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < n {
        assert!(Instant::now() < deadline, "only {} of {n}", out.len());
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            out.push((m.key().unwrap().to_vec(), m.payload().unwrap().to_vec()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_replays_byte_for_byte_with_recorded_spacing() {
    let (kafka, topics, _dev) = broker("replay.ndjson").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.ndjson");
    // Five reports 400 ms apart (recorded), one garbage line, a blank line.
    let mut lines = Vec::new();
    for i in 0..5i64 {
        let mut r =
            RawPosition::new(format!("b{}", i % 2), 1_700_000_000_000 + i * 400, -16.9, 145.7);
        r.seq = Some(i as u64);
        lines.push(serde_json::to_string(&r).unwrap());
        if i == 2 {
            lines.push("{not json".into());
            lines.push(String::new());
        }
    }
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let config = ReplayConfig {
        path,
        format: ReplayFormat::Ndjson,
        columns: HashMap::new(),
        speedup: 2.0,
        shift_to_now: false,
    };
    let report =
        replay(config, kafka.clone(), topics.clone(), CancellationToken::new()).await.unwrap();
    assert_eq!((report.sent, report.skipped, report.delivered, report.failed), (5, 1, 5, 0));
    // 1.6 s recorded at 2x: at least 0.8 s.
    assert!(report.wall >= Duration::from_millis(790), "{:?}", report.wall);
    let got = consume(&kafka, &topics.raw, 5);
    let expected: Vec<&String> = lines.iter().filter(|l| l.starts_with("{\"v\"")).collect();
    for ((key, payload), line) in got.iter().zip(expected) {
        assert_eq!(payload, line.as_bytes(), "byte-for-byte");
        let raw: RawPosition = serde_json::from_slice(payload).unwrap();
        assert_eq!(key, raw.vehicle_id.as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_with_column_mapping_shifted_to_now() {
    let (kafka, topics, _dev) = broker("replay.csv").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.csv");
    std::fs::write(
        &path,
        "bus,time,latitude,longitude,trip_id\n\
         b1,2014-05-01T08:00:00Z,-16.9,145.7,t1\n\
         b1,2014-05-01T08:00:01Z,-16.9001,145.7001,t1\n\
         b2,1398931202,-16.8,145.6,\n",
    )
    .unwrap();
    let columns =
        [("vehicle_id", "bus"), ("ts", "time"), ("lat", "latitude"), ("lon", "longitude")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
    let config = ReplayConfig {
        path,
        format: ReplayFormat::Csv,
        columns,
        speedup: f64::INFINITY,
        shift_to_now: true,
    };
    let before = chrono::Utc::now().timestamp_millis();
    let report =
        replay(config, kafka.clone(), topics.clone(), CancellationToken::new()).await.unwrap();
    assert_eq!((report.sent, report.delivered, report.failed), (3, 3, 0));
    let got = consume(&kafka, &topics.raw, 3);
    let raws: Vec<RawPosition> =
        got.iter().map(|(_, p)| serde_json::from_slice(p).unwrap()).collect();
    assert!((raws[0].ts - before).abs() < 5_000, "shifted to now");
    assert_eq!(raws[1].ts - raws[0].ts, 1000, "spacing kept");
    assert_eq!(raws[2].ts - raws[0].ts, 2000);
    assert_eq!(raws[0].trip_id.as_deref(), Some("t1"));
    assert_eq!(raws[2].trip_id, None);
    assert_eq!(got[2].0, b"b2");
    assert_eq!(raws[1].lat, -16.9001);
}
