//! Hostile Kafka input through the whole pipeline on the in-process broker: 1 MiB messages
//! (valid-looking JSON and random bytes), non-UTF-8 keys with good and bad payloads, records of
//! other contract versions (including a different record shape), null values and key
//! mismatches, mixed into messy Cairns traffic. Each hostile message must land in `rejected`
//! with its reason and its key and bytes, everything else must flow, the books must balance,
//! and the pipeline must neither stall nor fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use busflow_core::{Network, RawPosition, RejectReason, Rejected};
use busflow_kafka::KafkaConfig;
use busflow_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use busflow_pipeline::PipelineConfig;
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PARTITIONS: i32 = 3;
const MIB: usize = 1024 * 1024;

/// What a message must turn into.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Position,
    Rejected(RejectReason),
}

#[derive(Debug, Clone)]
struct Hostile {
    what: &'static str,
    key: Option<Vec<u8>>,
    /// `None`: a null value (a tombstone), which reaches the pipeline as an empty payload.
    payload: Option<Vec<u8>>,
    expect: Expect,
}

fn json(raw: &RawPosition) -> Vec<u8> {
    serde_json::to_vec(raw).unwrap()
}

/// A valid report as JSON padded with whitespace before its closing brace to exactly `len` bytes.
fn padded(raw: &RawPosition, len: usize) -> Vec<u8> {
    let mut j = json(raw);
    let close = j.pop().unwrap();
    j.resize(len - 1, b' ');
    j.push(close);
    j
}

fn hostile(now: i64, max_bytes: usize) -> Vec<Hostile> {
    let mut rng = StdRng::seed_from_u64(8);
    let garbage =
        |rng: &mut StdRng, n: usize| (0..n).map(|_| rng.random::<u8>()).collect::<Vec<u8>>();
    let at = |id: &str, ts: i64| RawPosition::new(id, ts, -16.9237, 145.7713);
    let bad_key = vec![0xff, 0xfe, 0x00, 0x80];
    let ts = now - 120_000;
    let mut big_json = at("h-big", ts + 1000);
    big_json.route_id = Some("R".repeat(MIB));
    let mut v2 = at("h-v2", ts);
    v2.v = 2;
    let mut v0 = at("h-v0", ts);
    v0.v = 0;
    let mut vmax = at("h-vmax", ts);
    vmax.v = u16::MAX;
    let key = |s: &str| Some(s.as_bytes().to_vec());
    let reject = Expect::Rejected;
    vec![
        // A vehicle whose good reports surround its 1 MiB one: its state is not disturbed.
        Hostile { what: "good report before a 1 MiB one", key: key("h-big"), payload: Some(json(&at("h-big", ts))), expect: Expect::Position },
        Hostile { what: "1 MiB of valid JSON", key: key("h-big"), payload: Some(json(&big_json)), expect: reject(RejectReason::Oversized) },
        Hostile { what: "good report after a 1 MiB one", key: key("h-big"), payload: Some(json(&at("h-big", ts + 2000))), expect: Expect::Position },
        Hostile { what: "1 MiB of random bytes, no key", key: None, payload: Some(garbage(&mut rng, MIB)), expect: reject(RejectReason::Oversized) },
        Hostile { what: "1 MiB of random bytes, non-UTF-8 key", key: Some(bad_key.clone()), payload: Some(garbage(&mut rng, MIB)), expect: reject(RejectReason::Oversized) },
        // The limit itself: exactly max_message_bytes is accepted, one more byte is not.
        Hostile { what: "valid report of exactly the limit", key: key("h-edge"), payload: Some(padded(&at("h-edge", ts), max_bytes)), expect: Expect::Position },
        Hostile { what: "valid report one byte over the limit", key: key("h-edge"), payload: Some(padded(&at("h-edge", ts + 1000), max_bytes + 1)), expect: reject(RejectReason::Oversized) },
        // Non-UTF-8 keys.
        Hostile { what: "non-UTF-8 key, valid report", key: Some(bad_key.clone()), payload: Some(json(&at("h-nk", ts))), expect: reject(RejectReason::KeyMismatch) },
        Hostile { what: "key = vehicle id plus an invalid byte", key: Some(b"h-nk\xff".to_vec()), payload: Some(json(&at("h-nk", ts))), expect: reject(RejectReason::KeyMismatch) },
        Hostile { what: "non-UTF-8 key, non-UTF-8 payload", key: Some(bad_key.clone()), payload: Some(b"{\"vehicle_id\":\"\xc3\x28\"}".to_vec()), expect: reject(RejectReason::NotUtf8) },
        Hostile { what: "non-UTF-8 key, malformed JSON", key: Some(bad_key.clone()), payload: Some(b"{\"vehicle_id\": nope".to_vec()), expect: reject(RejectReason::MalformedJson) },
        Hostile { what: "non-UTF-8 key, null value", key: Some(bad_key), payload: None, expect: reject(RejectReason::MalformedJson) },
        // Unkeyed reports are accepted; a key that names someone else is not.
        Hostile { what: "unkeyed valid report", key: None, payload: Some(json(&at("h-unkeyed", ts))), expect: Expect::Position },
        Hostile { what: "key names another vehicle", key: key("h-someone-else"), payload: Some(json(&at("h-km", ts))), expect: reject(RejectReason::KeyMismatch) },
        // Other contract versions, from a producer on a newer (or broken) schema.
        Hostile { what: "v 2", key: key("h-v2"), payload: Some(json(&v2)), expect: reject(RejectReason::UnsupportedVersion) },
        Hostile { what: "v 0", key: key("h-v0"), payload: Some(json(&v0)), expect: reject(RejectReason::UnsupportedVersion) },
        Hostile { what: "v 65535", key: key("h-vmax"), payload: Some(json(&vmax)), expect: reject(RejectReason::UnsupportedVersion) },
        Hostile {
            what: "v 2 with a different record shape",
            key: key("h-v2b"),
            payload: Some(format!(r#"{{"v":2,"vehicle_id":"h-v2b","ts":{ts},"position":{{"lat":-16.9237,"lon":145.7713}}}}"#).into_bytes()),
            expect: reject(RejectReason::UnsupportedVersion),
        },
        Hostile {
            what: "v 3 as a string",
            key: key("h-v3s"),
            payload: Some(format!(r#"{{"v":"3","vehicle_id":"h-v3s","ts":{ts},"lat":-16.9237,"lon":145.7713}}"#).into_bytes()),
            expect: reject(RejectReason::UnsupportedVersion),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_messages_are_rejected_with_reasons_and_everything_else_flows() {
    let net = Arc::new(Network::load(busflow_core::bundled_gtfs_path()).unwrap());
    let topics = unique_topics("hostile");
    let dev = broker(&topics, PARTITIONS);
    let kafka = KafkaConfig::new(dev.bootstrap_servers());
    let cfg = PipelineConfig { group_id: "g-hostile".into(), ..PipelineConfig::default() };

    // Background: messy Cairns traffic (with its own faults), then the hostile messages in the
    // middle of it, then more traffic, so the hostile ones are followed by work that must flow.
    let traffic = traffic(&net, 30, 30, 5);
    let (first, rest) = traffic.split_at(traffic.len() / 2);
    produce(&kafka, &topics.raw, first).await;

    let big: FutureProducer = kafka
        .producer_config()
        // librdkafka refuses to send more than 1,000,000 bytes by default.
        .set("message.max.bytes", "4000000")
        .create()
        .unwrap();
    let hostile = hostile(now_ms(), cfg.max_message_bytes);
    let mut at: HashMap<(i32, i64), &Hostile> = HashMap::new();
    for h in &hostile {
        let mut rec = FutureRecord::<[u8], [u8]>::to(&topics.raw);
        if let Some(k) = &h.key {
            rec = rec.key(k.as_slice());
        }
        if let Some(p) = &h.payload {
            rec = rec.payload(p.as_slice());
        }
        let d = big.send(rec, Duration::from_secs(30)).await.map_err(|(e, _)| e).unwrap();
        at.insert((d.partition, d.offset), h);
    }
    produce(&kafka, &topics.raw, rest).await;
    let raw_total = traffic.len() + hostile.len();
    let max_bytes = cfg.max_message_bytes;
    let reports = run_to_end(vec![cfg], net, kafka.clone(), topics.clone(), PARTITIONS).await;
    let report = &reports[0];
    let out = outputs(&kafka, &topics);

    // Every hostile message: the expected outcome, and a rejection keeps key and bytes.
    // The key as base64, the way the contract writes it.
    let key_b64 =
        |k: Option<&[u8]>| Rejected::new(RejectReason::Stale, "", None, &[], k, 0, 0, 0).key_b64;
    let mut failures = Vec::new();
    for (&(partition, offset), h) in &at {
        let pos = out.positions.iter().find(|p| (p.partition, p.offset) == (partition, offset));
        let rej = out.rejected.iter().find(|r| (r.partition, r.offset) == (partition, offset));
        match (h.expect, pos, rej) {
            (Expect::Position, Some(_), None) => {}
            (Expect::Rejected(want), None, Some(r)) => {
                let payload = h.payload.clone().unwrap_or_default();
                if r.reason != want {
                    failures.push(format!(
                        "{}: rejected as {} ({}), want {}",
                        h.what,
                        r.reason.as_str(),
                        r.detail,
                        want.as_str()
                    ));
                }
                // Oversized messages keep their first max_message_bytes (a 1 MiB message's
                // base64 would not fit in a default-sized Kafka record); all others are whole.
                let payload = if want == RejectReason::Oversized {
                    payload[..max_bytes.min(payload.len())].to_vec()
                } else {
                    payload
                };
                if r.raw_bytes().unwrap() != payload {
                    failures.push(format!(
                        "{}: raw_b64 holds {} bytes, the message had {}",
                        h.what,
                        r.raw_bytes().unwrap().len(),
                        payload.len()
                    ));
                }
                if r.key_b64 != key_b64(h.key.as_deref()) {
                    failures.push(format!(
                        "{}: key_b64 {:?}, the key was {:?}",
                        h.what, r.key_b64, h.key
                    ));
                }
            }
            (want, pos, rej) => failures.push(format!(
                "{}: want {want:?}, got position {:?} rejection {:?}",
                h.what,
                pos.map(|p| p.status),
                rej.map(|r| (r.reason, &r.detail))
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} hostile messages mishandled:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Everything else flowed: every clean background report has its position.
    let seen: HashSet<(&str, i64)> =
        out.positions.iter().map(|p| (p.vehicle_id.as_str(), p.ts)).collect();
    let missing: Vec<_> = traffic
        .iter()
        .filter_map(|m| m.truth.as_ref())
        .filter(|(v, ts, _)| !seen.contains(&(v.as_str(), *ts)))
        .map(|(v, ts, _)| format!("{v}@{ts}"))
        .collect();
    assert!(missing.is_empty(), "clean reports without a position: {missing:?}");

    // The books balance: one output per raw message, except exact repeats.
    let duplicates = traffic.iter().filter(|m| m.duplicate).count();
    let mut sources = HashSet::new();
    for (p, o) in out
        .positions
        .iter()
        .map(|p| (p.partition, p.offset))
        .chain(out.rejected.iter().map(|r| (r.partition, r.offset)))
    {
        assert!(sources.insert((p, o)), "raw {p}/{o} has two outputs");
    }
    assert_eq!(
        out.positions.len() + out.rejected.len() + duplicates,
        raw_total,
        "positions {} + rejected {} + duplicates {duplicates} != raw {raw_total}",
        out.positions.len(),
        out.rejected.len()
    );
    assert_eq!(report.consumed as usize, raw_total);
    assert_eq!(report.duplicates as usize, duplicates);
    assert_eq!(report.positions as usize, out.positions.len());
    assert_eq!(report.rejected as usize, out.rejected.len());
    eprintln!(
        "raw {raw_total} (hostile {}): positions {}, rejected {}, duplicates {duplicates}",
        hostile.len(),
        out.positions.len(),
        out.rejected.len()
    );
}
