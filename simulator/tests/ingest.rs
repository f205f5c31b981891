//! GTFS-realtime ingest against a local HTTP server that serves recorded protobuf payloads, a
//! corrupt one and an error, into the in-process broker (or `BUSFLOW_TEST_BROKERS`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use busflow_core::{RawPosition, Topics};
use busflow_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use busflow_kafka::rdkafka::message::Message;
use busflow_kafka::rdkafka::{Offset, TopicPartitionList};
use busflow_kafka::{DevBroker, KafkaConfig, ensure_topics};
use busflow_simulator::gtfs_rt::{
    FeedEntity, FeedHeader, FeedMessage, Position, TripDescriptor, VehicleDescriptor,
    VehiclePosition,
};
use busflow_simulator::{IngestConfig, ingest_gtfs_rt};
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn feed(vehicles: &[(&str, u64, f32, f32)]) -> Vec<u8> {
    FeedMessage {
        header: Some(FeedHeader {
            gtfs_realtime_version: Some("2.0".into()),
            incrementality: Some(0),
            timestamp: Some(1_700_000_100),
        }),
        entity: vehicles
            .iter()
            .map(|(id, ts, lat, lon)| FeedEntity {
                id: Some(format!("e-{id}")),
                is_deleted: None,
                vehicle: Some(VehiclePosition {
                    trip: Some(TripDescriptor {
                        trip_id: Some(format!("trip-{id}")),
                        route_id: Some("110".into()),
                    }),
                    position: Some(Position {
                        latitude: Some(*lat),
                        longitude: Some(*lon),
                        bearing: Some(45.0),
                        odometer: None,
                        speed: Some(7.5),
                    }),
                    timestamp: Some(*ts),
                    vehicle: Some(VehicleDescriptor {
                        id: Some((*id).into()),
                        label: None,
                        license_plate: None,
                    }),
                }),
            })
            .collect(),
    }
    .encode_to_vec()
}

/// Serves `responses` in order (status, body), repeating the last one; counts requests.
async fn serve(responses: Vec<(u16, Vec<u8>)>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/vehicle-positions.pb", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let (status, body) = responses[n.min(responses.len() - 1)].clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => req.extend_from_slice(&buf[..k]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (url, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_garbage_and_errors_and_sends_only_changes() {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let topics = Topics { raw: format!("test.ingest.{nanos}"), ..Topics::default() };
    let (kafka, _dev) = match std::env::var("BUSFLOW_TEST_BROKERS") {
        Ok(b) if !b.is_empty() => (KafkaConfig::new(b), None),
        _ => {
            let dev = DevBroker::start(&topics, 1).unwrap();
            (KafkaConfig::new(dev.bootstrap_servers()), Some(dev))
        }
    };
    ensure_topics(&kafka, &topics, 1, Duration::from_secs(20)).await.unwrap();

    let first = feed(&[("v1", 1_700_000_000, -16.9, 145.7), ("v2", 1_700_000_001, -16.8, 145.6)]);
    // v1 moved, v2 unchanged, v3 new.
    let second = feed(&[
        ("v1", 1_700_000_010, -16.91, 145.71),
        ("v2", 1_700_000_001, -16.8, 145.6),
        ("v3", 1_700_000_011, -16.7, 145.5),
    ]);
    let mut corrupt = first.clone();
    corrupt.truncate(first.len() / 2);
    corrupt.extend_from_slice(b"\xff\xff\xff\xff");
    let (url, hits) = serve(vec![
        (200, first),
        (200, corrupt),
        (500, b"upstream down".to_vec()),
        (200, b"<html>maintenance</html>".to_vec()),
        (200, second),
    ])
    .await;

    let config = IngestConfig {
        interval: Duration::from_millis(50),
        timeout: Duration::from_secs(2),
        max_backoff: Duration::from_millis(200),
        max_polls: Some(7),
        ..IngestConfig::new(url)
    };
    let started = Instant::now();
    let report = ingest_gtfs_rt(config, kafka.clone(), topics.clone(), CancellationToken::new())
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(hits.load(Ordering::SeqCst), 7);
    assert_eq!(report.polls, 7);
    assert_eq!(report.failed_polls, 3, "{report:?}");
    // First feed: 2 new; second (served three times): v1 moved and v3 new, then unchanged.
    assert_eq!(report.sent, 4, "{report:?}");
    assert_eq!(report.unchanged, 1 + 3 + 3, "{report:?}");
    assert_eq!((report.delivered, report.failed), (4, 0));

    let consumer: BaseConsumer = kafka
        .client_config_with(&[("group.id", "busflow-ingest-test"), ("enable.auto.commit", "false")])
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topics.raw, 0, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 4 {
        assert!(Instant::now() < deadline);
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            let raw: RawPosition = serde_json::from_slice(m.payload().unwrap()).unwrap();
            assert_eq!(m.key().unwrap(), raw.vehicle_id.as_bytes());
            got.push(raw);
        }
    }
    let ids: Vec<&str> = got.iter().map(|r| r.vehicle_id.as_str()).collect();
    assert_eq!(ids, ["v1", "v2", "v1", "v3"]);
    assert_eq!(got[2].ts, 1_700_000_010_000);
    assert_eq!(got[2].trip_id.as_deref(), Some("trip-v1"));
    assert_eq!(got[2].route_id.as_deref(), Some("110"));
    assert_eq!(got[2].speed_mps, Some(7.5));
    assert!((got[2].lat - -16.91).abs() < 1e-5);
}
