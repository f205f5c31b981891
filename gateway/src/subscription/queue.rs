//! A client's bounded outgoing buffer.
//!
//! The ingest path pushes without ever waiting. While the client keeps up, events go out in
//! order. When the buffer fills, pending per-vehicle events are coalesced to the latest per
//! vehicle (an `update` or `remove` fully replaces what the client knows about that vehicle, so
//! older ones are obsolete). A client that stays behind past the time limit, or whose backlog of
//! distinct vehicles alone fills the buffer, is closed with a final `error` event.

use std::collections::{HashSet, VecDeque};
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
}

impl SharedUpdate {
    /// Wraps a position for fan-out.
    pub fn new(position: Arc<VehiclePosition>) -> Arc<Self> {
        Arc::new(SharedUpdate { position, json: OnceLock::new() })
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
    /// Coalescing key: events with the same key supersede each other.
    fn key(&self) -> Option<&str> {
        match self {
            Outgoing::Update(p) => Some(&p.vehicle_id),
            Outgoing::Remove { vehicle_id, .. } => Some(vehicle_id),
            // Vehicle ids are never empty (the pipeline rejects them), so this cannot clash.
            Outgoing::Density(_) => Some(""),
            _ => None,
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

/// Buffer limits.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Events held before coalescing starts.
    pub capacity: usize,
    /// How long a client may stay behind (buffer filled and not yet drained) before it is closed.
    pub slow_timeout: Duration,
}

#[derive(Debug, Default)]
struct Inner {
    items: VecDeque<Outgoing>,
    behind_since: Option<Instant>,
    closed: bool,
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued.
    Queued,
    /// Queued after coalescing this many older events.
    Coalesced(usize),
    /// The client was closed now (slow consumer); the final error event is queued.
    ClosedNow,
    /// The client was already closed; nothing queued.
    Closed,
}

/// A client's outgoing buffer.
#[derive(Debug)]
pub struct ClientQueue {
    inner: Mutex<Inner>,
    notify: Notify,
    limits: QueueLimits,
    closed: CancellationToken,
}

impl ClientQueue {
    /// An empty buffer.
    pub fn new(limits: QueueLimits) -> Arc<Self> {
        Self::with_closed_token(limits, CancellationToken::new())
    }

    /// An empty buffer that cancels `closed` when it closes (the SSE stream passes its
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
        let was_empty = g.items.is_empty();
        g.items.push_back(item);
        let mut result = Pushed::Queued;
        if g.items.len() > self.limits.capacity {
            let before = g.items.len();
            compact(&mut g.items);
            result = Pushed::Coalesced(before - g.items.len());
            g.behind_since.get_or_insert(now);
            if g.items.len() > self.limits.capacity * 3 / 4 {
                let msg = format!(
                    "client too slow: more than {} distinct pending updates",
                    self.limits.capacity * 3 / 4
                );
                self.close_locked(&mut g, "slow_consumer", msg);
                return (Pushed::ClosedNow, false);
            }
        }
        if let Some(t) = g.behind_since
            && now.saturating_duration_since(t) > self.limits.slow_timeout
        {
            let msg =
                format!("client too slow: behind for more than {:?}", self.limits.slow_timeout);
            self.close_locked(&mut g, "slow_consumer", msg);
            return (Pushed::ClosedNow, false);
        }
        (result, was_empty)
    }

    /// Wakes the connection after [`ClientQueue::push_quiet`].
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    fn close_locked(&self, g: &mut Inner, code: &'static str, message: String) {
        g.items.clear();
        g.items.push_back(Outgoing::Error { code, message });
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

    /// Takes up to [`MAX_BATCH`] events, waiting until there is something, and whether more
    /// were left queued. With `coalesce`, keeps only the latest event per vehicle first (used
    /// with `min_interval_ms`).
    pub async fn next_batch(&self, coalesce: bool) -> (Vec<Outgoing>, bool) {
        loop {
            if let Some(taken) = self.take(coalesce) {
                return taken;
            }
            self.notify.notified().await;
        }
    }

    /// Takes up to [`MAX_BATCH`] events, if anything is queued.
    pub fn try_batch(&self, coalesce: bool) -> Option<Vec<Outgoing>> {
        self.take(coalesce).map(|(batch, _)| batch)
    }

    fn take(&self, coalesce: bool) -> Option<(Vec<Outgoing>, bool)> {
        let mut g = self.lock();
        if g.items.is_empty() {
            return None;
        }
        if coalesce {
            compact(&mut g.items);
        }
        // A batch is encoded for the wire as a whole and held until the socket takes it, so a
        // client that stops reading holds one batch of encoded text besides its queue of shared
        // updates: the cap is what bounds that.
        let n = g.items.len().min(MAX_BATCH);
        let batch: Vec<Outgoing> = g.items.drain(..n).collect();
        if g.items.len() <= self.limits.capacity / 2 {
            g.behind_since = None;
        }
        // A queue that once filled (a burst, a stall) would otherwise keep its peak capacity,
        // up to `capacity` events of 48 bytes each (393 KB at the default 8192), for the life
        // of the connection: give most of it back once it has drained.
        if g.items.capacity() > SHRINK_ABOVE && g.items.len() < g.items.capacity() / 4 {
            let keep = (g.items.len() * 2).max(MAX_BATCH);
            g.items.shrink_to(keep);
        }
        let more = !g.items.is_empty();
        Some((batch, more))
    }
}

/// Most events handed to a connection at once.
pub const MAX_BATCH: usize = 256;

/// A drained queue holding more capacity than this (in events) gives the rest back.
const SHRINK_ABOVE: usize = 4 * MAX_BATCH;

/// Keeps only the last event per key, in place; events without a key stay.
fn compact(items: &mut VecDeque<Outgoing>) {
    let mut seen: HashSet<&str> = HashSet::with_capacity(items.len());
    let mut keep = vec![true; items.len()];
    for (i, item) in items.iter().enumerate().rev() {
        if let Some(k) = item.key()
            && !seen.insert(k)
        {
            keep[i] = false;
        }
    }
    let mut i = 0;
    items.retain(|_| {
        let k = keep[i];
        i += 1;
        k
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::vp;

    fn upd(id: &str, ts: i64) -> Outgoing {
        Outgoing::Update(SharedUpdate::new(Arc::new(vp(id, ts, -16.9, 145.7, None))))
    }

    #[test]
    fn batches_are_capped_and_say_when_more_is_queued() {
        let q = ClientQueue::new(QueueLimits {
            capacity: 10 * MAX_BATCH,
            slow_timeout: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        for ts in 0..(MAX_BATCH as i64 + 10) {
            q.push_at(upd(&format!("v{ts}"), ts), t0);
        }
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (first, more) = rt.block_on(q.next_batch(false));
        assert_eq!((first.len(), more), (MAX_BATCH, true));
        let (rest, more) = rt.block_on(q.next_batch(false));
        assert_eq!((rest.len(), more), (10, false));
        assert_eq!(rest[0], upd(&format!("v{MAX_BATCH}"), MAX_BATCH as i64), "order kept");
    }

    #[test]
    fn coalesces_to_latest_per_vehicle_when_full() {
        let q =
            ClientQueue::new(QueueLimits { capacity: 8, slow_timeout: Duration::from_secs(60) });
        let t0 = Instant::now();
        for ts in 0..8 {
            assert_eq!(q.push_at(upd(if ts % 2 == 0 { "a" } else { "b" }, ts), t0), Pushed::Queued);
        }
        assert_eq!(q.push_at(upd("a", 100), t0), Pushed::Coalesced(7));
        let batch = q.try_batch(false).unwrap();
        assert_eq!(batch, vec![upd("b", 7), upd("a", 100)]);
    }

    #[test]
    fn closes_clients_that_stay_behind() {
        let q = ClientQueue::new(QueueLimits { capacity: 8, slow_timeout: Duration::from_secs(5) });
        let t0 = Instant::now();
        for ts in 0..9 {
            q.push_at(upd("a", ts), t0);
        }
        assert_eq!(q.push_at(upd("a", 50), t0 + Duration::from_secs(2)), Pushed::Queued);
        assert_eq!(q.push_at(upd("a", 51), t0 + Duration::from_secs(6)), Pushed::ClosedNow);
        assert!(q.closed_token().is_cancelled());
        let batch = q.try_batch(false).unwrap();
        assert!(matches!(batch.as_slice(), [Outgoing::Error { code: "slow_consumer", .. }]));
        assert_eq!(q.push(upd("a", 52)), Pushed::Closed);
    }

    #[test]
    fn closes_when_distinct_backlog_fills_buffer() {
        let q =
            ClientQueue::new(QueueLimits { capacity: 8, slow_timeout: Duration::from_secs(60) });
        let mut last = Pushed::Queued;
        for i in 0..9 {
            last = q.push(upd(&format!("v{i}"), 1));
        }
        assert_eq!(last, Pushed::ClosedNow);
    }

    #[test]
    fn only_a_push_into_an_empty_queue_asks_for_a_wake() {
        let q = ClientQueue::new(QueueLimits {
            capacity: 10 * MAX_BATCH,
            slow_timeout: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        assert_eq!(q.push_quiet(upd("a", 1), t0), (Pushed::Queued, true));
        assert_eq!(q.push_quiet(upd("b", 1), t0), (Pushed::Queued, false));
        assert_eq!(q.try_batch(false).map(|b| b.len()), Some(2));
        assert_eq!(q.push_quiet(upd("a", 2), t0), (Pushed::Queued, true));
    }

    #[test]
    fn a_quiet_push_is_seen_by_a_waiting_connection_after_wake() {
        let q =
            ClientQueue::new(QueueLimits { capacity: 64, slow_timeout: Duration::from_secs(60) });
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let waiter = {
                let q = q.clone();
                tokio::spawn(async move { q.next_batch(false).await })
            };
            tokio::task::yield_now().await;
            let (_, wake) = q.push_quiet(upd("a", 1), Instant::now());
            assert!(wake);
            q.wake();
            let (batch, more) =
                tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
            assert_eq!((batch.len(), more), (1, false));
        });
    }

    #[test]
    fn a_drained_queue_gives_back_its_peak_capacity() {
        let q = ClientQueue::new(QueueLimits {
            capacity: 16 * MAX_BATCH,
            slow_timeout: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        for i in 0..(8 * MAX_BATCH) {
            q.push_at(upd(&format!("v{i}"), 1), t0);
        }
        while q.try_batch(false).is_some() {}
        let cap = q.lock().items.capacity();
        assert!(cap <= 2 * MAX_BATCH, "capacity {cap} kept after draining");
    }

    #[test]
    fn draining_clears_behind_state_and_keeps_barriers() {
        let q = ClientQueue::new(QueueLimits { capacity: 8, slow_timeout: Duration::from_secs(5) });
        let t0 = Instant::now();
        q.push_at(Outgoing::Snapshot { vehicles: vec![], resumed: false }, t0);
        for ts in 0..9 {
            q.push_at(upd("a", ts), t0);
        }
        let batch = q.try_batch(false).unwrap();
        // The 9th event triggered coalescing (snapshot + a@7); a@8 came after.
        assert_eq!(
            batch,
            vec![Outgoing::Snapshot { vehicles: vec![], resumed: false }, upd("a", 7), upd("a", 8)]
        );
        assert_eq!(q.push_at(upd("a", 99), t0 + Duration::from_secs(10)), Pushed::Queued);
    }
}
