//! The GTFS-realtime ingest decoder: protobuf bytes to `FeedMessage`, `convert_gtfs_rt` to
//! RawPositions, then each one as `busflow ingest gtfs-rt` sends it (JSON, key = vehicle id)
//! through the pipeline's decoder and checks, so a hostile feed is followed all the way to
//! where the pipeline accepts or refuses it.
#![no_main]

use busflow_pipeline::{PipelineConfig, parse, validate};
use busflow_simulator::convert_gtfs_rt;
use busflow_simulator::gtfs_rt::FeedMessage;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let Ok(feed) = FeedMessage::decode(data) else { return };
    let (positions, unusable) = convert_gtfs_rt(&feed);
    let vehicles = feed.entity.iter().filter(|e| e.vehicle.is_some()).count();
    assert!(positions.len() + unusable as usize <= vehicles, "more outputs than vehicle entities");
    let cfg = PipelineConfig::default();
    for raw in &positions {
        assert!(!raw.vehicle_id.is_empty(), "converted an entity without any id");
        // The ingest loop unwraps nothing here: it skips a record it cannot encode.
        let Ok(payload) = serde_json::to_vec(raw) else { continue };
        let key = raw.vehicle_id.as_bytes();
        if let Ok(back) = parse(&payload, Some(key), cfg.max_message_bytes) {
            assert_eq!(back.vehicle_id, raw.vehicle_id);
            assert_eq!(back.ts, raw.ts);
            let _ = validate(&back, raw.ts, &cfg);
        }
    }
});
