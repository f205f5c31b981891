#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The GTFS-realtime feed, decoded by a protobuf wire-format reader written here from the
//! protobuf encoding spec and `gtfs-realtime.proto` field numbers (it shares no code with the
//! encoder).

mod common;

use common::{TestGateway, config, get, vp};
use http_body_util::BodyExt;

#[derive(Debug)]
enum Val {
    Varint(u64),
    Fixed32(u32),
    Fixed64(#[allow(dead_code)] u64),
    Bytes(Vec<u8>),
}

fn varint(b: &[u8], i: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = b[*i];
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return v;
        }
        shift += 7;
        assert!(shift < 64, "varint too long");
    }
}

/// All fields of one message, in order.
fn fields(b: &[u8]) -> Vec<(u64, Val)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let key = varint(b, &mut i);
        let (num, wt) = (key >> 3, key & 7);
        let v = match wt {
            0 => Val::Varint(varint(b, &mut i)),
            1 => {
                let v = u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
                i += 8;
                Val::Fixed64(v)
            }
            2 => {
                let n = varint(b, &mut i) as usize;
                let v = b[i..i + n].to_vec();
                i += n;
                Val::Bytes(v)
            }
            5 => {
                let v = u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
                i += 4;
                Val::Fixed32(v)
            }
            other => panic!("wire type {other}"),
        };
        out.push((num, v));
    }
    assert_eq!(i, b.len(), "message overruns its bytes");
    out
}

fn one(f: &[(u64, Val)], n: u64) -> Option<&Val> {
    f.iter().find(|(k, _)| *k == n).map(|(_, v)| v)
}
fn msg(f: &[(u64, Val)], n: u64) -> Vec<(u64, Val)> {
    match one(f, n) {
        Some(Val::Bytes(b)) => fields(b),
        other => panic!("field {n}: {other:?}"),
    }
}
fn string(f: &[(u64, Val)], n: u64) -> String {
    match one(f, n) {
        Some(Val::Bytes(b)) => String::from_utf8(b.clone()).unwrap(),
        other => panic!("field {n}: {other:?}"),
    }
}
fn float(f: &[(u64, Val)], n: u64) -> f32 {
    match one(f, n) {
        Some(Val::Fixed32(x)) => f32::from_bits(*x),
        other => panic!("field {n}: {other:?}"),
    }
}

#[tokio::test]
async fn feed_decodes_with_an_independent_reader() {
    let gw = TestGateway::start(config()).await;
    gw.live.apply(vp("bus-7", 1_700_000_000_000, -16.92, 145.72, Some("110")));
    gw.live.apply(vp("bus-9", 1_700_000_001_000, -16.93, 145.73, None));
    let resp = get(gw.addr, "/gtfs-rt/vehicle-positions", &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();

    let feed = fields(&bytes);
    let header = msg(&feed, 1); // FeedMessage.header
    assert_eq!(string(&header, 1), "2.0"); // gtfs_realtime_version
    assert!(matches!(one(&header, 2), Some(Val::Varint(0)))); // FULL_DATASET
    assert!(matches!(one(&header, 3), Some(Val::Varint(t)) if *t > 1_700_000_000));
    let entities: Vec<Vec<(u64, Val)>> = feed
        .iter()
        .filter(|(k, _)| *k == 2)
        .map(|(_, v)| match v {
            Val::Bytes(b) => fields(b),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(entities.len(), 2);
    let e = &entities[0];
    assert_eq!(string(e, 1), "bus-7"); // FeedEntity.id
    let v = msg(e, 4); // FeedEntity.vehicle
    let pos = msg(&v, 2); // VehiclePosition.position
    assert!((float(&pos, 1) - -16.92).abs() < 1e-4);
    assert!((float(&pos, 2) - 145.72).abs() < 1e-4);
    assert!((float(&pos, 5) - 8.5).abs() < 1e-6); // speed m/s
    assert!(matches!(one(&v, 5), Some(Val::Varint(1_700_000_000)))); // timestamp, seconds
    assert!(matches!(one(&v, 4), Some(Val::Varint(2)))); // IN_TRANSIT_TO
    assert_eq!(string(&msg(&v, 8), 1), "bus-7"); // VehicleDescriptor.id
    let trip = msg(&v, 1);
    assert_eq!(string(&trip, 5), "110"); // TripDescriptor.route_id
    assert_eq!(string(&trip, 1), "trip-bus-7");
    assert_eq!(string(&v, 7), "stop-1");

    let json =
        common::body_json(get(gw.addr, "/gtfs-rt/vehicle-positions?format=json", &[]).await).await;
    assert_eq!(json["header"]["gtfs_realtime_version"], "2.0");
    assert_eq!(json["entity"][1]["id"], "bus-9");
}
