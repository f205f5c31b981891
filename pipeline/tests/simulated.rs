//! The simulator's Cairns fleet with every GPS fault switched on, through the pipeline on the
//! in-process broker, scored against the simulator's ground truth.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use busflow_core::geometry::haversine_m;
use busflow_core::{Network, VehicleStatus};
use busflow_kafka::KafkaConfig;
use busflow_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use busflow_pipeline::PipelineConfig;
use busflow_simulator::{Fault, FaultConfig, NaiveDate, NaiveTime, SimulatorConfig, TruthRecord};
use common::*;

const PARTITIONS: i32 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_traffic_with_every_fault_scores_against_truth() {
    let net = Arc::new(Network::load(busflow_core::bundled_gtfs_path()).unwrap());
    // Every fault on, at rates high enough to be seen in ten simulated minutes.
    let faults = FaultConfig {
        noise_m: 8.0,
        multipath: 0.01,
        dropout: 0.02,
        duplicate: 0.02,
        out_of_order: 0.02,
        clock_skew: 0.05,
        stuck: 0.01,
        invalid: 0.01,
        no_ids: 0.15,
        ..FaultConfig::default()
    };
    let sim = SimulatorConfig {
        start: NaiveTime::from_hms_opt(8, 0, 0),
        date: NaiveDate::from_ymd_opt(2026, 11, 23),
        sim_duration: Some(Duration::from_secs(600)),
        seed: 11,
        faults,
        ..SimulatorConfig::default()
    };
    // Anchor in the past so the ten minutes (plus clock skew) stay behind the pipeline's clock.
    let anchor = now_ms() - 20 * 60 * 1000;
    let (records, counts) = busflow_simulator::generate(net.clone(), &sim, anchor).unwrap();
    assert!(records.len() > 5_000, "{} records", records.len());
    for f in [
        Fault::Multipath,
        Fault::Duplicate,
        Fault::OutOfOrder,
        Fault::Stuck,
        Fault::Invalid,
        Fault::NoIds,
        Fault::ClockSkew,
    ] {
        assert!(records.iter().any(|r| r.truth.has(f)), "no {f:?} in the traffic");
    }

    let topics = unique_topics("simulated");
    let dev = broker(&topics, PARTITIONS);
    let kafka = KafkaConfig::new(dev.bootstrap_servers());
    let producer: FutureProducer = kafka.producer_config().create().unwrap();
    let mut sends = Vec::with_capacity(records.len());
    for r in &records {
        sends.push(
            producer
                .send_result(FutureRecord::to(&topics.raw).key(&r.key).payload(&r.payload))
                .unwrap(),
        );
    }
    for s in sends {
        s.await.unwrap().map_err(|(e, _)| e).unwrap();
    }

    let cfg =
        PipelineConfig { group_id: format!("{}-group", topics.raw), ..PipelineConfig::default() };
    let reports =
        run_to_end(vec![cfg], net.clone(), kafka.clone(), topics.clone(), PARTITIONS).await;
    let out = outputs(&kafka, &topics);
    let duplicates: u64 = reports.iter().map(|r| r.duplicates).sum();

    // Every raw record accounted for.
    assert_eq!(
        out.positions.len() as u64 + out.rejected.len() as u64 + duplicates,
        records.len() as u64,
        "positions {} + rejected {} + duplicates {duplicates} != raw {} ({counts:?})",
        out.positions.len(),
        out.rejected.len(),
        records.len()
    );
    // No (vehicle, ts) twice.
    let mut seen = HashSet::new();
    for p in &out.positions {
        assert!(seen.insert((p.vehicle_id.clone(), p.ts)), "duplicate {} {}", p.vehicle_id, p.ts);
    }
    // Broken records never become positions.
    let truth: HashMap<(String, i64), &TruthRecord> = records
        .iter()
        .filter(|r| !r.truth.has(Fault::Duplicate))
        .map(|r| ((r.truth.vehicle_id.clone(), r.truth.ts), &r.truth))
        .collect();
    let invalid = records.iter().filter(|r| r.truth.has(Fault::Invalid)).count();
    assert!(out.rejected.len() >= invalid, "{} rejected < {invalid} invalid", out.rejected.len());

    // Snapping quality on reports whose position is only noisy (no jump, no frozen fix) and
    // whose device names its trip, as on-route buses do.
    let mut errors = Vec::new();
    let (mut on_route, mut right_shape) = (0usize, 0usize);
    let (mut no_hint, mut no_hint_right) = (0usize, 0usize);
    for p in &out.positions {
        let Some(t) = truth.get(&(p.vehicle_id.clone(), p.ts)) else { continue };
        if t.has(Fault::Multipath) || t.has(Fault::Stuck) {
            continue;
        }
        let hinted = !t.has(Fault::NoIds);
        if hinted {
            on_route += 1;
            right_shape += usize::from(p.shape_id.as_deref() == Some(t.shape_id.as_str()));
        } else {
            no_hint += 1;
            no_hint_right += usize::from(p.shape_id.as_deref() == Some(t.shape_id.as_str()));
        }
        if let (Some(lat), Some(lon)) = (p.snapped_lat, p.snapped_lon)
            && p.status != VehicleStatus::Unassigned
        {
            errors.push(haversine_m(lat, lon, t.true_lat, t.true_lon));
        }
    }
    errors.sort_by(f64::total_cmp);
    let median = errors[errors.len() / 2];
    let share = right_shape as f64 / on_route.max(1) as f64;
    eprintln!(
        "raw {} positions {} rejected {} duplicates {duplicates}; median snap error {median:.2} m over {}; \
         right shape {right_shape}/{on_route} ({:.2}%) with trip ids, {no_hint_right}/{no_hint} without",
        records.len(),
        out.positions.len(),
        out.rejected.len(),
        errors.len(),
        share * 100.0
    );
    let combined = (right_shape + no_hint_right) as f64 / (on_route + no_hint).max(1) as f64;
    eprintln!("right shape over all on-route reports: {:.2}%", combined * 100.0);
    assert!(median <= 10.0, "median snapping error {median:.2} m");
    assert!(share >= 0.99, "right shape for {:.2}% of on-route reports", share * 100.0);
    // Devices that send no route or trip are matched from their movement alone, where parallel
    // routes share roads; this floor catches regressions, it is not the 99% target.
    let no_hint_share = no_hint_right as f64 / no_hint.max(1) as f64;
    assert!(no_hint > 0 && no_hint_share >= 0.7, "no-hint matching {no_hint_right}/{no_hint}");
    drop(dev);
}
