//! Where table rows come from: a bounded slice of a Kafka topic, or a recording on disk.
//!
//! A query over a busy topic must finish, so every Kafka read has an end fixed before it starts:
//! the partitions' end offsets when the read begins (`--until now`), or the first offset at or
//! after a time (`--until TIME`). Records produced while the query runs are not waited for.

use std::collections::HashMap;
use std::io::BufRead as _;
use std::path::Path;
use std::time::{Duration, Instant};

use busflow_kafka::KafkaConfig;
use busflow_kafka::rdkafka::ClientContext;
use busflow_kafka::rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use busflow_kafka::rdkafka::error::KafkaError;
use busflow_kafka::rdkafka::message::Message;
use busflow_kafka::rdkafka::{Offset, TopicPartitionList};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::table::Record;

/// Where a read starts, in every partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Start {
    /// The oldest record the broker still has.
    #[default]
    Beginning,
    /// The first record whose Kafka timestamp is at or after this time (epoch ms).
    Since(i64),
    /// This offset (or the oldest retained one, if it is older).
    Offset(i64),
}

/// Where a read ends, in every partition (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum End {
    /// The end offsets when the read starts.
    #[default]
    Now,
    /// The first record whose Kafka timestamp is after this time (epoch ms).
    Until(i64),
}

/// The slice of a topic to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadRange {
    /// First record.
    pub start: Start,
    /// Bound after the last record.
    pub end: End,
}

/// How a Kafka read behaves.
#[derive(Debug, Clone)]
pub struct KafkaRead {
    /// Brokers and client options.
    pub kafka: KafkaConfig,
    /// Longest wait for a broker answer (metadata, offsets, or the next record).
    pub timeout: Duration,
    /// Refuse reads of more records than this (a hint to bound the query instead).
    pub max_records: u64,
    /// Draw a progress bar on stderr (only where stderr is a terminal).
    pub progress: bool,
}

/// Client callbacks that log errors, except the end-of-partition events this reader asks for
/// (`enable.partition.eof`): they are how a read knows it is done, not failures.
struct ReadContext;

impl ClientContext for ReadContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_)) {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for ReadContext {}

type ReadConsumer = BaseConsumer<ReadContext>;

fn consumer(kafka: &KafkaConfig) -> Result<ReadConsumer, KafkaError> {
    let group = format!("busflow-sql-{}", std::process::id());
    kafka
        .client_config_with(&[
            ("group.id", &group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "true"),
            ("fetch.wait.max.ms", "50"),
        ])
        .create_with_context(ReadContext)
}

/// Reads `topic` within `range`. Blocking; call it off the async runtime.
pub fn read_topic(
    read: &KafkaRead,
    topic: &str,
    range: ReadRange,
    cancel: &CancellationToken,
) -> Result<Vec<Record>, Error> {
    let kerr = |source: KafkaError| Error::Kafka { topic: topic.to_string(), source };
    let c = consumer(&read.kafka).map_err(kerr)?;
    let parts = busflow_kafka::topic_partitions(&c, topic, read.timeout).map_err(kerr)?;
    if parts.is_empty() {
        return Err(Error::NoTopic { topic: topic.into(), brokers: read.kafka.brokers.clone() });
    }

    let mut bounds: Vec<(i32, i64, i64)> = Vec::with_capacity(parts.len());
    let marks: Vec<(i32, i64, i64)> = parts
        .iter()
        .map(|&p| c.fetch_watermarks(topic, p, read.timeout).map(|(lo, hi)| (p, lo, hi)))
        .collect::<Result<_, _>>()
        .map_err(kerr)?;
    let starts = match range.start {
        Start::Since(ms) => Some(offsets_for_time(&c, topic, &marks, ms, read.timeout)?),
        _ => None,
    };
    let ends = match range.end {
        // Records at exactly `until` are included: the bound is the first one after it.
        End::Until(ms) => {
            Some(offsets_for_time(&c, topic, &marks, ms.saturating_add(1), read.timeout)?)
        }
        End::Now => None,
    };
    for &(p, lo, hi) in &marks {
        let start = match range.start {
            Start::Beginning => lo,
            Start::Offset(o) => o.clamp(lo, hi),
            Start::Since(ms) => match starts.as_ref().and_then(|m| m.get(&p).copied()).flatten() {
                Some(o) => o.clamp(lo, hi),
                // "No record at or after the time", or a broker that cannot search by time
                // (librdkafka's mock cluster): the newest record tells which.
                None if hi > lo => match last_timestamp(&c, topic, p, hi - 1, read.timeout)? {
                    Some(t) if t < ms => hi,
                    _ => lo,
                },
                None => hi,
            },
        };
        let end = ends.as_ref().and_then(|m| m.get(&p).copied()).flatten().unwrap_or(hi).min(hi);
        if end > start {
            bounds.push((p, start, end));
        }
    }
    // Kafka timestamps need not grow with offsets (producers set them), so the time bounds are
    // also applied to each record: the result is exactly the records stamped within them.
    let keep = |ts: Option<i64>| match (range.start, range.end, ts) {
        (_, _, None) => true,
        (Start::Since(s), _, Some(t)) if t < s => false,
        (_, End::Until(u), Some(t)) if t > u => false,
        _ => true,
    };
    let total: u64 = bounds.iter().map(|(_, s, e)| (e - s) as u64).sum();
    if total > read.max_records {
        return Err(Error::TooMany {
            topic: topic.into(),
            records: total,
            limit: read.max_records,
        });
    }
    let mut out = Vec::with_capacity(total as usize);
    if bounds.is_empty() {
        return Ok(out);
    }

    let bar = progress_bar(read.progress, topic, total);
    let mut tpl = TopicPartitionList::new();
    let mut remaining: HashMap<i32, (i64, i64)> = HashMap::new();
    for &(p, start, end) in &bounds {
        tpl.add_partition_offset(topic, p, Offset::Offset(start)).map_err(kerr)?;
        remaining.insert(p, (start, end));
    }
    c.assign(&tpl).map_err(kerr)?;
    let mut last_progress = Instant::now();
    while !remaining.is_empty() {
        if cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let polled = c.poll(Duration::from_millis(100));
        let Some(result) = polled else {
            if last_progress.elapsed() > read.timeout {
                let (p, (at, end)) =
                    remaining.iter().next().map(|(p, r)| (*p, *r)).unwrap_or((0, (0, 0)));
                return Err(Error::Stalled { topic: topic.into(), partition: p, at, end });
            }
            continue;
        };
        last_progress = Instant::now();
        let m = match result {
            Ok(m) => m,
            // The end of what the partition holds: compaction or transaction markers can leave
            // the last offsets before the end mark empty, so this ends the partition too.
            Err(KafkaError::PartitionEOF(p)) => {
                remaining.remove(&p);
                continue;
            }
            Err(e) => return Err(kerr(e)),
        };
        let p = m.partition();
        let Some(&(_, end)) = remaining.get(&p) else { continue };
        if m.offset() >= end {
            remaining.remove(&p);
            continue;
        }
        let ts = m.timestamp().to_millis();
        if keep(ts) {
            out.push(Record {
                partition: Some(p),
                offset: m.offset(),
                timestamp_ms: ts,
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
            });
        }
        bar.inc(1);
        if m.offset() + 1 >= end {
            remaining.remove(&p);
        } else if let Some(r) = remaining.get_mut(&p) {
            r.0 = m.offset() + 1;
        }
    }
    bar.finish_and_clear();
    Ok(out)
}

fn offsets_for_time(
    c: &ReadConsumer,
    topic: &str,
    marks: &[(i32, i64, i64)],
    ms: i64,
    timeout: Duration,
) -> Result<HashMap<i32, Option<i64>>, Error> {
    let kerr = |source: KafkaError| Error::Kafka { topic: topic.to_string(), source };
    let mut tpl = TopicPartitionList::new();
    for &(p, _, _) in marks {
        tpl.add_partition_offset(topic, p, Offset::Offset(ms)).map_err(kerr)?;
    }
    let found = c.offsets_for_times(tpl, timeout).map_err(kerr)?;
    let mut out = HashMap::new();
    for e in found.elements() {
        if let Some(err) = e.error().err() {
            return Err(Error::Kafka { topic: topic.into(), source: err });
        }
        // None: no record at or after the time, or the broker cannot say.
        let at = match e.offset() {
            Offset::Offset(o) if o >= 0 => Some(o),
            _ => None,
        };
        out.insert(e.partition(), at);
    }
    Ok(out)
}

/// The Kafka timestamp of the record at `offset`, read with a throwaway assignment.
fn last_timestamp(
    c: &ReadConsumer,
    topic: &str,
    partition: i32,
    offset: i64,
    timeout: Duration,
) -> Result<Option<i64>, Error> {
    let kerr = |source: KafkaError| Error::Kafka { topic: topic.to_string(), source };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset)).map_err(kerr)?;
    c.assign(&tpl).map_err(kerr)?;
    let deadline = Instant::now() + timeout;
    let mut found = None;
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) if m.partition() == partition => {
                found = m.timestamp().to_millis();
                break;
            }
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => return Err(kerr(e)),
            _ => {}
        }
    }
    c.unassign().map_err(kerr)?;
    Ok(found)
}

fn progress_bar(enabled: bool, topic: &str, total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(total),
        if enabled { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() },
    );
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {human_pos}/{human_len} records, {per_sec}, eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(format!("reading {topic}"));
    bar
}

/// Parses a point in time as the `--since`/`--until` flags take it: `now`, a duration ago
/// (`10m`, `2h30m`), or an RFC 3339 time (`2026-12-01T08:00:00Z`). Returns epoch milliseconds.
pub fn parse_time(s: &str, now_ms: i64) -> Result<i64, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("now") {
        return Ok(now_ms);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    match busflow_core::duration::parse_duration(s) {
        Ok(d) => Ok(now_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))),
        Err(_) => Err(format!(
            "{s:?} is not a time: write `now`, a duration ago like 10m or 2h, or an RFC 3339 \
             time like 2026-12-01T08:00:00Z"
        )),
    }
}

/// Reads a recording: one message value per line (NDJSON, as the topic holds it). Blank lines
/// are skipped; each record's offset is its 0-based line number.
pub fn read_file(path: &Path) -> Result<Vec<Record>, Error> {
    let file_err = |source: std::io::Error| Error::File { path: path.to_path_buf(), source };
    let f = std::fs::File::open(path).map_err(file_err)?;
    let mut out = Vec::new();
    let mut reader = std::io::BufReader::new(f);
    let mut line = Vec::new();
    let mut n: i64 = 0;
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).map_err(file_err)?;
        if read == 0 {
            break;
        }
        let value = line.strip_suffix(b"\n").unwrap_or(&line);
        let value = value.strip_suffix(b"\r").unwrap_or(value);
        if !value.iter().all(u8::is_ascii_whitespace) {
            out.push(Record {
                partition: None,
                offset: n,
                timestamp_ms: None,
                key: None,
                value: Some(value.to_vec()),
            });
        }
        n += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_durations_ago_or_rfc3339() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_time("now", now).unwrap(), now);
        assert_eq!(parse_time("10m", now).unwrap(), now - 600_000);
        assert_eq!(parse_time("1h30m", now).unwrap(), now - 5_400_000);
        assert_eq!(parse_time("2026-12-01T08:00:00Z", now).unwrap(), 1_796_112_000_000);
        assert_eq!(parse_time("2026-12-01T18:00:00+10:00", now).unwrap(), 1_796_112_000_000);
        let e = parse_time("yesterday", now).unwrap_err();
        assert!(e.contains("RFC 3339"), "{e}");
    }

    #[test]
    fn files_read_one_record_per_nonblank_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.ndjson");
        std::fs::write(&p, b"{\"a\":1}\r\n\n  \n{\"b\":2}").unwrap();
        let recs = read_file(&p).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].value.as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(recs[1].offset, 3, "offsets are line numbers, blank lines counted");
        let missing = read_file(&dir.path().join("nope.ndjson")).unwrap_err();
        assert!(missing.to_string().contains("nope.ndjson"), "{missing}");
    }
}
