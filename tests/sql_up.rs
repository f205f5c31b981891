//! `busflow sql` against a running `busflow up`: vehicles per route from SQL equal the
//! gateway's live state.
//!
//! Starts the real binary (in-process broker, simulator, pipeline, gateway), waits for buses,
//! then runs `busflow sql --brokers ...` as a separate process. The fleet changes as trips start,
//! so the gateway is read before and after each query and the comparison is made on a round in
//! which the gateway did not change.

#![cfg(feature = "sql")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, http_get, start_up};

const QUERY: &str = "SELECT route_short_name, count(*) FROM vehicles GROUP BY 1 ORDER BY 2 DESC";

/// Vehicles per route short name in the gateway's live state.
fn gateway_counts(addr: &str) -> Option<BTreeMap<Option<String>, u64>> {
    let v = http_get(addr, "/v1/vehicles")?;
    let mut out = BTreeMap::new();
    for veh in v["vehicles"].as_array()? {
        let route = veh["route_short_name"].as_str().map(str::to_string);
        *out.entry(route).or_insert(0) += 1;
    }
    Some(out)
}

fn sql(brokers: &str, format: &str) -> String {
    let out = Command::new(BIN)
        .args(["sql", "--brokers", brokers, "--no-progress", "--format", format, QUERY])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "busflow sql failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn vehicles_per_route_match_the_gateway() {
    // A weekday morning (the feed's patterns for a Tuesday), whatever day and hour this runs.
    let up = start_up(&["--start", "08:00", "--date", "2026-11-24"], &[]);
    let (http, brokers) = (up.http.clone(), up.brokers.clone());

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n: u64 = gateway_counts(&http).map_or(0, |c| c.values().sum());
        if n >= 10 {
            break;
        }
        assert!(Instant::now() < deadline, "fewer than 10 buses after 120 s: {n}");
        std::thread::sleep(Duration::from_millis(500));
    }

    let mut compared = None;
    for _ in 0..15 {
        let before = gateway_counts(&http).unwrap();
        let out = sql(&brokers, "json");
        let after = gateway_counts(&http).unwrap();
        if before != after {
            continue; // a trip started or ended during the query: try again
        }
        let rows: Vec<serde_json::Value> =
            out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let counts: Vec<u64> = rows.iter().map(|r| r["count(*)"].as_u64().unwrap()).collect();
        assert!(counts.windows(2).all(|w| w[0] >= w[1]), "ORDER BY 2 DESC: {counts:?}");
        let from_sql: BTreeMap<Option<String>, u64> = rows
            .iter()
            .map(|r| {
                (
                    r["route_short_name"].as_str().map(str::to_string),
                    r["count(*)"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(from_sql, before, "SQL vehicles per route vs the gateway's state");
        compared = Some(before);
        break;
    }
    let routes = compared.expect("the gateway's state never held still for one query");

    // The default output is a table a person reads: a header and one line per route.
    let table = sql(&brokers, "table");
    assert!(table.contains("route_short_name") && table.contains("count(*)"), "{table}");
    for r in routes.keys().flatten() {
        if !table.contains(&format!("| {r} ")) {
            // Only acceptable if the route's last bus has since left the live state.
            let now = gateway_counts(&http).unwrap();
            assert!(!now.contains_key(&Some(r.clone())), "route {r} missing from\n{table}");
        }
    }
}
