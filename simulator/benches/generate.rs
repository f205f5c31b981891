//! Event generation alone (no Kafka): records per second per thread.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use busflow_core::Network;
use busflow_simulator::{CountingSink, FaultConfig, Simulation, SimulatorConfig};
use chrono::{NaiveDate, NaiveTime};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

fn config(vehicles: usize, threads: usize, faults: FaultConfig) -> SimulatorConfig {
    SimulatorConfig {
        vehicles: Some(vehicles),
        start: NaiveTime::from_hms_opt(8, 0, 0),
        date: NaiveDate::from_ymd_opt(2026, 11, 24),
        threads,
        faults,
        ..SimulatorConfig::default()
    }
}

fn generation(c: &mut Criterion) {
    let net = Arc::new(Network::load(busflow_core::bundled_gtfs_path()).unwrap());
    let vehicles = 100_000;
    let seconds = 4.0;
    let mut group = c.benchmark_group("generate");
    group.sample_size(10);
    for (name, threads, faults) in [
        ("1_thread_default_faults", 1, FaultConfig::default()),
        ("1_thread_no_faults", 1, FaultConfig::none()),
        ("2_threads_default_faults", 2, FaultConfig::default()),
    ] {
        let cfg = config(vehicles, threads, faults);
        // Setup (not timed): build the fleet and run one simulated second, so every vehicle
        // has planned its trip; the timed part is steady-state reporting.
        let setup = || {
            let mut sim = Simulation::with_anchor(net.clone(), &cfg, 1_700_000_000_000).unwrap();
            let mut sinks = vec![CountingSink::default(); sim.partitions()];
            let t = sim.sim_start();
            sim.advance(t + 1.0, &mut sinks).unwrap();
            sim
        };
        let run = |mut sim: Simulation| {
            let mut sinks = vec![CountingSink::default(); sim.partitions()];
            // Ticks of half a simulated second, as a producing run makes them: most vehicles
            // emit at most once per visit, so this includes the cache misses of a big fleet.
            let t = sim.sim_time();
            let mut k = 1.0;
            while k <= seconds * 2.0 {
                sim.advance(t + k * 0.5, &mut sinks).unwrap();
                k += 1.0;
            }
            sinks.iter().map(|s| s.records).sum::<u64>()
        };
        // Throughput counts the records actually generated (vehicles turning round are quiet).
        let records = run(setup());
        group.throughput(Throughput::Elements(records));
        group.bench_function(name, |b| b.iter_batched(setup, run, BatchSize::LargeInput));
    }
    group.finish();
}

criterion_group!(benches, generation);
criterion_main!(benches);
