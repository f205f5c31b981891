//! The live state: vehicles plus subscriptions, kept consistent under one lock so a snapshot and
//! the updates after it never miss or repeat a change.
//!
//! Subscriptions are spread over shards, each with its own lock, its own copy of the vehicle
//! store (the positions themselves are shared) and, past the first, its own thread. Every shard
//! applies every batch, in the same order, so within a shard the one-lock argument holds as
//! before; matching for one batch runs on all shards at once instead of on the consumer alone.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use busflow_core::VehiclePosition;
use h3o::{CellIndex, LatLng};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::state::{Upsert, VehicleStore};
use crate::subscription::index::{SubId, SubscriptionIndex};
use crate::subscription::queue::{
    ClientQueue, DensityCell, DensityFrame, Outgoing, Pushed, QueueLimits, RemoveReason,
    SharedUpdate,
};
use crate::viewport::{Filter, cell_at, display_point};

/// Smaller batches are applied to every shard on the caller's thread: waking a shard's thread
/// and waiting for its answer costs tens of microseconds, more than matching a few positions
/// (`apply` one position at a time, as tests and simple feeders do, would pay it per position).
const HAND_OFF_FROM: usize = 8;

/// Density frames aim at about this many cells.
const DENSITY_TARGET_CELLS: f64 = 150.0;

/// Settings of the live state.
#[derive(Debug, Clone, Copy)]
pub struct LiveSettings {
    /// Vehicles gone silent this long are dropped.
    pub stale_after: Duration,
    /// Above this many vehicles in a viewport, the subscription gets density events instead.
    pub max_vehicles_per_stream: usize,
    /// Per-client buffer limits.
    pub queue: QueueLimits,
    /// Shards the subscriptions are spread over; each past the first matches on a thread of its
    /// own (1 matches everything on the caller's thread, as before shards existed).
    pub fanout_threads: usize,
}

#[derive(Debug)]
struct Client {
    queue: Arc<ClientQueue>,
    visible: usize,
    dense: bool,
}

#[derive(Debug, Default)]
struct Inner {
    store: VehicleStore,
    index: SubscriptionIndex<Client>,
    scratch: Vec<SubId>,
}

/// A subscription handle: its id and the queue its events arrive on.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// Id for [`LiveState::resubscribe`] and [`LiveState::unsubscribe`].
    pub id: SubId,
    /// Outgoing events.
    pub queue: Arc<ClientQueue>,
}

/// One batch for a shard's thread; the shard answers on `done` once it has applied it.
struct Job {
    batch: Arc<[Arc<SharedUpdate>]>,
    seen_ms: i64,
    now: Instant,
    done: mpsc::Sender<()>,
}

/// Latest vehicle positions and the subscriptions that follow them.
#[derive(Debug)]
pub struct LiveState {
    shards: Arc<[Mutex<Inner>]>,
    /// Shard `i + 1`'s thread; `None` where it could not be started (that shard is then applied
    /// on the caller's thread). Dropping the senders ends the threads.
    workers: Vec<Option<mpsc::Sender<Job>>>,
    next_shard: AtomicUsize,
    ready: watch::Sender<bool>,
    settings: LiveSettings,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("positions", &self.batch.len()).finish()
    }
}

/// Milliseconds since the unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl LiveState {
    /// Empty state, not ready.
    pub fn new(settings: LiveSettings) -> Arc<Self> {
        let n = settings.fanout_threads.clamp(1, 64);
        let shards: Arc<[Mutex<Inner>]> = (0..n).map(|_| Mutex::new(Inner::default())).collect();
        let workers = (1..n)
            .map(|i| {
                let (tx, rx) = mpsc::channel::<Job>();
                let shards = shards.clone();
                let spawned =
                    std::thread::Builder::new().name(format!("gw-fanout-{i}")).spawn(move || {
                        while let Ok(job) = rx.recv() {
                            apply_shard(&shards[i], &job.batch, job.seen_ms, job.now);
                            let _ = job.done.send(());
                        }
                    });
                match spawned {
                    Ok(_) => Some(tx),
                    Err(e) => {
                        tracing::warn!("fan-out thread {i} not started ({e}); applied inline");
                        None
                    }
                }
            })
            .collect();
        Arc::new(LiveState {
            shards,
            workers,
            next_shard: AtomicUsize::new(0),
            ready: watch::channel(false).0,
            settings,
        })
    }

    /// The shard queries read from: every shard holds every vehicle.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock_shard(&self.shards[0])
    }

    /// The shard holding subscription `id`, and the id within that shard's index.
    fn shard_of(&self, id: SubId) -> (&Mutex<Inner>, SubId) {
        let n = self.shards.len() as u64;
        (&self.shards[(id % n) as usize], id / n)
    }

    /// The settings.
    pub fn settings(&self) -> &LiveSettings {
        &self.settings
    }

    /// Marks the initial state as loaded (`/readyz` turns 200).
    pub fn mark_ready(&self) {
        self.ready.send_replace(true);
    }

    /// Whether the initial state is loaded.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until the initial state is loaded.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Applies one position seen now and tells interested subscribers.
    pub fn apply(&self, pos: VehiclePosition) {
        self.apply_seen(pos, now_ms());
    }

    /// Applies one position seen at `seen_ms` (wall clock). Positions older (by device time)
    /// than the one held are ignored, so replaying overlapping history is harmless.
    pub fn apply_seen(&self, pos: VehiclePosition, seen_ms: i64) {
        self.apply_batch_seen(std::iter::once(pos), seen_ms);
    }

    /// Applies positions seen now, in order, under one lock, and wakes each client that got
    /// something once, after the lock is released. The Kafka source hands over what the
    /// consumer has already buffered, so batching adds no wait.
    pub fn apply_batch(&self, positions: impl IntoIterator<Item = VehiclePosition>) {
        self.apply_batch_seen(positions, now_ms());
    }

    /// Hands the batch to every shard's thread, applies the first shard here, and returns once
    /// all have applied it, so the next batch starts on every shard after this one and callers
    /// see its events queued when this returns.
    fn apply_batch_seen(&self, positions: impl IntoIterator<Item = VehiclePosition>, seen_ms: i64) {
        let now = Instant::now();
        let batch: Arc<[Arc<SharedUpdate>]> =
            positions.into_iter().map(|p| SharedUpdate::new(Arc::new(p))).collect();
        if batch.is_empty() {
            return;
        }
        if batch.len() < HAND_OFF_FROM {
            for shard in self.shards.iter() {
                apply_shard(shard, &batch, seen_ms, now);
            }
            return;
        }
        let (done_tx, done_rx) = mpsc::channel();
        let mut handed = 0;
        for (i, w) in self.workers.iter().enumerate() {
            let job = Job { batch: batch.clone(), seen_ms, now, done: done_tx.clone() };
            let sent = w.as_ref().is_some_and(|tx| tx.send(job).is_ok());
            if sent {
                handed += 1;
            } else {
                apply_shard(&self.shards[i + 1], &batch, seen_ms, now);
            }
        }
        drop(done_tx);
        apply_shard(&self.shards[0], &batch, seen_ms, now);
        for _ in 0..handed {
            // An error means a shard's thread died (a panic); its senders are gone with it.
            if done_rx.recv().is_err() {
                break;
            }
        }
    }

    /// Subscribes; the initial snapshot (or density frame) is the first event on the queue.
    pub fn subscribe(&self, filter: Filter, resumed: bool) -> Subscriber {
        self.subscribe_closing(filter, resumed, CancellationToken::new())
    }

    /// [`LiveState::subscribe`] with a token the client's queue cancels when it closes.
    pub fn subscribe_closing(
        &self,
        filter: Filter,
        resumed: bool,
        closed: CancellationToken,
    ) -> Subscriber {
        let queue = ClientQueue::with_closed_token(self.settings.queue, closed);
        let n = self.shards.len();
        let shard = self.next_shard.fetch_add(1, Ordering::Relaxed) % n;
        let mut g = lock_shard(&self.shards[shard]);
        let matching = g.store.matching(&filter);
        let dense = matching.len() > self.settings.max_vehicles_per_stream;
        let first = if dense {
            Outgoing::Density(Arc::new(density(&g.store, &filter)))
        } else {
            Outgoing::Snapshot { vehicles: matching.clone(), resumed }
        };
        queue.push(first);
        let client = Client { queue: queue.clone(), visible: matching.len(), dense };
        let local = g.index.insert(filter, client);
        Subscriber { id: local * n as u64 + shard as u64, queue }
    }

    /// Changes a subscription's viewport and filters; queues a diff (or a density frame, or a
    /// snapshot when leaving density mode).
    pub fn resubscribe(&self, id: SubId, filter: Filter) -> bool {
        let (shard, id) = self.shard_of(id);
        let mut g = lock_shard(shard);
        let inner = &mut *g;
        let Some(sub) = inner.index.get(id) else { return false };
        let was_dense = sub.data.dense;
        let before: HashSet<String> = if was_dense {
            HashSet::new()
        } else {
            inner.store.matching(&sub.filter).iter().map(|p| p.vehicle_id.clone()).collect()
        };
        let after = inner.store.matching(&filter);
        let dense = after.len() > self.settings.max_vehicles_per_stream;
        let event = if dense {
            Outgoing::Density(Arc::new(density(&inner.store, &filter)))
        } else if was_dense {
            Outgoing::Snapshot { vehicles: after.clone(), resumed: false }
        } else {
            let keep: HashSet<&str> = after.iter().map(|p| p.vehicle_id.as_str()).collect();
            let mut removed: Vec<String> =
                before.iter().filter(|id| !keep.contains(id.as_str())).cloned().collect();
            removed.sort();
            Outgoing::Diff { removed, added: after.clone() }
        };
        inner.index.update(id, filter);
        if let Some(sub) = inner.index.get_mut(id) {
            sub.data.visible = after.len();
            sub.data.dense = dense;
            let _ = note_push(sub.data.queue.push(event));
        }
        true
    }

    /// Drops a subscription.
    pub fn unsubscribe(&self, id: SubId) {
        let (shard, id) = self.shard_of(id);
        lock_shard(shard).index.remove(id);
    }

    /// Periodic work, about once a second: evicts vehicles silent for `stale_after` (telling
    /// their subscribers), switches subscriptions into and out of density mode, and refreshes
    /// density frames.
    pub fn tick(&self, now_ms: i64) {
        let mut subscriptions = 0;
        for (i, shard) in self.shards.iter().enumerate() {
            let mut g = lock_shard(shard);
            let gone = self.tick_shard(&mut g, now_ms);
            // Every shard evicts the same vehicles; count them once.
            if i == 0 && gone > 0 {
                metrics::counter!("busflow_gateway_vehicles_evicted_total").increment(gone);
            }
            if i == 0 {
                metrics::gauge!("busflow_gateway_vehicles").set(g.store.len() as f64);
            }
            subscriptions += g.index.len();
        }
        metrics::gauge!("busflow_gateway_subscriptions").set(subscriptions as f64);
    }

    /// [`LiveState::tick`] for one shard; returns the number of vehicles evicted.
    fn tick_shard(&self, inner: &mut Inner, now_ms: i64) -> u64 {
        let cutoff = now_ms - self.settings.stale_after.as_millis() as i64;
        let gone = inner.store.evict_seen_before(cutoff);
        let mut cands = std::mem::take(&mut inner.scratch);
        for p in &gone {
            cands.clear();
            let (lat, lon) = display_point(p);
            inner.index.candidates(lat, lon, &mut cands);
            cands.sort_unstable();
            cands.dedup();
            for id in &cands {
                let Some(sub) = inner.index.get_mut(*id) else { continue };
                if sub.filter.matches(p) {
                    sub.data.visible = sub.data.visible.saturating_sub(1);
                    if !sub.data.dense {
                        let _ = note_push(sub.data.queue.push(Outgoing::Remove {
                            vehicle_id: p.vehicle_id.clone(),
                            reason: RemoveReason::Stale,
                        }));
                    }
                }
            }
        }
        inner.scratch = cands;
        let max = self.settings.max_vehicles_per_stream;
        let store = &inner.store;
        for (_, sub) in inner.index.iter_mut() {
            let c = &mut sub.data;
            if c.dense && c.visible <= max {
                c.dense = false;
                let vehicles = store.matching(&sub.filter);
                c.visible = vehicles.len();
                let _ = note_push(c.queue.push(Outgoing::Snapshot { vehicles, resumed: false }));
            } else if c.dense || c.visible > max {
                c.dense = true;
                let _ = note_push(
                    c.queue.push(Outgoing::Density(Arc::new(density(store, &sub.filter)))),
                );
            }
        }
        gone.len() as u64
    }

    /// Vehicles matching a filter, sorted by id.
    pub fn vehicles(&self, filter: &Filter) -> Vec<Arc<VehiclePosition>> {
        self.lock().store.matching(filter)
    }

    /// Every vehicle, sorted by id.
    pub fn all_vehicles(&self) -> Vec<Arc<VehiclePosition>> {
        let mut v: Vec<_> = self.lock().store.iter().cloned().collect();
        v.sort_by(|a, b| a.vehicle_id.cmp(&b.vehicle_id));
        v
    }

    /// One vehicle.
    pub fn vehicle(&self, id: &str) -> Option<Arc<VehiclePosition>> {
        self.lock().store.get(id).cloned()
    }

    /// Number of vehicles held.
    pub fn vehicle_count(&self) -> usize {
        self.lock().store.len()
    }

    /// Number of live subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.shards.iter().map(|s| lock_shard(s).index.len()).sum()
    }

    /// Closes every subscription with a final event (used on shutdown).
    pub fn close_all(&self, code: &'static str, message: &str) {
        for shard in self.shards.iter() {
            let g = lock_shard(shard);
            for (_, sub) in g.index.iter() {
                sub.data.queue.close(code, message);
            }
        }
    }
}

fn lock_shard(shard: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    shard.lock().unwrap_or_else(|e| e.into_inner())
}

/// Applies a batch to one shard under its lock, then wakes each of its clients that got
/// something once, after the lock is released.
fn apply_shard(shard: &Mutex<Inner>, batch: &[Arc<SharedUpdate>], seen_ms: i64, now: Instant) {
    let mut wakes = Vec::new();
    let mut g = lock_shard(shard);
    let inner = &mut *g;
    let mut cands = std::mem::take(&mut inner.scratch);
    let mut sent = 0u64;
    let mut superseded = 0u64;
    for shared in batch {
        let started = Instant::now();
        let n = fan_out(inner, shared, seen_ms, now, &mut cands, &mut wakes, &mut superseded);
        if n > 0 {
            sent += n;
            metrics::histogram!("busflow_gateway_fanout_seconds")
                .record(started.elapsed().as_secs_f64());
        }
    }
    inner.scratch = cands;
    drop(g);
    for q in &wakes {
        q.wake();
    }
    if sent > 0 {
        metrics::counter!("busflow_gateway_events_queued_total").increment(sent);
    }
    if superseded > 0 {
        metrics::counter!("busflow_gateway_superseded_total").increment(superseded);
    }
}

/// Stores one position and queues its events (without waking anyone: the clients to wake are
/// appended to `wakes`). Returns the number of events queued; `superseded` counts those that
/// replaced a client's pending event for the vehicle.
fn fan_out(
    inner: &mut Inner,
    shared: &Arc<SharedUpdate>,
    seen_ms: i64,
    now: Instant,
    cands: &mut Vec<SubId>,
    wakes: &mut Vec<Arc<ClientQueue>>,
    superseded: &mut u64,
) -> u64 {
    let new = shared.position().clone();
    let old = match inner.store.upsert(new.clone(), seen_ms) {
        Upsert::Ignored => return 0,
        Upsert::Inserted => None,
        Upsert::Replaced(old) => Some(old),
    };
    if inner.index.is_empty() {
        return 0;
    }
    cands.clear();
    let (lat, lon) = display_point(&new);
    inner.index.candidates(lat, lon, cands);
    if let Some(o) = &old {
        let (olat, olon) = display_point(o);
        inner.index.candidates(olat, olon, cands);
    }
    cands.sort_unstable();
    cands.dedup();
    let mut sent = 0u64;
    let mut closed = Vec::new();
    // One shared update for every client of every shard: its JSON is encoded once, by the
    // first connection that sends it.
    for id in cands.iter() {
        let Some(sub) = inner.index.get_mut(*id) else { continue };
        let was = old.as_ref().is_some_and(|o| sub.filter.matches(o));
        let is = sub.filter.matches(&new);
        let client = &mut sub.data;
        let event = if is {
            if !was {
                client.visible += 1;
            }
            Outgoing::Update(shared.clone())
        } else if was {
            client.visible = client.visible.saturating_sub(1);
            let reason = if sub.filter.in_view(&new) {
                RemoveReason::Filtered
            } else {
                RemoveReason::LeftViewport
            };
            Outgoing::Remove { vehicle_id: new.vehicle_id.clone(), reason }
        } else {
            continue;
        };
        if !client.dense {
            let (pushed, wake) = client.queue.push_quiet(event, now);
            if wake {
                wakes.push(client.queue.clone());
            }
            // Counted per batch by the caller: a metric lookup per client per update costs.
            if pushed == Pushed::Superseded {
                *superseded += 1;
            } else if note_push(pushed) {
                // A client closed now was woken by the close (its final error event).
                closed.push(*id);
            }
            sent += 1;
        }
    }
    // A closed client gets nothing more: stop matching it now rather than when its
    // connection finally goes away.
    for id in closed {
        inner.index.remove(id);
    }
    sent
}

/// Counts what a push did; true when the client is closed.
fn note_push(p: Pushed) -> bool {
    match p {
        Pushed::Superseded => {
            metrics::counter!("busflow_gateway_superseded_total").increment(1);
            false
        }
        Pushed::ClosedNow => {
            metrics::counter!("busflow_gateway_disconnects_total", "reason" => "slow_consumer")
                .increment(1);
            true
        }
        Pushed::Closed => true,
        Pushed::Queued => false,
    }
}

/// Vehicle counts per H3 cell inside the filter, at a resolution that fits the viewport.
pub(crate) fn density(store: &VehicleStore, filter: &Filter) -> DensityFrame {
    let r = filter.bbox.resolution_for(DENSITY_TARGET_CELLS, 0, 12);
    let mut counts: HashMap<CellIndex, usize> = HashMap::new();
    let mut total = 0;
    for p in store.in_bbox(&filter.bbox) {
        if !filter.route_ok(p) {
            continue;
        }
        let (lat, lon) = display_point(p);
        if let Some(c) = cell_at(lat, lon, r) {
            *counts.entry(c).or_default() += 1;
            total += 1;
        }
    }
    let mut cells: Vec<DensityCell> = counts
        .into_iter()
        .map(|(c, count)| {
            let ll = LatLng::from(c);
            DensityCell { cell: c.to_string(), lat: ll.lat(), lon: ll.lng(), count }
        })
        .collect();
    cells.sort_by(|a, b| a.cell.cmp(&b.cell));
    DensityFrame { resolution: u8::from(r), total, cells }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::vp;
    use crate::viewport::Bbox;

    fn live(max: usize) -> Arc<LiveState> {
        LiveState::new(LiveSettings {
            stale_after: Duration::from_secs(30),
            max_vehicles_per_stream: max,
            queue: QueueLimits { capacity: 64, slow_timeout: Duration::from_secs(10) },
            fanout_threads: 1,
        })
    }

    fn view() -> Filter {
        Filter::bbox(Bbox::new(145.70, -16.95, 145.75, -16.90).unwrap())
    }

    #[test]
    fn shards_each_apply_every_update_and_ids_find_their_shard() {
        let s = LiveState::new(LiveSettings { fanout_threads: 3, ..*live(100).settings() });
        s.apply_seen(vp("a", 1, -16.92, 145.72, None), 1);
        let subs: Vec<Subscriber> = (0..7).map(|_| s.subscribe(view(), false)).collect();
        for sub in &subs {
            let first = sub.queue.try_batch().unwrap();
            assert!(
                matches!(&first[..], [Outgoing::Snapshot { vehicles, .. }] if vehicles.len() == 1)
            );
        }
        s.unsubscribe(subs[4].id);
        assert!(
            s.resubscribe(subs[5].id, Filter::bbox(Bbox::new(145.0, -17.5, 145.1, -17.4).unwrap()))
        );
        assert_eq!(s.subscription_count(), 6);
        // A batch large enough to go to the shards' threads; the others are far away.
        let far = (0..HAND_OFF_FROM).map(|i| vp(&format!("far{i}"), 2, -16.5, 146.0, None));
        s.apply_batch_seen(std::iter::once(vp("a", 2, -16.93, 145.73, None)).chain(far), 2);
        for (i, sub) in subs.iter().enumerate() {
            let names: Vec<&str> =
                sub.queue.try_batch().unwrap_or_default().iter().map(Outgoing::name).collect();
            let want: &[&str] = match i {
                4 => &[],
                5 => &["diff"],
                _ => &["update"],
            };
            assert_eq!(names, want, "subscriber {i}");
        }
        // Every shard stores the vehicles, so queries and eviction agree whichever shard is read.
        assert_eq!(s.vehicle_count(), 1 + HAND_OFF_FROM);
        s.tick(2 + 31_000);
        assert_eq!(s.vehicle_count(), 0);
        for (i, sub) in subs.iter().enumerate() {
            let n = sub.queue.try_batch().map_or(0, |b| b.len());
            assert_eq!(n, usize::from(i != 4 && i != 5), "subscriber {i}");
        }
    }

    #[test]
    fn snapshot_then_enter_move_leave() {
        let s = live(100);
        s.apply_seen(vp("in", 1, -16.92, 145.72, None), 1);
        s.apply_seen(vp("out", 1, -16.80, 145.72, None), 1);
        let sub = s.subscribe(view(), false);
        let first = sub.queue.try_batch().unwrap();
        match &first[..] {
            [Outgoing::Snapshot { vehicles, .. }] => {
                assert_eq!(vehicles.len(), 1);
                assert_eq!(vehicles[0].vehicle_id, "in");
            }
            other => panic!("{other:?}"),
        }
        let names = |sub: &Subscriber| -> Vec<&str> {
            sub.queue.try_batch().unwrap_or_default().iter().map(Outgoing::name).collect()
        };
        s.apply_seen(vp("out", 2, -16.93, 145.73, None), 2); // enters
        s.apply_seen(vp("in", 2, -16.94, 145.74, None), 2); // moves inside
        assert_eq!(names(&sub), ["update", "update"]);
        s.apply_seen(vp("in", 3, -16.50, 145.74, None), 3); // leaves
        s.apply_seen(vp("out", 1, -16.93, 145.73, None), 4); // older: ignored
        assert_eq!(names(&sub), ["remove"]);
        // Moved, then left before the client took the move: only the remove is pending.
        s.apply_seen(vp("out", 3, -16.931, 145.731, None), 5);
        s.apply_seen(vp("out", 4, -16.50, 145.731, None), 6);
        assert_eq!(names(&sub), ["remove"]);
    }

    #[test]
    fn stale_vehicles_are_removed_from_subscribers() {
        let s = live(100);
        s.apply_seen(vp("a", 1, -16.92, 145.72, None), 1_000);
        let sub = s.subscribe(view(), false);
        sub.queue.try_batch();
        s.tick(1_000 + 29_000);
        assert!(sub.queue.try_batch().is_none());
        s.tick(1_000 + 31_000);
        let batch = sub.queue.try_batch().unwrap();
        assert_eq!(
            batch,
            vec![Outgoing::Remove { vehicle_id: "a".into(), reason: RemoveReason::Stale }]
        );
        assert_eq!(s.vehicle_count(), 0);
    }

    #[test]
    fn density_mode_switches_both_ways() {
        let s = live(2);
        for i in 0..3 {
            s.apply_seen(vp(&format!("v{i}"), 1, -16.92, 145.71 + i as f64 * 0.01, None), 1);
        }
        let sub = s.subscribe(view(), false);
        let b = sub.queue.try_batch().unwrap();
        assert!(matches!(&b[..], [Outgoing::Density(f)] if f.total == 3));
        s.apply_seen(vp("v0", 2, -16.5, 145.71, None), 2); // leaves: 2 left, no per-vehicle event
        s.tick(3);
        let b = sub.queue.try_batch().unwrap();
        assert!(matches!(&b[..], [Outgoing::Snapshot { vehicles, .. }] if vehicles.len() == 2));
        s.apply_seen(vp("v0", 3, -16.92, 145.71, None), 3);
        s.tick(4);
        let names: Vec<&str> = sub.queue.try_batch().unwrap().iter().map(Outgoing::name).collect();
        assert_eq!(names, ["update", "density"]);
    }

    #[test]
    fn resubscribe_answers_with_diff() {
        let s = live(100);
        s.apply_seen(vp("a", 1, -16.92, 145.71, None), 1);
        s.apply_seen(vp("b", 1, -16.92, 145.74, None), 1);
        s.apply_seen(vp("c", 1, -16.92, 145.78, None), 1);
        let sub =
            s.subscribe(Filter::bbox(Bbox::new(145.70, -16.95, 145.75, -16.90).unwrap()), false);
        sub.queue.try_batch();
        assert!(
            s.resubscribe(sub.id, Filter::bbox(Bbox::new(145.73, -16.95, 145.80, -16.90).unwrap()))
        );
        match &sub.queue.try_batch().unwrap()[..] {
            [Outgoing::Diff { removed, added }] => {
                assert_eq!(removed, &["a".to_string()]);
                let ids: Vec<&str> = added.iter().map(|p| p.vehicle_id.as_str()).collect();
                assert_eq!(ids, ["b", "c"]);
            }
            other => panic!("{other:?}"),
        }
        // The new viewport is what is followed now.
        s.apply_seen(vp("a", 2, -16.92, 145.711, None), 2);
        assert!(sub.queue.try_batch().is_none());
    }

    #[test]
    fn route_filter_removes_with_reason() {
        let s = live(100);
        let mut f = view();
        f.routes = Some(["110".to_string()].into_iter().collect());
        s.apply_seen(vp("a", 1, -16.92, 145.71, Some("110")), 1);
        let sub = s.subscribe(f, false);
        sub.queue.try_batch();
        s.apply_seen(vp("b", 1, -16.92, 145.71, Some("120")), 1);
        assert!(sub.queue.try_batch().is_none());
        s.apply_seen(vp("a", 2, -16.92, 145.71, Some("120")), 2);
        assert_eq!(
            sub.queue.try_batch().unwrap(),
            vec![Outgoing::Remove { vehicle_id: "a".into(), reason: RemoveReason::Filtered }]
        );
    }
}
