//! A simulated hour of the Cairns timetable through the in-process broker (or
//! `BUSFLOW_TEST_BROKERS`), scored against the ground-truth file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use busflow_core::geometry::haversine_m;
use busflow_core::{Network, RawPosition, Topics};
use busflow_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use busflow_kafka::rdkafka::message::Message;
use busflow_kafka::rdkafka::{Offset, TopicPartitionList};
use busflow_kafka::{DevBroker, KafkaConfig, ensure_topics};
use busflow_simulator::{
    Fault, FaultConfig, InvalidKind, NaiveDate, NaiveTime, SimReport, SimulatorConfig, TruthRecord,
};
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 3;

fn unique(name: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("test.{name}.{}.{nanos}", std::process::id())
}

/// The broker under test and topics whose raw topic is fresh.
async fn broker(name: &str) -> (KafkaConfig, Topics, Option<DevBroker>) {
    let topics = Topics { raw: unique(name), ..Topics::default() };
    let (config, dev) = match std::env::var("BUSFLOW_TEST_BROKERS") {
        Ok(b) if !b.is_empty() => (KafkaConfig::new(b), None),
        _ => {
            let dev = DevBroker::start(&topics, PARTITIONS).unwrap();
            (KafkaConfig::new(dev.bootstrap_servers()), Some(dev))
        }
    };
    ensure_topics(&config, &topics, PARTITIONS, Duration::from_secs(20)).await.unwrap();
    (config, topics, dev)
}

/// Every message on the topic, per partition in offset order.
fn consume_all(config: &KafkaConfig, topic: &str, expected: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    let consumer: BaseConsumer = config
        .client_config_with(&[("group.id", "busflow-sim-test"), ("enable.auto.commit", "false")])
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::with_capacity(expected as usize);
    let deadline = Instant::now() + Duration::from_secs(60);
    while (out.len() as u64) < expected {
        assert!(Instant::now() < deadline, "only {} of {expected} messages", out.len());
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            out.push((
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    // Nothing beyond what was reported.
    assert!(consumer.poll(Duration::from_millis(500)).is_none(), "more messages than emitted");
    out
}

fn within(measured: f64, asked: f64, what: &str) {
    let rel = (measured - asked).abs() / asked;
    assert!(rel <= 0.2, "{what}: asked {asked}, measured {measured:.4} ({:.0}% off)", rel * 100.0);
    eprintln!("{what}: asked {asked}, measured {measured:.4}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cairns_hour_through_kafka_matches_truth_and_fault_rates() {
    let network = Arc::new(Network::load(busflow_core::bundled_gtfs_path()).unwrap());
    let (kafka, topics, _dev) = broker("simhour").await;
    let dir = tempfile::tempdir().unwrap();
    let truth_path = dir.path().join("truth.ndjson");
    let faults = FaultConfig {
        noise_m: 8.0,
        multipath: 0.02,
        dropout: 0.05,
        dropout_mean_s: 20.0,
        duplicate: 0.03,
        out_of_order: 0.03,
        clock_skew: 0.3,
        stuck: 0.05,
        stuck_mean_reports: 5.0,
        invalid: 0.02,
        no_ids: 0.3,
    };
    let date = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(); // a Tuesday; calendar expired
    let start = NaiveTime::from_hms_opt(8, 0, 0).unwrap();
    let config = SimulatorConfig {
        hz: 0.2,
        speedup: f64::INFINITY,
        start: Some(start),
        date: Some(date),
        seed: 11,
        faults: faults.clone(),
        sim_duration: Some(Duration::from_secs(3600)),
        truth: Some(truth_path.clone()),
        ..SimulatorConfig::default()
    };
    let report: SimReport = busflow_simulator::run(
        config,
        network.clone(),
        kafka.clone(),
        topics.clone(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    eprintln!("{report}");
    assert!(report.all_delivered(), "{report}");
    assert!((report.sim_seconds - 3600.0).abs() < 1e-6);
    let c = report.counts;
    assert!(c.emitted > 20_000, "{c:?}");

    let truth: Vec<TruthRecord> = std::fs::read_to_string(&truth_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(truth.len() as u64, c.emitted);
    let messages = consume_all(&kafka, &topics.raw, c.emitted);

    // Pair messages with truth per vehicle: both are in emission order per vehicle (one key,
    // one partition, idempotent producer).
    let mut truth_by_vehicle: HashMap<&str, Vec<&TruthRecord>> = HashMap::new();
    for t in &truth {
        truth_by_vehicle.entry(t.vehicle_id.as_str()).or_default().push(t);
    }
    let mut msgs_by_vehicle: HashMap<String, Vec<&[u8]>> = HashMap::new();
    for (k, p) in &messages {
        msgs_by_vehicle.entry(String::from_utf8(k.clone()).unwrap()).or_default().push(p);
    }
    assert_eq!(truth_by_vehicle.len(), msgs_by_vehicle.len());

    let sigma = faults.noise_m;
    let mut checked_clean = 0;
    for (vehicle, msgs) in &msgs_by_vehicle {
        let ts = &truth_by_vehicle[vehicle.as_str()];
        assert_eq!(msgs.len(), ts.len(), "{vehicle}");
        let mut max_seq = 0;
        for (i, (payload, t)) in msgs.iter().zip(ts.iter()).enumerate() {
            assert_eq!(t.vehicle_id, *vehicle);
            // The true position lies on the trip's shape at the recorded distance.
            let shape = &network.shape(network.shape_by_id(&t.shape_id).unwrap()).line;
            let (la, lo, _) = shape.point_at(t.dist_along_m);
            assert!(haversine_m(la, lo, t.true_lat, t.true_lon) < 0.5);
            if t.has(Fault::Duplicate) {
                assert_eq!(*payload, msgs[i - 1], "a duplicate follows its original");
            }
            if t.has(Fault::OutOfOrder) {
                assert!(t.seq < max_seq, "held-back report arrives after a newer one");
            }
            max_seq = max_seq.max(t.seq);
            if t.has(Fault::Invalid) {
                let parsed = serde_json::from_slice::<RawPosition>(payload);
                match t.invalid.unwrap() {
                    InvalidKind::OutOfRange => {
                        let p = parsed.unwrap();
                        assert!(p.lat.abs() > 90.0 || p.lon.abs() > 180.0);
                    }
                    InvalidKind::NotUtf8 => assert!(std::str::from_utf8(payload).is_err()),
                    _ => assert!(parsed.is_err(), "{:?}", String::from_utf8_lossy(payload)),
                }
                continue;
            }
            let raw: RawPosition = serde_json::from_slice(payload).unwrap();
            assert_eq!(raw.ts, t.ts);
            assert_eq!(raw.ts - t.true_ts, t.skew_ms);
            assert_eq!(raw.trip_id.is_none(), t.has(Fault::NoIds));
            if let Some(trip) = &raw.trip_id {
                assert_eq!(trip, &t.trip_id);
            }
            let off = haversine_m(raw.lat, raw.lon, t.true_lat, t.true_lon);
            if t.has(Fault::Multipath) {
                assert!((100.0 - 6.0 * sigma..500.0 + 6.0 * sigma).contains(&off), "{off}");
            } else if !t.has(Fault::Stuck) {
                // Within noise of the truth, hence of the shape.
                assert!(off < 6.0 * sigma, "{off} m from truth");
                let snap = shape.project(raw.lat, raw.lon);
                assert!(snap.off_m < 6.0 * sigma, "{} m off the shape", snap.off_m);
                checked_clean += 1;
            }
        }
    }
    assert!(checked_clean > 10_000, "{checked_clean}");

    // Every trip in service during the hour produced reports.
    let t0 = start.signed_duration_since(NaiveTime::MIN).num_seconds() as u32;
    let services: HashSet<u32> = network.services_on(date).into_iter().collect();
    let reported: HashSet<&str> = truth.iter().map(|t| t.trip_id.as_str()).collect();
    let active: Vec<&str> = network
        .trips
        .iter()
        .filter(|t| services.contains(&t.service))
        .filter(|t| t.start_s() < t0 + 3600 - 120 && t.end_s() > t0 + 120)
        .map(|t| t.id.as_str())
        .collect();
    assert!(active.len() > 30, "{} active trips", active.len());
    let silent: Vec<&&str> = active.iter().filter(|t| !reported.contains(**t)).collect();
    assert!(silent.is_empty(), "active trips without reports: {silent:?}");

    // Fault rates, each within 20% of what was asked.
    let originals: Vec<&TruthRecord> = truth.iter().filter(|t| !t.has(Fault::Duplicate)).collect();
    let n = originals.len() as f64;
    let share = |f: Fault| originals.iter().filter(|t| t.has(f)).count() as f64 / n;
    let unstuck: Vec<&&TruthRecord> = originals.iter().filter(|t| !t.has(Fault::Stuck)).collect();
    let multipath =
        unstuck.iter().filter(|t| t.has(Fault::Multipath)).count() as f64 / unstuck.len() as f64;
    within(multipath, faults.multipath, "multipath");
    let copies = truth.iter().filter(|t| t.has(Fault::Duplicate)).count() as f64;
    within(copies / n, faults.duplicate, "duplicate");
    within(share(Fault::OutOfOrder), faults.out_of_order, "out_of_order");
    within(share(Fault::Stuck), faults.stuck, "stuck");
    within(share(Fault::Invalid), faults.invalid, "invalid");
    within(c.dropped as f64 / c.scheduled as f64, faults.dropout, "dropout");
    let vehicles: HashMap<&str, (bool, bool)> = truth
        .iter()
        .map(|t| (t.vehicle_id.as_str(), (t.skew_ms != 0, t.has(Fault::NoIds))))
        .collect();
    // Per-device faults over a few dozen buses: a 20% bound would be luck, so this checks
    // them within three binomial standard deviations; `per_device_fault_rates` checks 20%
    // over thousands of vehicles.
    let vn = vehicles.len() as f64;
    for (what, asked, hits) in [
        ("clock_skew", faults.clock_skew, vehicles.values().filter(|v| v.0).count()),
        ("no_ids", faults.no_ids, vehicles.values().filter(|v| v.1).count()),
    ] {
        let sd = (asked * (1.0 - asked) / vn).sqrt();
        let measured = hits as f64 / vn;
        assert!((measured - asked).abs() <= 3.0 * sd, "{what}: {measured} vs {asked}");
    }
    for kind in InvalidKind::ALL {
        assert!(truth.iter().any(|t| t.invalid == Some(kind)), "no {kind:?}");
    }
}

#[test]
fn per_device_fault_rates() {
    let network = Arc::new(Network::load(busflow_core::bundled_gtfs_path()).unwrap());
    let faults = FaultConfig { clock_skew: 0.1, no_ids: 0.05, ..FaultConfig::none() };
    let config = SimulatorConfig {
        vehicles: Some(5_000),
        start: NaiveTime::from_hms_opt(12, 0, 0),
        date: NaiveDate::from_ymd_opt(2026, 11, 24),
        sim_duration: Some(Duration::from_secs(2)),
        faults: faults.clone(),
        ..SimulatorConfig::default()
    };
    let (records, _) = busflow_simulator::generate(network, &config, 0).unwrap();
    let vehicles: HashMap<&str, (bool, bool)> = records
        .iter()
        .map(|r| (r.truth.vehicle_id.as_str(), (r.truth.skew_ms != 0, r.truth.has(Fault::NoIds))))
        .collect();
    assert!(vehicles.len() > 4_500, "{}", vehicles.len());
    let vn = vehicles.len() as f64;
    within(vehicles.values().filter(|v| v.0).count() as f64 / vn, faults.clock_skew, "clock_skew");
    within(vehicles.values().filter(|v| v.1).count() as f64 / vn, faults.no_ids, "no_ids");
    for r in &records {
        let skew = r.truth.skew_ms.abs();
        assert!(skew == 0 || (2_000..120_000).contains(&skew), "{skew}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_cap_holds_and_cancellation_stops_cleanly() {
    let network = Arc::new(Network::load(busflow_core::bundled_gtfs_path()).unwrap());
    let (kafka, topics, _dev) = broker("simrate").await;
    let config = SimulatorConfig {
        vehicles: Some(2_000),
        speedup: f64::INFINITY,
        rate: Some(5_000.0),
        start: NaiveTime::from_hms_opt(12, 0, 0),
        date: NaiveDate::from_ymd_opt(2026, 11, 24),
        ..SimulatorConfig::default()
    };
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let started = Instant::now();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.cancel();
    });
    let report = busflow_simulator::run(config, network, kafka.clone(), topics.clone(), shutdown)
        .await
        .unwrap();
    let wall = started.elapsed().as_secs_f64();
    eprintln!("{report}");
    assert!(report.all_delivered(), "{report}");
    assert!(wall < 10.0, "took {wall} s to stop");
    // 3 s at 5,000/s, give or take a tick and the shutdown latency.
    let rate = report.counts.emitted as f64 / 3.0;
    assert!((4_000.0..=5_600.0).contains(&rate), "{rate}/s");
    consume_all(&kafka, &topics.raw, report.counts.emitted);
}
