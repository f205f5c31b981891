use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::Error;
use crate::viewport::Viewport;

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

/// One viewer's results.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClientRow {
    /// Viewer number.
    pub id: usize,
    /// `sse` or `ws`.
    pub transport: &'static str,
    /// Viewport at the start (`[w, s, e, n]`).
    pub bbox: [f64; 4],
    /// Route filter, comma-separated, empty for none.
    pub routes: String,
    /// From connect to response headers (SSE) or handshake done (WebSocket), ms.
    pub connect_ms: Option<f64>,
    /// From connect to the first snapshot, ms.
    pub snapshot_ms: Option<f64>,
    /// Events received.
    pub events: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Vehicles delivered outside the viewport or filter.
    pub violations: u64,
    /// Viewport changes sent (WebSocket).
    pub viewport_changes: u64,
    /// Why the stream ended before the run did (`server_closed`, an `error` event code, ...).
    pub disconnect: Option<String>,
    /// Why the viewer could not connect (`connect_refused`, `http_429`, ...).
    pub error: Option<String>,
    /// Times the viewer reconnected (with reconnection on).
    pub reconnects: u64,
    /// Snapshots received (one per connection, plus density/stream switches).
    pub snapshots: u64,
    /// Vehicles held at the end that the gateway did not have (with state verification).
    pub ghosts: Option<u64>,
    /// Vehicles the gateway had in the viewport that the viewer did not hold.
    pub missing: Option<u64>,
    /// Vehicle ids the viewer held at the end, for the verification (not reported).
    #[serde(skip)]
    pub held: Vec<String>,
    /// The viewer's stream switched to density events, so it holds no vehicle list.
    #[serde(skip)]
    pub density: bool,
    /// The viewer's viewport at the end, as a query string (it moves with viewport changes).
    #[serde(skip)]
    pub final_query: String,
}

impl ClientRow {
    pub(crate) fn new(id: usize, transport: &'static str, v: &Viewport) -> Self {
        ClientRow {
            id,
            transport,
            bbox: v.bbox,
            routes: v.routes.as_ref().map(|r| r.join(",")).unwrap_or_default(),
            ..ClientRow::default()
        }
    }
}

// The bounds are constants that hdrhistogram accepts; only a changed constant could fail here.
#[allow(clippy::expect_used)]
fn histogram() -> Histogram<u64> {
    // Microseconds up to ten minutes, two significant digits: a few tens of KB.
    Histogram::new_with_bounds(1, 600_000_000, 2).expect("constant histogram bounds are valid")
}

/// Counters shared by every viewer, read live by the progress line.
#[derive(Debug)]
pub(crate) struct Shared {
    pub connected: AtomicU64,
    pub events: AtomicU64,
    pub bytes: AtomicU64,
    pub violations: AtomicU64,
    pub failures: AtomicU64,
    event_latency: Mutex<Histogram<u64>>,
    produce_latency: Mutex<Histogram<u64>>,
    connect: Mutex<Histogram<u64>>,
    snapshot: Mutex<Histogram<u64>>,
}

impl Shared {
    pub fn new() -> Self {
        Shared {
            connected: AtomicU64::new(0),
            events: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            violations: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            event_latency: Mutex::new(histogram()),
            produce_latency: Mutex::new(histogram()),
            connect: Mutex::new(histogram()),
            snapshot: Mutex::new(histogram()),
        }
    }

    pub fn record_connect(&self, us: u64) {
        record(&self.connect, &[us]);
    }

    pub fn record_snapshot(&self, us: u64) {
        record(&self.snapshot, &[us]);
    }

    /// Flushes a viewer's buffered latencies.
    pub fn flush(&self, buf: &mut LatencyBuffer) {
        record(&self.event_latency, &buf.event);
        record(&self.produce_latency, &buf.produce);
        buf.event.clear();
        buf.produce.clear();
    }

    pub fn produce_p99_ms(&self) -> f64 {
        self.produce_latency
            .lock()
            .map(|h| if h.is_empty() { 0.0 } else { h.value_at_quantile(0.99) as f64 / 1000.0 })
            .unwrap_or(0.0)
    }

    pub fn percentiles(&self) -> [Percentiles; 4] {
        [&self.connect, &self.snapshot, &self.event_latency, &self.produce_latency]
            .map(|m| m.lock().map(|h| percentiles(&h)).unwrap_or_default())
    }
}

fn record(h: &Mutex<Histogram<u64>>, values: &[u64]) {
    if values.is_empty() {
        return;
    }
    if let Ok(mut h) = h.lock() {
        for &v in values {
            h.saturating_record(v.max(1));
        }
    }
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    let ms = |v: u64| v as f64 / 1000.0;
    Percentiles {
        count: h.len(),
        p50_ms: ms(h.value_at_quantile(0.50)),
        p90_ms: ms(h.value_at_quantile(0.90)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        max_ms: ms(h.max()),
    }
}

/// A viewer's latencies (microseconds) waiting to be flushed into the shared histograms.
#[derive(Debug, Default)]
pub(crate) struct LatencyBuffer {
    pub event: Vec<u64>,
    pub produce: Vec<u64>,
}

impl LatencyBuffer {
    pub const FLUSH_AT: usize = 256;

    pub fn full(&self) -> bool {
        self.event.len() >= Self::FLUSH_AT || self.produce.len() >= Self::FLUSH_AT
    }
}

/// The outcome of a load run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// `sse` or `ws`.
    pub transport: &'static str,
    /// Viewers asked for.
    pub clients: usize,
    /// Viewers that connected.
    pub connected: usize,
    /// Viewport size, km.
    pub viewport_km: f64,
    /// Measured time (after the ramp), seconds.
    pub measured_s: f64,
    /// Events received in total.
    pub events: u64,
    /// Payload bytes received in total.
    pub bytes: u64,
    /// Events per second over the measured time.
    pub events_per_s: f64,
    /// Bytes per second over the measured time.
    pub bytes_per_s: f64,
    /// Connect time.
    pub connect: Percentiles,
    /// Time to first snapshot.
    pub snapshot: Percentiles,
    /// Vehicle `ts` (event time) to arrival, for updates whose event time is not ahead of ours.
    pub event_latency: Percentiles,
    /// Vehicle `processed_ts` (derived-topic produce time) to arrival.
    pub produce_latency: Percentiles,
    /// Vehicles delivered outside their viewer's viewport or filter.
    pub violations: u64,
    /// Connection failures by reason.
    pub errors: BTreeMap<String, u64>,
    /// Early stream ends by reason (the last one per viewer).
    pub disconnects: BTreeMap<String, u64>,
    /// Reconnections, all viewers together.
    pub reconnects: u64,
    /// Viewers whose final state was compared with the gateway's (state verification on).
    pub verified: usize,
    /// Vehicles viewers held at the end that the gateway did not have.
    pub ghosts: u64,
    /// Vehicles the gateway had in a viewer's viewport that the viewer did not hold.
    pub missing: u64,
    /// Per viewer.
    pub per_client: Vec<ClientRow>,
}

impl LoadReport {
    pub(crate) fn build(
        transport: &'static str,
        clients: usize,
        viewport_km: f64,
        measured_s: f64,
        shared: &Shared,
        per_client: Vec<ClientRow>,
    ) -> Self {
        let [connect, snapshot, event_latency, produce_latency] = shared.percentiles();
        let mut errors = BTreeMap::new();
        let mut disconnects = BTreeMap::new();
        for r in &per_client {
            if let Some(e) = &r.error {
                *errors.entry(e.clone()).or_insert(0) += 1;
            }
            if let Some(d) = &r.disconnect {
                *disconnects.entry(d.clone()).or_insert(0) += 1;
            }
        }
        let events: u64 = per_client.iter().map(|r| r.events).sum();
        let bytes: u64 = per_client.iter().map(|r| r.bytes).sum();
        let secs = measured_s.max(1e-9);
        LoadReport {
            transport,
            clients,
            connected: per_client.iter().filter(|r| r.connect_ms.is_some()).count(),
            viewport_km,
            measured_s,
            events,
            bytes,
            events_per_s: events as f64 / secs,
            bytes_per_s: bytes as f64 / secs,
            connect,
            snapshot,
            event_latency,
            produce_latency,
            violations: per_client.iter().map(|r| r.violations).sum(),
            errors,
            disconnects,
            reconnects: per_client.iter().map(|r| r.reconnects).sum(),
            verified: per_client.iter().filter(|r| r.ghosts.is_some()).count(),
            ghosts: per_client.iter().filter_map(|r| r.ghosts).sum(),
            missing: per_client.iter().filter_map(|r| r.missing).sum(),
            per_client,
        }
    }

    /// Writes the report: `.csv` gives one row per viewer, anything else JSON with everything.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let err = |source| Error::Report { path: path.display().to_string(), source };
        let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(err)?);
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
            writeln!(f, "id,transport,west,south,east,north,routes,connect_ms,snapshot_ms,events,bytes,violations,viewport_changes,disconnect,error,reconnects,ghosts,missing").map_err(err)?;
            let opt = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_default();
            for r in &self.per_client {
                writeln!(
                    f,
                    "{},{},{},{},{},{},\"{}\",{},{},{},{},{},{},{},{},{},{},{}",
                    r.id,
                    r.transport,
                    r.bbox[0],
                    r.bbox[1],
                    r.bbox[2],
                    r.bbox[3],
                    r.routes,
                    opt(r.connect_ms),
                    opt(r.snapshot_ms),
                    r.events,
                    r.bytes,
                    r.violations,
                    r.viewport_changes,
                    r.disconnect.as_deref().unwrap_or(""),
                    r.error.as_deref().unwrap_or(""),
                    r.reconnects,
                    r.ghosts.map(|g| g.to_string()).unwrap_or_default(),
                    r.missing.map(|m| m.to_string()).unwrap_or_default()
                )
                .map_err(err)?;
            }
        } else {
            serde_json::to_writer_pretty(&mut f, self).map_err(|e| err(e.into()))?;
            writeln!(f).map_err(err)?;
        }
        f.flush().map_err(err)
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "busflow load: {} {} viewers ({} connected), {:.1} km viewports, {:.1} s measured",
            self.clients, self.transport, self.connected, self.viewport_km, self.measured_s
        )?;
        writeln!(
            f,
            "  received   {} events ({:.0}/s), {:.1} MB ({:.2} MB/s)",
            self.events,
            self.events_per_s,
            self.bytes as f64 / 1e6,
            self.bytes_per_s / 1e6
        )?;
        writeln!(
            f,
            "  {:<26} {:>9} {:>9} {:>9} {:>9} {:>10}",
            "ms", "p50", "p90", "p99", "max", "samples"
        )?;
        for (name, p) in [
            ("connect", self.connect),
            ("first snapshot", self.snapshot),
            ("latency from produce", self.produce_latency),
            ("latency from event time", self.event_latency),
        ] {
            writeln!(
                f,
                "  {:<26} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>10}",
                name, p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms, p.count
            )?;
        }
        writeln!(f, "  viewport/filter violations: {}", self.violations)?;
        let list = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                "none".to_string()
            } else {
                m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
            }
        };
        writeln!(f, "  connection errors: {}", list(&self.errors))?;
        write!(f, "  early disconnects: {}", list(&self.disconnects))?;
        if self.reconnects > 0 {
            write!(f, "\n  reconnects: {}", self.reconnects)?;
        }
        if self.verified > 0 {
            write!(
                f,
                "\n  final state vs gateway ({} viewers): {} ghosts, {} missing",
                self.verified, self.ghosts, self.missing
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_totals_come_from_the_samples() {
        let shared = Shared::new();
        let mut buf = LatencyBuffer::default();
        buf.produce.extend((1..=100).map(|ms| ms * 1000));
        shared.flush(&mut buf);
        assert!(buf.produce.is_empty());
        let v = Viewport { bbox: [0.0, 0.0, 1.0, 1.0], routes: None };
        let mut a = ClientRow::new(0, "sse", &v);
        a.events = 10;
        a.bytes = 1000;
        a.connect_ms = Some(1.0);
        let mut b = ClientRow::new(1, "sse", &v);
        b.error = Some("http_429".into());
        let r = LoadReport::build("sse", 2, 3.0, 2.0, &shared, vec![a, b]);
        assert_eq!(r.connected, 1);
        assert_eq!(r.events_per_s, 5.0);
        assert_eq!(r.errors.get("http_429"), Some(&1));
        assert!((r.produce_latency.p50_ms - 50.0).abs() <= 1.0, "{:?}", r.produce_latency);
        assert!((r.produce_latency.p99_ms - 99.0).abs() <= 1.0);
        assert!(r.to_string().contains("http_429=1"));
    }

    #[test]
    fn reports_write_as_json_and_csv() {
        let shared = Shared::new();
        let v = Viewport { bbox: [0.0, 0.0, 1.0, 1.0], routes: Some(vec!["a".into(), "b".into()]) };
        let r = LoadReport::build("ws", 1, 3.0, 1.0, &shared, vec![ClientRow::new(0, "ws", &v)]);
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("r.json");
        r.write(&json).unwrap();
        let parsed: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(parsed["clients"], 1);
        let csv = dir.path().join("r.csv");
        r.write(&csv).unwrap();
        let text = std::fs::read_to_string(&csv).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.contains("\"a,b\""));
    }
}
