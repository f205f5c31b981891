//! Command-line definitions. Every flag can also be set from the environment variable named in
//! its help; flags shared by several commands are defined once here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use busflow_core::Topics;
use busflow_kafka::KafkaConfig;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cmd;

/// Real-time bus tracking over Kafka: simulator, pipeline and live gateway.
#[derive(Debug, Parser)]
#[command(name = "busflow", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Log format on stderr. Filter with RUST_LOG (default: info).
    #[arg(long, env = "BUSFLOW_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

// Parsed once at startup: the size difference between commands costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole system in one process: broker (in-process unless --brokers), simulator,
    /// pipeline and gateway.
    Up(cmd::up::UpArgs),
    /// Serve live viewport streams (SSE, WebSocket), latest-state queries and GTFS-realtime
    /// from the positions topics.
    Gateway(cmd::gateway::GatewayArgs),
    /// Simulate a bus fleet from the GTFS timetable, with realistic GPS faults, into the raw
    /// topic.
    Simulate(cmd::simulate::SimulateArgs),
    /// Replay recorded positions (NDJSON or CSV) into the raw topic, keeping their spacing.
    Replay(cmd::replay::ReplayArgs),
    /// Feed raw positions from a live source (GTFS-realtime) into the raw topic.
    Ingest(cmd::ingest::IngestArgs),
    /// Validate, deduplicate, snap, enrich and H3-index raw positions into the positions,
    /// latest and rejected topics (timely dataflow; safe to kill at any moment).
    Pipeline(cmd::pipeline::PipelineArgs),
    /// Open many concurrent map viewers (SSE or WebSocket) against a gateway; measure delivery
    /// and check every vehicle received is inside its viewer's viewport.
    Load(cmd::load::LoadArgs),
    /// Query the topics (or recordings of them) with SQL: positions, rejected, raw and the
    /// latest state per vehicle, as typed tables; output as a table, CSV, JSON lines or Parquet.
    #[cfg(feature = "sql")]
    Sql(cmd::sql::SqlArgs),
}

/// Kafka connection flags, shared by every command that talks to Kafka.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers (host:port,...). `up` starts an in-process broker when unset.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub brokers: Option<String>,
    /// Extra librdkafka setting (TLS, SASL, tuning), repeatable: --kafka-option
    /// security.protocol=SASL_SSL. In the environment, separate several with ';'.
    #[arg(long = "kafka-option", env = "BUSFLOW_KAFKA_OPTIONS", value_name = "KEY=VALUE",
          value_delimiter = ';', value_parser = parse_kafka_option)]
    pub kafka_options: Vec<(String, String)>,
    /// Partitions for topics busflow creates.
    #[arg(long, env = "BUSFLOW_PARTITIONS", default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub partitions: i32,
    /// Raw positions topic.
    #[arg(long, env = "BUSFLOW_TOPIC_RAW", default_value = "bus.raw")]
    pub topic_raw: String,
    /// Enriched positions topic.
    #[arg(long, env = "BUSFLOW_TOPIC_POSITIONS", default_value = "bus.positions")]
    pub topic_positions: String,
    /// Rejected messages topic.
    #[arg(long, env = "BUSFLOW_TOPIC_REJECTED", default_value = "bus.rejected")]
    pub topic_rejected: String,
    /// Compacted latest-position-per-vehicle topic.
    #[arg(long, env = "BUSFLOW_TOPIC_LATEST", default_value = "bus.latest")]
    pub topic_latest: String,
}

impl KafkaArgs {
    pub fn topics(&self) -> Topics {
        Topics {
            raw: self.topic_raw.clone(),
            positions: self.topic_positions.clone(),
            rejected: self.topic_rejected.clone(),
            latest: self.topic_latest.clone(),
        }
    }

    /// Config for a given bootstrap address (from --brokers or the dev broker).
    pub fn config(&self, brokers: &str) -> KafkaConfig {
        KafkaConfig { brokers: brokers.to_string(), options: self.kafka_options.clone() }
    }
}

/// The GTFS feed flag.
#[derive(Debug, Clone, Args)]
pub struct GtfsArgs {
    /// GTFS static feed (zip or directory). Default: the bundled Sunbus Cairns feed.
    #[arg(long, env = "BUSFLOW_GTFS")]
    pub gtfs: Option<PathBuf>,
}

impl GtfsArgs {
    pub fn path(&self) -> PathBuf {
        self.gtfs.clone().unwrap_or_else(busflow_core::bundled_gtfs_path)
    }
}

/// The live map served at `/` by the gateway.
#[derive(Debug, Clone, Args)]
pub struct MapArgs {
    /// Map tile URL template ({z}/{x}/{y}); point it at your own tile server in production.
    #[arg(long, env = "BUSFLOW_TILE_URL", default_value = busflow_gateway::map::DEFAULT_TILE_URL)]
    pub tile_url: String,
    /// Attribution shown for the tiles (HTML).
    #[arg(long, env = "BUSFLOW_TILE_ATTRIBUTION", default_value = busflow_gateway::map::DEFAULT_TILE_ATTRIBUTION)]
    pub tile_attribution: String,
    /// Serve Leaflet from this copy of its `dist` folder (leaflet.js, leaflet.css, images/)
    /// instead of the pinned CDN URL, for machines without internet access.
    #[arg(long, env = "BUSFLOW_ASSETS_DIR")]
    pub assets_dir: Option<PathBuf>,
    /// How the page streams: auto (WebSocket where available), ws or sse.
    #[arg(long, env = "BUSFLOW_MAP_TRANSPORT", default_value = "auto", value_parser = ["auto", "ws", "sse"])]
    pub map_transport: String,
}

impl MapArgs {
    /// The map config, opening on `bounds` (`[west, south, east, north]`).
    pub fn config(&self, bounds: [f64; 4]) -> busflow_gateway::map::MapConfig {
        busflow_gateway::map::MapConfig {
            tile_url: self.tile_url.clone(),
            tile_attribution: self.tile_attribution.clone(),
            assets_dir: self.assets_dir.clone(),
            bounds,
            transport: self.map_transport.clone(),
        }
    }
}

/// The metrics listener flag.
#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (the gateway also serves them on its
    /// own --http-addr).
    #[arg(long, env = "BUSFLOW_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

pub fn parse_kafka_option(s: &str) -> Result<(String, String), String> {
    KafkaConfig::parse_option(s).map_err(|e| e.to_string())
}

#[allow(dead_code)] // for the component commands' duration flags
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    busflow_core::duration::parse_duration(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_has_an_environment_variable() {
        fn walk(cmd: &clap::Command, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && !arg.is_positional() && arg.get_env().is_none() {
                    missing.push(format!("{} --{}", cmd.get_name(), arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), &mut missing);
        assert!(missing.is_empty(), "flags without env: {missing:?}");
    }

    #[test]
    fn kafka_options_parse() {
        let cli = Cli::try_parse_from([
            "busflow",
            "up",
            "--kafka-option",
            "security.protocol=SSL",
            "--kafka-option",
            "ssl.ca.location=/etc/ca.pem",
        ])
        .unwrap();
        let Command::Up(up) = cli.command else { panic!("parsed as another command") };
        assert_eq!(up.kafka.kafka_options.len(), 2);
        assert!(Cli::try_parse_from(["busflow", "up", "--kafka-option", "nonsense"]).is_err());
    }
}
