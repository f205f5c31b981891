//! busflow's Kafka plumbing, shared by the simulator, pipeline and gateway.
//!
//! - [`KafkaConfig`]: brokers plus pass-through librdkafka settings (`--kafka-option key=value`),
//!   turned into rdkafka client configs.
//! - [`ensure_topics`]: creates missing topics with the Admin API and reports what it did, or
//!   says exactly what to create by hand when the broker refuses.
//! - [`DevBroker`]: librdkafka's in-process mock cluster, the zero-setup development broker.
//!
//! ```no_run
//! # async fn demo() -> Result<(), busflow_kafka::Error> {
//! use busflow_core::Topics;
//! use busflow_kafka::{DevBroker, KafkaConfig, ensure_topics};
//! let topics = Topics::default();
//! let broker = DevBroker::start(&topics, 6)?;
//! let config = KafkaConfig::new(broker.bootstrap_servers());
//! let report = ensure_topics(&config, &topics, 6, std::time::Duration::from_secs(10)).await?;
//! assert!(report.created.is_empty()); // the dev broker made them already
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod admin;
mod config;
mod dev_broker;

pub use admin::{
    BrokerInfo, TopicReport, ensure_topic_specs, ensure_topics, topic_partitions, wait_for_broker,
};
pub use config::KafkaConfig;
pub use dev_broker::DevBroker;
pub use rdkafka;

/// Errors from Kafka setup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `--kafka-option` that is not `key=value`.
    #[error("invalid Kafka option {0:?}: expected key=value (e.g. security.protocol=SSL)")]
    Option(String),
    /// The brokers could not be reached in time.
    #[error("cannot reach Kafka brokers {brokers} within {timeout_s}s: {detail}")]
    Unreachable {
        /// Bootstrap servers tried.
        brokers: String,
        /// Seconds waited.
        timeout_s: u64,
        /// The client's error.
        detail: String,
    },
    /// The broker refused to create a topic.
    #[error("could not create topic {topic}: {detail}; create it by hand: {hint}")]
    TopicCreation {
        /// Topic name.
        topic: String,
        /// The broker's answer.
        detail: String,
        /// A command that creates it.
        hint: String,
    },
    /// The in-process development broker failed.
    #[error("in-process development broker: {0}")]
    DevBroker(String),
    /// Any other client error.
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
}
