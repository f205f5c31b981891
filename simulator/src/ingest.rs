//! Polling a GTFS-realtime VehiclePositions feed into the raw topic.
//!
//! Each poll decodes the feed, turns every vehicle entity into a [`RawPosition`] and sends only
//! those that changed since the vehicle's last report. A feed that is down, slow or returns
//! garbage is logged and retried with exponential backoff; the loop only ends on shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use busflow_core::{RawPosition, Topics};
use busflow_kafka::KafkaConfig;
use prost::Message as _;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::gtfs_rt::FeedMessage;
use crate::kafka::{KafkaSink, flush_all, new_producer};
use crate::sink::Sink;

/// Where and how often to poll.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestConfig {
    /// Feed URL (http or https).
    pub url: String,
    /// Time between polls when the feed answers.
    pub interval: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Longest wait between retries of a failing feed.
    pub max_backoff: Duration,
    /// Stop after this many polls (tests); `None` polls until shutdown.
    pub max_polls: Option<u64>,
}

impl IngestConfig {
    /// Polls `url` every 10 s, 10 s timeout, backing off to at most 5 minutes.
    pub fn new(url: impl Into<String>) -> IngestConfig {
        IngestConfig {
            url: url.into(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            max_backoff: Duration::from_secs(300),
            max_polls: None,
        }
    }
}

/// What an ingest run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Polls made.
    pub polls: u64,
    /// Polls that failed (network, HTTP status, undecodable body).
    pub failed_polls: u64,
    /// Vehicle entities seen.
    pub entities: u64,
    /// Entities unchanged since the vehicle's last report (not sent).
    pub unchanged: u64,
    /// Entities without a vehicle id, time or position (not sent).
    pub unusable: u64,
    /// Records sent.
    pub sent: u64,
    /// Records acknowledged by the broker.
    pub delivered: u64,
    /// Records that failed or were undelivered at the end.
    pub failed: u64,
}

/// Converts a feed's vehicle entities to RawPositions; returns them and the count of entities
/// that could not be (no vehicle id, no time, no position). Timestamps fall back to the
/// feed header's.
pub fn convert(feed: &FeedMessage) -> (Vec<RawPosition>, u64) {
    let header_ts = feed.header.as_ref().and_then(|h| h.timestamp);
    let mut out = Vec::new();
    let mut unusable = 0;
    for e in &feed.entity {
        let Some(v) = &e.vehicle else { continue };
        if e.is_deleted == Some(true) {
            continue;
        }
        let desc = v.vehicle.as_ref();
        let id = desc
            .and_then(|d| d.id.clone().filter(|s| !s.is_empty()))
            .or_else(|| desc.and_then(|d| d.label.clone().filter(|s| !s.is_empty())))
            .or_else(|| e.id.clone().filter(|s| !s.is_empty()));
        let ts = v.timestamp.or(header_ts).and_then(|s| i64::try_from(s).ok());
        let pos = v.position.as_ref();
        let (Some(id), Some(ts), Some(lat), Some(lon)) =
            (id, ts, pos.and_then(|p| p.latitude), pos.and_then(|p| p.longitude))
        else {
            unusable += 1;
            continue;
        };
        let mut raw = RawPosition::new(id, ts.saturating_mul(1000), f64::from(lat), f64::from(lon));
        raw.speed_mps = pos.and_then(|p| p.speed);
        raw.bearing_deg = pos.and_then(|p| p.bearing);
        raw.trip_id = v.trip.as_ref().and_then(|t| t.trip_id.clone()).filter(|s| !s.is_empty());
        raw.route_id = v.trip.as_ref().and_then(|t| t.route_id.clone()).filter(|s| !s.is_empty());
        out.push(raw);
    }
    (out, unusable)
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<FeedMessage, String> {
    let resp = client.get(url).send().await.map_err(|e| format!("request failed: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    let body = resp.bytes().await.map_err(|e| format!("reading the body: {e}"))?;
    FeedMessage::decode(body.as_ref())
        .map_err(|e| format!("not a GTFS-realtime feed ({} bytes): {e}", body.len()))
}

/// Polls the feed into `topics.raw` until `shutdown` (or `max_polls`).
pub async fn ingest_gtfs_rt(
    config: IngestConfig,
    kafka: KafkaConfig,
    topics: Topics,
    shutdown: CancellationToken,
) -> Result<IngestReport, Error> {
    let client = reqwest::Client::builder()
        .timeout(config.timeout)
        .user_agent(concat!("busflow/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
    let (producer, delivery) = new_producer(&kafka)?;
    let sent = Arc::new(AtomicU64::new(0));
    let mut sink = Some(KafkaSink {
        producer: producer.clone(),
        topic: Arc::from(topics.raw.as_str()),
        limiter: None,
        permits: 0,
        sent: sent.clone(),
        waits: Arc::new(AtomicU64::new(0)),
        delivery: delivery.clone(),
    });
    let mut last: HashMap<String, (i64, f64, f64)> = HashMap::new();
    let mut report = IngestReport::default();
    let mut failures = 0u32;
    loop {
        if config.max_polls.is_some_and(|m| report.polls >= m) || shutdown.is_cancelled() {
            break;
        }
        let started = Instant::now();
        report.polls += 1;
        let wait = match fetch(&client, &config.url).await {
            Ok(feed) => {
                failures = 0;
                let (raws, unusable) = convert(&feed);
                report.unusable += unusable;
                report.entities += raws.len() as u64 + unusable;
                let mut batch = Vec::new();
                for raw in raws {
                    let key = (raw.ts, raw.lat, raw.lon);
                    if last.get(&raw.vehicle_id) == Some(&key) {
                        report.unchanged += 1;
                        continue;
                    }
                    last.insert(raw.vehicle_id.clone(), key);
                    let payload = serde_json::to_vec(&raw)
                        .map_err(|e| Error::Thread(format!("encoding a record: {e}")))?;
                    batch.push((raw.vehicle_id, payload));
                }
                tracing::debug!(url = %config.url, new = batch.len(), "feed polled");
                // Sending may wait on a full producer queue: keep that off the async workers.
                if let Some(mut s) = sink.take() {
                    let (s, result) = tokio::task::spawn_blocking(move || {
                        let r = batch.iter().try_for_each(|(k, p)| s.send(k.as_bytes(), p));
                        (s, r)
                    })
                    .await
                    .map_err(|e| Error::Thread(format!("ingest send task failed: {e}")))?;
                    result?;
                    sink = Some(s);
                }
                config.interval.saturating_sub(started.elapsed())
            }
            Err(e) => {
                failures += 1;
                report.failed_polls += 1;
                let backoff = config
                    .interval
                    .saturating_mul(1u32 << failures.min(16))
                    .min(config.max_backoff);
                tracing::warn!(url = %config.url, error = %e, failures, retry_in = ?backoff, "GTFS-realtime poll failed");
                backoff
            }
        };
        if config.max_polls.is_some_and(|m| report.polls >= m) {
            break;
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
    tokio::task::spawn_blocking(move || flush_all(&producer))
        .await
        .map_err(|e| Error::Thread(format!("flush task failed: {e}")))?;
    report.sent = sent.load(Ordering::Relaxed);
    report.delivered = delivery.delivered.load(Ordering::Relaxed);
    let failed = delivery.failed.load(Ordering::Relaxed);
    report.failed = failed + report.sent.saturating_sub(report.delivered + failed);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gtfs_rt::{
        FeedEntity, FeedHeader, Position, TripDescriptor, VehicleDescriptor, VehiclePosition,
    };

    #[test]
    fn entities_convert_with_fallbacks_and_unusable_ones_are_counted() {
        let entity =
            |id: &str, vid: Option<&str>, ts: Option<u64>, pos: Option<(f32, f32)>| FeedEntity {
                id: Some(id.into()),
                is_deleted: None,
                vehicle: Some(VehiclePosition {
                    trip: Some(TripDescriptor { trip_id: Some("t1".into()), route_id: None }),
                    position: pos.map(|(la, lo)| Position {
                        latitude: Some(la),
                        longitude: Some(lo),
                        bearing: Some(90.0),
                        odometer: None,
                        speed: Some(5.0),
                    }),
                    timestamp: ts,
                    vehicle: vid.map(|v| VehicleDescriptor {
                        id: Some(v.into()),
                        label: None,
                        license_plate: None,
                    }),
                }),
            };
        let feed = FeedMessage {
            header: Some(FeedHeader {
                gtfs_realtime_version: Some("2.0".into()),
                incrementality: None,
                timestamp: Some(1_700_000_000),
            }),
            entity: vec![
                entity("e1", Some("v1"), Some(1_700_000_005), Some((-16.9, 145.7))),
                entity("e2", None, None, Some((-16.8, 145.6))),
                entity("e3", Some("v3"), None, None),
            ],
        };
        let bytes = feed.encode_to_vec();
        let (raws, unusable) = convert(&FeedMessage::decode(bytes.as_slice()).unwrap());
        assert_eq!(unusable, 1);
        assert_eq!(raws[0].vehicle_id, "v1");
        assert_eq!(raws[0].ts, 1_700_000_005_000);
        assert_eq!(raws[0].trip_id.as_deref(), Some("t1"));
        assert_eq!(raws[0].speed_mps, Some(5.0));
        assert_eq!(raws[1].vehicle_id, "e2", "entity id when the vehicle has none");
        assert_eq!(raws[1].ts, 1_700_000_000_000, "header time when the vehicle has none");
        assert!(FeedMessage::decode(&b"\xff\xff\xff garbage"[..]).is_err());
    }
}
