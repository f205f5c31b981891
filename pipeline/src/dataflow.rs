//! The timely dataflow around [`Processor`]: Kafka source, exchange by vehicle, Kafka sink.
//!
//! ```text
//!  raw partitions (p % workers == index)      exchange by FNV(vehicle key)
//!  KafkaSource ──epoch e──▶ SnapAndEnrich ─────────────▶ KafkaSink ──▶ probe
//!                           (per-vehicle state)           (holds e until every
//!                                                          output of e is acked)
//! ```
//!
//! Each worker closes an epoch every `epoch` interval whether or not it read anything, so a
//! silent partition never holds the frontier back. When the probe passes epoch `e`, every
//! output caused by input of epochs `<= e` is acknowledged by the broker and the source commits
//! the raw offsets it had read by the end of `e`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use busflow_core::{Network, RejectReason, Topics};
use busflow_kafka::KafkaConfig;
use busflow_kafka::rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use busflow_kafka::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use busflow_kafka::rdkafka::message::Message;
use busflow_kafka::rdkafka::producer::{
    BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer,
};
use busflow_kafka::rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Capability, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};
use tokio_util::sync::CancellationToken;

use crate::epochs::Epochs;
use crate::recovery::{Recovery, partitions_of, recover};
use crate::{Error, Outcome, PipelineConfig, Processor, RawMessage};

/// What a run did, summed over this process's workers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Raw messages read.
    pub consumed: u64,
    /// Positions produced (each also went to the latest topic).
    pub positions: u64,
    /// Rejections produced.
    pub rejected: u64,
    /// Exact repeats dropped.
    pub duplicates: u64,
    /// Replayed raw messages whose output existed already (recovery), not produced again.
    pub replays_suppressed: u64,
    /// Vehicles whose state was restored at startup.
    pub restored_vehicles: usize,
}

/// A raw message on its way to the worker that owns its vehicle.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RawRecord {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    route: u64,
    consumed_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Kind {
    Position,
    Rejected,
}

/// One output, serialized, waiting for the sink.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OutRecord {
    kind: Kind,
    key: Vec<u8>,
    payload: Vec<u8>,
    event_ts: Option<i64>,
    consumed_ms: i64,
}

/// An output handed to the producer, shared by its sends (a position goes to two topics) and
/// returned by the delivery callback, which needs the epoch to count it and the record to
/// produce it again.
struct Sent {
    epoch: u64,
    rec: OutRecord,
}

/// What the delivery callback tells the sink.
enum Ack {
    Delivered(u64),
    Failed { topic: usize, sent: Arc<Sent>, error: KafkaError },
}

/// Runs on the producer's polling thread: records the delivery metrics there (off the worker)
/// and passes each outcome to the sink over a channel, so the sink does work per
/// acknowledgement instead of polling every pending delivery on every step (which was the
/// pipeline's top profile entry, 15% of its CPU).
struct SinkContext {
    topics: [String; 3],
    acks: mpsc::Sender<Ack>,
    out_total: [metrics::Counter; 3],
    event_to_ack: metrics::Histogram,
    consume_to_ack: metrics::Histogram,
}

impl SinkContext {
    fn new(topics: [String; 3], acks: mpsc::Sender<Ack>) -> SinkContext {
        let out = |t: &String| metrics::counter!("busflow_pipeline_events_out_total", "topic" => t.clone());
        SinkContext {
            out_total: [out(&topics[0]), out(&topics[1]), out(&topics[2])],
            event_to_ack: metrics::histogram!("busflow_pipeline_latency_seconds", "stage" => "event_to_ack"),
            consume_to_ack: metrics::histogram!("busflow_pipeline_latency_seconds", "stage" => "consume_to_ack"),
            topics,
            acks,
        }
    }

    fn topic_index(&self, name: &str) -> usize {
        self.topics.iter().position(|t| t == name).unwrap_or(0)
    }
}

impl ClientContext for SinkContext {}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = Arc<Sent>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Arc<Sent>) {
        let ack = match result {
            Ok(msg) => {
                let topic = self.topic_index(msg.topic());
                self.out_total[topic].increment(1);
                // The latest-state copy of a position is not a separate event.
                if topic != 1 {
                    let now = now_ms();
                    if let Some(ts) = sent.rec.event_ts {
                        self.event_to_ack.record((now - ts).max(0) as f64 / 1000.0);
                    }
                    self.consume_to_ack.record((now - sent.rec.consumed_ms).max(0) as f64 / 1000.0);
                }
                Ack::Delivered(sent.epoch)
            }
            Err((error, msg)) => {
                Ack::Failed { topic: self.topic_index(msg.topic()), sent, error: error.clone() }
            }
        };
        // The sink is gone only when its worker has stopped; nothing is left to count then.
        let _ = self.acks.send(ack);
    }
}

/// FNV-1a: stable across processes and builds, unlike std's hasher, so every process of a
/// cluster routes a vehicle to the same worker.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn route_of(key: Option<&[u8]>, payload: &[u8]) -> u64 {
    if let Some(k) = key {
        return fnv1a(k);
    }
    // Unkeyed: route by the payload's vehicle id so its state stays on one worker.
    let id = serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v.get("vehicle_id").and_then(|x| x.as_str()).map(str::to_string));
    match id {
        Some(id) => fnv1a(id.as_bytes()),
        None => fnv1a(payload),
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn timely_config(cfg: &PipelineConfig) -> Result<timely::Config, Error> {
    let mut args = vec![
        "busflow-pipeline".to_string(),
        "-w".into(),
        cfg.workers.max(1).to_string(),
        "-n".into(),
        cfg.processes.max(1).to_string(),
        "-p".into(),
        cfg.process_index.to_string(),
    ];
    if let Some(h) = &cfg.hostfile {
        args.push("-h".into());
        args.push(h.display().to_string());
    }
    timely::Config::from_args(args.into_iter().skip(1)).map_err(Error::Timely)
}

/// Runs the pipeline until `shutdown` is cancelled, then drains, flushes and commits.
///
/// Blocking: call it from a thread of its own (`tokio::task::spawn_blocking` in async code).
/// Waits, logging, while the brokers are unreachable. Returns what this process did.
pub fn run(
    cfg: PipelineConfig,
    network: Arc<Network>,
    kafka: KafkaConfig,
    topics: Topics,
    shutdown: CancellationToken,
) -> Result<Report, Error> {
    // Fail on bad settings before touching Kafka.
    Processor::new(network.clone(), &cfg)?;
    let timely_cfg = timely_config(&cfg)?;
    let probe_consumer: BaseConsumer = kafka.client_config().create()?;
    let Some(raw_partitions) =
        partitions_of(&probe_consumer, &topics.raw, &kafka.brokers, &shutdown)
    else {
        return Ok(Report::default());
    };
    drop(probe_consumer);
    let started = Instant::now();
    let Some(recovery) = recover(&kafka, &topics, &cfg.group_id, raw_partitions, &shutdown)? else {
        return Ok(Report::default());
    };
    tracing::info!(
        raw_partitions,
        committed = ?recovery.committed,
        outputs_scanned = recovery.scanned,
        already_produced_past_commit = recovery.emitted.len(),
        vehicles = recovery.last.len(),
        took_ms = started.elapsed().as_millis() as u64,
        "recovered state from the output topics"
    );
    let recovery_committed = recovery.committed.clone();
    let shared = Arc::new(Shared {
        cfg,
        network,
        kafka,
        topics,
        shutdown,
        recovery,
        raw_partitions,
        report: Mutex::new(Report::default()),
        errors: Mutex::new(Vec::new()),
        // Until a worker reads, a partition's position is its committed offset.
        read_to: Mutex::new(recovery_committed),
        workers_done: std::sync::atomic::AtomicBool::new(false),
    });
    let lag = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("busflow-lag".into())
            .spawn(move || lag_monitor(&shared))
            .map_err(|e| Error::Timely(format!("starting the lag monitor thread: {e}")))?
    };
    let worker_shared = shared.clone();
    let guards = timely::execute(timely_cfg, move |worker| {
        if let Err(e) = run_worker(worker, &worker_shared) {
            tracing::error!(worker = worker.index(), "pipeline worker failed: {e}");
            worker_shared.shutdown.cancel();
            if let Ok(mut errs) = worker_shared.errors.lock() {
                errs.push(e.to_string());
            }
        }
    })
    .map_err(Error::Timely)?;
    let joined: Result<Vec<()>, String> = guards.join().into_iter().collect();
    shared.workers_done.store(true, std::sync::atomic::Ordering::Relaxed);
    if lag.join().is_err() {
        tracing::warn!("the lag monitor thread panicked");
    }
    joined.map_err(Error::Timely)?;
    if let Some(e) = shared.errors.lock().ok().and_then(|e| e.first().cloned()) {
        return Err(Error::Timely(e));
    }
    let report = shared.report.lock().map(|r| r.clone()).unwrap_or_default();
    Ok(report)
}

struct Shared {
    cfg: PipelineConfig,
    network: Arc<Network>,
    kafka: KafkaConfig,
    topics: Topics,
    shutdown: CancellationToken,
    recovery: Recovery,
    raw_partitions: i32,
    report: Mutex<Report>,
    errors: Mutex<Vec<String>>,
    /// Per raw partition, the next offset its worker will read (for the lag gauge).
    read_to: Mutex<HashMap<i32, i64>>,
    /// Set once every worker has returned, to stop the lag monitor.
    workers_done: std::sync::atomic::AtomicBool,
}

/// Sets the consumer lag gauges every few seconds from the workers' read positions. A thread of
/// its own because fetching watermarks is a broker round trip per partition: done in a worker's
/// loop it paused that worker's reading and processing every time (up to its timeout per
/// partition while the broker is slow or down).
fn lag_monitor(shared: &Shared) {
    let consumer: BaseConsumer = match shared.kafka.client_config().create() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("no consumer lag metrics: creating a client failed: {e}");
            return;
        }
    };
    let mut last = Instant::now();
    let done = || {
        shared.shutdown.is_cancelled()
            || shared.workers_done.load(std::sync::atomic::Ordering::Relaxed)
    };
    while !done() {
        std::thread::sleep(Duration::from_millis(100));
        if last.elapsed() < Duration::from_secs(5) {
            continue;
        }
        last = Instant::now();
        let positions: Vec<(i32, i64)> = match shared.read_to.lock() {
            Ok(m) => m.iter().map(|(p, o)| (*p, *o)).collect(),
            Err(_) => return,
        };
        for (p, pos) in positions {
            if done() {
                return;
            }
            if let Ok((_, high)) =
                consumer.fetch_watermarks(&shared.topics.raw, p, Duration::from_secs(1))
            {
                metrics::gauge!("busflow_pipeline_consumer_lag", "partition" => p.to_string())
                    .set((high - pos).max(0) as f64);
            }
        }
    }
}

fn producer(kafka: &KafkaConfig, ctx: SinkContext) -> Result<ThreadedProducer<SinkContext>, Error> {
    let mut c = kafka.producer_config();
    // Never give up on a record: an unreachable broker means waiting, and the offsets behind
    // the record stay uncommitted meanwhile.
    if !kafka.options.iter().any(|(k, _)| k == "message.timeout.ms") {
        c.set("message.timeout.ms", "0");
    }
    Ok(c.create_with_context(ctx)?)
}

fn run_worker(worker: &mut timely::worker::Worker, shared: &Arc<Shared>) -> Result<(), Error> {
    let index = worker.index();
    let peers = worker.peers();
    let cfg = &shared.cfg;
    let topics = &shared.topics;
    let mine: Vec<i32> =
        (0..shared.raw_partitions).filter(|p| *p as usize % peers == index).collect();
    let consumer: BaseConsumer = shared
        .kafka
        .client_config_with(&[
            ("group.id", cfg.group_id.as_str()),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            // Latency: do not let the broker hold a fetch for long when little is waiting.
            ("fetch.wait.max.ms", "10"),
        ])
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for &p in &mine {
        let start = match shared.recovery.committed.get(&p) {
            Some(&o) => Offset::Offset(o),
            None => Offset::Beginning,
        };
        tpl.add_partition_offset(&topics.raw, p, start)?;
    }
    consumer.assign(&tpl)?;
    tracing::info!(worker = index, workers = peers, partitions = ?mine, "worker reading its raw partitions");

    let mut input: InputHandle<u64, CapacityContainerBuilder<Vec<RawRecord>>> = InputHandle::new();
    let probe = ProbeHandle::new();
    let mut processor = Processor::new(shared.network.clone(), cfg)?;
    for pos in shared.recovery.last.values() {
        if fnv1a(pos.vehicle_id.as_bytes()) as usize % peers == index {
            processor.restore(pos);
        }
    }
    let restored = processor.vehicles();
    let counters =
        Arc::new(Mutex::new(Report { restored_vehicles: restored, ..Report::default() }));
    {
        let sink_topics = [
            shared.topics.positions.clone(),
            shared.topics.latest.clone(),
            shared.topics.rejected.clone(),
        ];
        let (ack_tx, acks) = mpsc::channel();
        let producer = producer(&shared.kafka, SinkContext::new(sink_topics.clone(), ack_tx))?;
        worker.dataflow::<u64, _, _>(|scope| {
            let mut state = StateStage {
                processor,
                emitted: shared.recovery.emitted.clone(),
                replayed: shared.recovery.replayed.clone(),
                counters: counters.clone(),
                last_evict: Instant::now(),
                index,
            };
            // The input handle pushes into the exchange only when an epoch closes (it never
            // tells the exchange it is done otherwise), so with several workers read events
            // waited up to an epoch before crossing. An operator's output is flushed through
            // the exchange at the end of every invocation, so forwarding once moves them on.
            let read =
                input.to_stream(scope).unary::<CapacityContainerBuilder<Vec<RawRecord>>, _, _, _>(
                    Pipeline,
                    "Forward",
                    |_cap, _info| {
                        |input, output| {
                            input.for_each(|cap, data| {
                                if let Some(cap) = cap.retain_least(output.output_index()) {
                                    output.session(&cap).give_container(data);
                                }
                            });
                        }
                    },
                );
            let outputs = read.unary::<CapacityContainerBuilder<Vec<OutRecord>>, _, _, _>(
                Exchange::new(|r: &RawRecord| r.route),
                "SnapAndEnrich",
                move |_cap, _info| {
                    move |input, output| {
                        input.for_each(|cap, data| {
                            let Some(cap) = cap.retain_least(output.output_index()) else {
                                return;
                            };
                            let mut session = output.session(&cap);
                            for rec in data.drain(..) {
                                if let Some(out) = state.handle(rec) {
                                    session.give(out);
                                }
                            }
                        });
                        state.flush_metrics();
                    }
                },
            );
            let sink_scope = outputs.scope();
            let mut sink = SinkStage {
                producer,
                topics: sink_topics,
                pending: BTreeMap::new(),
                acks,
                counters: counters.clone(),
                last_log: Instant::now(),
                stalled_since: None,
            };
            outputs
                .unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
                    Pipeline,
                    "KafkaSink",
                    move |_cap, info| {
                        let activator = sink_scope.activator_for(info.address.clone());
                        move |(input, frontier), _output| {
                            input.for_each(|cap, data| {
                                let Some(time) = cap.least().copied() else { return };
                                if let std::collections::btree_map::Entry::Vacant(slot) =
                                    sink.pending.entry(time)
                                    && let Some(c) = cap.retain_least(0)
                                {
                                    slot.insert((c, 0));
                                }
                                for rec in data.drain(..) {
                                    sink.send(time, rec);
                                }
                            });
                            sink.collect_acks();
                            sink.pending.retain(|t, (_, outstanding)| {
                                *outstanding > 0 || frontier.less_equal(t)
                            });
                            if sink.pending.values().any(|(_, n)| *n > 0) {
                                activator.activate();
                            }
                        }
                    },
                )
                .probe_with(&probe);
        });
    }

    // Source loop: read, close epochs on a timer, commit what the probe says is done.
    let mut epochs =
        Epochs::new(cfg.epoch, cfg.max_epoch_messages, cfg.max_epochs_in_flight, Instant::now());
    let mut consumed: u64 = 0;
    let mut last_warn = Instant::now() - Duration::from_secs(60);
    let mut last_lag = Instant::now();
    let mut stuck = StuckWatch::new();
    let raw_label = topics.raw.clone();
    while !shared.shutdown.is_cancelled() {
        let mut read = 0;
        if epochs.may_read() {
            // An idle single worker may wait in the consumer: new input wakes it. With peers,
            // events exchanged from another worker wait for this loop to step, and nothing
            // wakes a worker blocked in the consumer, so it waits only briefly.
            let first_wait = if epochs.in_flight() == 0 && peers == 1 {
                Duration::from_millis(10)
            } else {
                Duration::from_millis(1)
            };
            while read < epochs.max_messages() {
                let wait = if read == 0 { first_wait } else { Duration::ZERO };
                match consumer.poll(wait) {
                    Some(Ok(m)) => {
                        let key = m.key().map(<[u8]>::to_vec);
                        let payload = m.payload().map(<[u8]>::to_vec).unwrap_or_default();
                        let route = route_of(key.as_deref(), &payload);
                        epochs.record(m.partition(), m.offset() + 1);
                        input.send(RawRecord {
                            partition: m.partition(),
                            offset: m.offset(),
                            key,
                            payload,
                            route,
                            consumed_ms: now_ms(),
                        });
                        read += 1;
                    }
                    Some(Err(e)) => {
                        if last_warn.elapsed() > Duration::from_secs(10) {
                            tracing::warn!(worker = index, "reading {}: {e}; retrying", topics.raw);
                            last_warn = Instant::now();
                        }
                        break;
                    }
                    None => break,
                }
            }
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
        if read > 0 {
            // Hand what was read to the workers now: the input otherwise holds it until its
            // buffer fills or the epoch closes, which added half an epoch to every event's latency.
            input.flush();
            consumed += read as u64;
            metrics::counter!("busflow_pipeline_events_in_total", "topic" => raw_label.clone())
                .increment(read as u64);
        }
        if let Some(next) = epochs.maybe_close(Instant::now(), read) {
            input.advance_to(next);
        }
        worker.step();
        commit_done(&consumer, &topics.raw, &probe, &mut epochs, CommitMode::Async);
        stuck.check(index, &probe, &epochs);
        if last_lag.elapsed() > Duration::from_secs(1) {
            last_lag = Instant::now();
            if let Ok(mut shared_pos) = shared.read_to.lock() {
                for &p in &mine {
                    if let Some(pos) = epochs.read_to(p) {
                        shared_pos.insert(p, pos);
                    }
                }
            }
        }
    }

    // Drain: close the input, wait until every output is acknowledged, commit synchronously.
    epochs.close_final(Instant::now());
    drop(input);
    let drain_started = Instant::now();
    let mut last_log = Instant::now();
    while !probe.done() {
        worker.step_or_park(Some(Duration::from_millis(5)));
        if last_log.elapsed() > Duration::from_secs(10) {
            tracing::warn!(
                worker = index,
                waited_s = drain_started.elapsed().as_secs(),
                "shutting down: still waiting for the broker to acknowledge outputs (press Ctrl-C again to abandon them; they will be redone on restart)"
            );
            last_log = Instant::now();
        }
    }
    commit_done(&consumer, &topics.raw, &probe, &mut epochs, CommitMode::Sync);
    let mut mine_report = counters.lock().map(|r| r.clone()).unwrap_or_default();
    mine_report.consumed = consumed;
    if let Ok(mut total) = shared.report.lock() {
        total.consumed += mine_report.consumed;
        total.positions += mine_report.positions;
        total.rejected += mine_report.rejected;
        total.duplicates += mine_report.duplicates;
        total.replays_suppressed += mine_report.replays_suppressed;
        total.restored_vehicles += mine_report.restored_vehicles;
    }
    tracing::info!(worker = index, consumed, "worker stopped after committing its offsets");
    Ok(())
}

/// Says so when the probe's frontier has not moved for a while although epochs wait on it,
/// with what the worker knows; a stalled dataflow is otherwise indistinguishable from idling.
struct StuckWatch {
    frontier: Option<u64>,
    since: Instant,
    last_log: Instant,
}

impl StuckWatch {
    fn new() -> Self {
        StuckWatch { frontier: None, since: Instant::now(), last_log: Instant::now() }
    }

    fn check(&mut self, worker: usize, probe: &ProbeHandle<u64>, epochs: &Epochs) {
        let frontier = probe.with_frontier(|f| f.iter().min().copied());
        if frontier != self.frontier || epochs.in_flight() == 0 {
            self.frontier = frontier;
            self.since = Instant::now();
            return;
        }
        if self.since.elapsed() > Duration::from_secs(30)
            && self.last_log.elapsed() > Duration::from_secs(30)
        {
            tracing::warn!(
                worker,
                frontier = ?frontier,
                epoch = epochs.current(),
                epochs_in_flight = epochs.in_flight(),
                stuck_s = self.since.elapsed().as_secs(),
                "the dataflow's frontier has not moved; raw offsets are not being committed"
            );
            self.last_log = Instant::now();
        }
    }
}

/// Commits the offsets of every epoch the probe has passed.
fn commit_done(
    consumer: &BaseConsumer,
    topic: &str,
    probe: &ProbeHandle<u64>,
    epochs: &mut Epochs,
    mode: CommitMode,
) {
    let Some(offsets) = epochs.take_done(|e| !probe.less_equal(&e) || probe.done()) else {
        return;
    };
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        if tpl.add_partition_offset(topic, p, Offset::Offset(o)).is_err() {
            return;
        }
    }
    if let Err(e) = consumer.commit(&tpl, mode) {
        // The next epoch's commit covers these offsets too; a failure only means more replay.
        tracing::warn!("committing offsets on {topic}: {e}");
    }
}

/// The state-owning side: runs the processor and skips outputs recovery says exist already.
struct StateStage {
    processor: Processor,
    emitted: std::collections::HashSet<(i32, i64)>,
    replayed: HashMap<(String, i64), (f64, f64)>,
    counters: Arc<Mutex<Report>>,
    last_evict: Instant,
    index: usize,
}

impl StateStage {
    fn handle(&mut self, rec: RawRecord) -> Option<OutRecord> {
        let msg = RawMessage {
            payload: &rec.payload,
            key: rec.key.as_deref(),
            partition: rec.partition,
            offset: rec.offset,
        };
        let outcome = self.processor.process(msg, now_ms());
        let already = !self.emitted.is_empty() && self.emitted.remove(&(rec.partition, rec.offset));
        if already {
            if let Ok(mut c) = self.counters.lock() {
                c.replays_suppressed += 1;
            }
            metrics::counter!("busflow_pipeline_replays_suppressed_total").increment(1);
            return None;
        }
        let out = match outcome {
            Outcome::Position(p) => OutRecord {
                kind: Kind::Position,
                key: p.vehicle_id.as_bytes().to_vec(),
                payload: serde_json::to_vec(&p).ok()?,
                event_ts: Some(p.ts),
                consumed_ms: rec.consumed_ms,
            },
            Outcome::Rejected(r) => {
                // State restored past this replayed message can call an exact repeat of a
                // produced position stale; it was a duplicate the first time round.
                if r.reason == RejectReason::Stale
                    && !self.replayed.is_empty()
                    && let Ok(raw) = crate::parse(&rec.payload, rec.key.as_deref(), usize::MAX)
                    && let Some((lat, lon)) = self.replayed.get(&(raw.vehicle_id.clone(), raw.ts))
                    && (lat - raw.lat).abs() < 1e-8
                    && (lon - raw.lon).abs() < 1e-8
                {
                    if let Ok(mut c) = self.counters.lock() {
                        c.duplicates += 1;
                    }
                    return None;
                }
                OutRecord {
                    kind: Kind::Rejected,
                    key: r.vehicle_id.clone().unwrap_or_default().into_bytes(),
                    payload: serde_json::to_vec(&r).ok()?,
                    event_ts: None,
                    consumed_ms: rec.consumed_ms,
                }
            }
            Outcome::Duplicate => return None,
        };
        Some(out)
    }

    fn flush_metrics(&mut self) {
        let c = self.processor.take_counts();
        if let Ok(mut r) = self.counters.lock() {
            r.duplicates += c.duplicates;
        }
        for (i, n) in c.rejected.iter().enumerate() {
            if *n > 0 {
                let reason = RejectReason::ALL[i].as_str();
                metrics::counter!("busflow_pipeline_rejected_total", "reason" => reason)
                    .increment(*n);
                if RejectReason::ALL[i] == RejectReason::Stale {
                    metrics::counter!("busflow_pipeline_stale_total").increment(*n);
                }
            }
        }
        if c.duplicates > 0 {
            metrics::counter!("busflow_pipeline_duplicates_total").increment(c.duplicates);
        }
        if c.off_route > 0 {
            metrics::counter!("busflow_pipeline_off_route_total").increment(c.off_route);
        }
        if self.last_evict.elapsed() > Duration::from_secs(10) {
            self.last_evict = Instant::now();
            let evicted = self.processor.evict(now_ms());
            if evicted > 0 {
                tracing::debug!(worker = self.index, evicted, "evicted silent vehicles");
            }
            metrics::gauge!("busflow_pipeline_state_vehicles", "worker" => self.index.to_string())
                .set(self.processor.vehicles() as f64);
        }
    }
}

/// The producing side: sends, and holds each epoch until its deliveries are acknowledged.
struct SinkStage {
    producer: ThreadedProducer<SinkContext>,
    /// positions, latest, rejected
    topics: [String; 3],
    /// Per epoch: its capability and how many of its sends are not yet acknowledged.
    pending: BTreeMap<u64, (Capability<u64>, usize)>,
    acks: mpsc::Receiver<Ack>,
    counters: Arc<Mutex<Report>>,
    last_log: Instant,
    stalled_since: Option<Instant>,
}

impl SinkStage {
    fn send(&mut self, time: u64, rec: OutRecord) {
        let kind = rec.kind;
        let targets: &[usize] = match kind {
            Kind::Position => &[0, 1],
            Kind::Rejected => &[2],
        };
        let sent = Arc::new(Sent { epoch: time, rec });
        for &topic in targets {
            self.produce(topic, sent.clone());
        }
        if let Some((_, outstanding)) = self.pending.get_mut(&time) {
            *outstanding += targets.len();
        }
        if let Ok(mut c) = self.counters.lock() {
            match kind {
                Kind::Position => c.positions += 1,
                Kind::Rejected => c.rejected += 1,
            }
        }
    }

    fn produce(&mut self, topic: usize, sent: Arc<Sent>) {
        let name = &self.topics[topic];
        let payload = sent.clone();
        let mut record = BaseRecord::with_opaque_to(name, sent)
            .key(&payload.rec.key[..])
            .payload(&payload.rec.payload[..]);
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                // Deliveries free the queue (on the producer's own thread); their acks wait in
                // the channel meanwhile.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, r)) => {
                    record = r;
                    if self.last_log.elapsed() > Duration::from_secs(10) {
                        tracing::warn!("producing to {name}: {e}; retrying");
                        self.last_log = Instant::now();
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Counts what the broker acknowledged and produces again what it refused.
    fn collect_acks(&mut self) {
        let mut completed = 0;
        let mut resend = Vec::new();
        while let Ok(ack) = self.acks.try_recv() {
            match ack {
                Ack::Delivered(epoch) => {
                    completed += 1;
                    if let Some((_, outstanding)) = self.pending.get_mut(&epoch) {
                        *outstanding = outstanding.saturating_sub(1);
                    }
                }
                Ack::Failed { topic, sent, error } => {
                    tracing::warn!(
                        "delivery to {} failed: {error}; producing it again",
                        self.topics[topic]
                    );
                    resend.push((topic, sent));
                }
            }
        }
        // Still counted as outstanding in their epoch: a resend replaces the failed send.
        for (topic, sent) in resend {
            self.produce(topic, sent);
        }
        let waiting: usize = self.pending.values().map(|(_, n)| *n).sum();
        if waiting == 0 || completed > 0 {
            self.stalled_since = None;
        } else {
            let since = *self.stalled_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(10)
                && self.last_log.elapsed() > Duration::from_secs(10)
            {
                tracing::warn!(
                    waiting,
                    stalled_s = since.elapsed().as_secs(),
                    "no acknowledgement from the broker; outputs stay queued and their raw offsets uncommitted until it answers"
                );
                self.last_log = Instant::now();
            }
        }
    }
}
