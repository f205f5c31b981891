//! The RawPosition decoder (`busflow_pipeline::parse`) and the stateless checks after it
//! (`busflow_pipeline::validate`), on arbitrary bytes.
//!
//! Input: the message value, or `key NUL value` to give the message a Kafka key as well (a NUL
//! byte cannot appear unescaped in JSON, so the split never hides a valid payload).
#![no_main]

use busflow_core::RejectReason;
use busflow_pipeline::{PipelineConfig, parse, validate};
use libfuzzer_sys::fuzz_target;

/// Small enough that the fuzzer also reaches the oversized refusal with short inputs.
const MAX_BYTES: usize = 2048;

fuzz_target!(|data: &[u8]| {
    let (key, payload) = match data.iter().position(|&b| b == 0) {
        Some(i) => (Some(&data[..i]), &data[i + 1..]),
        None => (None, data),
    };
    let Ok(raw) = parse(payload, key, MAX_BYTES) else { return };
    assert!(payload.len() <= MAX_BYTES);
    assert!(!raw.vehicle_id.trim().is_empty() && raw.vehicle_id.len() <= 128);
    if let Some(k) = key {
        assert_eq!(k, raw.vehicle_id.as_bytes(), "accepted a key that differs from vehicle_id");
    }
    // The pipeline clock is the wall clock, which the device does not control, but its ts can
    // be anything: try the fix against a realistic clock, and check the time bounds at their
    // edges around its own ts.
    let cfg = PipelineConfig::default();
    let ms = |d: std::time::Duration| d.as_millis() as i64;
    let reason = |now: i64| validate(&raw, now, &cfg).err().map(|r| r.reason);
    let _ = reason(1_764_633_600_000); // 2025-12-02, a realistic wall clock
    let here = reason(raw.ts);
    if let Some(r) = here {
        // Only the position can be wrong when the clock reads the fix's own time.
        assert!(
            matches!(r, RejectReason::InvalidCoordinates | RejectReason::NullIsland),
            "refused {r:?} at its own ts"
        );
        return;
    }
    assert!(raw.lat.abs() <= 90.0 && raw.lon.abs() <= 180.0);
    for (now, expected) in [
        (raw.ts.checked_add(ms(cfg.max_age)), None),
        (raw.ts.checked_add(ms(cfg.max_age) + 1), Some(RejectReason::TooOld)),
        (raw.ts.checked_sub(ms(cfg.max_future)), None),
        (raw.ts.checked_sub(ms(cfg.max_future) + 1), Some(RejectReason::FutureTimestamp)),
    ] {
        // A clock beyond i64 does not exist; skip those edges.
        let Some(now) = now else { continue };
        assert_eq!(reason(now), expected, "ts {} against clock {now}", raw.ts);
    }
});
