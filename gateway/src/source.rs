//! Feeding the live state from Kafka.
//!
//! Start-up without replaying history and without gaps:
//! 1. note, for every `positions` partition, the offset of the first record written in the last
//!    `overlap` (a time-based lookup; the end offset when there is none or the broker cannot say);
//! 2. read the compacted `latest` topic from the beginning up to the end offsets it had when we
//!    looked (latest position per vehicle; the in-process broker does not compact, so there it
//!    holds every record, which gives the same result more slowly);
//! 3. mark ready, then follow `positions` from the offsets of step 1.
//!
//! Anything written after step 1 is read in step 3; the overlap covers records the pipeline had
//! written to `positions` but not yet to `latest` when step 2 looked. Records seen twice are
//! harmless: the state ignores positions older than the one it holds.
//!
//! No consumer group offsets are committed: every gateway reads everything, so instances need no
//! coordination.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use busflow_core::{Topics, VehiclePosition};
use busflow_kafka::KafkaConfig;
use busflow_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use busflow_kafka::rdkafka::message::Message;
use busflow_kafka::rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::live::{LiveState, now_ms};

const META_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);
/// Most records applied under one lock: bounds how long a subscribe waits for the lock
/// (about 1,024 x 5 us at 10,000 viewers). A batch only fills when the consumer already holds
/// that much (the source is behind), and then its older positions per vehicle are skipped.
const MAX_APPLY_BATCH: usize = 1_024;

/// Loads the initial state, marks it ready, then follows live positions until `shutdown`.
pub(crate) async fn run(
    live: Arc<LiveState>,
    kafka: KafkaConfig,
    topics: Topics,
    overlap: Duration,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    tokio::task::spawn_blocking(move || run_blocking(&live, &kafka, &topics, overlap, &shutdown))
        .await
        .map_err(|e| Error::Task(e.to_string()))?
}

fn consumer(kafka: &KafkaConfig) -> Result<BaseConsumer, Error> {
    // A unique group id: librdkafka wants one, but nothing is ever committed under it.
    let group = format!("busflow-gateway-{}-{}", std::process::id(), now_ms());
    Ok(kafka
        .client_config_with(&[
            ("group.id", &group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("fetch.wait.max.ms", "20"),
        ])
        .create()?)
}

fn partitions(c: &BaseConsumer, topic: &str) -> Result<Vec<i32>, Error> {
    let parts = busflow_kafka::topic_partitions(c, topic, META_TIMEOUT)?;
    if parts.is_empty() {
        return Err(Error::Topic(topic.to_string()));
    }
    Ok(parts)
}

fn run_blocking(
    live: &LiveState,
    kafka: &KafkaConfig,
    topics: &Topics,
    overlap: Duration,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    let c = consumer(kafka)?;
    let pos_parts = partitions(&c, &topics.positions)?;
    let start = follow_offsets(&c, &topics.positions, &pos_parts, overlap)?;
    let loaded = load_latest(&c, &topics.latest, live, shutdown)?;
    live.mark_ready();
    tracing::info!(vehicles = live.vehicle_count(), records = loaded, "gateway state loaded");

    let mut tpl = TopicPartitionList::new();
    for (p, off) in &start {
        tpl.add_partition_offset(&topics.positions, *p, Offset::Offset(*off))?;
    }
    c.assign(&tpl)?;
    let mut lag_sample = 0u32;
    let mut batch = Vec::with_capacity(MAX_APPLY_BATCH);
    let age = metrics::histogram!("busflow_gateway_age_at_apply_seconds");
    while !shutdown.is_cancelled() {
        // Wait for one record, then take whatever else the consumer already holds (no wait):
        // the batch is applied under one lock and each client is woken once for it.
        let mut wait = POLL;
        while batch.len() < MAX_APPLY_BATCH {
            let Some(r) = c.poll(wait) else { break };
            wait = Duration::ZERO;
            match r {
                Ok(m) => {
                    if let Some(pos) = decode(m.payload()) {
                        lag_sample = lag_sample.wrapping_add(1);
                        if lag_sample % 64 == 1 {
                            let lag = (now_ms() - pos.processed_ts).max(0) as f64 / 1000.0;
                            metrics::gauge!("busflow_gateway_consumer_lag_seconds").set(lag);
                        }
                        batch.push(pos);
                    }
                }
                Err(e) => tracing::warn!("consuming {}: {e}", topics.positions),
            }
        }
        if !batch.is_empty() {
            metrics::counter!("busflow_gateway_positions_total").increment(batch.len() as u64);
            let skipped = keep_newest_per_vehicle(&mut batch);
            if skipped > 0 {
                metrics::counter!("busflow_gateway_source_superseded_total")
                    .increment(skipped as u64);
            }
            let now = now_ms();
            for p in &batch {
                age.record((now - p.ts).max(0) as f64 / 1000.0);
            }
            live.apply_batch(batch.drain(..));
        }
    }
    Ok(())
}

/// Keeps, in place and in order, only the newest record (by device `ts`, then the later one)
/// of each vehicle in `batch`; returns how many were dropped. When the gateway's source is
/// behind the end of the topic a batch holds whatever the consumer had buffered, and an older
/// position of a vehicle whose newer one is in hand has no value to anyone looking at a map.
fn keep_newest_per_vehicle(batch: &mut Vec<VehiclePosition>) -> usize {
    if batch.len() < 2 {
        return 0;
    }
    let keep: Vec<bool> = {
        let mut newest: HashMap<&str, usize> = HashMap::with_capacity(batch.len());
        for (i, p) in batch.iter().enumerate() {
            let k = newest.entry(p.vehicle_id.as_str()).or_insert(i);
            if p.ts >= batch[*k].ts {
                *k = i;
            }
        }
        if newest.len() == batch.len() {
            return 0;
        }
        let mut keep = vec![false; batch.len()];
        for i in newest.into_values() {
            keep[i] = true;
        }
        keep
    };
    let before = batch.len();
    let mut i = 0;
    batch.retain(|_| {
        i += 1;
        keep[i - 1]
    });
    before - batch.len()
}

/// Where to start following `positions`: the first offset at or after `now - overlap`, else
/// the end.
fn follow_offsets(
    c: &BaseConsumer,
    topic: &str,
    parts: &[i32],
    overlap: Duration,
) -> Result<Vec<(i32, i64)>, Error> {
    let mut ends = HashMap::new();
    for p in parts {
        let (_, high) = c.fetch_watermarks(topic, *p, META_TIMEOUT)?;
        ends.insert(*p, high);
    }
    let since = now_ms() - overlap.as_millis() as i64;
    let mut query = TopicPartitionList::new();
    for p in parts {
        query.add_partition_offset(topic, *p, Offset::Offset(since))?;
    }
    let by_time = c.offsets_for_times(query, META_TIMEOUT).ok();
    Ok(parts
        .iter()
        .map(|p| {
            let end = ends.get(p).copied().unwrap_or(0);
            let found = by_time.as_ref().and_then(|l| l.find_partition(topic, *p)).and_then(|e| {
                match e.offset() {
                    Offset::Offset(o) if o >= 0 && o <= end => Some(o),
                    _ => None,
                }
            });
            (*p, found.unwrap_or(end))
        })
        .collect())
}

/// Reads `latest` from the beginning to the end offsets it has now.
fn load_latest(
    c: &BaseConsumer,
    topic: &str,
    live: &LiveState,
    shutdown: &CancellationToken,
) -> Result<u64, Error> {
    let parts = partitions(c, topic)?;
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in parts {
        let (low, high) = c.fetch_watermarks(topic, p, META_TIMEOUT)?;
        if high > low {
            remaining.insert(p, high);
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
    }
    if remaining.is_empty() {
        return Ok(0);
    }
    c.assign(&tpl)?;
    let now = now_ms();
    let cutoff = now - live.settings().stale_after.as_millis() as i64;
    let mut n = 0u64;
    while !remaining.is_empty() && !shutdown.is_cancelled() {
        let Some(r) = c.poll(POLL) else { continue };
        let m = r?;
        if let Some(pos) = decode(m.payload()) {
            // Staleness counts from when the pipeline wrote the record, not from now.
            let seen = pos.processed_ts.min(now);
            if seen >= cutoff {
                live.apply_seen(pos, seen);
                n += 1;
            }
        }
        if let Some(end) = remaining.get(&m.partition())
            && m.offset() + 1 >= *end
        {
            remaining.remove(&m.partition());
        }
    }
    c.unassign()?;
    Ok(n)
}

fn decode(payload: Option<&[u8]>) -> Option<VehiclePosition> {
    let bytes = payload?;
    match serde_json::from_slice::<VehiclePosition>(bytes) {
        Ok(p) => Some(p),
        Err(e) => {
            metrics::counter!("busflow_gateway_decode_errors_total").increment(1);
            tracing::debug!("undecodable position: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(id: &str, ts: i64) -> VehiclePosition {
        crate::state::tests::vp(id, ts, -16.9, 145.7, None)
    }

    #[test]
    fn a_batch_keeps_only_each_vehicles_newest_position_in_order() {
        let mut batch = vec![pos("a", 1), pos("b", 5), pos("a", 3), pos("c", 1), pos("b", 4)];
        assert_eq!(keep_newest_per_vehicle(&mut batch), 2);
        let kept: Vec<(&str, i64)> = batch.iter().map(|p| (p.vehicle_id.as_str(), p.ts)).collect();
        // b's newest by device time is the earlier record (ts 5): a late arrival never wins.
        assert_eq!(kept, [("b", 5), ("a", 3), ("c", 1)]);
        let mut distinct = vec![pos("a", 1), pos("b", 1)];
        assert_eq!(keep_newest_per_vehicle(&mut distinct), 0);
        assert_eq!(distinct.len(), 2);
    }
}
