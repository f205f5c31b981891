//! `busflow sql` reading real topics: bounded reads by offset and time, typed columns, bad
//! records reported, clear errors for a missing topic or broker.
//!
//! Runs against the in-process development broker, or against a real broker when
//! `BUSFLOW_TEST_BROKERS` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use busflow_core::{RejectReason, Rejected, Topics, VehiclePosition, VehicleStatus};
use busflow_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use busflow_kafka::{DevBroker, KafkaConfig, ensure_topics};
use busflow_sql::{
    End, Error, Format, KafkaRead, ReadRange, SqlConfig, SqlSession, Start, TableName, write_text,
};
use tokio_util::sync::CancellationToken;

fn unique_topics() -> Topics {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let p = format!("test.sql.{}.{nanos}", std::process::id());
    Topics {
        raw: format!("{p}.raw"),
        positions: format!("{p}.positions"),
        rejected: format!("{p}.rejected"),
        latest: format!("{p}.latest"),
    }
}

async fn broker(topics: &Topics) -> (KafkaConfig, Option<DevBroker>) {
    let (config, dev) = match std::env::var("BUSFLOW_TEST_BROKERS") {
        Ok(b) if !b.is_empty() => (KafkaConfig::new(b), None),
        _ => {
            let dev = DevBroker::start(topics, 2).unwrap();
            (KafkaConfig::new(dev.bootstrap_servers()), Some(dev))
        }
    };
    ensure_topics(&config, topics, 2, Duration::from_secs(20)).await.unwrap();
    (config, dev)
}

fn position(vehicle: &str, ts: i64, processed_ts: i64, status: VehicleStatus) -> VehiclePosition {
    VehiclePosition {
        v: 1,
        vehicle_id: vehicle.into(),
        ts,
        lat: -16.92,
        lon: 145.77,
        snapped_lat: Some(-16.9201),
        snapped_lon: Some(145.7701),
        route_id: Some("110-1".into()),
        route_short_name: Some(if vehicle < "b3" { "110" } else { "120" }.into()),
        route_color: Some("7BC142".into()),
        trip_id: Some("t1".into()),
        shape_id: Some("s1".into()),
        direction_id: Some(0),
        headsign: Some("City".into()),
        dist_along_m: Some(100.0),
        off_route_m: Some(3.0),
        speed_mps: Some(10.0),
        bearing_deg: Some(90.0),
        next_stop_id: Some("st1".into()),
        next_stop_dist_m: Some(50.0),
        h3_cell: busflow_core::h3::cell_string(-16.9201, 145.7701, h3o::Resolution::Twelve)
            .unwrap(),
        status,
        seq: Some(1),
        processed_ts,
        partition: 0,
        offset: 0,
    }
}

async fn send(p: &FutureProducer, topic: &str, key: &[u8], value: &[u8], ts: i64) {
    p.send(FutureRecord::to(topic).key(key).payload(value).timestamp(ts), Duration::from_secs(20))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

fn read(config: &KafkaConfig) -> KafkaRead {
    KafkaRead {
        kafka: config.clone(),
        timeout: Duration::from_secs(20),
        max_records: 1_000,
        progress: false,
    }
}

async fn query(cfg: &SqlConfig, sql: &str) -> Vec<serde_json::Value> {
    let session = SqlSession::new(cfg.clone(), CancellationToken::new()).unwrap();
    let out = session.execute(sql).await.unwrap();
    let mut buf = Vec::new();
    write_text(out.last().unwrap(), Format::Json, &mut buf).unwrap();
    String::from_utf8(buf).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_read_bounded_slices_of_their_topics() {
    let topics = unique_topics();
    let (config, _dev) = broker(&topics).await;
    let producer: FutureProducer = config.producer_config().create().unwrap();
    let now = busflow_sql::now_ms();
    // Kafka timestamps one minute apart, ending a minute ago.
    let t0 = now - 10 * 60_000;
    for i in 0..9i64 {
        let v = format!("b{}", i % 3 + 1);
        let p = position(&v, t0 + i * 60_000, now - (8 - i) * 1_000, VehicleStatus::InTransit);
        let json = serde_json::to_vec(&p).unwrap();
        send(&producer, &topics.positions, v.as_bytes(), &json, t0 + i * 60_000).await;
        send(&producer, &topics.latest, v.as_bytes(), &json, t0 + i * 60_000).await;
    }
    send(&producer, &topics.positions, b"b9", b"{\"not\":\"a position\"}", now).await;
    let rej = Rejected::new(
        RejectReason::NullIsland,
        "(0, 0)",
        Some("b2".into()),
        b"{}",
        None,
        1,
        7,
        now,
    );
    send(&producer, &topics.rejected, b"b2", &serde_json::to_vec(&rej).unwrap(), now).await;
    send(&producer, &topics.raw, b"b1", br#"{"vehicle_id":"b1","ts":5,"lat":1.5,"lon":2.5}"#, now)
        .await;
    send(&producer, &topics.raw, &[0xff], &[0xfe, 0x00], now).await;

    let mut cfg = SqlConfig::kafka(read(&config));
    cfg.topics = topics.clone();

    let all =
        query(&cfg, "SELECT count(*) AS n, count(DISTINCT vehicle_id) AS v FROM positions").await;
    assert_eq!(all[0]["n"], 9, "the undecodable record is left out: {all:?}");
    assert_eq!(all[0]["v"], 3);

    // Typed columns: ts is a timestamp (interval arithmetic works on it), status a string.
    let typed = query(
        &cfg,
        "SELECT vehicle_id, max(ts) - min(ts) AS span, arrow_typeof(max(ts)) AS t \
         FROM positions GROUP BY vehicle_id ORDER BY vehicle_id",
    )
    .await;
    assert_eq!(typed.len(), 3);
    assert_eq!(typed[0]["t"], "Timestamp(ms, \"UTC\")");

    // --since 5m: the records whose Kafka timestamp is at or after it.
    cfg.range = ReadRange { start: Start::Since(t0 + 4 * 60_000), end: End::Now };
    let since = query(&cfg, "SELECT count(*) AS n, min(ts) AS first FROM positions").await;
    assert_eq!(since[0]["n"], 5, "{since:?}");

    // --until: the records at or before the time.
    cfg.range = ReadRange { start: Start::Beginning, end: End::Until(t0 + 2 * 60_000) };
    let until = query(&cfg, "SELECT count(*) AS n FROM positions").await;
    assert_eq!(until[0]["n"], 3, "{until:?}");

    // --from-offset: every partition from that offset.
    cfg.range = ReadRange { start: Start::Offset(1_000_000), end: End::Now };
    let none = query(&cfg, "SELECT count(*) AS n FROM positions").await;
    assert_eq!(none[0]["n"], 0);
    // vehicles ignores the range: it is the current state.
    let vehicles = query(&cfg, "SELECT vehicle_id, ts FROM vehicles ORDER BY vehicle_id").await;
    assert_eq!(vehicles.len(), 3, "{vehicles:?}");

    cfg.range = ReadRange::default();
    let rejected =
        query(&cfg, "SELECT reason, raw_text, vehicle_id, \"offset\" FROM rejected").await;
    assert_eq!(rejected[0]["reason"], "null_island");
    assert_eq!(rejected[0]["raw_text"], "{}");
    assert_eq!(rejected[0]["offset"], 7);

    let raw = query(&cfg, "SELECT key, lat, parse_error FROM raw ORDER BY lat NULLS LAST").await;
    assert_eq!(raw.len(), 2, "every raw message is a row, parsable or not");
    assert_eq!(raw[0]["lat"], 1.5);
    assert!(raw[0]["parse_error"].is_null());
    assert!(raw[1]["key"].is_null(), "a non-UTF-8 key has no text");
    assert!(raw[1]["parse_error"].as_str().unwrap().contains("UTF-8"));

    // A read bigger than the limit is refused with the way out.
    let mut small = cfg.clone();
    small.kafka.as_mut().unwrap().max_records = 5;
    let session = SqlSession::new(small, CancellationToken::new()).unwrap();
    let e = session.execute("SELECT * FROM positions").await.unwrap_err();
    assert!(matches!(e, Error::TooMany { records: 10, limit: 5, .. }), "{e}");
    assert!(e.to_string().contains("--since"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vehicles_holds_only_active_vehicles() {
    let topics = unique_topics();
    let (config, _dev) = broker(&topics).await;
    let producer: FutureProducer = config.producer_config().create().unwrap();
    let now = busflow_sql::now_ms();
    let fresh = position("b1", now - 1_000, now - 1_000, VehicleStatus::OffRoute);
    let old = position("b2", now - 600_000, now - 600_000, VehicleStatus::InTransit);
    for p in [&old, &fresh] {
        let json = serde_json::to_vec(p).unwrap();
        send(&producer, &topics.latest, p.vehicle_id.as_bytes(), &json, now).await;
    }
    let mut cfg = SqlConfig::kafka(read(&config));
    cfg.topics = topics.clone();
    let rows = query(&cfg, "SELECT vehicle_id, status FROM vehicles").await;
    assert_eq!(rows.len(), 1, "b2 went silent 10 minutes ago: {rows:?}");
    assert_eq!(rows[0]["status"], "off_route");
    cfg.stale_after = Duration::from_secs(3600);
    assert_eq!(query(&cfg, "SELECT * FROM vehicles").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_topics_and_brokers_are_named() {
    let topics = unique_topics();
    let (config, _dev) = broker(&topics).await;
    let mut cfg = SqlConfig::kafka(read(&config));
    cfg.topics = topics.clone();
    cfg.topics.rejected = format!("{}.missing", topics.rejected);
    let session = SqlSession::new(cfg, CancellationToken::new()).unwrap();
    let e = session.execute("SELECT count(*) FROM rejected").await.unwrap_err();
    assert!(e.to_string().contains(".missing"), "{e}");

    // No broker: a table from a file works, one from Kafka says what to do.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.ndjson");
    let p = position("b1", 1, 2, VehicleStatus::Stopped);
    std::fs::write(&file, serde_json::to_vec(&p).unwrap()).unwrap();
    let cfg = SqlConfig::files(BTreeMap::from([(TableName::Positions, file)]));
    assert_eq!(query(&cfg, "SELECT status FROM positions").await[0]["status"], "stopped");
    let session = SqlSession::new(cfg, CancellationToken::new()).unwrap();
    let e =
        session.execute("SELECT * FROM positions JOIN raw USING (vehicle_id)").await.unwrap_err();
    assert!(matches!(e, Error::NoBroker { table: TableName::Raw, .. }), "{e}");
    assert!(e.to_string().contains("--table raw=FILE"), "{e}");
    // Schemas are known without reading anything.
    let session =
        SqlSession::new(SqlConfig::files(BTreeMap::new()), CancellationToken::new()).unwrap();
    let cols = session
        .execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'positions' AND column_name = 'ts'")
        .await
        .unwrap();
    assert_eq!(cols[0].num_rows(), 1);
    // SQL mistakes read as the parser or planner says them, once.
    let e = session.execute("SELEC 1").await.unwrap_err();
    assert!(e.to_string().starts_with("sql parser error: Expected"), "{e}");
    let e = session.execute("SELECT nope FROM positions").await.unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    assert_eq!(e.to_string().matches("nope").count(), 1, "{e}");
}
