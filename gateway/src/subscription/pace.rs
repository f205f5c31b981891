//! A connection's automatic pace: its update interval and how many events a batch may hold.
//!
//! A client that cannot take every update (a slow link, a busy device) is slowed down before it
//! is ever disconnected. Its queue keeps one pending event per vehicle, always the newest; what
//! the pace decides is how much of that goes out at a time. Once behind (a write the socket
//! refused, or a batch taken more than 250 ms late) the client gets batches every 250 ms, each
//! holding at most half of what the last one held, down to one event; still behind at one event,
//! the interval doubles (up to 4 s, and at most a third of the slow-client timeout). After 8
//! batches in a row written without a refusal it speeds up again: first the interval halves back to 250 ms, then
//! the batch grows by a quarter at a time, and a client taking full batches on time is released.
//!
//! Small batches are what keeps a slow reader's positions fresh: each event goes out with the
//! newest position known when its batch is taken, and the fewer events are written ahead of it,
//! the sooner the client reads it. The vehicles take turns (a vehicle sent goes to the back of
//! the queue), so each is refreshed every few batches.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use super::queue::MAX_BATCH;

/// The interval of a throttled client, and the smallest.
const STEP: Duration = Duration::from_millis(250);
/// Never above this (nor above a third of the slow-client timeout).
const MAX_AUTO: Duration = Duration::from_secs(4);
/// A batch whose oldest event waited this much longer than the interval is late.
const LATE: Duration = Duration::from_millis(250);
/// Calm batches in a row before speeding up.
const CALM_BATCHES: u32 = 8;

/// Connections being paced now (all gateways of the process).
static THROTTLED: AtomicI64 = AtomicI64::new(0);

/// One connection's pace.
#[derive(Debug)]
pub(crate) struct Pace {
    /// Automatic interval; zero when the client is not throttled.
    auto: Duration,
    /// Most events per batch.
    cap: usize,
    max: Duration,
    calm: u32,
}

impl Pace {
    /// Not throttled; `slow_timeout` bounds how far the interval may rise (a throttled client
    /// must still take something well within the time after which it is disconnected).
    pub(crate) fn new(slow_timeout: Duration) -> Self {
        Pace {
            auto: Duration::ZERO,
            cap: MAX_BATCH,
            max: MAX_AUTO.min(slow_timeout / 3).max(STEP),
            calm: 0,
        }
    }

    /// The interval in force: what the client asked for, or more.
    pub(crate) fn interval(&self, asked: Duration) -> Duration {
        asked.max(self.auto)
    }

    /// Most events the next batch may hold.
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// Whether the client is being slowed down (then events left over after a batch wait for
    /// the next interval too).
    pub(crate) fn throttled(&self) -> bool {
        !self.auto.is_zero()
    }

    /// After a batch of `sent` events was taken: how long its oldest event waited, the interval
    /// it was taken under, and whether the socket had refused bytes since the batch before.
    pub(crate) fn observe(
        &mut self,
        sent: usize,
        waited: Duration,
        interval: Duration,
        blocked: bool,
    ) {
        let was = self.throttled();
        // Once throttled, a batch holds only some of the pending vehicles and the others wait
        // their turn by design: only a refused write says the client is still behind.
        let late = !was && waited > interval + LATE;
        if blocked || late {
            self.calm = 0;
            if !was {
                self.auto = STEP;
                self.cap = (sent / 2).max(1);
            } else if self.cap > 1 {
                self.cap = (self.cap.min(sent) / 2).max(1);
            } else {
                self.auto = (self.auto * 2).min(self.max);
            }
        } else if was {
            self.calm += 1;
            if self.calm >= CALM_BATCHES {
                self.calm = 0;
                if self.auto > STEP {
                    self.auto = (self.auto / 2).max(STEP);
                } else if self.cap < MAX_BATCH {
                    self.cap = (self.cap + (self.cap / 4).max(1)).min(MAX_BATCH);
                } else {
                    self.auto = Duration::ZERO;
                }
            }
        } else {
            self.calm = 0;
        }
        if was != self.throttled() {
            let delta = if was { -1 } else { 1 };
            let n = THROTTLED.fetch_add(delta, Ordering::Relaxed) + delta;
            metrics::gauge!("busflow_gateway_throttled_clients").set(n as f64);
        }
        if self.throttled() && self.calm == 0 {
            metrics::histogram!("busflow_gateway_throttle_interval_seconds")
                .record(self.auto.as_secs_f64());
        }
    }
}

impl Drop for Pace {
    fn drop(&mut self) {
        if self.throttled() {
            let n = THROTTLED.fetch_sub(1, Ordering::Relaxed) - 1;
            metrics::gauge!("busflow_gateway_throttled_clients").set(n as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const ZERO: Duration = Duration::ZERO;

    #[test]
    fn a_client_that_keeps_up_is_never_throttled() {
        let mut p = Pace::new(Duration::from_secs(15));
        for _ in 0..100 {
            p.observe(20, 2 * MS, ZERO, false);
        }
        assert!(!p.throttled());
        assert_eq!((p.interval(ZERO), p.cap()), (ZERO, MAX_BATCH));
        assert_eq!(p.interval(500 * MS), 500 * MS, "the client's own interval stands");
    }

    #[test]
    fn behind_halves_the_batch_then_raises_the_interval() {
        let mut p = Pace::new(Duration::from_secs(15));
        let mut seen = Vec::new();
        for _ in 0..8 {
            let sent = p.cap().min(20);
            p.observe(sent, ZERO, p.interval(ZERO), true);
            seen.push((p.auto.as_millis(), p.cap()));
        }
        assert_eq!(
            seen,
            [(250, 10), (250, 5), (250, 2), (250, 1), (500, 1), (1000, 1), (2000, 1), (4000, 1)]
        );
        // Late without a refused write counts too.
        let mut q = Pace::new(Duration::from_secs(15));
        q.observe(8, 400 * MS, ZERO, false);
        assert_eq!((q.auto, q.cap()), (STEP, 4));
    }

    #[test]
    fn calm_speeds_up_until_released() {
        let mut p = Pace::new(Duration::from_secs(15));
        for _ in 0..8 {
            p.observe(p.cap().min(20), ZERO, p.interval(ZERO), true);
        }
        let mut batches = 0;
        while p.throttled() {
            p.observe(p.cap(), 5 * MS, p.interval(ZERO), false);
            batches += 1;
            assert!(batches < 10_000, "never released");
        }
        assert_eq!(p.cap(), MAX_BATCH);
        // Interval 4 s -> 250 ms in four steps, then the batch 1 -> 256 by quarters, then release.
        assert!(batches > 4 * CALM_BATCHES as usize, "{batches}");
    }

    #[test]
    fn the_interval_leaves_room_within_the_slow_client_timeout() {
        let mut p = Pace::new(Duration::from_secs(3));
        for _ in 0..20 {
            p.observe(1, ZERO, p.interval(ZERO), true);
        }
        assert_eq!(p.interval(ZERO), Duration::from_secs(1));
    }
}
