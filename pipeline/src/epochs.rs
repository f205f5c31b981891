//! A worker's processing epochs: when to close one, when to stop reading, what to commit.
//!
//! Kept apart from the dataflow so the rules can be tested against a model of several workers
//! without Kafka or timely. The rule that matters: a worker that has stopped reading because
//! too many of its epochs are in flight does not close epochs either. Epoch numbers are per
//! worker while the frontier is the least of them all, so a worker that kept closing epochs
//! while it waited (one per timer tick) could end up more than `max_in_flight` epochs ahead of
//! a worker whose loop iterations were slower, and then wait forever: its own queue never got
//! shorter than the gap. That is the `-w 2` stall seen in the fixed-rate benchmark.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Offsets to commit: per raw partition, the next offset to read.
pub(crate) type Offsets = Vec<(i32, i64)>;

pub(crate) struct Epochs {
    epoch: u64,
    started: Instant,
    interval: Duration,
    max_messages: usize,
    max_in_flight: usize,
    read_to: HashMap<i32, i64>,
    changed: bool,
    /// Closed epochs not yet passed by the frontier, with the offsets read by their end.
    in_flight: VecDeque<(u64, Offsets)>,
}

impl Epochs {
    pub(crate) fn new(
        interval: Duration,
        max_messages: usize,
        max_in_flight: usize,
        now: Instant,
    ) -> Self {
        Epochs {
            epoch: 0,
            started: now,
            interval,
            max_messages: max_messages.max(1),
            max_in_flight: max_in_flight.max(1),
            read_to: HashMap::new(),
            changed: false,
            in_flight: VecDeque::new(),
        }
    }

    /// The epoch input is being read into.
    pub(crate) fn current(&self) -> u64 {
        self.epoch
    }

    /// Epochs closed and not yet passed by the frontier.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether the worker may read more input now.
    pub(crate) fn may_read(&self) -> bool {
        self.in_flight.len() < self.max_in_flight
    }

    /// How many messages one read burst may take before the epoch must close.
    pub(crate) fn max_messages(&self) -> usize {
        self.max_messages
    }

    /// Notes that everything before `next_offset` of `partition` has been read.
    pub(crate) fn record(&mut self, partition: i32, next_offset: i64) {
        self.read_to.insert(partition, next_offset);
        self.changed = true;
    }

    /// Offsets read so far, per partition.
    pub(crate) fn read_to(&self, partition: i32) -> Option<i64> {
        self.read_to.get(&partition).copied()
    }

    /// Closes the current epoch when its time is up or it holds `max_messages` (`read` this
    /// iteration), returning the epoch the input must advance to. A worker that may not read
    /// keeps its epoch open (see the module docs).
    pub(crate) fn maybe_close(&mut self, now: Instant, read: usize) -> Option<u64> {
        if !self.may_read() {
            return None;
        }
        if now.duration_since(self.started) < self.interval && read < self.max_messages {
            return None;
        }
        Some(self.close(now))
    }

    fn close(&mut self, now: Instant) -> u64 {
        let snapshot = if self.changed {
            self.read_to.iter().map(|(p, o)| (*p, *o)).collect()
        } else {
            Vec::new()
        };
        self.changed = false;
        self.in_flight.push_back((self.epoch, snapshot));
        self.epoch += 1;
        self.started = now;
        self.epoch
    }

    /// Closes the current epoch unconditionally (shutdown), with every offset read so far.
    pub(crate) fn close_final(&mut self, now: Instant) -> u64 {
        self.changed = true;
        self.close(now)
    }

    /// Drops the epochs the frontier has passed (`done(e)` is true) and returns the newest
    /// offsets among them, which cover every older one.
    pub(crate) fn take_done(&mut self, done: impl Fn(u64) -> bool) -> Option<Offsets> {
        let mut latest = None;
        while let Some((e, _)) = self.in_flight.front() {
            if !done(*e) {
                break;
            }
            if let Some((_, offsets)) = self.in_flight.pop_front()
                && !offsets.is_empty()
            {
                latest = Some(offsets);
            }
        }
        latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(50);

    #[test]
    fn closes_on_time_or_size_and_commits_the_newest_offsets() {
        let t0 = Instant::now();
        let mut e = Epochs::new(INTERVAL, 10, 3, t0);
        assert_eq!(e.maybe_close(t0 + Duration::from_millis(10), 3), None);
        e.record(0, 4);
        assert_eq!(e.maybe_close(t0 + Duration::from_millis(10), 10), Some(1));
        assert_eq!(e.maybe_close(t0 + Duration::from_millis(61), 0), Some(2));
        e.record(1, 7);
        assert_eq!(e.maybe_close(t0 + Duration::from_millis(112), 0), Some(3));
        assert!(!e.may_read());
        // Full: no more epochs until the frontier moves.
        assert_eq!(e.maybe_close(t0 + Duration::from_secs(5), 0), None);
        assert_eq!(e.take_done(|ep| ep < 1), Some(vec![(0, 4)]));
        // Epoch 1 read nothing new; epoch 2 saw partition 1.
        let mut got = e.take_done(|ep| ep < 3).unwrap_or_default();
        got.sort_unstable();
        assert_eq!(got, vec![(0, 4), (1, 7)]);
        assert_eq!(e.in_flight(), 0);
        assert!(e.may_read());
    }

    /// Two workers whose loops run at different speeds while a backlog is read, then both
    /// idle. The frontier is the least open epoch of the two (outputs acknowledged at once).
    /// Closing epochs while waiting let the fast worker get further ahead of the slow one
    /// than it may have in flight, after which it never read again; this test then fails.
    #[test]
    fn a_fast_worker_never_waits_forever_on_a_slow_one() {
        let t0 = Instant::now();
        let mut workers =
            [Epochs::new(INTERVAL, 5000, 20, t0), Epochs::new(INTERVAL, 5000, 20, t0)];
        let mut next_run = [0u64, 0u64];
        let mut offsets = [0i64, 0i64];
        let mut last_read_ms = [0u64, 0u64];
        for ms in 0..20_000u64 {
            let backlog = ms < 5_000;
            for w in 0..2 {
                if ms < next_run[w] {
                    continue;
                }
                // Worker 0 does the heavy processing while the backlog lasts.
                next_run[w] = ms
                    + if backlog && w == 0 {
                        200
                    } else if backlog {
                        5
                    } else {
                        1
                    };
                let now = t0 + Duration::from_millis(ms);
                let mut read = 0;
                if workers[w].may_read() {
                    read = if backlog { 5000 } else { 5 };
                    offsets[w] += read as i64;
                    workers[w].record(w as i32, offsets[w]);
                    last_read_ms[w] = ms;
                }
                workers[w].maybe_close(now, read);
                let frontier = workers[0].current().min(workers[1].current());
                workers[w].take_done(|e| e < frontier);
            }
        }
        for (w, last) in last_read_ms.iter().enumerate() {
            assert!(*last >= 19_900, "worker {w} stopped reading at {last} ms");
        }
    }
}
