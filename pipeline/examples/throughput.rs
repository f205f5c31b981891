//! End-to-end measurement against a real broker: pipeline throughput with N workers vs. an
//! identity copy (consume raw, produce the same bytes) on the same broker and data, then the
//! added latency at a fixed input rate.
//!
//! ```text
//! cargo run --release -p busflow-pipeline --example throughput -- BROKERS [MESSAGES] [WORKERS] [RATES] [SECONDS]
//! ```
//!
//! RATES is a comma-separated list (default `20000`); each rate runs SECONDS (default 10). Besides
//! the human-readable lines, every figure is printed once more as a `BENCH_RESULT {json}` line
//! for `bench/run.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use busflow_core::{Network, RawPosition, TopicSpec, Topics, VehiclePosition};
use busflow_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use busflow_kafka::rdkafka::message::Message;
use busflow_kafka::rdkafka::producer::{
    BaseRecord, DefaultProducerContext, Producer, ThreadedProducer,
};
use busflow_kafka::rdkafka::{Offset, TopicPartitionList};
use busflow_kafka::{KafkaConfig, ensure_topic_specs};
use busflow_pipeline::{PipelineConfig, run};
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 4;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Buses moving along Cairns trips; `next(ts)` gives the next report of bus `i`.
struct Fleet {
    net: Arc<Network>,
    dist: Vec<f64>,
    last_ts: Vec<i64>,
    trips: Vec<u32>,
}

impl Fleet {
    fn new(net: Arc<Network>, buses: usize) -> Fleet {
        let step = (net.trips.len() / buses).max(1);
        let trips = (0..buses).map(|b| ((b * step) % net.trips.len()) as u32).collect();
        Fleet { net, dist: vec![0.0; buses], last_ts: vec![0; buses], trips }
    }

    fn report(&mut self, bus: usize, ts: i64) -> (String, Vec<u8>) {
        let dt =
            if self.last_ts[bus] == 0 { 0.0 } else { (ts - self.last_ts[bus]) as f64 / 1000.0 };
        self.last_ts[bus] = ts;
        self.dist[bus] += 6.0 * dt;
        if self.dist[bus] > self.net.shape(self.net.trip(self.trips[bus]).shape).line.length_m() {
            // Trip done: the bus starts another one (a jump the pipeline may call implausible).
            self.trips[bus] = (self.trips[bus] + 7) % self.net.trips.len() as u32;
            self.dist[bus] = 0.0;
        }
        let trip = self.net.trip(self.trips[bus]);
        let line = &self.net.shape(trip.shape).line;
        let d = self.dist[bus];
        let (lat, lon, _) = line.point_at(d);
        let id = format!("bus-{bus}");
        let mut raw = RawPosition::new(id.clone(), ts, lat + 0.00003, lon - 0.00002);
        raw.trip_id = Some(trip.id.clone());
        raw.route_id = Some(self.net.route(trip.route).id.clone());
        raw.speed_mps = Some(8.0);
        (id, serde_json::to_vec(&raw).unwrap())
    }
}

/// One machine-readable figure for `bench/run.sh`.
fn result(v: serde_json::Value) {
    println!("BENCH_RESULT {v}");
}

fn producer(kafka: &KafkaConfig) -> ThreadedProducer<DefaultProducerContext> {
    kafka.producer_config().create().unwrap()
}

fn send(p: &ThreadedProducer<DefaultProducerContext>, topic: &str, key: &[u8], payload: &[u8]) {
    let mut rec = BaseRecord::to(topic).key(key).payload(payload);
    loop {
        match p.send(rec) {
            Ok(()) => return,
            Err((_, r)) => {
                rec = r;
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
}

fn end_offsets(kafka: &KafkaConfig, topic: &str) -> i64 {
    let c: BaseConsumer = kafka.client_config().create().unwrap();
    (0..PARTITIONS).map(|p| c.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap().1).sum()
}

/// The group's committed offsets on `topic`, summed. One client for the whole run: a client
/// per check would load the broker (and this process) while the pipeline is being measured.
struct Committed {
    consumer: BaseConsumer,
    tpl: TopicPartitionList,
}

impl Committed {
    fn new(kafka: &KafkaConfig, topic: &str, group: &str) -> Committed {
        let consumer = kafka.client_config_with(&[("group.id", group)]).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(topic, p);
        }
        Committed { consumer, tpl }
    }

    fn sum(&self) -> i64 {
        self.consumer
            .committed_offsets(self.tpl.clone(), Duration::from_secs(10))
            .unwrap()
            .elements()
            .iter()
            .map(|e| if let Offset::Offset(o) = e.offset() { o } else { 0 })
            .sum()
    }
}

/// Consume `topic` from the beginning and produce the same bytes to `to`, until `n` copied
/// and acknowledged.
fn identity_copy(kafka: &KafkaConfig, topic: &str, to: &str, n: i64) -> Duration {
    let c: BaseConsumer = kafka
        .client_config_with(&[("group.id", "identity-copy"), ("enable.auto.commit", "false")])
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let p = producer(kafka);
    let start = Instant::now();
    let mut copied = 0;
    while copied < n {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            send(&p, to, m.key().unwrap_or_default(), m.payload().unwrap_or_default());
            copied += 1;
        }
    }
    p.flush(Duration::from_secs(60)).unwrap();
    start.elapsed()
}

fn main() {
    // The pipeline's own warnings (a stalled sink, a broker that stops answering) on stderr.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let brokers = args.get(1).cloned().unwrap_or_else(|| "127.0.0.1:9092".into());
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let workers: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2);
    let rates: Vec<u64> = args
        .get(4)
        .map(|s| s.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![20_000]);
    let seconds: u64 = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(10);
    let kafka = KafkaConfig::new(brokers);
    let net = Arc::new(Network::load(busflow_core::bundled_gtfs_path()).unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tag = format!("tp{}", now_ms());
    let topics = Topics {
        raw: format!("{tag}.raw"),
        positions: format!("{tag}.positions"),
        rejected: format!("{tag}.rejected"),
        latest: format!("{tag}.latest"),
    };
    let copy = format!("{tag}.copy");
    let mut specs: Vec<TopicSpec<'_>> = topics.specs().to_vec();
    specs.push(TopicSpec { name: &copy, compacted: false });
    rt.block_on(ensure_topic_specs(&kafka, &specs, PARTITIONS, Duration::from_secs(30))).unwrap();

    // 1. Backlog of n raw messages from 500 buses, 5 s apart, ending now.
    let buses = 500;
    let mut fleet = Fleet::new(net.clone(), buses);
    let p = producer(&kafka);
    let t0 = now_ms() - (n / buses) as i64 * 5000;
    let started = Instant::now();
    for i in 0..n {
        let (k, v) = fleet.report(i % buses, t0 + (i / buses) as i64 * 5000);
        send(&p, &topics.raw, k.as_bytes(), &v);
    }
    p.flush(Duration::from_secs(120)).unwrap();
    println!("produced {n} raw in {:.2}s", started.elapsed().as_secs_f64());

    // 2. Identity copy.
    let copy_time = identity_copy(&kafka, &topics.raw, &copy, n as i64);
    let copy_rate = n as f64 / copy_time.as_secs_f64();
    println!("identity copy: {n} in {:.2}s = {copy_rate:.0} msg/s", copy_time.as_secs_f64());
    result(serde_json::json!({"stage": "pipeline", "kind": "identity_copy", "workers": workers,
        "messages": n, "seconds": copy_time.as_secs_f64(), "per_s": copy_rate}));

    // 3. Pipeline on the same backlog (time from start to everything committed, which
    //    includes startup and recovery scan of empty output topics).
    let token = CancellationToken::new();
    let group = format!("{tag}-pipeline");
    let mut cfg = PipelineConfig { workers, group_id: group.clone(), ..PipelineConfig::default() };
    // For comparing epoch lengths without rebuilding.
    if let Some(ms) = std::env::var("BUSFLOW_BENCH_EPOCH_MS").ok().and_then(|s| s.parse().ok()) {
        cfg.epoch = Duration::from_millis(ms);
    }
    let started = Instant::now();
    let handle = {
        let (net, kafka, topics, token) =
            (net.clone(), kafka.clone(), topics.clone(), token.clone());
        std::thread::spawn(move || run(cfg, net, kafka, topics, token))
    };
    let progress = Committed::new(&kafka, &topics.raw, &group);
    while progress.sum() < n as i64 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let pipe_time = started.elapsed();
    let pipe_rate = n as f64 / pipe_time.as_secs_f64();
    println!(
        "pipeline -w {workers}: {n} in {:.2}s = {pipe_rate:.0} msg/s ({:.0}% of identity copy)",
        pipe_time.as_secs_f64(),
        100.0 * pipe_rate / copy_rate
    );
    result(serde_json::json!({"stage": "pipeline", "kind": "throughput", "workers": workers,
        "messages": n, "seconds": pipe_time.as_secs_f64(), "per_s": pipe_rate,
        "baseline_per_s": copy_rate, "ratio": pipe_rate / copy_rate}));

    // 4. Added latency at fixed rates: raw ts = send time; the positions record timestamp (set
    //    when the pipeline produced it) minus that.
    let mut sent = n as i64;
    let mut phases = Vec::new();
    for &rate in &rates {
        let from_ts = now_ms();
        let total = rate * seconds;
        let started = Instant::now();
        for i in 0..total {
            let due = Duration::from_micros(i * 1_000_000 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
            let (k, v) = fleet.report((i as usize) % buses, now_ms());
            send(&p, &topics.raw, k.as_bytes(), &v);
        }
        p.flush(Duration::from_secs(60)).unwrap();
        let offered = total as f64 / started.elapsed().as_secs_f64();
        sent += total as i64;
        while progress.sum() < sent {
            std::thread::sleep(Duration::from_millis(20));
        }
        phases.push((rate, offered, from_ts, now_ms()));
    }
    token.cancel();
    let report = handle.join().unwrap().unwrap();
    let c: BaseConsumer =
        kafka.client_config_with(&[("group.id", "latency-reader")]).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(&topics.positions, p, Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let after = end_offsets(&kafka, &topics.positions);
    let mut lat: Vec<Vec<i64>> = vec![Vec::new(); phases.len()];
    let mut read = 0;
    while read < after {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(500)) {
            read += 1;
            let pos: VehiclePosition = serde_json::from_slice(m.payload().unwrap()).unwrap();
            let phase = phases.iter().position(|&(_, _, from, to)| pos.ts >= from && pos.ts <= to);
            if let (Some(i), Some(ms)) = (phase, m.timestamp().to_millis()) {
                lat[i].push(ms - pos.ts);
            }
        }
    }
    for ((rate, offered, _, _), mut lat) in phases.into_iter().zip(lat) {
        if lat.is_empty() {
            println!("latency at {rate}/s: no samples");
            continue;
        }
        lat.sort_unstable();
        let q = |f: f64| lat[((lat.len() as f64 - 1.0) * f) as usize];
        println!(
            "latency at {offered:.0} msg/s offered ({} samples): p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
            lat.len(),
            q(0.5),
            q(0.9),
            q(0.99),
            q(1.0)
        );
        result(serde_json::json!({"stage": "pipeline", "kind": "latency", "workers": workers,
            "rate": rate, "offered_per_s": offered, "samples": lat.len(), "p50_ms": q(0.5),
            "p90_ms": q(0.9), "p99_ms": q(0.99), "max_ms": q(1.0)}));
    }
    println!("report: {report:?}");
}
