//! Shared pieces of the fuzz targets in `fuzz_targets/` (see `docs/fuzzing.md`).
//!
//! The targets only feed untrusted bytes to public entry points and check that the answer is
//! either a value that keeps the documented invariants or a clean refusal; any panic, overflow
//! (the targets are built with debug assertions), hang or runaway allocation is a finding.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use busflow_core::Network;
use busflow_gateway::{ApiError, Filter, GatewayConfig};

/// The bundled Cairns network, loaded once per fuzzing process (it takes about a second; every
/// input then runs against the same shapes).
pub fn bundled_network() -> Arc<Network> {
    static NET: OnceLock<Arc<Network>> = OnceLock::new();
    NET.get_or_init(|| match Network::load(busflow_core::bundled_gtfs_path()) {
        Ok(net) => Arc::new(net),
        // Not a finding: the harness cannot run without the feed, so say why and stop.
        Err(e) => panic!("fuzz harness setup: {e}"),
    })
    .clone()
}

/// Checks what a gateway parser returned: an accepted filter must be one the subscription index
/// can hold, and a refusal must be a client error, never a server error.
pub fn check_gateway_answer(answer: Result<(Filter, Duration), ApiError>, cfg: &GatewayConfig) {
    // The same bound the gateway documents for `min_interval_ms`.
    const MAX_MIN_INTERVAL: Duration = Duration::from_secs(60);
    match answer {
        Ok((filter, interval)) => {
            let b = filter.bbox;
            assert!(
                [b.west, b.south, b.east, b.north].iter().all(|x| x.is_finite()),
                "accepted a non-finite bbox {b:?}"
            );
            assert!(b.west < b.east && b.south < b.north, "accepted an empty or inverted {b:?}");
            assert!((-180.0..=180.0).contains(&b.west) && (-180.0..=180.0).contains(&b.east));
            assert!((-90.0..=90.0).contains(&b.south) && (-90.0..=90.0).contains(&b.north));
            assert!(
                b.east - b.west <= cfg.max_bbox_span_deg
                    && b.north - b.south <= cfg.max_bbox_span_deg,
                "accepted a bbox wider than max_bbox_span_deg: {b:?}"
            );
            if let Some(routes) = &filter.routes {
                assert!(!routes.is_empty() && routes.len() <= cfg.max_routes);
                assert!(routes.iter().all(|r| !r.trim().is_empty() && r.len() <= 128));
            }
            assert!(interval <= MAX_MIN_INTERVAL, "accepted min_interval {interval:?}");
        }
        Err(e) => assert!(e.status.is_client_error(), "refusal with status {}: {e:?}", e.status),
    }
}
