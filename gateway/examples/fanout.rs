//! Fan-out harness: many SSE clients with random district viewports over Cairns on loopback,
//! while positions are fed to the gateway's live state at a fixed rate (no Kafka: this measures
//! the gateway alone, from `apply` to the client having parsed the event).
//!
//! cargo run --release -p busflow-gateway --example fanout -- CLIENTS RATE_PER_S SECONDS [VEHICLES]
//!
//! Prints delivery latency percentiles (ms resolution, from `processed_ts` set at apply time),
//! events received, viewport violations (events for vehicles outside the client's bbox) and
//! resident memory per client (server and clients share the process, so this is an upper bound).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use busflow_core::{Network, SCHEMA_VERSION, VehiclePosition, VehicleStatus};
use busflow_gateway::{AppState, GatewayConfig, LiveState, now_ms, serve_http};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

/// Cairns urban area.
const AREA: [f64; 4] = [145.68, -17.05, 145.80, -16.80];

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn position(id: usize, lat: f64, lon: f64, ts: i64) -> VehiclePosition {
    VehiclePosition {
        v: SCHEMA_VERSION,
        vehicle_id: format!("bus-{id}"),
        ts,
        lat,
        lon,
        snapped_lat: Some(lat),
        snapped_lon: Some(lon),
        route_id: Some(format!("{}", 100 + id % 22)),
        route_short_name: Some(format!("{}", 100 + id % 22)),
        route_color: Some("0077cc".into()),
        trip_id: Some(format!("trip-{id}")),
        shape_id: Some("shape".into()),
        direction_id: Some(0),
        headsign: Some("City".into()),
        dist_along_m: Some(1234.5),
        off_route_m: Some(2.0),
        speed_mps: Some(9.0),
        bearing_deg: Some(45.0),
        next_stop_id: Some("stop".into()),
        next_stop_dist_m: Some(120.0),
        h3_cell: "8cbe6354a2b5bff".into(),
        status: VehicleStatus::InTransit,
        seq: None,
        processed_ts: ts,
        partition: 0,
        offset: 0,
    }
}

#[derive(Default)]
struct Stats {
    events: AtomicU64,
    violations: AtomicU64,
    snapshots: AtomicU64,
    /// Latency histogram, 1 ms buckets up to 10 s.
    hist: Vec<AtomicU64>,
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let clients: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let rate: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let secs: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    let vehicles: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(2000);

    let network = Arc::new(Network::load(busflow_core::bundled_gtfs_path()).unwrap());
    let cfg = GatewayConfig {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        max_connections: clients + 10,
        max_connections_per_ip: clients + 10,
        max_vehicles_per_stream: 100_000,
        ..GatewayConfig::default()
    };
    let live = LiveState::new(cfg.live_settings());
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut pos: Vec<(f64, f64)> = (0..vehicles)
        .map(|_| (rng.random_range(AREA[1]..AREA[3]), rng.random_range(AREA[0]..AREA[2])))
        .collect();
    for (i, (lat, lon)) in pos.iter().enumerate() {
        live.apply(position(i, *lat, *lon, now_ms()));
    }
    live.mark_ready();
    let shutdown = CancellationToken::new();
    let state = AppState::new(cfg, live.clone(), network, None, shutdown.clone());
    let server = serve_http(state, None, shutdown.clone()).await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(busflow_gateway::tick_loop(live.clone(), shutdown.clone()));

    let stats = Arc::new(Stats {
        hist: (0..10_001).map(|_| AtomicU64::new(0)).collect(),
        ..Default::default()
    });
    let rss0 = rss_kb();
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for c in 0..clients {
        // District viewports: 1.5 to 4 km on a side.
        let w = rng.random_range(0.015..0.04);
        let h = w * rng.random_range(0.7..1.0);
        let west = rng.random_range(AREA[0]..AREA[2] - w);
        let south = rng.random_range(AREA[1]..AREA[3] - h);
        let bbox = [west, south, west + w, south + h];
        let stats = stats.clone();
        let measuring = measuring.clone();
        tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut tx, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
            tokio::spawn(conn);
            let uri = format!("/v1/stream?bbox={},{},{},{}", bbox[0], bbox[1], bbox[2], bbox[3]);
            let req = hyper::Request::get(uri)
                .header("host", "x")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            let resp = tx.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200, "client {c}");
            let mut body = resp.into_body();
            let mut buf = String::new();
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(data) = frame.into_data() else { continue };
                buf.push_str(&String::from_utf8_lossy(&data));
                while let Some(i) = buf.find("\n\n") {
                    let block: String = buf.drain(..i + 2).collect();
                    let Some(json) = block.lines().find_map(|l| l.strip_prefix("data: ")) else {
                        continue;
                    };
                    let v: serde_json::Value = serde_json::from_str(json).unwrap();
                    match v["type"].as_str() {
                        Some("snapshot") => {
                            stats.snapshots.fetch_add(1, Ordering::Relaxed);
                        }
                        Some("update") if measuring.load(Ordering::Relaxed) => {
                            let p = &v["vehicle"];
                            let (lat, lon) =
                                (p["lat"].as_f64().unwrap(), p["lon"].as_f64().unwrap());
                            if !(lon >= bbox[0]
                                && lon <= bbox[2]
                                && lat >= bbox[1]
                                && lat <= bbox[3])
                            {
                                stats.violations.fetch_add(1, Ordering::Relaxed);
                            }
                            let lat_ms =
                                (now_ms() - p["processed_ts"].as_i64().unwrap()).clamp(0, 10_000);
                            stats.hist[lat_ms as usize].fetch_add(1, Ordering::Relaxed);
                            stats.events.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
            }
        });
    }
    let t = Instant::now();
    while stats.snapshots.load(Ordering::Relaxed) < clients as u64 {
        assert!(t.elapsed() < Duration::from_secs(120), "clients did not all connect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss1 = rss_kb();
    println!(
        "{clients} clients connected in {:.1}s; RSS {} MB -> {} MB ({:.1} KB per client, server and client side together)",
        t.elapsed().as_secs_f64(),
        rss0 / 1024,
        rss1 / 1024,
        (rss1.saturating_sub(rss0)) as f64 / clients as f64
    );

    // Feed `rate` updates per second in 10 ms ticks: each moves a random vehicle ~10 m.
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while start.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let i = rng.random_range(0..vehicles);
            let (lat, lon) = &mut pos[i];
            *lat = (*lat + rng.random_range(-0.0001..0.0001)).clamp(AREA[1], AREA[3]);
            *lon = (*lon + rng.random_range(-0.0001..0.0001)).clamp(AREA[0], AREA[2]);
            live.apply(position(i, *lat, *lon, now_ms()));
            sent += 1;
        }
    }
    let feed_secs = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    measuring.store(false, Ordering::Relaxed);
    let total: u64 = stats.hist.iter().map(|h| h.load(Ordering::Relaxed)).sum();
    let pct = |q: f64| {
        let target = (total as f64 * q).ceil() as u64;
        let mut acc = 0;
        for (ms, h) in stats.hist.iter().enumerate() {
            acc += h.load(Ordering::Relaxed);
            if acc >= target {
                return ms;
            }
        }
        10_000
    };
    println!(
        "fed {sent} updates in {feed_secs:.1}s ({:.0}/s); clients received {total} updates ({:.0}/s); \
         delivery latency p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms; viewport violations {}",
        sent as f64 / feed_secs,
        total as f64 / feed_secs,
        pct(0.5),
        pct(0.99),
        pct(0.999),
        pct(1.0),
        stats.violations.load(Ordering::Relaxed)
    );
    shutdown.cancel();
    server.join().await;
}
