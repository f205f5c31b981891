//! Producing the simulation to Kafka: paced on the simulated clock, capped by `rate`, with
//! backpressure from the producer queue, a live progress line and a final report.

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use busflow_core::{Network, Topics};
use busflow_kafka::KafkaConfig;
use busflow_kafka::rdkafka::ClientContext;
use busflow_kafka::rdkafka::error::KafkaError;
use busflow_kafka::rdkafka::message::DeliveryResult;
use busflow_kafka::rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use busflow_kafka::rdkafka::types::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::config::SimulatorConfig;
use crate::sim::Simulation;
use crate::sink::Sink;
use crate::truth::TruthRecord;
use crate::vehicle::FaultCounts;

/// A paced run generates at least this much wall time per tick.
const PACED_TICK: Duration = Duration::from_millis(50);
/// Records per tick the generator aims for when it is behind or unpaced.
const TICK_EVENTS: f64 = 50_000.0;
/// Longest a generator tick should take, so cancellation and limits are seen promptly.
const MAX_TICK_WALL: Duration = Duration::from_millis(200);
/// How long to wait for the last records to be delivered at the end.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct SimReport {
    /// Generator totals, by fault.
    pub counts: FaultCounts,
    /// Records the broker acknowledged.
    pub delivered: u64,
    /// Records that failed or were still undelivered when the run gave up waiting.
    pub failed: u64,
    /// The first delivery error, if any.
    pub first_error: Option<String>,
    /// Times a send found the producer queue full and waited.
    pub queue_full_waits: u64,
    /// Vehicles that took part.
    pub vehicles: u32,
    /// Simulated time covered, seconds.
    pub sim_seconds: f64,
    /// Wall time of the run, setup included.
    pub wall: Duration,
    /// Wall time from the first generated record until the last was delivered (the run
    /// without building the fleet).
    pub producing: Duration,
}

impl SimReport {
    /// True when every emitted record was acknowledged.
    pub fn all_delivered(&self) -> bool {
        self.failed == 0 && self.delivered == self.counts.emitted
    }

    /// Acknowledged records per wall second.
    pub fn delivered_per_s(&self) -> f64 {
        self.delivered as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        writeln!(
            f,
            "simulated {:.0} s with {} vehicles in {:.1} s wall: {} records emitted, {} delivered ({:.0}/s), {} failed",
            self.sim_seconds,
            self.vehicles,
            self.wall.as_secs_f64(),
            c.emitted,
            self.delivered,
            self.delivered_per_s(),
            self.failed
        )?;
        write!(
            f,
            "faults: {} dropped by dropouts, {} multipath, {} duplicates, {} out of order, {} stuck, {} skewed clock, {} without ids, {} invalid; {} trips; producer queue full {} times",
            c.dropped,
            c.multipath,
            c.duplicate,
            c.out_of_order,
            c.stuck,
            c.clock_skew,
            c.no_ids,
            c.invalid_total(),
            c.trips,
            self.queue_full_waits
        )?;
        if let Some(e) = &self.first_error {
            write!(f, "\nfirst delivery error: {e}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
pub(crate) struct Delivery {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub first_error: Mutex<Option<String>>,
}

impl Delivery {
    pub fn fail(&self, e: &KafkaError) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock()
            && first.is_none()
        {
            tracing::warn!(error = %e, "record not delivered");
            *first = Some(e.to_string());
        }
    }
}

pub(crate) struct DeliveryContext(Arc<Delivery>);

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.0.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => self.0.fail(e),
        }
    }
}

pub(crate) type Prod = ThreadedProducer<DeliveryContext>;

/// The tuned producer, counting deliveries.
pub(crate) fn new_producer(kafka: &KafkaConfig) -> Result<(Arc<Prod>, Arc<Delivery>), Error> {
    let delivery = Arc::new(Delivery::default());
    let producer: Arc<Prod> =
        Arc::new(kafka.producer_config().create_with_context(DeliveryContext(delivery.clone()))?);
    Ok((producer, delivery))
}

/// Waits up to [`FLUSH_TIMEOUT`] for every queued record to be delivered or fail.
pub(crate) fn flush_all(producer: &Prod) {
    let deadline = Instant::now() + FLUSH_TIMEOUT;
    while producer.in_flight_count() > 0 && Instant::now() < deadline {
        let _ = producer.flush(Duration::from_millis(500));
    }
}

/// A global cap on records per second, handed out in small chunks so threads rarely meet.
#[derive(Debug)]
pub(crate) struct Limiter {
    rate: f64,
    chunk: u64,
    start: Instant,
    issued: AtomicU64,
}

impl Limiter {
    fn new(rate: f64) -> Limiter {
        // About 2 ms of budget per chunk: precise over any visible interval.
        let chunk = (rate / 500.0).clamp(1.0, 500.0) as u64;
        Limiter { rate, chunk, start: Instant::now(), issued: AtomicU64::new(0) }
    }

    /// Blocks until `chunk` more records may be sent; returns how many.
    fn acquire(&self) -> u64 {
        let k = self.issued.fetch_add(self.chunk, Ordering::Relaxed);
        let due = self.start + Duration::from_secs_f64(k as f64 / self.rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        self.chunk
    }
}

pub(crate) struct KafkaSink {
    pub producer: Arc<Prod>,
    pub topic: Arc<str>,
    pub limiter: Option<Arc<Limiter>>,
    pub permits: u64,
    pub sent: Arc<AtomicU64>,
    pub waits: Arc<AtomicU64>,
    pub delivery: Arc<Delivery>,
}

impl Sink for KafkaSink {
    fn send(&mut self, key: &[u8], payload: &[u8]) -> Result<(), Error> {
        if let Some(l) = &self.limiter {
            if self.permits == 0 {
                self.permits = l.acquire();
            }
            self.permits -= 1;
        }
        let mut record = BaseRecord::to(&self.topic).key(key).payload(payload);
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.sent.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // Backpressure: the queue is bounded by queue.buffering.max.*; wait for
                    // deliveries to make room instead of dropping or growing.
                    record = r;
                    self.waits.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    // Counted as failed (and makes the run fail), never silently lost.
                    self.sent.fetch_add(1, Ordering::Relaxed);
                    self.delivery.fail(&e);
                    return Ok(());
                }
            }
        }
    }
}

/// Live figures shared with the progress reporter.
#[derive(Debug, Default)]
struct Live {
    sim_time_bits: AtomicU64,
    target_bits: AtomicU64,
    done: AtomicBool,
}

impl Live {
    fn set_sim_time(&self, t: f64) {
        self.sim_time_bits.store(t.to_bits(), Ordering::Relaxed);
    }
    fn set_target(&self, r: f64) {
        self.target_bits.store(r.to_bits(), Ordering::Relaxed);
    }
}

/// Runs the simulation into `topics.raw` until `shutdown` is cancelled or a limit in `config`
/// is reached, then waits for every record to be delivered.
///
/// Returns the report even when some records failed ([`SimReport::all_delivered`] says);
/// errors are for runs that could not start or broke down.
pub async fn run(
    config: SimulatorConfig,
    network: Arc<Network>,
    kafka: KafkaConfig,
    topics: Topics,
    shutdown: CancellationToken,
) -> Result<SimReport, Error> {
    config.validate()?;
    tokio::task::spawn_blocking(move || run_blocking(&config, network, &kafka, &topics, &shutdown))
        .await
        .map_err(|e| Error::Thread(format!("simulator task failed: {e}")))?
}

fn run_blocking(
    config: &SimulatorConfig,
    network: Arc<Network>,
    kafka: &KafkaConfig,
    topics: &Topics,
    shutdown: &CancellationToken,
) -> Result<SimReport, Error> {
    let (producer, delivery) = new_producer(kafka)?;
    let mut truth_out = match &config.truth {
        Some(path) => Some((
            BufWriter::with_capacity(
                1 << 20,
                File::create(path).map_err(|source| Error::Truth { path: path.clone(), source })?,
            ),
            path.clone(),
        )),
        None => None,
    };
    let wall_start = Instant::now();
    // librdkafka's broker thread (batching, lz4) is the bottleneck of a fast run; generator
    // threads on every core starve it (measured in benches/produce.rs), so leave it a core.
    let mut config = config.clone();
    if config.threads == 0 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        config.threads = cores.saturating_sub(1).max(1);
    }
    let config = &config;
    let mut sim = Simulation::new(network, config)?;
    tracing::info!(
        service_date = %sim.service_date(),
        start = %crate::sim::clock_label(sim.sim_start()),
        "simulated service day"
    );
    let sent = Arc::new(AtomicU64::new(0));
    let waits = Arc::new(AtomicU64::new(0));
    let limiter = config.rate.map(|r| Arc::new(Limiter::new(r)));
    let topic: Arc<str> = Arc::from(topics.raw.as_str());
    let mut sinks: Vec<KafkaSink> = (0..sim.partitions())
        .map(|_| KafkaSink {
            producer: producer.clone(),
            topic: topic.clone(),
            limiter: limiter.clone(),
            permits: 0,
            sent: sent.clone(),
            waits: waits.clone(),
            delivery: delivery.clone(),
        })
        .collect();

    let live = Arc::new(Live::default());
    live.set_sim_time(sim.sim_start());
    let reporter = spawn_progress(
        config.progress,
        live.clone(),
        sent.clone(),
        delivery.clone(),
        producer.clone(),
        sim.sim_start(),
        config.speedup,
    );

    let t0 = sim.sim_start();
    let producing_start = Instant::now();
    let end_sim = config.sim_duration.map(|d| t0 + d.as_secs_f64());
    let paced = config.speedup.is_finite();
    let mut step = 1.0f64;
    let result: Result<(), Error> = (|| {
        loop {
            let now_sim = sim.sim_time();
            if shutdown.is_cancelled()
                || end_sim.is_some_and(|e| now_sim >= e)
                || config.duration.is_some_and(|d| wall_start.elapsed() >= d)
                || config.max_events.is_some_and(|m| sim.counts().emitted >= m)
            {
                return Ok(());
            }
            let mut to = now_sim + step;
            if paced {
                let horizon = t0 + wall_start.elapsed().as_secs_f64() * config.speedup;
                let min_step = PACED_TICK.as_secs_f64() * config.speedup;
                if horizon < now_sim + min_step {
                    let wait = (now_sim + min_step - horizon) / config.speedup;
                    std::thread::sleep(Duration::from_secs_f64(wait.min(0.1)));
                    continue;
                }
                to = to.min(horizon);
            }
            if let Some(e) = end_sim {
                to = to.min(e);
            }
            let before = sim.counts().emitted;
            let tick_start = Instant::now();
            sim.advance(to, &mut sinks)?;
            write_truth(&mut truth_out, sim.take_truth())?;
            let events = (sim.counts().emitted - before) as f64;
            let per_sim_s = events / (to - now_sim).max(1e-9);
            // Ticks of about MAX_TICK_WALL, so cancellation and limits are seen promptly.
            let per_wall_s = events / tick_start.elapsed().as_secs_f64().max(1e-6);
            let mut want = (per_wall_s * MAX_TICK_WALL.as_secs_f64()).clamp(100.0, TICK_EVENTS);
            if let Some(r) = config.rate {
                want = want.min((r * MAX_TICK_WALL.as_secs_f64()).max(1.0));
            }
            step = if events > 0.0 { (want / per_sim_s).clamp(0.01, 600.0) } else { 60.0 };
            live.set_sim_time(to);
            let target = match (config.rate, paced) {
                (Some(r), true) => r.min(per_sim_s * config.speedup),
                (Some(r), false) => r,
                (None, true) => per_sim_s * config.speedup,
                (None, false) => f64::INFINITY,
            };
            live.set_target(target);
        }
    })();
    // Held-back records still go out, so the truth file matches what was sent.
    let finished = result.and_then(|()| {
        sim.finish(&mut sinks)?;
        write_truth(&mut truth_out, sim.take_truth())
    });
    if let Some((w, path)) = truth_out.as_mut() {
        w.flush().map_err(|source| Error::Truth { path: path.clone(), source })?;
    }
    flush_all(&producer);
    live.done.store(true, Ordering::Relaxed);
    let wall = wall_start.elapsed();
    let producing = producing_start.elapsed();
    if let Some(r) = reporter {
        r.thread().unpark();
        let _ = r.join();
    }
    finished?;
    let counts = sim.counts();
    let delivered = delivery.delivered.load(Ordering::Relaxed);
    let failed = delivery.failed.load(Ordering::Relaxed);
    // Whatever is neither acknowledged nor failed by now did not make it.
    let undelivered = counts.emitted.saturating_sub(delivered + failed);
    let report = SimReport {
        counts,
        delivered,
        failed: failed + undelivered,
        first_error: delivery.first_error.lock().ok().and_then(|e| e.clone()).or_else(|| {
            (undelivered > 0).then(|| {
                format!("{undelivered} records still queued after {}s", FLUSH_TIMEOUT.as_secs())
            })
        }),
        queue_full_waits: waits.load(Ordering::Relaxed),
        vehicles: sim.vehicles(),
        sim_seconds: sim.sim_time() - t0,
        wall,
        producing,
    };
    metrics::counter!("busflow_simulator_delivery_errors_total").increment(report.failed);
    Ok(report)
}

fn write_truth(
    out: &mut Option<(BufWriter<File>, std::path::PathBuf)>,
    truth: Vec<Vec<TruthRecord>>,
) -> Result<(), Error> {
    let Some((w, path)) = out.as_mut() else { return Ok(()) };
    let err = |p: &Path, e: std::io::Error| Error::Truth { path: p.to_path_buf(), source: e };
    for part in truth {
        for t in part {
            serde_json::to_writer(&mut *w, &t).map_err(|e| err(path, e.into()))?;
            w.write_all(b"\n").map_err(|e| err(path, e))?;
        }
    }
    Ok(())
}

fn clock(sim_s: f64) -> String {
    let s = sim_s.max(0.0) as u64;
    let (d, s) = (s / 86_400, s % 86_400);
    let hms = format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    if d > 0 { format!("day {} {hms}", d + 1) } else { hms }
}

fn spawn_progress(
    show: bool,
    live: Arc<Live>,
    sent: Arc<AtomicU64>,
    delivery: Arc<Delivery>,
    producer: Arc<Prod>,
    t0: f64,
    speedup: f64,
) -> Option<std::thread::JoinHandle<()>> {
    let bar = if show {
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg}") {
            bar.set_style(style);
        }
        Some(bar)
    } else {
        None
    };
    std::thread::Builder::new()
        .name("sim-progress".into())
        .spawn(move || {
            let start = Instant::now();
            let (mut last_t, mut last_delivered, mut last_log) = (start, 0u64, start);
            let mut reported = (0u64, 0u64);
            loop {
                let done = live.done.load(Ordering::Relaxed);
                if !done {
                    // Woken early (unpark) when the run ends, so it never delays the report.
                    std::thread::park_timeout(Duration::from_millis(500));
                }
                let now = Instant::now();
                let delivered = delivery.delivered.load(Ordering::Relaxed);
                let failed = delivery.failed.load(Ordering::Relaxed);
                let s = sent.load(Ordering::Relaxed);
                let achieved =
                    (delivered - last_delivered) as f64 / (now - last_t).as_secs_f64().max(1e-3);
                let target = f64::from_bits(live.target_bits.load(Ordering::Relaxed));
                let sim_t = f64::from_bits(live.sim_time_bits.load(Ordering::Relaxed));
                let speed = if speedup.is_finite() { format!("x{speedup}") } else { "max".into() };
                let target = if target.is_finite() { format!("{target:.0}/s") } else { "max".into() };
                let msg = format!(
                    "sim {} ({speed}, {:.0} s simulated) | target {target} | achieved {achieved:.0}/s | sent {s} | delivered {delivered} | failed {failed} | queue {}",
                    clock(sim_t),
                    sim_t - t0,
                    producer.in_flight_count()
                );
                metrics::counter!("busflow_simulator_records_total").increment(s - reported.0);
                metrics::counter!("busflow_simulator_delivered_total")
                    .increment(delivered - reported.1);
                reported = (s, delivered);
                match &bar {
                    Some(b) => b.set_message(msg),
                    None if now - last_log >= Duration::from_secs(10) || done => {
                        tracing::info!("{msg}");
                        last_log = now;
                    }
                    None => {}
                }
                last_t = now;
                last_delivered = delivered;
                if done {
                    if let Some(b) = &bar {
                        b.finish_and_clear();
                    }
                    return;
                }
            }
        })
        .ok()
}
