//! The pipeline's whole per-event path (`Processor`: parse, validate, dedup, snap, enrich, H3)
//! on the bundled Cairns network, fed a sequence of hostile messages, so snapping, the
//! per-vehicle state machine and the recovery path see coordinates and timings no simulator
//! produces.
//!
//! Input: one message per line (`\n`); a line `key NUL value` also sets the Kafka key. The
//! pipeline clock starts at `CLOCK_START_MS` and advances one second per message, as a live
//! feed at 1 Hz would; the seeds carry timestamps near it.
#![no_main]

use busflow_core::VehicleStatus;
use busflow_fuzz::bundled_network;
use busflow_pipeline::{Outcome, PipelineConfig, Processor, RawMessage};
use libfuzzer_sys::fuzz_target;

/// 2025-12-02T00:00:00Z; the seeds' timestamps are counted from here.
const CLOCK_START_MS: i64 = 1_764_633_600_000;
/// More messages than this per input only slow the fuzzer down without new paths.
const MAX_MESSAGES: usize = 64;

fuzz_target!(|data: &[u8]| {
    let cfg = PipelineConfig::default();
    let net = bundled_network();
    let Ok(mut proc) = Processor::new(net.clone(), &cfg) else { return };
    // A second processor restored from every produced position: the recovery path after a
    // restart must accept anything the pipeline itself wrote.
    let Ok(mut restored) = Processor::new(net, &cfg) else { return };
    let mut now = CLOCK_START_MS;
    for (offset, line) in data.split(|&b| b == b'\n').take(MAX_MESSAGES).enumerate() {
        let (key, payload) = match line.iter().position(|&b| b == 0) {
            Some(i) => (Some(&line[..i]), &line[i + 1..]),
            None => (None, line),
        };
        let msg = RawMessage { payload, key, partition: 0, offset: offset as i64 };
        match proc.process(msg, now) {
            Outcome::Position(p) => {
                let (lat, lon) = p.display_point();
                assert!(lat.is_finite() && lon.is_finite(), "display point ({lat}, {lon})");
                assert!(lat.abs() <= 90.0 && lon.abs() <= 180.0, "display point ({lat}, {lon})");
                for m in [p.dist_along_m, p.off_route_m, p.next_stop_dist_m].into_iter().flatten() {
                    assert!(m.is_finite() && m >= 0.0, "a distance of {m} m in {p:?}");
                }
                assert_eq!(p.h3_cell.len(), 15, "h3_cell {:?}", p.h3_cell);
                if p.status != VehicleStatus::OffRoute && p.shape_id.is_some() {
                    assert!(p.snapped_lat.is_some() && p.dist_along_m.is_some());
                }
                assert!(serde_json::to_vec(&p).is_ok(), "position does not serialise: {p:?}");
                restored.restore(&p);
            }
            Outcome::Rejected(r) => {
                assert!(serde_json::to_vec(&r).is_ok(), "rejection does not serialise: {r:?}");
            }
            Outcome::Duplicate => {}
        }
        now += 1000;
    }
    // Past the state TTL every vehicle is gone, whatever happened before. The TTL counts from
    // the last fix's own ts, which may be up to max_future ahead of the clock.
    let later = now + (cfg.max_future + cfg.state_ttl).as_millis() as i64 + 1;
    proc.evict(later);
    restored.evict(later);
    assert_eq!(proc.vehicles() + restored.vehicles(), 0, "state survived its TTL");
});
