#![allow(clippy::unwrap_used, clippy::expect_used)]
//! How many positions per second the live state applies with many district viewports, with
//! the fan-out on one thread or sharded over several: the consumer's share of the gateway's
//! work, without HTTP or Kafka. A measurement, not a check, so it is ignored by default:
//! `cargo test --release -p busflow-gateway --test fanout_throughput -- --ignored --nocapture`
//! (`FANOUT_SUBS`, `FANOUT_SECS`, `FANOUT_THREADS` = comma-separated thread counts).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use busflow_gateway::{Bbox, Filter, LiveSettings, LiveState, QueueLimits, Subscriber};
use rand::{Rng, SeedableRng};

/// Cairns, as `busflow load` draws its viewports: west, south, east, north.
const AREA: [f64; 4] = [145.68, -17.05, 145.80, -16.80];
/// As `bench-feed --vehicles 20000`.
const VEHICLES: usize = 20_000;
/// The Kafka source's largest batch.
const BATCH: usize = 256;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn run(subs: usize, threads: usize, secs: u64) {
    let live = LiveState::new(LiveSettings {
        stale_after: Duration::from_secs(3600),
        max_vehicles_per_stream: 100_000,
        queue: QueueLimits { capacity: 8192, slow_timeout: Duration::from_secs(3600) },
        fanout_threads: threads,
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut pos: Vec<(f64, f64)> = (0..VEHICLES)
        .map(|_| (rng.random_range(AREA[1]..AREA[3]), rng.random_range(AREA[0]..AREA[2])))
        .collect();
    live.apply_batch(
        pos.iter()
            .enumerate()
            .map(|(i, (lat, lon))| common::vp(&format!("v{i}"), 1, *lat, *lon, None)),
    );
    // 3 km viewports, as `busflow load --viewport-km 3`.
    let (dlat, dlon) = (3.0 / 111.0, 3.0 / (111.0 * 16.9f64.to_radians().cos()));
    let clients: Vec<Subscriber> = (0..subs)
        .map(|_| {
            let w = rng.random_range(AREA[0]..AREA[2] - dlon);
            let s = rng.random_range(AREA[1]..AREA[3] - dlat);
            live.subscribe(Filter::bbox(Bbox::new(w, s, w + dlon, s + dlat).unwrap()), false)
        })
        .collect();
    // Connections take their events on other threads; one drainer stands in for them.
    let stop = Arc::new(AtomicBool::new(false));
    let taken = Arc::new(AtomicU64::new(0));
    let drainer = {
        let (stop, taken) = (stop.clone(), taken.clone());
        let queues: Vec<_> = clients.iter().map(|c| c.queue.clone()).collect();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for q in &queues {
                    if let Some(b) = q.try_batch() {
                        taken.fetch_add(b.len() as u64, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let started = Instant::now();
    let mut applied = 0u64;
    let mut ts = 2;
    while started.elapsed() < Duration::from_secs(secs) {
        let batch: Vec<_> = (0..BATCH)
            .map(|_| {
                let i = rng.random_range(0..VEHICLES);
                let (lat, lon) = &mut pos[i];
                *lat = (*lat + rng.random_range(-0.0005..0.0005)).clamp(AREA[1], AREA[3]);
                *lon = (*lon + rng.random_range(-0.0005..0.0005)).clamp(AREA[0], AREA[2]);
                common::vp(&format!("v{i}"), ts, *lat, *lon, None)
            })
            .collect();
        ts += 1;
        live.apply_batch(batch);
        applied += BATCH as u64;
    }
    let wall = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    drainer.join().unwrap();
    println!(
        "{subs} viewports, {threads} fan-out thread(s): {:.0} positions/s applied, {:.0} events/s taken",
        applied as f64 / wall,
        taken.load(Ordering::Relaxed) as f64 / wall,
    );
}

#[test]
#[ignore = "a measurement; run by hand with --release --ignored --nocapture"]
fn positions_applied_per_second() {
    let secs: u64 = env("FANOUT_SECS", "10").parse().unwrap();
    for subs in env("FANOUT_SUBS", "5000,10000").split(',') {
        for threads in env("FANOUT_THREADS", "1,2").split(',') {
            run(subs.parse().unwrap(), threads.parse().unwrap(), secs);
        }
    }
}
