//! Messy traffic with ground truth, a broker, and readers for the output topics.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use busflow_core::geometry::destination;
use busflow_core::{Network, RawPosition, Rejected, Topics, VehiclePosition};
use busflow_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use busflow_kafka::rdkafka::message::Message;
use busflow_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use busflow_kafka::rdkafka::{Offset, TopicPartitionList};
use busflow_kafka::{DevBroker, KafkaConfig};
use busflow_pipeline::{PipelineConfig, Report, run};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use tokio_util::sync::CancellationToken;

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Where a vehicle really was for one raw message that should be accepted.
#[derive(Debug, Clone)]
pub struct Truth {
    pub lat: f64,
    pub lon: f64,
    pub shape_id: String,
    /// What the device named: "trip", "route" or "none".
    pub hint: &'static str,
}

/// One raw message as produced.
#[derive(Debug, Clone)]
pub struct RawOut {
    pub key: Option<String>,
    pub payload: Vec<u8>,
    /// Set for clean reports (not a fault), keyed by (vehicle_id, ts).
    pub truth: Option<(String, i64, Truth)>,
    /// This message is an exact repeat of an earlier one.
    pub duplicate: bool,
}

/// `buses` vehicles driving Cairns trips, one fix every 5 s ending about now, with 5 m noise and
/// every fault: exact repeats, out-of-order, multipath jumps, garbage, null island, key
/// mismatches, future timestamps, route-only and hint-less devices.
pub fn traffic(net: &Network, buses: usize, fixes: usize, seed: u64) -> Vec<RawOut> {
    let mut rng = StdRng::seed_from_u64(seed);
    let noise: Normal<f64> = Normal::new(0.0, 5.0).unwrap();
    let start = now_ms() - fixes as i64 * 5000 - 5000;
    let step = net.trips.len() / buses.max(1);
    let mut per_bus: Vec<Vec<RawOut>> = Vec::new();
    for b in 0..buses {
        let trip = &net.trips[(b * step.max(1)) % net.trips.len()];
        let shape = net.shape(trip.shape);
        let line = &shape.line;
        let id = format!("bus-{seed}-{b}");
        let hint = rng.random_range(0..20);
        let mut out = Vec::new();
        let mut d = rng.random_range(0.0..line.length_m() * 0.3);
        let speed = rng.random_range(6.0..12.0);
        for i in 0..fixes {
            let ts = start + i as i64 * 5000;
            if d > line.length_m() {
                break;
            }
            let (tlat, tlon, _) = line.point_at(d);
            let (lat, lon) =
                destination(tlat, tlon, rng.random_range(0.0..360.0), noise.sample(&mut rng).abs());
            let mut raw = RawPosition::new(id.clone(), ts, lat, lon);
            raw.seq = Some(i as u64);
            match hint {
                0..16 => raw.trip_id = Some(trip.id.clone()),
                16..19 => raw.route_id = Some(net.route(trip.route).id.clone()),
                _ => {}
            }
            if rng.random_bool(0.5) {
                raw.speed_mps = Some(speed as f32);
            }
            let fault = rng.random_range(0..1000);
            let key = Some(id.clone());
            let json = serde_json::to_vec(&raw).unwrap();
            match fault {
                0..10 => {
                    // multipath: a jump of 400-800 m
                    let (jl, jo) = destination(
                        lat,
                        lon,
                        rng.random_range(0.0..360.0),
                        rng.random_range(400.0..800.0),
                    );
                    let mut j = raw.clone();
                    j.lat = jl;
                    j.lon = jo;
                    out.push(RawOut {
                        key,
                        payload: serde_json::to_vec(&j).unwrap(),
                        truth: None,
                        duplicate: false,
                    });
                }
                10..15 => out.push(RawOut {
                    key,
                    payload: b"{\"vehicle_id\": oops".to_vec(),
                    truth: None,
                    duplicate: false,
                }),
                15..18 => {
                    let mut z = raw.clone();
                    z.lat = 0.0;
                    z.lon = 0.0;
                    out.push(RawOut {
                        key,
                        payload: serde_json::to_vec(&z).unwrap(),
                        truth: None,
                        duplicate: false,
                    });
                }
                18..21 => out.push(RawOut {
                    key: Some("someone-else".into()),
                    payload: json,
                    truth: None,
                    duplicate: false,
                }),
                21..24 => {
                    let mut f = raw.clone();
                    f.ts = now_ms() + 3_600_000;
                    out.push(RawOut {
                        key,
                        payload: serde_json::to_vec(&f).unwrap(),
                        truth: None,
                        duplicate: false,
                    });
                }
                _ => {
                    let hint = match hint {
                        0..16 => "trip",
                        16..19 => "route",
                        _ => "none",
                    };
                    let truth = Truth { lat: tlat, lon: tlon, shape_id: shape.id.clone(), hint };
                    out.push(RawOut {
                        key: key.clone(),
                        payload: json.clone(),
                        truth: Some((id.clone(), ts, truth)),
                        duplicate: false,
                    });
                    if rng.random_range(0..100) < 3 {
                        out.push(RawOut { key, payload: json, truth: None, duplicate: true });
                    }
                }
            }
            d += speed * 5.0;
        }
        // A few out-of-order deliveries: swap neighbours (the later one then arrives first, so
        // the earlier becomes stale).
        for _ in 0..(out.len() / 60) {
            let i = rng.random_range(1..out.len().max(2));
            if i < out.len() && !out[i].duplicate && !out[i - 1].duplicate {
                out.swap(i - 1, i);
                // The earlier report now arrives second: it is stale, not a position.
                out[i].truth = None;
            }
        }
        per_bus.push(out);
    }
    // Interleave the buses.
    let mut all = Vec::new();
    let longest = per_bus.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for bus in &per_bus {
            if let Some(m) = bus.get(i) {
                all.push(m.clone());
            }
        }
    }
    all
}

pub fn unique_topics(tag: &str) -> Topics {
    let n = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let p = format!("t{}.{tag}.{n}", std::process::id());
    Topics {
        raw: format!("{p}.raw"),
        positions: format!("{p}.positions"),
        rejected: format!("{p}.rejected"),
        latest: format!("{p}.latest"),
    }
}

pub fn broker(topics: &Topics, partitions: i32) -> DevBroker {
    DevBroker::start(topics, partitions).unwrap()
}

pub async fn produce(kafka: &KafkaConfig, topic: &str, msgs: &[RawOut]) {
    let producer: FutureProducer = kafka.producer_config().create().unwrap();
    produce_with(&producer, topic, msgs).await;
}

pub async fn produce_with(producer: &FutureProducer, topic: &str, msgs: &[RawOut]) {
    let mut futs = Vec::new();
    for m in msgs {
        let mut rec = FutureRecord::to(topic).payload(&m.payload);
        if let Some(k) = &m.key {
            rec = rec.key(k.as_str());
        }
        futs.push(producer.send(rec, Duration::from_secs(30)));
    }
    for f in futs {
        f.await.map_err(|(e, _)| e).unwrap();
    }
}

/// Every record of a topic (value, partition, offset), up to its end now.
pub fn read_all(kafka: &KafkaConfig, topic: &str) -> Vec<(Vec<u8>, i32, i64)> {
    let consumer: BaseConsumer = kafka
        .client_config_with(&[("group.id", "test-reader"), ("enable.auto.commit", "false")])
        .create()
        .unwrap();
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let parts = md.topics()[0].partitions().len() as i32;
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in 0..parts {
        let (lo, hi) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap();
        if hi > lo {
            tpl.add_partition_offset(topic, p, Offset::Offset(lo)).unwrap();
            ends.insert(p, hi);
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return out;
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            out.push((m.payload().unwrap_or_default().to_vec(), m.partition(), m.offset()));
            if ends.get(&m.partition()).is_some_and(|&h| m.offset() + 1 >= h) {
                ends.remove(&m.partition());
            }
        }
    }
    out
}

/// Committed offsets of the pipeline's group on the raw topic, summed, and the raw end, summed.
pub fn progress(kafka: &KafkaConfig, topics: &Topics, group: &str, partitions: i32) -> (i64, i64) {
    let consumer: BaseConsumer = kafka
        .client_config_with(&[("group.id", group), ("enable.auto.commit", "false")])
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(&topics.raw, p);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    let done: i64 = committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum();
    let end: i64 = (0..partitions)
        .map(|p| consumer.fetch_watermarks(&topics.raw, p, Duration::from_secs(10)).unwrap().1)
        .sum();
    (done, end)
}

/// The outputs, parsed.
pub struct Outputs {
    pub positions: Vec<VehiclePosition>,
    pub rejected: Vec<Rejected>,
    pub latest: Vec<VehiclePosition>,
}

pub fn outputs(kafka: &KafkaConfig, topics: &Topics) -> Outputs {
    let parse_pos = |v: Vec<(Vec<u8>, i32, i64)>| -> Vec<VehiclePosition> {
        v.into_iter().map(|(b, _, _)| serde_json::from_slice(&b).unwrap()).collect()
    };
    Outputs {
        positions: parse_pos(read_all(kafka, &topics.positions)),
        rejected: read_all(kafka, &topics.rejected)
            .into_iter()
            .map(|(b, _, _)| serde_json::from_slice(&b).unwrap())
            .collect(),
        latest: parse_pos(read_all(kafka, &topics.latest)),
    }
}

/// Checks exactly-once and accounting against what was produced; returns (duplicates expected).
pub fn check_exactly_once(raw: &[RawOut], out: &Outputs) {
    use std::collections::HashSet;
    let mut seen = HashSet::new();
    for p in &out.positions {
        assert!(
            seen.insert((p.vehicle_id.clone(), p.ts)),
            "duplicate position {} {}",
            p.vehicle_id,
            p.ts
        );
    }
    // Per-vehicle order: a vehicle's positions sit in one partition (keyed by vehicle id) and
    // must appear there in increasing event time, whatever restarts happened in between.
    let mut last_ts: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    for p in &out.positions {
        if let Some(prev) = last_ts.insert(&p.vehicle_id, p.ts) {
            assert!(
                prev < p.ts,
                "{}: position at {} after {} in the topic",
                p.vehicle_id,
                p.ts,
                prev
            );
        }
    }
    let mut sources = HashSet::new();
    for p in &out.positions {
        assert!(
            sources.insert((p.partition, p.offset)),
            "raw {}/{} produced twice",
            p.partition,
            p.offset
        );
    }
    for r in &out.rejected {
        assert!(
            sources.insert((r.partition, r.offset)),
            "raw {}/{} produced twice",
            r.partition,
            r.offset
        );
    }
    // Every clean report is accepted exactly once.
    let mut missing = Vec::new();
    for m in raw {
        if let Some((v, ts, _)) = &m.truth
            && !seen.contains(&(v.clone(), *ts))
        {
            let why: Vec<String> = out
                .rejected
                .iter()
                .filter(|r| r.raw_bytes().unwrap() == m.payload)
                .map(|r| format!("{}: {}", r.reason.as_str(), r.detail))
                .collect();
            missing.push(format!("{v} at {ts}: {why:?}"));
        }
    }
    assert!(missing.is_empty(), "{} clean reports without a position: {missing:#?}", missing.len());
    let dups = raw.iter().filter(|m| m.duplicate).count();
    assert_eq!(
        out.positions.len() + out.rejected.len() + dups,
        raw.len(),
        "positions {} + rejected {} + duplicates {dups} != raw {}",
        out.positions.len(),
        out.rejected.len(),
        raw.len()
    );
}

/// Runs pipeline instances (one per config) until the group has committed the whole raw topic.
pub async fn run_to_end(
    cfgs: Vec<PipelineConfig>,
    net: Arc<Network>,
    kafka: KafkaConfig,
    topics: Topics,
    partitions: i32,
) -> Vec<Report> {
    let token = CancellationToken::new();
    let group = cfgs[0].group_id.clone();
    let mut handles = Vec::new();
    for cfg in cfgs {
        let (net, kafka, topics, token) =
            (net.clone(), kafka.clone(), topics.clone(), token.clone());
        handles.push(tokio::task::spawn_blocking(move || run(cfg, net, kafka, topics, token)));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (done, end) = {
            let (k, t, g) = (kafka.clone(), topics.clone(), group.clone());
            tokio::task::spawn_blocking(move || progress(&k, &t, &g, partitions)).await.unwrap()
        };
        if done == end {
            break;
        }
        assert!(Instant::now() < deadline, "pipeline committed {done} of {end} raw messages");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    token.cancel();
    let mut reports = Vec::new();
    for h in handles {
        reports.push(h.await.unwrap().unwrap());
    }
    reports
}
