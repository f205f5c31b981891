use std::time::Duration;

use busflow_core::{TopicSpec, Topics};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::types::RDKafkaErrorCode;

use crate::{Error, KafkaConfig};

/// What the cluster looks like, from a metadata request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Number of brokers in the cluster.
    pub brokers: usize,
    /// Existing topics and their partition counts.
    pub topics: Vec<(String, usize)>,
}

impl BrokerInfo {
    /// Partition count of a topic, if it exists.
    pub fn partitions(&self, topic: &str) -> Option<usize> {
        self.topics.iter().find(|(t, _)| t == topic).map(|(_, n)| *n)
    }
}

/// The partition ids of `topic`, from a metadata request; empty when the topic does not exist.
/// Readers that assign partitions by hand (the gateway, `busflow sql`) start from this.
pub fn topic_partitions<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    topic: &str,
    timeout: Duration,
) -> KafkaResult<Vec<i32>> {
    let md = consumer.fetch_metadata(Some(topic), timeout)?;
    Ok(md
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// What [`ensure_topics`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicReport {
    /// Topics created now.
    pub created: Vec<String>,
    /// Topics that already existed, with their partition counts.
    pub existing: Vec<(String, usize)>,
}

/// Fetches cluster metadata, waiting up to `timeout` for the brokers to answer.
pub async fn wait_for_broker(config: &KafkaConfig, timeout: Duration) -> Result<BrokerInfo, Error> {
    let consumer: BaseConsumer = config.client_config().create()?;
    let brokers = config.brokers.clone();
    tokio::task::spawn_blocking(move || {
        let md = consumer.fetch_metadata(None, timeout).map_err(|e| Error::Unreachable {
            brokers,
            timeout_s: timeout.as_secs(),
            detail: e.to_string(),
        })?;
        Ok(BrokerInfo {
            brokers: md.brokers().len(),
            topics: md
                .topics()
                .iter()
                .filter(|t| t.error().is_none())
                .map(|t| (t.name().to_string(), t.partitions().len()))
                .collect(),
        })
    })
    .await
    .map_err(|e| Error::DevBroker(format!("metadata task failed: {e}")))?
}

/// Creates busflow's topics where they are missing (`partitions` each; the latest-state topic
/// compacted) and reports what it did.
pub async fn ensure_topics(
    config: &KafkaConfig,
    topics: &Topics,
    partitions: i32,
    timeout: Duration,
) -> Result<TopicReport, Error> {
    ensure_topic_specs(config, &topics.specs(), partitions, timeout).await
}

/// [`ensure_topics`] for an arbitrary list of topics.
pub async fn ensure_topic_specs(
    config: &KafkaConfig,
    specs: &[TopicSpec<'_>],
    partitions: i32,
    timeout: Duration,
) -> Result<TopicReport, Error> {
    let info = wait_for_broker(config, timeout).await?;
    let mut report = TopicReport::default();
    let mut missing = Vec::new();
    for spec in specs {
        match info.partitions(spec.name) {
            Some(n) => report.existing.push((spec.name.to_string(), n)),
            None => missing.push(*spec),
        }
    }
    if missing.is_empty() {
        return Ok(report);
    }
    let replication = info.brokers.clamp(1, 3) as i32;
    let admin: AdminClient<DefaultClientContext> = config.client_config().create()?;
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|s| {
            let t = NewTopic::new(s.name, partitions, TopicReplication::Fixed(replication));
            if s.compacted { t.set("cleanup.policy", "compact") } else { t }
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(timeout));
    let results = admin.create_topics(new_topics.iter(), &opts).await?;
    for (result, spec) in results.into_iter().zip(&missing) {
        match result {
            Ok(name) => report.created.push(name),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                report.existing.push((name, partitions as usize))
            }
            Err((name, code)) => {
                let config_flag =
                    if spec.compacted { " --config cleanup.policy=compact" } else { "" };
                return Err(Error::TopicCreation {
                    hint: format!(
                        "kafka-topics.sh --bootstrap-server {} --create --topic {name} --partitions {partitions} --replication-factor {replication}{config_flag}",
                        config.brokers
                    ),
                    topic: name,
                    detail: code.to_string(),
                });
            }
        }
    }
    Ok(report)
}
