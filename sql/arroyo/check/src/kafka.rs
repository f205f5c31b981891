//! What Arroyo accepts in the `WITH (...)` clause of a Kafka connection table.
//!
//! Written down from Arroyo's source (ArroyoSystems/arroyo, main branch as of 2025):
//! - `crates/arroyo-connectors/src/kafka/mod.rs`: `KafkaConnector::connection_from_options`
//!   (bootstrap_servers, auth.*, schema_registry.*) and `KafkaConnector::table_from_options`
//!   (type, source.*, sink.*, topic, topic_pattern, client_configs, value.subject), with the
//!   values each accepts;
//! - `crates/arroyo-connectors/src/kafka/mod.rs`, `metadata_defs`: the metadata keys a column
//!   may read with `METADATA FROM '<key>'`;
//! - `crates/arroyo-planner/src/tables.rs`, `ConnectorTable::from_options`: connector,
//!   event_time_field, watermark_field, idle_micros, and (through arroyo-rpc's `Format`,
//!   `Framing`, `BadData`) format, json.*, framing, bad_data;
//! - Arroyo's docs, connectors/kafka.mdx and connectors/overview.mdx, which list the same names.
//!
//! Arroyo refuses any option it does not consume ("unknown options provided in WITH clause").
//! Not accepted here on purpose: `connection_profile` (a saved profile instead of
//! bootstrap_servers/auth.*), because busflow's SQL spells its connection out.

/// Where an option may appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Source and sink tables.
    Any,
    /// Only `type = 'source'`.
    Source,
    /// Only `type = 'sink'`.
    Sink,
}

/// One known option: name, where it may appear, and its allowed values (empty: any string).
#[derive(Debug, Clone, Copy)]
pub struct KafkaOption {
    /// Option name as written in `WITH` (quoted when it contains a dot).
    pub name: &'static str,
    /// Where it may appear.
    pub scope: Scope,
    /// Allowed values; empty means any string.
    pub values: &'static [&'static str],
}

const fn opt(name: &'static str, scope: Scope, values: &'static [&'static str]) -> KafkaOption {
    KafkaOption { name, scope, values }
}

/// Every option of a Kafka connection table.
pub const OPTIONS: &[KafkaOption] = &[
    // planner (tables.rs)
    opt("connector", Scope::Any, &["kafka"]),
    opt("event_time_field", Scope::Source, &[]),
    opt("watermark_field", Scope::Source, &[]),
    opt("idle_micros", Scope::Source, &[]),
    // formats (arroyo-rpc formats.rs, via tables.rs)
    opt(
        "format",
        Scope::Any,
        &["json", "debezium_json", "avro", "parquet", "raw_string", "raw_bytes", "protobuf"],
    ),
    opt("json.confluent_schema_registry", Scope::Any, &["true", "false"]),
    opt("json.include_schema", Scope::Any, &["true", "false"]),
    opt("json.unstructured", Scope::Any, &["true", "false"]),
    opt("json.timestamp_format", Scope::Any, &[]),
    opt("bad_data", Scope::Source, &["fail", "drop"]),
    opt("framing", Scope::Source, &["newline"]),
    opt("framing.newline.max_length", Scope::Source, &[]),
    // connection (kafka/mod.rs, connection_from_options)
    opt("bootstrap_servers", Scope::Any, &[]),
    opt("auth.type", Scope::Any, &["none", "sasl", "aws_msk_iam"]),
    opt("auth.mechanism", Scope::Any, &[]),
    opt("auth.protocol", Scope::Any, &[]),
    opt("auth.username", Scope::Any, &[]),
    opt("auth.password", Scope::Any, &[]),
    opt("auth.region", Scope::Any, &[]),
    opt("schema_registry.endpoint", Scope::Any, &[]),
    opt("schema_registry.api_key", Scope::Any, &[]),
    opt("schema_registry.api_secret", Scope::Any, &[]),
    // table (kafka/mod.rs, table_from_options)
    opt("type", Scope::Any, &["source", "sink"]),
    opt("topic", Scope::Any, &[]),
    opt("topic_pattern", Scope::Source, &[]),
    opt("source.offset", Scope::Source, &["latest", "earliest", "group"]),
    opt("source.read_mode", Scope::Source, &["read_uncommitted", "read_committed"]),
    opt("source.group_id", Scope::Source, &[]),
    opt("source.group_id_prefix", Scope::Source, &[]),
    opt("sink.commit_mode", Scope::Sink, &["at_least_once", "exactly_once"]),
    opt("sink.timestamp_field", Scope::Sink, &[]),
    opt("sink.key_field", Scope::Sink, &[]),
    opt("client_configs", Scope::Any, &[]),
    opt("value.subject", Scope::Any, &[]),
];

/// Options every busflow Kafka table must set.
pub const REQUIRED: &[&str] = &["connector", "topic", "type", "format", "bootstrap_servers"];

/// Options whose value must name a column of the same table.
pub const COLUMN_OPTIONS: &[&str] =
    &["event_time_field", "watermark_field", "sink.key_field", "sink.timestamp_field"];

/// Keys a source column may read with `METADATA FROM '<key>'` (Kafka `metadata_defs`).
pub const METADATA_KEYS: &[&str] = &["offset_id", "partition", "topic", "timestamp", "key"];

/// The known option of this name.
pub fn option(name: &str) -> Option<&'static KafkaOption> {
    OPTIONS.iter().find(|o| o.name == name)
}
