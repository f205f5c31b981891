use rdkafka::ClientConfig;

use crate::Error;

/// Where the brokers are and how to talk to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `bootstrap.servers`, comma-separated `host:port`.
    pub brokers: String,
    /// librdkafka settings passed through verbatim (TLS, SASL, tuning). Applied after busflow's
    /// own settings, so users can override them.
    pub options: Vec<(String, String)>,
}

impl KafkaConfig {
    /// Brokers with no extra options.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig { brokers: brokers.into(), options: Vec::new() }
    }

    /// Parses one `key=value` option as given on the command line.
    pub fn parse_option(s: &str) -> Result<(String, String), Error> {
        match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(Error::Option(s.to_string())),
        }
    }

    /// A base client config: bootstrap servers plus the pass-through options.
    pub fn client_config(&self) -> ClientConfig {
        self.client_config_with(&[])
    }

    /// A client config with component defaults, which the user's options may still override.
    pub fn client_config_with(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        // librdkafka logs through its own callback otherwise; keep it quiet unless asked.
        c.set("log_level", "4");
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.options {
            c.set(k, v);
        }
        c
    }

    /// A producer config tuned for throughput with safe delivery: idempotence on (no duplicates
    /// from retries, per-partition order kept), lz4 batches, short linger.
    pub fn producer_config(&self) -> ClientConfig {
        self.client_config_with(&[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("compression.type", "lz4"),
            ("linger.ms", "5"),
            ("batch.num.messages", "10000"),
            ("queue.buffering.max.messages", "500000"),
            ("queue.buffering.max.kbytes", "262144"),
            ("message.timeout.ms", "300000"),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_override_defaults() {
        assert_eq!(
            KafkaConfig::parse_option("security.protocol=SASL_SSL").unwrap(),
            ("security.protocol".into(), "SASL_SSL".into())
        );
        assert_eq!(KafkaConfig::parse_option("sasl.password=a=b").unwrap().1, "a=b");
        assert!(KafkaConfig::parse_option("novalue").is_err());
        assert!(KafkaConfig::parse_option("=x").is_err());

        let mut cfg = KafkaConfig::new("127.0.0.1:9092");
        cfg.options.push(("linger.ms".into(), "50".into()));
        let c = cfg.producer_config();
        assert_eq!(c.get("linger.ms"), Some("50"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("bootstrap.servers"), Some("127.0.0.1:9092"));
    }
}
