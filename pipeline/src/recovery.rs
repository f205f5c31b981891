//! What a restarted pipeline needs to know so it neither loses nor repeats output.
//!
//! Offsets on the raw topic are committed only after every output of the epochs before them
//! is acknowledged, so everything below a committed offset is done. Above it, a killed
//! pipeline may have produced some outputs and not others. Every output carries the raw
//! `(partition, offset)` it came from, so scanning the output topics tells exactly which of
//! the raw messages about to be replayed already have their output: those are processed again
//! (to rebuild per-vehicle state) but not produced again. The last position per vehicle
//! restores the snapping state. See `docs/pipeline.md`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use busflow_core::{Rejected, Topics, VehiclePosition};
use busflow_kafka::KafkaConfig;
use busflow_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use busflow_kafka::rdkafka::message::Message;
use busflow_kafka::rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::Error;

/// Recovered progress.
#[derive(Debug, Default, Clone)]
pub struct Recovery {
    /// Next raw offset to read per partition (from the consumer group's commits).
    pub committed: HashMap<i32, i64>,
    /// Raw `(partition, offset)` at or past the commit point whose output already exists.
    pub emitted: HashSet<(i32, i64)>,
    /// Latest position produced per vehicle.
    pub last: HashMap<String, VehiclePosition>,
    /// Reported coordinates of the positions produced past the commit point, by
    /// `(vehicle_id, ts)`: a replayed exact repeat of one of them is a duplicate, not stale.
    pub replayed: HashMap<(String, i64), (f64, f64)>,
    /// Output records read.
    pub scanned: u64,
}

const RETRY: Duration = Duration::from_secs(2);

/// Partition count of `topic`, retrying (with a log line each time) until the broker answers.
/// `None` when shut down first.
pub(crate) fn partitions_of(
    consumer: &BaseConsumer,
    topic: &str,
    brokers: &str,
    shutdown: &CancellationToken,
) -> Option<i32> {
    let started = Instant::now();
    loop {
        if shutdown.is_cancelled() {
            return None;
        }
        match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(md) => match md.topics().first() {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                    return Some(t.partitions().len() as i32);
                }
                _ => tracing::warn!(topic, brokers, "topic not found yet; retrying in 2s"),
            },
            Err(e) => tracing::warn!(
                brokers,
                waited_s = started.elapsed().as_secs(),
                "Kafka unreachable ({e}); retrying in 2s"
            ),
        }
        std::thread::sleep(RETRY);
    }
}

/// Reads the consumer group's committed offsets and scans the output topics.
pub fn recover(
    kafka: &KafkaConfig,
    topics: &Topics,
    group_id: &str,
    raw_partitions: i32,
    shutdown: &CancellationToken,
) -> Result<Option<Recovery>, Error> {
    let consumer: BaseConsumer = kafka
        .client_config_with(&[("group.id", group_id), ("enable.auto.commit", "false")])
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..raw_partitions {
        tpl.add_partition(&topics.raw, p);
    }
    let committed = loop {
        if shutdown.is_cancelled() {
            return Ok(None);
        }
        match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(
                    "cannot read committed offsets of group {group_id} ({e}); retrying in 2s"
                );
                std::thread::sleep(RETRY);
            }
        }
    };
    let mut rec = Recovery::default();
    for el in committed.elements() {
        if let Offset::Offset(o) = el.offset() {
            rec.committed.insert(el.partition(), o);
        }
    }
    let committed = rec.committed.clone();
    let after_commit = |p: i32, o: i64| o >= committed.get(&p).copied().unwrap_or(0);
    let mut scanned = 0;
    let Some(()) = scan(kafka, &topics.positions, shutdown, |payload| {
        scanned += 1;
        let Ok(pos) = serde_json::from_slice::<VehiclePosition>(payload) else { return };
        if after_commit(pos.partition, pos.offset) {
            rec.emitted.insert((pos.partition, pos.offset));
            rec.replayed.insert((pos.vehicle_id.clone(), pos.ts), (pos.lat, pos.lon));
        }
        match rec.last.get(&pos.vehicle_id) {
            Some(old) if old.ts >= pos.ts => {}
            _ => {
                rec.last.insert(pos.vehicle_id.clone(), pos);
            }
        }
    })?
    else {
        return Ok(None);
    };
    let Some(()) = scan(kafka, &topics.rejected, shutdown, |payload| {
        scanned += 1;
        let Ok(r) = serde_json::from_slice::<Rejected>(payload) else { return };
        if after_commit(r.partition, r.offset) {
            rec.emitted.insert((r.partition, r.offset));
        }
    })?
    else {
        return Ok(None);
    };
    rec.scanned = scanned;
    Ok(Some(rec))
}

/// Calls `f` with every record of `topic` up to its current end.
fn scan(
    kafka: &KafkaConfig,
    topic: &str,
    shutdown: &CancellationToken,
    mut f: impl FnMut(&[u8]),
) -> Result<Option<()>, Error> {
    let consumer: BaseConsumer = kafka
        .client_config_with(&[
            ("group.id", "busflow-pipeline-recovery"),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "false"),
        ])
        .create()?;
    let Some(n) = partitions_of(&consumer, topic, &kafka.brokers, shutdown) else {
        return Ok(None);
    };
    let mut tpl = TopicPartitionList::new();
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for p in 0..n {
        let (low, high) = loop {
            if shutdown.is_cancelled() {
                return Ok(None);
            }
            match consumer.fetch_watermarks(topic, p, Duration::from_secs(10)) {
                Ok(w) => break w,
                Err(e) => {
                    tracing::warn!(topic, partition = p, "cannot read watermarks ({e}); retrying");
                    std::thread::sleep(RETRY);
                }
            }
        };
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Offset(low))?;
            ends.insert(p, high);
        }
    }
    if ends.is_empty() {
        return Ok(Some(()));
    }
    consumer.assign(&tpl)?;
    let mut last_log = Instant::now();
    while !ends.is_empty() {
        if shutdown.is_cancelled() {
            return Ok(None);
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                if let Some(payload) = m.payload() {
                    f(payload);
                }
                if ends.get(&m.partition()).is_some_and(|&h| m.offset() + 1 >= h) {
                    ends.remove(&m.partition());
                }
            }
            Some(Err(e)) if last_log.elapsed() > Duration::from_secs(10) => {
                tracing::warn!(topic, "recovery scan: {e}; retrying");
                last_log = Instant::now();
            }
            Some(Err(_)) => {}
            None => {}
        }
    }
    Ok(Some(()))
}
