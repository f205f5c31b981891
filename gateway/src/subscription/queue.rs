//! A client's outgoing state: the latest event per vehicle not yet written, in order.
//!
//! A map shows where each bus is *now*, so once a newer event for a vehicle is waiting the older
//! one is worth nothing to the client: an `update` or `remove` fully replaces what the client
//! knows about that vehicle. The queue therefore holds at most one pending event per vehicle, in
//! the order the vehicles first became due; a new event for a vehicle already pending takes that
//! pending event's place (and is counted as superseded). The queue is bounded by the vehicles in
//! view, and what goes out is always the newest known, however slowly the client reads.
//!
//! Events without a vehicle (snapshot, diff, error) are barriers: nothing moves across them, so
//! an update queued after a snapshot is never written before it. The ingest path pushes without
//! ever waiting. A client that takes nothing for the time limit, or whose distinct pending
//! vehicles exceed the buffer, is closed with a final `error` event.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use busflow_core::VehiclePosition;
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Why a vehicle disappeared from a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoveReason {
    /// It moved out of the viewport.
    LeftViewport,
    /// It went silent for longer than `stale_after`.
    Stale,
    /// It no longer matches the route filter.
    Filtered,
}

/// Vehicle counts per H3 cell, sent instead of vehicles when a viewport is too dense.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DensityFrame {
    /// H3 resolution of the cells.
    pub resolution: u8,
    /// Total vehicles in the viewport.
    pub total: usize,
    /// Vehicles per cell.
    pub cells: Vec<DensityCell>,
}

/// One cell of a [`DensityFrame`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DensityCell {
    /// Cell id, 15 hex digits.
    pub cell: String,
    /// Cell centre latitude.
    pub lat: f64,
    /// Cell centre longitude.
    pub lon: f64,
    /// Vehicles in the cell.
    pub count: usize,
}

/// An update shared by every client it goes to: the position, and its wire JSON encoded at
/// most once however many clients send it (fan-out cost is then a copy, not a serialization).
#[derive(Debug)]
pub struct SharedUpdate {
    position: Arc<VehiclePosition>,
    json: OnceLock<Arc<str>>,
    /// The vehicle id's hash, computed once for every client queue it passes through.
    key_hash: u64,
}

impl SharedUpdate {
    /// Wraps a position for fan-out.
    pub fn new(position: Arc<VehiclePosition>) -> Arc<Self> {
        let key_hash = key_hash(&position.vehicle_id);
        Arc::new(SharedUpdate { position, json: OnceLock::new(), key_hash })
    }

    /// The position.
    pub fn position(&self) -> &Arc<VehiclePosition> {
        &self.position
    }

    /// The `update` event's JSON, encoded on first use.
    pub fn json(&self, encode: impl FnOnce(&VehiclePosition) -> String) -> Arc<str> {
        self.json.get_or_init(|| Arc::from(encode(&self.position))).clone()
    }
}

impl std::ops::Deref for SharedUpdate {
    type Target = VehiclePosition;
    fn deref(&self) -> &VehiclePosition {
        &self.position
    }
}

impl PartialEq for SharedUpdate {
    fn eq(&self, other: &Self) -> bool {
        self.position == other.position
    }
}

/// One event for a client.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// Every matching vehicle; replaces what the client holds.
    Snapshot {
        /// Vehicles, sorted by id.
        vehicles: Vec<Arc<VehiclePosition>>,
        /// Whether this answers a reconnect (`Last-Event-ID`).
        resumed: bool,
    },
    /// A vehicle entered or moved inside the viewport.
    Update(Arc<SharedUpdate>),
    /// A vehicle left the subscription.
    Remove {
        /// Vehicle id.
        vehicle_id: String,
        /// Why.
        reason: RemoveReason,
    },
    /// Aggregated counts for a dense viewport.
    Density(Arc<DensityFrame>),
    /// Answer to a viewport/filter change: what left and what entered.
    Diff {
        /// Vehicles the client must drop.
        removed: Vec<String>,
        /// Vehicles the client must add (or refresh).
        added: Vec<Arc<VehiclePosition>>,
    },
    /// Final event before the server closes the stream.
    Error {
        /// Machine-readable code (`slow_consumer`, `shutting_down`).
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
}

impl Outgoing {
    /// Coalescing key: events with the same key supersede each other; `None` is a barrier.
    fn key(&self) -> Option<&str> {
        match self {
            Outgoing::Update(p) => Some(&p.vehicle_id),
            Outgoing::Remove { vehicle_id, .. } => Some(vehicle_id),
            // Vehicle ids are never empty (the pipeline rejects them), so this cannot clash.
            Outgoing::Density(_) => Some(""),
            _ => None,
        }
    }

    fn key_hash(&self) -> Option<u64> {
        match self {
            Outgoing::Update(p) => Some(p.key_hash),
            other => other.key().map(key_hash),
        }
    }

    /// SSE event name / WebSocket `type`.
    pub fn name(&self) -> &'static str {
        match self {
            Outgoing::Snapshot { .. } => "snapshot",
            Outgoing::Update(_) => "update",
            Outgoing::Remove { .. } => "remove",
            Outgoing::Density(_) => "density",
            Outgoing::Diff { .. } => "diff",
            Outgoing::Error { .. } => "error",
        }
    }
}

/// Limits of a client's queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Most distinct vehicles pending at once.
    pub capacity: usize,
    /// How long a client may take nothing while something is pending before it is closed.
    pub slow_timeout: Duration,
}

/// A pending event and when its slot was first queued: a slot keeps its place (and its time)
/// when a newer event for the same vehicle replaces its content, so its age says how long the
/// client has been owed this vehicle, and its content is always the newest.
#[derive(Debug)]
struct Slot {
    item: Outgoing,
    hash: Option<u64>,
    since: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    items: VecDeque<Slot>,
    /// Sequence number of `items[0]`; slot `k` has number `head + k`.
    head: u64,
    /// Vehicles pending after the last barrier: key hash -> slot number.
    pending: HashMap<u64, u64, BuildHasherDefault<PreHashed>>,
    /// When the connection last took a batch (or the queue was made).
    last_take: Option<Instant>,
    closed: bool,
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued in a new slot.
    Queued,
    /// Replaced the vehicle's pending event, which will never be sent.
    Superseded,
    /// The client was closed now (slow consumer); the final error event is queued.
    ClosedNow,
    /// The client was already closed; nothing queued.
    Closed,
}

/// A batch taken for writing.
#[derive(Debug, Default)]
pub struct Taken {
    /// Events, oldest slot first.
    pub events: Vec<Outgoing>,
    /// Events were left queued (the batch was capped).
    pub more: bool,
    /// How long the oldest slot of the batch waited to be taken.
    pub waited: Duration,
}

/// A client's outgoing queue.
#[derive(Debug)]
pub struct ClientQueue {
    inner: Mutex<Inner>,
    notify: Notify,
    limits: QueueLimits,
    closed: CancellationToken,
}

impl ClientQueue {
    /// An empty queue.
    pub fn new(limits: QueueLimits) -> Arc<Self> {
        Self::with_closed_token(limits, CancellationToken::new())
    }

    /// An empty queue that cancels `closed` when it closes (the SSE stream passes its
    /// connection's closer, which then cuts a client that does not take its final event).
    pub fn with_closed_token(limits: QueueLimits, closed: CancellationToken) -> Arc<Self> {
        Arc::new(ClientQueue {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            limits: QueueLimits { capacity: limits.capacity.max(4), ..limits },
            closed,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the queue inconsistent in a way that
        // matters more than losing the client, so keep going with the data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The limits in force.
    pub fn limits(&self) -> QueueLimits {
        self.limits
    }

    /// Queues an event without waiting and wakes the connection.
    pub fn push(&self, item: Outgoing) -> Pushed {
        self.push_at(item, Instant::now())
    }

    /// [`ClientQueue::push`] with an explicit clock, for tests.
    pub fn push_at(&self, item: Outgoing, now: Instant) -> Pushed {
        let (pushed, wake) = self.push_quiet(item, now);
        if wake {
            self.wake();
        }
        pushed
    }

    /// Queues an event without waking the connection; the caller calls [`ClientQueue::wake`]
    /// when the second value is true (once per batch of pushes, after releasing its own locks).
    ///
    /// Only a push into an empty queue asks for a wake: a non-empty queue has already been
    /// signalled (the permit is kept by [`Notify`] until the connection waits), and the
    /// connection drains it before it waits again. Waking a tokio task from the consumer's
    /// thread costs a queue lock and often a futex call, per client per update.
    pub fn push_quiet(&self, item: Outgoing, now: Instant) -> (Pushed, bool) {
        let mut g = self.lock();
        if g.closed {
            return (Pushed::Closed, false);
        }
        // Stalled: something is pending and nothing was taken for the time limit. (Not the
        // oldest slot's age: a throttled client takes a few vehicles per batch and the others
        // wait their turn.)
        let idle_since = match (g.items.front(), g.last_take) {
            (Some(front), Some(t)) => Some(t.max(front.since)),
            (Some(front), None) => Some(front.since),
            (None, _) => None,
        };
        if let Some(t) = idle_since
            && now.saturating_duration_since(t) > self.limits.slow_timeout
        {
            let msg = format!(
                "client too slow: nothing taken for more than {:?}",
                self.limits.slow_timeout
            );
            self.close_locked(&mut g, "slow_consumer", msg);
            return (Pushed::ClosedNow, false);
        }
        let was_empty = g.items.is_empty();
        let hash = item.key_hash();
        let Some(h) = hash else {
            // A barrier: what is pending before it stays before it.
            g.pending.clear();
            g.items.push_back(Slot { item, hash: None, since: now });
            return (Pushed::Queued, was_empty);
        };
        if let Some(&seq) = g.pending.get(&h) {
            let head = g.head;
            if let Some(slot) = g.items.get_mut((seq - head) as usize)
                && slot.item.key() == item.key()
            {
                slot.item = item;
                return (Pushed::Superseded, false);
            }
            // A different vehicle with the same 64-bit hash: it gets a slot of its own.
        }
        let seq = g.head + g.items.len() as u64;
        g.items.push_back(Slot { item, hash, since: now });
        g.pending.insert(h, seq);
        if g.pending.len() > self.limits.capacity {
            let msg = format!(
                "client too slow: more than {} distinct vehicles pending",
                self.limits.capacity
            );
            self.close_locked(&mut g, "slow_consumer", msg);
            return (Pushed::ClosedNow, false);
        }
        (Pushed::Queued, was_empty)
    }

    /// Wakes the connection after [`ClientQueue::push_quiet`].
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    fn close_locked(&self, g: &mut Inner, code: &'static str, message: String) {
        g.head += g.items.len() as u64;
        g.items.clear();
        g.pending.clear();
        g.items.push_back(Slot {
            item: Outgoing::Error { code, message },
            hash: None,
            since: Instant::now(),
        });
        g.closed = true;
        self.closed.cancel();
        self.notify.notify_one();
    }

    /// Closes the client with a final error event (dropping anything still pending).
    pub fn close(&self, code: &'static str, message: impl Into<String>) {
        let mut g = self.lock();
        if !g.closed {
            self.close_locked(&mut g, code, message.into());
        }
    }

    /// Cancelled once the client is closed.
    pub fn closed_token(&self) -> &CancellationToken {
        &self.closed
    }

    /// Number of events waiting.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes up to `max` events (at most [`MAX_BATCH`]), oldest slot first, waiting until there
    /// is something.
    pub async fn next_batch(&self, max: usize) -> Taken {
        loop {
            if let Some(taken) = self.take(Instant::now(), max) {
                return taken;
            }
            self.notify.notified().await;
        }
    }

    /// Takes up to [`MAX_BATCH`] events, if anything is queued.
    pub fn try_batch(&self) -> Option<Vec<Outgoing>> {
        self.take(Instant::now(), MAX_BATCH).map(|t| t.events)
    }

    fn take(&self, now: Instant, max: usize) -> Option<Taken> {
        let mut g = self.lock();
        let waited = now.saturating_duration_since(g.items.front()?.since);
        g.last_take = Some(now);
        // A batch is encoded for the wire as a whole and held until the socket takes it, so a
        // client that stops reading holds one batch of encoded text besides its queue of shared
        // updates: the cap is what bounds that.
        let n = g.items.len().min(max.clamp(1, MAX_BATCH));
        let mut events = Vec::with_capacity(n);
        for k in 0..n as u64 {
            let Some(slot) = g.items.pop_front() else { break };
            if let Some(h) = slot.hash
                && g.pending.get(&h) == Some(&(g.head + k))
            {
                g.pending.remove(&h);
            }
            events.push(slot.item);
        }
        g.head += n as u64;
        // A queue that once held many vehicles (a burst, a stall, a wide viewport) would
        // otherwise keep its peak capacity for the life of the connection.
        if g.items.capacity() > SHRINK_ABOVE && g.items.len() < g.items.capacity() / 4 {
            let keep = (g.items.len() * 2).max(MAX_BATCH);
            g.items.shrink_to(keep);
            let keep = g.pending.len() * 2;
            g.pending.shrink_to(keep);
        }
        let more = !g.items.is_empty();
        Some(Taken { events, more, waited })
    }
}

/// Most events handed to a connection at once.
pub const MAX_BATCH: usize = 256;

/// A drained queue holding more capacity than this (in events) gives the rest back.
const SHRINK_ABOVE: usize = 4 * MAX_BATCH;

fn key_hash(key: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    h.write(key.as_bytes());
    h.finish()
}

/// The pending map's keys are hashes already: use them as they are.
#[derive(Debug, Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys go in; fold anything else rather than panic.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::vp;

    fn upd(id: &str, ts: i64) -> Outgoing {
        Outgoing::Update(SharedUpdate::new(Arc::new(vp(id, ts, -16.9, 145.7, None))))
    }

    fn limits(capacity: usize, slow_s: u64) -> QueueLimits {
        QueueLimits { capacity, slow_timeout: Duration::from_secs(slow_s) }
    }

    fn remove(id: &str) -> Outgoing {
        Outgoing::Remove { vehicle_id: id.into(), reason: RemoveReason::LeftViewport }
    }

    fn snapshot() -> Outgoing {
        Outgoing::Snapshot { vehicles: vec![], resumed: false }
    }

    #[test]
    fn batches_are_capped_and_say_when_more_is_queued() {
        let q = ClientQueue::new(limits(10 * MAX_BATCH, 60));
        let t0 = Instant::now();
        for ts in 0..(MAX_BATCH as i64 + 10) {
            q.push_at(upd(&format!("v{ts}"), ts), t0);
        }
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let first = rt.block_on(q.next_batch(usize::MAX));
        assert_eq!((first.events.len(), first.more), (MAX_BATCH, true));
        let rest = rt.block_on(q.next_batch(3));
        assert_eq!((rest.events.len(), rest.more), (3, true), "a smaller cap");
        let rest = rt.block_on(q.next_batch(usize::MAX));
        assert_eq!((rest.events.len(), rest.more), (7, false));
        assert_eq!(
            rest.events[0],
            upd(&format!("v{}", MAX_BATCH + 3), MAX_BATCH as i64 + 3),
            "order kept"
        );
    }

    #[test]
    fn at_most_one_pending_event_per_vehicle_and_it_is_the_newest() {
        let q = ClientQueue::new(limits(8, 60));
        let t0 = Instant::now();
        assert_eq!(q.push_at(upd("a", 1), t0), Pushed::Queued);
        assert_eq!(q.push_at(upd("b", 1), t0), Pushed::Queued);
        for ts in 2..100 {
            assert_eq!(q.push_at(upd("a", ts), t0), Pushed::Superseded);
        }
        assert_eq!(q.push_at(remove("b"), t0), Pushed::Superseded);
        assert_eq!(q.len(), 2);
        // "a" keeps its place (it became due first) with its newest content.
        assert_eq!(q.try_batch().unwrap(), vec![upd("a", 99), remove("b")]);
        // Once taken, a vehicle gets a new slot.
        assert_eq!(q.push_at(upd("a", 100), t0), Pushed::Queued);
        assert_eq!(q.try_batch().unwrap(), vec![upd("a", 100)]);
    }

    #[test]
    fn nothing_moves_across_a_barrier() {
        let q = ClientQueue::new(limits(8, 60));
        let t0 = Instant::now();
        q.push_at(upd("a", 1), t0);
        q.push_at(snapshot(), t0);
        assert_eq!(q.push_at(upd("a", 2), t0), Pushed::Queued, "after the snapshot: own slot");
        assert_eq!(q.push_at(upd("a", 3), t0), Pushed::Superseded);
        assert_eq!(q.try_batch().unwrap(), vec![upd("a", 1), snapshot(), upd("a", 3)]);
    }

    #[test]
    fn a_slot_taken_in_part_of_a_batch_is_not_replaced_later() {
        let q = ClientQueue::new(limits(10 * MAX_BATCH, 60));
        let t0 = Instant::now();
        for i in 0..(MAX_BATCH + 1) {
            q.push_at(upd(&format!("v{i}"), 1), t0);
        }
        let first = q.try_batch().unwrap();
        assert_eq!(first.len(), MAX_BATCH);
        // v0 was taken: a new event for it is a new slot behind the one still pending.
        assert_eq!(q.push_at(upd("v0", 2), t0), Pushed::Queued);
        let last = format!("v{MAX_BATCH}");
        assert_eq!(q.push_at(upd(&last, 2), t0), Pushed::Superseded);
        assert_eq!(q.try_batch().unwrap(), vec![upd(&last, 2), upd("v0", 2)]);
    }

    #[test]
    fn closes_a_client_that_takes_nothing_for_the_time_limit() {
        let q = ClientQueue::new(limits(8, 5));
        let t0 = Instant::now();
        q.push_at(upd("a", 1), t0);
        assert_eq!(q.push_at(upd("a", 2), t0 + Duration::from_secs(4)), Pushed::Superseded);
        assert_eq!(q.push_at(upd("b", 2), t0 + Duration::from_secs(6)), Pushed::ClosedNow);
        assert!(q.closed_token().is_cancelled());
        let batch = q.try_batch().unwrap();
        assert!(matches!(batch.as_slice(), [Outgoing::Error { code: "slow_consumer", .. }]));
        assert_eq!(q.push(upd("a", 3)), Pushed::Closed);
    }

    #[test]
    fn a_client_that_keeps_taking_is_never_closed_however_much_arrives() {
        let q = ClientQueue::new(limits(8, 5));
        let t0 = Instant::now();
        let mut superseded = 0;
        for s in 0..600u64 {
            let now = t0 + Duration::from_millis(100 * s);
            for v in 0..8 {
                // 20 events per vehicle between two takes.
                for k in 0..20 {
                    if q.push_at(upd(&format!("v{v}"), (s * 20 + k) as i64), now)
                        == Pushed::Superseded
                    {
                        superseded += 1;
                    }
                }
            }
            if s % 30 == 0 {
                let batch = q.take(now, MAX_BATCH).unwrap();
                assert_eq!(batch.events.len(), 8);
                assert!(batch.waited <= Duration::from_secs(3), "{:?}", batch.waited);
            }
        }
        assert!(!q.closed_token().is_cancelled());
        assert!(superseded > 600 * 8 * 18, "{superseded}");
    }

    #[test]
    fn a_client_taking_one_vehicle_at_a_time_is_not_stalled() {
        // 20 vehicles pending, one taken a second: each waits 20 s for its turn, longer than
        // the limit, but the client keeps taking.
        let q = ClientQueue::new(limits(64, 5));
        let t0 = Instant::now();
        for s in 0..60u64 {
            let now = t0 + Duration::from_secs(s);
            for v in 0..20 {
                assert_ne!(q.push_at(upd(&format!("v{v}"), s as i64), now), Pushed::ClosedNow);
            }
            assert_eq!(q.take(now, 1).unwrap().events.len(), 1);
        }
        // Then it stops taking.
        let later = t0 + Duration::from_secs(66);
        assert_eq!(q.push_at(upd("v0", 99), later), Pushed::ClosedNow);
    }

    #[test]
    fn closes_when_distinct_vehicles_exceed_the_capacity() {
        let q = ClientQueue::new(limits(8, 60));
        let mut last = Pushed::Queued;
        for i in 0..9 {
            last = q.push(upd(&format!("v{i}"), 1));
        }
        assert_eq!(last, Pushed::ClosedNow);
    }

    #[test]
    fn only_a_push_into_an_empty_queue_asks_for_a_wake() {
        let q = ClientQueue::new(limits(10 * MAX_BATCH, 60));
        let t0 = Instant::now();
        assert_eq!(q.push_quiet(upd("a", 1), t0), (Pushed::Queued, true));
        assert_eq!(q.push_quiet(upd("b", 1), t0), (Pushed::Queued, false));
        assert_eq!(q.try_batch().map(|b| b.len()), Some(2));
        assert_eq!(q.push_quiet(upd("a", 2), t0), (Pushed::Queued, true));
    }

    #[test]
    fn a_quiet_push_is_seen_by_a_waiting_connection_after_wake() {
        let q = ClientQueue::new(limits(64, 60));
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let waiter = {
                let q = q.clone();
                tokio::spawn(async move { q.next_batch(MAX_BATCH).await })
            };
            tokio::task::yield_now().await;
            let (_, wake) = q.push_quiet(upd("a", 1), Instant::now());
            assert!(wake);
            q.wake();
            let taken =
                tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
            assert_eq!((taken.events.len(), taken.more), (1, false));
        });
    }

    #[test]
    fn a_drained_queue_gives_back_its_peak_capacity() {
        let q = ClientQueue::new(limits(16 * MAX_BATCH, 60));
        let t0 = Instant::now();
        for i in 0..(8 * MAX_BATCH) {
            q.push_at(upd(&format!("v{i}"), 1), t0);
        }
        while q.try_batch().is_some() {}
        let cap = q.lock().items.capacity();
        assert!(cap <= 2 * MAX_BATCH, "capacity {cap} kept after draining");
    }

    #[test]
    fn a_hash_collision_never_replaces_another_vehicle() {
        let q = ClientQueue::new(limits(8, 60));
        let t0 = Instant::now();
        q.push_at(upd("a", 1), t0);
        // Forge a collision: point b's hash at a's slot.
        {
            let mut g = q.lock();
            let seq = *g.pending.values().next().unwrap();
            g.pending.insert(key_hash("b"), seq);
        }
        assert_eq!(q.push_at(upd("b", 1), t0), Pushed::Queued);
        assert_eq!(q.try_batch().unwrap(), vec![upd("a", 1), upd("b", 1)]);
    }
}
