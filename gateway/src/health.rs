//! How long ago the gateway last heard from its brokers, for `/readyz` and `/metrics`.
//!
//! While the brokers are unreachable the gateway keeps serving the state it holds (a map that
//! shows buses a minute old beats an error page), but the people and load balancers watching it
//! must be able to tell. Message arrival is no measure of that: at night a healthy feed can be
//! silent for minutes. So a probe asks the broker for the `positions` watermarks once a second,
//! a real round trip that succeeds exactly when the source could read.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use busflow_kafka::KafkaConfig;
use busflow_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use tokio_util::sync::CancellationToken;

use crate::live::now_ms;

const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// When the brokers last answered.
#[derive(Debug)]
pub struct SourceHealth {
    last_contact_ms: AtomicI64,
    stale_after: Duration,
}

/// What `/readyz` says about the source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceStatus {
    /// Seconds since the brokers last answered.
    pub age_s: f64,
    /// Whether that is longer than the configured limit.
    pub stale: bool,
}

impl SourceHealth {
    /// Counts as fresh from `now_ms`: a gateway that cannot reach its brokers at start turns
    /// stale after `stale_after`, like one that loses them later.
    pub fn new(stale_after: Duration, now_ms: i64) -> Arc<SourceHealth> {
        Arc::new(SourceHealth { last_contact_ms: AtomicI64::new(now_ms), stale_after })
    }

    /// Notes an answer from the brokers at `now_ms`.
    pub fn touch(&self, now_ms: i64) {
        self.last_contact_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    /// The source's state at `now_ms`.
    pub fn status(&self, now_ms: i64) -> SourceStatus {
        let age_ms = (now_ms - self.last_contact_ms.load(Ordering::Relaxed)).max(0);
        SourceStatus {
            age_s: age_ms as f64 / 1000.0,
            stale: age_ms as u128 > self.stale_after.as_millis(),
        }
    }
}

/// Probes the brokers every second until `shutdown`, touching `health` on every answer and
/// keeping `busflow_gateway_source_age_seconds` and `busflow_gateway_source_stale` current.
pub(crate) async fn probe(
    health: Arc<SourceHealth>,
    kafka: KafkaConfig,
    topic: String,
    shutdown: CancellationToken,
) {
    let consumer: Arc<BaseConsumer> = match kafka.client_config().create() {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::warn!("no source health probe: creating a Kafka client failed: {e}");
            return;
        }
    };
    let mut was_stale = false;
    let mut every = tokio::time::interval(PROBE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        // Each fetch is its own short blocking task (at most PROBE_TIMEOUT), not one thread
        // looping for the gateway's life: a runtime that is dropped without a shutdown (a panic
        // in a test, say) waits for running blocking tasks, and must not wait forever.
        let (c, t) = (consumer.clone(), topic.clone());
        let answered =
            tokio::task::spawn_blocking(move || c.fetch_watermarks(&t, 0, PROBE_TIMEOUT).is_ok())
                .await
                .unwrap_or(false);
        if answered {
            health.touch(now_ms());
        }
        let status = health.status(now_ms());
        metrics::gauge!("busflow_gateway_source_age_seconds").set(status.age_s);
        metrics::gauge!("busflow_gateway_source_stale").set(f64::from(u8::from(status.stale)));
        if status.stale != was_stale {
            if status.stale {
                tracing::warn!(
                    age_s = status.age_s,
                    "no answer from the brokers; serving the last known state, marked stale in /readyz"
                );
            } else {
                tracing::info!("the brokers answer again; the source is fresh");
            }
            was_stale = status.stale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_once_the_brokers_are_silent_for_longer_than_the_limit() {
        let h = SourceHealth::new(Duration::from_secs(10), 1_000_000);
        assert_eq!(h.status(1_005_000), SourceStatus { age_s: 5.0, stale: false });
        assert!(!h.status(1_010_000).stale, "exactly the limit is still fresh");
        assert!(h.status(1_010_001).stale);
        h.touch(1_020_000);
        assert_eq!(h.status(1_020_500), SourceStatus { age_s: 0.5, stale: false });
        // An answer noted late never moves the last contact back.
        h.touch(1_015_000);
        assert_eq!(h.status(1_020_500).age_s, 0.5);
    }
}
