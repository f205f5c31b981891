//! SIGKILL the pipeline process at random moments while raw traffic keeps arriving; the
//! outputs must still hold every accepted raw event exactly once, and every raw message must
//! be accounted for.
//!
//! The pipeline process is this test binary re-run as `child_pipeline` (an ignored test that
//! only does something when its environment variables are set).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use busflow_core::{Network, Topics};
use busflow_kafka::KafkaConfig;
use busflow_pipeline::{PipelineConfig, run};
use common::*;
use rand::Rng;
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 4;
const GROUP: &str = "kill-test";
/// SIGKILLs in one run, each at a random moment after the process made progress of its own.
const KILLS: usize = 12;

fn topics_from_env(prefix: &str) -> Topics {
    Topics {
        raw: format!("{prefix}.raw"),
        positions: format!("{prefix}.positions"),
        rejected: format!("{prefix}.rejected"),
        latest: format!("{prefix}.latest"),
    }
}

#[test]
#[ignore = "the pipeline process of sigkill_at_random_moments_keeps_exactly_once"]
fn child_pipeline() {
    let (Ok(brokers), Ok(prefix)) =
        (std::env::var("KILL_CHILD_BROKERS"), std::env::var("KILL_CHILD_TOPICS"))
    else {
        return;
    };
    let net = Arc::new(Network::load(busflow_core::bundled_gtfs_path()).unwrap());
    let workers =
        std::env::var("KILL_CHILD_WORKERS").ok().and_then(|w| w.parse().ok()).unwrap_or(1);
    let cfg = PipelineConfig { workers, group_id: GROUP.into(), ..PipelineConfig::default() };
    // Never cancelled: this process only ever dies by SIGKILL.
    run(cfg, net, KafkaConfig::new(brokers), topics_from_env(&prefix), CancellationToken::new())
        .unwrap();
}

fn spawn_child(brokers: &str, prefix: &str, workers: usize) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["child_pipeline", "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
        .env("KILL_CHILD_BROKERS", brokers)
        .env("KILL_CHILD_TOPICS", prefix)
        .env("KILL_CHILD_WORKERS", workers.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_keeps_exactly_once() {
    let net = Arc::new(Network::load(busflow_core::bundled_gtfs_path()).unwrap());
    let topics = unique_topics("kill");
    let prefix = topics.raw.trim_end_matches(".raw").to_string();
    let dev = broker(&topics, PARTITIONS);
    let brokers = dev.bootstrap_servers().to_string();
    let kafka = KafkaConfig::new(brokers.clone());

    // Traffic keeps arriving (about 1000 messages/s for 18 s) and a debug-build pipeline that
    // restarts every couple of seconds stays behind it, so every kill lands with input in flight.
    let raw = traffic(&net, 150, 120, 23);
    let feeder = {
        let (kafka, topic, raw) = (kafka.clone(), topics.raw.clone(), raw.clone());
        tokio::spawn(async move {
            let producer = kafka.producer_config().create().unwrap();
            for chunk in raw.chunks(50) {
                produce_with(&producer, &topic, chunk).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let mut rng = rand::rng();
    let mut kills = Vec::new();
    let mut committed_before = 0;
    for i in 0..KILLS {
        let mut child = spawn_child(&brokers, &prefix, 1 + i % 2);
        // Kill once this process has made progress of its own, at a random moment after.
        let wait_until = Instant::now() + Duration::from_secs(90);
        loop {
            let (done, _) = {
                let (k, t) = (kafka.clone(), topics.clone());
                tokio::task::spawn_blocking(move || progress(&k, &t, GROUP, PARTITIONS))
                    .await
                    .unwrap()
            };
            if done > committed_before || Instant::now() > wait_until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let after = Duration::from_millis(rng.random_range(0..1200));
        tokio::time::sleep(after).await;
        let (done, end) = {
            let (k, t) = (kafka.clone(), topics.clone());
            tokio::task::spawn_blocking(move || progress(&k, &t, GROUP, PARTITIONS)).await.unwrap()
        };
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        committed_before = done;
        kills.push((after.as_millis(), done, end));
    }
    feeder.await.unwrap();
    eprintln!("SIGKILLs (after ms, committed, raw end): {kills:?}");
    assert_eq!(kills.len(), KILLS);
    assert!(
        kills.iter().filter(|(_, done, end)| done < end).count() >= KILLS - 2,
        "nearly every kill must land with work outstanding: {kills:?}"
    );

    // A last process runs to the end and stops cleanly.
    let token = CancellationToken::new();
    let handle = {
        let (net, kafka, topics, token) =
            (net.clone(), kafka.clone(), topics.clone(), token.clone());
        let cfg = PipelineConfig { group_id: GROUP.into(), ..PipelineConfig::default() };
        tokio::task::spawn_blocking(move || run(cfg, net, kafka, topics, token))
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (done, end) = {
            let (k, t) = (kafka.clone(), topics.clone());
            tokio::task::spawn_blocking(move || progress(&k, &t, GROUP, PARTITIONS)).await.unwrap()
        };
        if done == end {
            break;
        }
        assert!(Instant::now() < deadline, "committed {done} of {end}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    token.cancel();
    let report = handle.await.unwrap().unwrap();
    eprintln!("final run: {report:?}");

    let out = outputs(&kafka, &topics);
    eprintln!(
        "raw {} positions {} rejected {} duplicates {}",
        raw.len(),
        out.positions.len(),
        out.rejected.len(),
        raw.iter().filter(|m| m.duplicate).count()
    );
    check_exactly_once(&raw, &out);
}
