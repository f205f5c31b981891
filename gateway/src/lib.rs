//! Live viewport subscriptions over SSE and WebSocket, latest-state queries and GTFS-realtime out.
#![deny(missing_docs)]
