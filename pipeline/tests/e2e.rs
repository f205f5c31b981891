//! Messy Cairns traffic through the pipeline on the in-process broker: snapping quality,
//! exactly-once accounting, and the same output with 1 worker, 2 workers and 2 processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use busflow_core::geometry::haversine_m;
use busflow_core::{Network, Topics, VehiclePosition, VehicleStatus};
use busflow_kafka::{DevBroker, KafkaConfig};
use busflow_pipeline::PipelineConfig;
use common::*;

const PARTITIONS: i32 = 4;

fn outputs_for(raw: &str, tag: &str) -> Topics {
    Topics {
        raw: raw.to_string(),
        positions: format!("{raw}.{tag}.positions"),
        rejected: format!("{raw}.{tag}.rejected"),
        latest: format!("{raw}.{tag}.latest"),
    }
}

/// A position without the fields that legitimately differ between runs.
fn comparable(p: &VehiclePosition) -> String {
    let mut p = p.clone();
    p.processed_ts = 0;
    serde_json::to_string(&p).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cairns_messy_traffic_scores_and_is_the_same_with_more_workers_and_processes() {
    let net = Arc::new(Network::load(busflow_core::bundled_gtfs_path()).unwrap());
    let base = unique_topics("e2e");
    let runs = ["w1", "w2", "p2"];
    let mut names = vec![base.raw.clone()];
    for r in runs {
        let t = outputs_for(&base.raw, r);
        names.extend([t.positions, t.rejected, t.latest]);
    }
    let dev = DevBroker::start_with(names, PARTITIONS).unwrap();
    let kafka = KafkaConfig::new(dev.bootstrap_servers());
    let raw = traffic(&net, 80, 90, 11);
    produce(&kafka, &base.raw, &raw).await;

    // -w 1
    let t1 = outputs_for(&base.raw, "w1");
    let cfg = PipelineConfig { group_id: "g-w1".into(), ..PipelineConfig::default() };
    let r1 = run_to_end(vec![cfg], net.clone(), kafka.clone(), t1.clone(), PARTITIONS).await;
    let out1 = outputs(&kafka, &t1);
    check_exactly_once(&raw, &out1);
    assert_eq!(r1[0].consumed as usize, raw.len());

    // Snapping quality against the truth.
    let truth: HashMap<(String, i64), &Truth> = raw
        .iter()
        .filter_map(|m| m.truth.as_ref().map(|(v, ts, t)| ((v.clone(), *ts), t)))
        .collect();
    let mut errors = Vec::new();
    let (mut right, mut on_route) = (0usize, 0usize);
    let mut by_hint: HashMap<&str, (usize, usize)> = HashMap::new();
    for p in &out1.positions {
        let Some(t) = truth.get(&(p.vehicle_id.clone(), p.ts)) else { continue };
        if let (Some(lat), Some(lon)) = (p.snapped_lat, p.snapped_lon) {
            errors.push(haversine_m(lat, lon, t.lat, t.lon));
        }
        if p.status != VehicleStatus::OffRoute {
            let ok = p.shape_id.as_deref() == Some(t.shape_id.as_str());
            let e = by_hint.entry(t.hint).or_default();
            e.1 += 1;
            if ok {
                e.0 += 1;
            }
            if t.hint != "none" {
                on_route += 1;
                right += ok as usize;
            }
        }
    }
    eprintln!("right shape by what the device named (right, on route): {by_hint:?}");
    errors.sort_by(f64::total_cmp);
    let median = errors[errors.len() / 2];
    let p95 = errors[errors.len() * 95 / 100];
    let right_share = right as f64 / on_route as f64;
    eprintln!(
        "raw {} positions {} rejected {} | snapped {} median error {median:.2} m p95 {p95:.2} m | right shape {right}/{on_route} = {:.4}",
        raw.len(),
        out1.positions.len(),
        out1.rejected.len(),
        errors.len(),
        right_share
    );
    assert!(median <= 10.0, "median snapping error {median} m");
    assert!(right_share >= 0.99, "right shape {right_share}");
    // latest holds every position (the dev broker does not compact).
    assert_eq!(out1.latest.len(), out1.positions.len());

    let set1: BTreeSet<String> = out1.positions.iter().map(comparable).collect();
    let rej1: BTreeSet<(i32, i64, String)> = out1
        .rejected
        .iter()
        .map(|r| (r.partition, r.offset, r.reason.as_str().to_string()))
        .collect();

    // -w 2
    let t2 = outputs_for(&base.raw, "w2");
    let cfg = PipelineConfig { workers: 2, group_id: "g-w2".into(), ..PipelineConfig::default() };
    run_to_end(vec![cfg], net.clone(), kafka.clone(), t2.clone(), PARTITIONS).await;
    let out2 = outputs(&kafka, &t2);
    check_exactly_once(&raw, &out2);
    assert_eq!(out2.positions.iter().map(comparable).collect::<BTreeSet<_>>(), set1);
    assert_eq!(
        out2.rejected
            .iter()
            .map(|r| (r.partition, r.offset, r.reason.as_str().to_string()))
            .collect::<BTreeSet<_>>(),
        rej1
    );

    // Two processes (timely cluster over TCP), one worker each.
    let dir = tempfile::tempdir().unwrap();
    let hostfile = dir.path().join("hosts");
    std::fs::write(&hostfile, format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()))
        .unwrap();
    let t3 = outputs_for(&base.raw, "p2");
    let cfgs = (0..2)
        .map(|i| PipelineConfig {
            processes: 2,
            process_index: i,
            hostfile: Some(hostfile.clone()),
            group_id: "g-p2".into(),
            ..PipelineConfig::default()
        })
        .collect();
    run_to_end(cfgs, net.clone(), kafka.clone(), t3.clone(), PARTITIONS).await;
    let out3 = outputs(&kafka, &t3);
    check_exactly_once(&raw, &out3);
    assert_eq!(out3.positions.iter().map(comparable).collect::<BTreeSet<_>>(), set1);
}
