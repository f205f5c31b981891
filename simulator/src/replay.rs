//! Replaying recorded positions onto the raw topic, keeping their original spacing.
//!
//! Input is NDJSON RawPosition (sent byte-for-byte unless shifted) or CSV with a header row,
//! whose columns map onto RawPosition fields.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use busflow_core::{RawPosition, Topics};
use busflow_kafka::KafkaConfig;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::kafka::{KafkaSink, flush_all, new_producer};
use crate::sink::Sink;

/// Input format of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFormat {
    /// One RawPosition JSON object per line.
    Ndjson,
    /// Comma-separated with a header row; see [`ReplayConfig::columns`].
    Csv,
}

impl ReplayFormat {
    /// `.csv` files are CSV, everything else NDJSON.
    pub fn from_path(path: &std::path::Path) -> ReplayFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => ReplayFormat::Csv,
            _ => ReplayFormat::Ndjson,
        }
    }
}

/// What to replay and how fast.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayConfig {
    /// The recording.
    pub path: PathBuf,
    /// Its format.
    pub format: ReplayFormat,
    /// CSV only: RawPosition field -> CSV header name, for fields whose column is named
    /// differently (`vehicle_id`, `ts`, `lat`, `lon`, `speed_mps`, `bearing_deg`, `accuracy_m`,
    /// `route_id`, `trip_id`, `seq`). Unmapped fields are looked up under their own name.
    pub columns: HashMap<String, String>,
    /// Wall-clock spacing = recorded spacing / speedup; `f64::INFINITY` sends without waiting.
    pub speedup: f64,
    /// Shift every `ts` by the same amount so the first record is stamped now.
    pub shift_to_now: bool,
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records sent.
    pub sent: u64,
    /// Lines or rows that could not be read as a position (logged, not sent).
    pub skipped: u64,
    /// Records the broker acknowledged.
    pub delivered: u64,
    /// Records that failed or were still undelivered at the end.
    pub failed: u64,
    /// The first error, if any.
    pub first_error: Option<String>,
    /// Wall time.
    pub wall: Duration,
}

/// The RawPosition fields a CSV column can map to.
pub const CSV_FIELDS: [&str; 10] = [
    "vehicle_id",
    "ts",
    "lat",
    "lon",
    "speed_mps",
    "bearing_deg",
    "accuracy_m",
    "route_id",
    "trip_id",
    "seq",
];

/// Reads `ts` as unix milliseconds: integers above 10^11 are milliseconds, smaller numbers
/// seconds (fractions allowed), anything else RFC 3339.
pub fn parse_ts(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return Some(if n.abs() >= 100_000_000_000 { n } else { n * 1000 });
    }
    if let Ok(f) = s.parse::<f64>() {
        return f.is_finite().then(|| (f * 1000.0).round() as i64);
    }
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|d| d.timestamp_millis())
}

/// One record read from a recording.
#[derive(Debug, Clone, PartialEq)]
struct Recorded {
    raw: RawPosition,
    /// The original line when it can be sent unchanged.
    verbatim: Option<Vec<u8>>,
}

/// Reads every usable record; returns them with the count of unusable lines.
fn read_all(config: &ReplayConfig) -> Result<(Vec<Recorded>, u64), Error> {
    let io = |source| Error::Io { path: config.path.clone(), source };
    let file = File::open(&config.path).map_err(io)?;
    let mut out = Vec::new();
    let mut skipped = 0u64;
    match config.format {
        ReplayFormat::Ndjson => {
            let mut reader = BufReader::new(file);
            let mut line = Vec::new();
            let mut n = 0u64;
            loop {
                line.clear();
                if reader.read_until(b'\n', &mut line).map_err(io)? == 0 {
                    break;
                }
                n += 1;
                while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    line.pop();
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match serde_json::from_slice::<RawPosition>(&line) {
                    Ok(raw) => out.push(Recorded { raw, verbatim: Some(line.clone()) }),
                    Err(e) => {
                        skipped += 1;
                        tracing::warn!(line = n, error = %e, "skipping a line that is not a RawPosition");
                    }
                }
            }
        }
        ReplayFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(file);
            let headers = reader
                .headers()
                .map_err(|e| Error::Config(format!("{}: {e}", config.path.display())))?
                .clone();
            let col = |field: &str| {
                let name = config.columns.get(field).map_or(field, String::as_str);
                headers.iter().position(|h| h.trim() == name)
            };
            let idx: Vec<Option<usize>> = CSV_FIELDS.iter().map(|f| col(f)).collect();
            for (field, i) in CSV_FIELDS.iter().zip(&idx).take(4) {
                if i.is_none() {
                    return Err(Error::Config(format!(
                        "{}: no column for {field} (header: {}); map it with --columns {field}=NAME",
                        config.path.display(),
                        headers.iter().collect::<Vec<_>>().join(",")
                    )));
                }
            }
            for (n, row) in reader.records().enumerate() {
                let row = match row {
                    Ok(r) => r,
                    Err(e) => {
                        skipped += 1;
                        tracing::warn!(row = n + 2, error = %e, "skipping an unreadable CSV row");
                        continue;
                    }
                };
                let get = |k: usize| {
                    idx[k].and_then(|i| row.get(i)).map(str::trim).filter(|s| !s.is_empty())
                };
                let num = |k: usize| get(k).and_then(|s| s.parse::<f64>().ok());
                let (Some(id), Some(ts), Some(lat), Some(lon)) =
                    (get(0), get(1).and_then(parse_ts), num(2), num(3))
                else {
                    skipped += 1;
                    tracing::warn!(
                        row = n + 2,
                        "skipping a CSV row without vehicle id, time or position"
                    );
                    continue;
                };
                let mut raw = RawPosition::new(id, ts, lat, lon);
                raw.speed_mps = num(4).map(|v| v as f32);
                raw.bearing_deg = num(5).map(|v| v as f32);
                raw.accuracy_m = num(6).map(|v| v as f32);
                raw.route_id = get(7).map(str::to_string);
                raw.trip_id = get(8).map(str::to_string);
                raw.seq = get(9).and_then(|s| s.parse().ok());
                out.push(Recorded { raw, verbatim: None });
            }
        }
    }
    Ok((out, skipped))
}

/// Replays a recording into `topics.raw` until it ends or `shutdown` is cancelled, then waits
/// for deliveries.
pub async fn replay(
    config: ReplayConfig,
    kafka: KafkaConfig,
    topics: Topics,
    shutdown: CancellationToken,
) -> Result<ReplayReport, Error> {
    if config.speedup.is_nan() || config.speedup <= 0.0 {
        return Err(Error::Config(format!("speedup must be positive, got {}", config.speedup)));
    }
    tokio::task::spawn_blocking(move || replay_blocking(&config, &kafka, &topics, &shutdown))
        .await
        .map_err(|e| Error::Thread(format!("replay task failed: {e}")))?
}

fn replay_blocking(
    config: &ReplayConfig,
    kafka: &KafkaConfig,
    topics: &Topics,
    shutdown: &CancellationToken,
) -> Result<ReplayReport, Error> {
    let (records, skipped) = read_all(config)?;
    let (producer, delivery) = new_producer(kafka)?;
    let sent = Arc::new(AtomicU64::new(0));
    let mut sink = KafkaSink {
        producer: producer.clone(),
        topic: Arc::from(topics.raw.as_str()),
        limiter: None,
        permits: 0,
        sent: sent.clone(),
        waits: Arc::new(AtomicU64::new(0)),
        delivery: delivery.clone(),
    };
    let start = Instant::now();
    let first_ts = records.first().map_or(0, |r| r.raw.ts);
    let shift =
        if config.shift_to_now { chrono::Utc::now().timestamp_millis() - first_ts } else { 0 };
    let mut buf = Vec::new();
    for rec in &records {
        if config.speedup.is_finite() {
            // Recorded spacing relative to the first record, so errors do not accumulate; a
            // record older than its predecessor goes out at once, keeping the file's order.
            let offset = (rec.raw.ts - first_ts).max(0) as f64 / 1000.0 / config.speedup;
            let due = start + Duration::from_secs_f64(offset);
            loop {
                if shutdown.is_cancelled() {
                    break;
                }
                let now = Instant::now();
                if now >= due {
                    break;
                }
                std::thread::sleep((due - now).min(Duration::from_millis(100)));
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
        let payload: &[u8] = match (&rec.verbatim, shift) {
            (Some(line), 0) => line,
            _ => {
                let mut raw = rec.raw.clone();
                raw.ts += shift;
                buf.clear();
                serde_json::to_writer(&mut buf, &raw)
                    .map_err(|e| Error::Thread(format!("encoding a record: {e}")))?;
                &buf
            }
        };
        sink.send(rec.raw.vehicle_id.as_bytes(), payload)?;
    }
    flush_all(&producer);
    let sent = sent.load(Ordering::Relaxed);
    let delivered = delivery.delivered.load(Ordering::Relaxed);
    let failed = delivery.failed.load(Ordering::Relaxed);
    let undelivered = sent.saturating_sub(delivered + failed);
    Ok(ReplayReport {
        sent,
        skipped,
        delivered,
        failed: failed + undelivered,
        first_error: delivery.first_error.lock().ok().and_then(|e| e.clone()),
        wall: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_any_usual_form() {
        assert_eq!(parse_ts("1700000000123"), Some(1_700_000_000_123));
        assert_eq!(parse_ts("1700000000"), Some(1_700_000_000_000));
        assert_eq!(parse_ts("1700000000.5"), Some(1_700_000_000_500));
        assert_eq!(parse_ts("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        assert_eq!(parse_ts("yesterday"), None);
    }

    #[test]
    fn csv_rows_map_through_columns_and_bad_rows_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.csv");
        std::fs::write(
            &path,
            "bus,time,latitude,longitude,route_id\n\
             b1,1700000000,-16.9,145.7,110\n\
             b2,not-a-time,-16.9,145.7,\n\
             b3,2023-11-14T22:13:21Z,-16.8,145.6,\n",
        )
        .unwrap();
        let columns =
            [("vehicle_id", "bus"), ("ts", "time"), ("lat", "latitude"), ("lon", "longitude")]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
        let cfg = ReplayConfig {
            path,
            format: ReplayFormat::Csv,
            columns,
            speedup: 1.0,
            shift_to_now: false,
        };
        let (recs, skipped) = read_all(&cfg).unwrap();
        assert_eq!(skipped, 1);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].raw.route_id.as_deref(), Some("110"));
        assert_eq!(recs[1].raw.ts, 1_700_000_001_000);
        assert_eq!(recs[1].raw.route_id, None);
        let bad = ReplayConfig { columns: HashMap::new(), ..cfg };
        assert!(read_all(&bad).unwrap_err().to_string().contains("--columns vehicle_id=NAME"));
    }
}
