//! The full per-event path (parse, validate, dedup, snap, enrich, H3, serialize) on Cairns
//! shapes with GPS noise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use busflow_core::{Network, RawPosition};
use busflow_pipeline::{Outcome, PipelineConfig, Processor, RawMessage};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

const NOW: i64 = 1_763_900_000_000;

/// 200 buses, one on each of the first trips, reporting every 5 s with 6 m GPS noise; a third
/// name their trip, a third only their route, a third nothing.
fn trace(net: &Network, fixes_per_bus: usize) -> Vec<(String, Vec<u8>)> {
    let mut rng = StdRng::seed_from_u64(7);
    let noise: Normal<f64> = Normal::new(0.0, 6.0).unwrap();
    let mut per_bus = Vec::new();
    for (b, trip) in net.trips.iter().step_by(net.trips.len() / 200).take(200).enumerate() {
        let line = &net.shape(trip.shape).line;
        let id = format!("bus-{b}");
        let mut msgs = Vec::new();
        for i in 0..fixes_per_bus {
            let d = (i as f64 * 40.0) % line.length_m();
            let (lat, lon, _) = line.point_at(d);
            let (lat, lon) = busflow_core::geometry::destination(
                lat,
                lon,
                rng.random::<f64>() * 360.0,
                noise.sample(&mut rng).abs(),
            );
            let ts = NOW - 600_000 + i as i64 * 5000;
            let mut raw = RawPosition::new(id.clone(), ts, lat, lon);
            raw.speed_mps = Some(8.0);
            match b % 3 {
                0 => raw.trip_id = Some(trip.id.clone()),
                1 => raw.route_id = Some(net.route(trip.route).id.clone()),
                _ => {}
            }
            raw.seq = Some(i as u64);
            msgs.push((id.clone(), serde_json::to_vec(&raw).unwrap()));
        }
        per_bus.push(msgs);
    }
    // Interleave the buses like a real partition.
    let mut out = Vec::new();
    for i in 0..fixes_per_bus {
        for bus in &per_bus {
            out.push(bus[i].clone());
        }
    }
    out
}

fn per_event(c: &mut Criterion) {
    let net = Arc::new(Network::load(busflow_core::bundled_gtfs_path()).unwrap());
    let cfg = PipelineConfig::default();
    let events = trace(&net, 30);
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("per_event_parse_to_serialize", |b| {
        b.iter_batched(
            || Processor::new(net.clone(), &cfg).unwrap(),
            |mut p| {
                let mut bytes = 0usize;
                for (offset, (key, payload)) in events.iter().enumerate() {
                    let msg = RawMessage {
                        payload,
                        key: Some(key.as_bytes()),
                        partition: 0,
                        offset: offset as i64,
                    };
                    bytes += match p.process(msg, NOW) {
                        Outcome::Position(pos) => serde_json::to_vec(&pos).unwrap().len(),
                        Outcome::Rejected(r) => serde_json::to_vec(&r).unwrap().len(),
                        Outcome::Duplicate => 0,
                    };
                }
                black_box(bytes);
                p
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, per_event);
criterion_main!(benches);
