//! What the contract types serialize must validate against the published JSON Schemas, and the
//! schemas must refuse what the pipeline would refuse.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use busflow_core::{RawPosition, RejectReason, Rejected, VehiclePosition, VehicleStatus};
use serde_json::{Value, json};

fn validator(name: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schemas").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn assert_valid(v: &jsonschema::Validator, instance: &Value) {
    let errors: Vec<String> = v.iter_errors(instance).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{instance} is invalid: {errors:?}");
}

fn full_position() -> VehiclePosition {
    VehiclePosition {
        v: 1,
        vehicle_id: "bus-0042".into(),
        ts: 1_763_900_000_000,
        lat: -16.9186,
        lon: 145.7781,
        snapped_lat: Some(-16.91862),
        snapped_lon: Some(145.77815),
        route_id: Some("110-423".into()),
        route_short_name: Some("110".into()),
        route_color: Some("7BC142".into()),
        trip_id: Some("CNS2014-CNS_MUL-Weekday-00-4165878".into()),
        shape_id: Some("1100023".into()),
        direction_id: Some(0),
        headsign: Some("The Pier Cairns Terminus".into()),
        dist_along_m: Some(1234.5),
        off_route_m: Some(3.2),
        speed_mps: Some(11.5),
        bearing_deg: Some(182.0),
        next_stop_id: Some("750001".into()),
        next_stop_dist_m: Some(210.0),
        h3_cell: "8c9d4d6c1a2b3ff".into(),
        status: VehicleStatus::InTransit,
        seq: Some(17),
        processed_ts: 1_763_900_000_020,
        partition: 3,
        offset: 99,
    }
}

#[test]
fn raw_positions_validate() {
    let v = validator("raw.schema.json");
    assert_valid(&v, &serde_json::to_value(RawPosition::new("b1", 1, -16.9, 145.7)).unwrap());
    let mut full = RawPosition::new("b1", 1, -16.9, 145.7);
    full.speed_mps = Some(10.0);
    full.bearing_deg = Some(90.0);
    full.accuracy_m = Some(5.0);
    full.route_id = Some("r".into());
    full.trip_id = Some("t".into());
    full.seq = Some(3);
    assert_valid(&v, &serde_json::to_value(full).unwrap());
    // Producers may leave out the version.
    assert_valid(&v, &json!({"vehicle_id":"b1","ts":1,"lat":1.0,"lon":2.0}));
}

#[test]
fn raw_schema_refuses_bad_records() {
    let v = validator("raw.schema.json");
    for bad in [
        json!({"ts":1,"lat":1.0,"lon":2.0}),
        json!({"vehicle_id":"b1","ts":1,"lat":91.0,"lon":2.0}),
        json!({"vehicle_id":"b1","ts":"yesterday","lat":1.0,"lon":2.0}),
        json!({"vehicle_id":"","ts":1,"lat":1.0,"lon":2.0}),
        json!({"vehicle_id":"b1","ts":1,"lat":1.0,"lon":2.0,"v":2}),
    ] {
        assert!(!v.is_valid(&bad), "{bad} should be invalid");
    }
}

#[test]
fn vehicle_positions_validate_full_and_unassigned() {
    let v = validator("positions.schema.json");
    assert_valid(&v, &serde_json::to_value(full_position()).unwrap());
    let mut p = full_position();
    p.snapped_lat = None;
    p.snapped_lon = None;
    p.route_id = None;
    p.route_short_name = None;
    p.route_color = None;
    p.trip_id = None;
    p.shape_id = None;
    p.direction_id = None;
    p.headsign = None;
    p.dist_along_m = None;
    p.off_route_m = None;
    p.speed_mps = None;
    p.bearing_deg = None;
    p.next_stop_id = None;
    p.next_stop_dist_m = None;
    p.seq = None;
    p.status = VehicleStatus::Unassigned;
    let value = serde_json::to_value(&p).unwrap();
    assert_valid(&v, &value);
    // Nulls are written, not omitted, so consumers see stable columns.
    assert!(value.get("snapped_lat").unwrap().is_null());
}

#[test]
fn positions_schema_refuses_bad_records() {
    let v = validator("positions.schema.json");
    let mut bad = serde_json::to_value(full_position()).unwrap();
    bad["h3_cell"] = json!("8C9D4D6C1A2B3FF0");
    assert!(!v.is_valid(&bad));
    let mut bad = serde_json::to_value(full_position()).unwrap();
    bad["status"] = json!("teleporting");
    assert!(!v.is_valid(&bad));
    let mut bad = serde_json::to_value(full_position()).unwrap();
    bad.as_object_mut().unwrap().remove("snapped_lat");
    assert!(!v.is_valid(&bad));
}

#[test]
fn rejected_records_validate_for_every_reason() {
    let v = validator("rejected.schema.json");
    for reason in RejectReason::ALL {
        let r = Rejected::new(reason, "why", None, &[0xff, 0xfe], None, 0, 1, 2);
        assert_valid(&v, &serde_json::to_value(r).unwrap());
    }
    let r =
        Rejected::new(RejectReason::Stale, "older", Some("b1".into()), b"{}", Some(b"b1"), 2, 3, 4);
    assert_valid(&v, &serde_json::to_value(r).unwrap());
    assert!(!v.is_valid(&json!({"reason":"bogus"})));
}
