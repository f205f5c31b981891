//! Producer throughput: the simulator's Kafka path against a bare rdkafka producer loop sending
//! same-sized payloads, in the same run, against the same broker.
//!
//! Broker: `BUSFLOW_BENCH_BROKERS` (e.g. nisshi on 127.0.0.1:PORT), else the in-process one.
//! Records per phase: `BUSFLOW_BENCH_RECORDS` (default 1,000,000). Each phase runs twice,
//! alternating, on a fresh topic; the report gives every run and the ratio of the means.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use busflow_core::{Network, TopicSpec, Topics};
use busflow_kafka::rdkafka::error::KafkaError;
use busflow_kafka::rdkafka::producer::{
    BaseRecord, DefaultProducerContext, Producer, ThreadedProducer,
};
use busflow_kafka::rdkafka::types::RDKafkaErrorCode;
use busflow_kafka::{DevBroker, KafkaConfig, ensure_topic_specs};
use busflow_simulator::{NaiveDate, NaiveTime, Simulation, SimulatorConfig, VecSink};
use tokio_util::sync::CancellationToken;

const VEHICLES: usize = 100_000;
const PARTITIONS: i32 = 6;

fn config() -> SimulatorConfig {
    SimulatorConfig {
        vehicles: Some(VEHICLES),
        speedup: f64::INFINITY,
        start: NaiveTime::from_hms_opt(12, 0, 0),
        date: NaiveDate::from_ymd_opt(2026, 11, 24),
        ..SimulatorConfig::default()
    }
}

fn topics(tag: &str) -> Topics {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    Topics { raw: format!("bench.{tag}.{nanos}"), ..Topics::default() }
}

/// A bare loop: one thread, pre-built records (real simulator payloads, so sizes and lz4
/// compressibility match), retry when the queue is full, then flush.
fn bare(kafka: &KafkaConfig, topic: &str, records: u64, sample: &[(Vec<u8>, Vec<u8>)]) -> f64 {
    let producer: ThreadedProducer<DefaultProducerContext> =
        kafka.producer_config().create().unwrap();
    let start = Instant::now();
    for i in 0..records {
        let (key, payload) = &sample[i as usize % sample.len()];
        let mut rec = BaseRecord::to(topic).key(key).payload(payload);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => panic!("{e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    records as f64 / start.elapsed().as_secs_f64()
}

/// `BUSFLOW_BENCH_SUSTAIN_S=60`: the load `busflow simulate --vehicles 100000 --hz 1
/// --duration 60s` generates, through the same library call, against `BUSFLOW_BENCH_BROKERS`.
fn sustain(seconds: u64) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let net = Arc::new(Network::load(busflow_core::bundled_gtfs_path()).unwrap());
    let brokers = std::env::var("BUSFLOW_BENCH_BROKERS").expect("BUSFLOW_BENCH_BROKERS");
    let kafka = KafkaConfig::new(brokers);
    let t = topics("sustain");
    let spec = [TopicSpec { name: &t.raw, compacted: false }];
    rt.block_on(ensure_topic_specs(&kafka, &spec, PARTITIONS, Duration::from_secs(20))).unwrap();
    let cfg = SimulatorConfig {
        speedup: 1.0,
        hz: 1.0,
        duration: Some(Duration::from_secs(seconds)),
        progress: false,
        ..config()
    };
    let report =
        rt.block_on(busflow_simulator::run(cfg, net, kafka, t, CancellationToken::new())).unwrap();
    println!("{report}");
    println!(
        "sustained {:.0} records/s delivered over {:.1} s (all delivered: {})",
        report.delivered_per_s(),
        report.wall.as_secs_f64(),
        report.all_delivered()
    );
}

fn main() {
    if let Some(s) = std::env::var("BUSFLOW_BENCH_SUSTAIN_S").ok().and_then(|s| s.parse().ok()) {
        sustain(s);
        return;
    }
    // `cargo bench` passes --bench; nothing to parse.
    let records: u64 = std::env::var("BUSFLOW_BENCH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let net = Arc::new(Network::load(busflow_core::bundled_gtfs_path()).unwrap());

    // Same payloads: 200,000 records the simulator generates (2 s of 100,000 buses).
    let mut sim = Simulation::with_anchor(net.clone(), &config(), 0).unwrap();
    let mut sinks = vec![VecSink::default(); sim.partitions()];
    let t = sim.sim_start();
    sim.advance(t + 2.0, &mut sinks).unwrap();
    let sample: Vec<(Vec<u8>, Vec<u8>)> = sinks.into_iter().flat_map(|s| s.records).collect();
    let payload_len = sample.iter().map(|r| r.1.len()).sum::<usize>() / sample.len().max(1);

    let names: Vec<Topics> = ["bare0", "sim0", "bare1", "sim1"].iter().map(|t| topics(t)).collect();
    let (brokers, _dev) = match std::env::var("BUSFLOW_BENCH_BROKERS") {
        Ok(b) if !b.is_empty() => (b, None),
        _ => {
            let raw = names.iter().map(|t| t.raw.clone()).collect();
            let dev = DevBroker::start_with(raw, PARTITIONS).unwrap();
            (dev.bootstrap_servers().to_string(), Some(dev))
        }
    };
    let kafka = KafkaConfig::new(brokers.clone());
    println!("broker {brokers}, {records} records per run, mean payload {payload_len} bytes");
    let (mut bare_runs, mut sim_runs) = (Vec::new(), Vec::new());
    for round in 0..2 {
        let t = names[round * 2].clone();
        let spec = [TopicSpec { name: &t.raw, compacted: false }];
        rt.block_on(ensure_topic_specs(&kafka, &spec, PARTITIONS, Duration::from_secs(20)))
            .unwrap();
        let r = bare(&kafka, &t.raw, records, &sample);
        println!("round {round}: bare rdkafka loop        {r:>10.0} records/s");
        bare_runs.push(r);

        let t = names[round * 2 + 1].clone();
        let spec = [TopicSpec { name: &t.raw, compacted: false }];
        rt.block_on(ensure_topic_specs(&kafka, &spec, PARTITIONS, Duration::from_secs(20)))
            .unwrap();
        let threads = std::env::var("BUSFLOW_BENCH_THREADS").ok().and_then(|s| s.parse().ok());
        let cfg = SimulatorConfig {
            max_events: Some(records),
            threads: threads.unwrap_or(0),
            ..config()
        };
        let report = rt
            .block_on(busflow_simulator::run(
                cfg,
                net.clone(),
                kafka.clone(),
                t,
                CancellationToken::new(),
            ))
            .unwrap();
        assert!(report.all_delivered(), "{report}");
        // Steady state, like the bare loop (whose records are built before timing): from the
        // first generated record to the last delivery; building the fleet shown apart.
        let r = report.delivered as f64 / report.producing.as_secs_f64();
        println!(
            "round {round}: simulator (gen+produce) {r:>10.0} records/s ({} records; {:.0}/s counting {:.2} s of fleet setup)",
            report.delivered,
            report.delivered_per_s(),
            (report.wall - report.producing).as_secs_f64()
        );
        sim_runs.push(r);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "mean: bare {:.0}/s, simulator {:.0}/s, simulator/bare = {:.1}%",
        mean(&bare_runs),
        mean(&sim_runs),
        100.0 * mean(&sim_runs) / mean(&bare_runs)
    );
    // The same figures, machine-readable, for bench/run.sh.
    let result = serde_json::json!({"stage": "simulator", "kind": "produce", "records": records,
        "payload_bytes": payload_len, "bare_runs": bare_runs, "sim_runs": sim_runs,
        "per_s": mean(&sim_runs), "baseline_per_s": mean(&bare_runs),
        "ratio": mean(&sim_runs) / mean(&bare_runs)});
    println!("BENCH_RESULT {result}");
}
