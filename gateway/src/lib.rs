//! Live viewport subscriptions over SSE and WebSocket, latest-state queries and GTFS-realtime out.
//!
//! The gateway keeps the latest [`VehiclePosition`](busflow_core::VehiclePosition) of every active
//! vehicle in memory ([`LiveState`]), loaded at start from the compacted `latest` topic and then
//! followed live on `positions`. Clients subscribe to a viewport; subscriptions are indexed by
//! the H3 cells covering their viewports ([`SubscriptionIndex`]) so an update only touches the
//! clients that can see it, and every client has a bounded queue ([`ClientQueue`]) that coalesces
//! when the client falls behind.
//!
//! - [`start`] / [`run`]: the whole gateway (Kafka source, HTTP listener, periodic work) from a
//!   [`GatewayConfig`].
//! - [`app`] with an [`AppState`]: the axum router alone, for tests and embedding.
//!
//! ```no_run
//! # async fn demo(network: std::sync::Arc<busflow_core::Network>) -> Result<(), busflow_gateway::Error> {
//! use busflow_gateway::{GatewayConfig, start};
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let kafka = busflow_kafka::KafkaConfig::new("127.0.0.1:9092");
//! let gw = start(GatewayConfig::default(), network, kafka, busflow_core::Topics::default(),
//!                None, None, shutdown.clone()).await?;
//! println!("map at http://{}/", gw.ready().await);
//! shutdown.cancel();
//! gw.join().await
//! # }
//! ```
#![deny(missing_docs)]

mod config;
mod error;
pub mod flow;
mod health;
mod http;
mod live;
pub mod map;
mod server;
mod source;
mod state;
pub mod subscription;
mod viewport;

pub use config::{GatewayConfig, TlsConfig};
pub use error::{ApiError, Error};
pub use health::{SourceHealth, SourceStatus};
pub use http::gtfs_rt;
pub use http::{AppState, ConnectionCloser, ConnectionFlow, app};
pub use live::{LiveSettings, LiveState, Subscriber, now_ms};
pub use server::{GatewayHandle, HttpServer, run, serve_http, start, tick_loop};
pub use state::{Upsert, VehicleStore};
pub use subscription::index::{SubId, Subscription, SubscriptionIndex};
pub use subscription::queue::{
    ClientQueue, DensityCell, DensityFrame, Outgoing, Pushed, QueueLimits, RemoveReason,
};
pub use viewport::{Bbox, BboxError, Filter, cell_at, display_point};

/// The parsers of untrusted client input, as the HTTP handlers use them (for fuzzing and tests).
pub mod parse {
    /// A stream's query string (`bbox`, `routes`, `min_interval_ms`) into a filter and interval.
    pub use crate::http::params::stream_params as stream_query;
    /// A WebSocket client message (`{"type":"subscribe",...}`) into a filter and interval.
    pub use crate::http::ws::parse_subscribe as ws_message;
}
