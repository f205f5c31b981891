//! Writes derived positions (what the pipeline would) to the positions topic at a fixed rate,
//! for vehicles driving the bundled network's shapes, so the gateway can be measured alone.
//!
//! Each record's `ts` and `processed_ts` are the wall clock when it is handed to the producer,
//! so a viewer's event latency is feeder -> broker -> gateway -> viewer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use busflow_core::{Network, SCHEMA_VERSION, VehiclePosition, VehicleStatus, h3};
use busflow_kafka::KafkaConfig;
use busflow_kafka::rdkafka::error::KafkaError;
use busflow_kafka::rdkafka::producer::{
    BaseRecord, DefaultProducerContext, Producer, ThreadedProducer,
};
use busflow_kafka::rdkafka::types::RDKafkaErrorCode;
use clap::Parser;
use rand::{Rng, SeedableRng};

/// Fixed-rate positions feeder for the gateway fan-out benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BROKERS")]
    brokers: String,
    /// Topic to write (the gateway's positions topic).
    #[arg(long, env = "BENCH_FEED_TOPIC", default_value = "bus.positions")]
    topic: String,
    /// Updates per second, all vehicles together.
    #[arg(long, env = "BENCH_FEED_RATE", default_value_t = 20_000)]
    rate: u64,
    /// Vehicles (each reports every vehicles/rate seconds).
    #[arg(long, env = "BENCH_FEED_VEHICLES", default_value_t = 20_000)]
    vehicles: usize,
    /// How long to feed.
    #[arg(long, env = "BENCH_FEED_SECONDS", default_value_t = 30)]
    seconds: u64,
    /// Seed for the vehicles' shapes and starting points.
    #[arg(long, env = "BENCH_FEED_SEED", default_value_t = 7)]
    seed: u64,
}

struct Bus {
    shape: u32,
    route: u32,
    dist_m: f64,
    last_ms: i64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.rate > 0 && args.vehicles > 0, "--rate and --vehicles must be positive");
    let net = Arc::new(
        Network::load(busflow_core::bundled_gtfs_path()).context("loading the bundled feed")?,
    );
    anyhow::ensure!(!net.trips.is_empty(), "the bundled feed has no trips");
    let res = h3::resolution(h3::DEFAULT_RESOLUTION)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let start = now_ms();
    let mut buses: Vec<Bus> = (0..args.vehicles)
        .map(|_| {
            let trip = net.trip(rng.random_range(0..net.trips.len()) as u32);
            let len = net.shape(trip.shape).line.length_m();
            Bus {
                shape: trip.shape,
                route: trip.route,
                dist_m: rng.random_range(0.0..len.max(1.0)),
                last_ms: start,
            }
        })
        .collect();

    let kafka = KafkaConfig::new(args.brokers.clone());
    let producer: ThreadedProducer<DefaultProducerContext> =
        kafka.producer_config().create().context("creating the producer")?;
    let total = args.rate * args.seconds;
    let started = Instant::now();
    let mut last_report = Instant::now();
    let (mut sent, mut waits) = (0u64, 0u64);
    for i in 0..total {
        let due = Duration::from_micros(i * 1_000_000 / args.rate);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        let b = (i % args.vehicles as u64) as usize;
        let now = now_ms();
        let bus = &mut buses[b];
        let shape = net.shape(bus.shape);
        bus.dist_m += 8.0 * (now - bus.last_ms) as f64 / 1000.0;
        bus.last_ms = now;
        if bus.dist_m > shape.line.length_m() {
            bus.dist_m = 0.0;
        }
        let (lat, lon, bearing) = shape.line.point_at(bus.dist_m);
        let route = net.route(bus.route);
        let pos = VehiclePosition {
            v: SCHEMA_VERSION,
            vehicle_id: format!("feed-{b}"),
            ts: now,
            lat,
            lon,
            snapped_lat: Some(lat),
            snapped_lon: Some(lon),
            route_id: Some(route.id.clone()),
            route_short_name: Some(route.short_name.clone()),
            route_color: Some(route.color.clone()),
            trip_id: None,
            shape_id: Some(shape.id.clone()),
            direction_id: None,
            headsign: None,
            dist_along_m: Some(bus.dist_m),
            off_route_m: Some(0.0),
            speed_mps: Some(8.0),
            bearing_deg: Some(bearing as f32),
            next_stop_id: None,
            next_stop_dist_m: None,
            h3_cell: h3::cell_string(lat, lon, res).unwrap_or_default(),
            status: VehicleStatus::InTransit,
            seq: None,
            processed_ts: now,
            partition: 0,
            offset: i as i64,
        };
        let payload = serde_json::to_vec(&pos)?;
        let mut rec = BaseRecord::to(&args.topic).key(pos.vehicle_id.as_bytes()).payload(&payload);
        // Queue full: wait for deliveries rather than drop (the rate is then what the broker took).
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    waits += 1;
                    std::thread::sleep(Duration::from_micros(500));
                }
                Err((e, _)) => return Err(e).context("producing a position"),
            }
        }
        sent += 1;
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            eprintln!(
                "bench-feed: {sent} sent, {:.0}/s, {:.0}s left",
                sent as f64 / started.elapsed().as_secs_f64(),
                args.seconds as f64 - started.elapsed().as_secs_f64()
            );
        }
    }
    producer.flush(Duration::from_secs(60)).context("flushing")?;
    let secs = started.elapsed().as_secs_f64();
    let result = serde_json::json!({"stage": "feed", "topic": args.topic, "sent": sent,
        "seconds": secs, "per_s": sent as f64 / secs, "queue_full_waits": waits});
    println!("BENCH_RESULT {result}");
    Ok(())
}
