//! Loading the bundled Cairns feed and broken variants of it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use busflow_core::network::Network;
use chrono::NaiveDate;

fn cairns() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/cairns_gtfs.zip")
}

/// Unpacks the bundled feed into a temporary directory so tests can break it.
fn unpacked() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let file = std::fs::File::open(cairns()).unwrap();
    let mut zip = zip_entries(file);
    for (name, bytes) in zip.drain(..) {
        std::fs::File::create(dir.path().join(name)).unwrap().write_all(&bytes).unwrap();
    }
    dir
}

fn zip_entries(file: std::fs::File) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(file).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut f = archive.by_index(i).unwrap();
            let mut buf = Vec::new();
            f.read_to_end(&mut buf).unwrap();
            (f.name().to_string(), buf)
        })
        .collect()
}

/// Great-circle distance written independently of the library (which uses `geo`).
fn haversine(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let r = 6_371_008.8_f64;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * r * a.sqrt().asin()
}

#[test]
fn cairns_feed_has_expected_counts() {
    let net = Network::load(cairns()).unwrap();
    assert_eq!(net.routes.len(), 22);
    assert_eq!(net.shapes.len(), 54);
    assert_eq!(net.stops.len(), 416);
    assert!(net.shapes.iter().all(|s| !s.derived));
    assert!(net.trips.len() > 1000, "{}", net.trips.len());
    let r110 = net.route(net.route_by_id("110-423").unwrap());
    assert_eq!(r110.short_name, "110");
    assert_eq!(r110.color, "7BC142");
    assert!(net.agency.contains("TransLink"));
    // The schedule's clock: simulated service follows Cairns' day, not the machine's.
    assert_eq!(net.timezone, "Australia/Brisbane");
}

#[test]
fn shape_length_matches_independent_haversine_sum() {
    // Read shape 1100015 straight from shapes.txt, not through the loader.
    let dir = unpacked();
    let text = std::fs::read_to_string(dir.path().join("shapes.txt")).unwrap();
    let mut pts: Vec<(u64, f64, f64)> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0] == "1100015")
                .then(|| (f[3].parse().unwrap(), f[1].parse().unwrap(), f[2].parse().unwrap()))
        })
        .collect();
    pts.sort_by_key(|p| p.0);
    let expected: f64 = pts.windows(2).map(|w| haversine(w[0].1, w[0].2, w[1].1, w[1].2)).sum();

    let net = Network::load(cairns()).unwrap();
    let shape = net.shape(net.shape_by_id("1100015").unwrap());
    let got = shape.line.length_m();
    assert!(expected > 1000.0);
    assert!((got - expected).abs() < 0.5, "loader {got} m vs independent {expected} m");
}

#[test]
fn stops_are_in_order_along_their_shapes() {
    let net = Network::load(cairns()).unwrap();
    for trip in &net.trips {
        let shape = net.shape(trip.shape);
        let mut prev = 0.0;
        for st in &trip.stop_times {
            assert!(st.dist_m >= prev, "trip {} goes backwards", trip.id);
            prev = st.dist_m;
            let stop = net.stop(st.stop);
            let (lat, lon, _) = shape.line.point_at(st.dist_m);
            let off = haversine(lat, lon, stop.lat, stop.lon);
            // Some stops (hail-and-ride termini) lie beyond the shape and go to its nearest end;
            // every stop that lies on its shape must be placed on it.
            let closest = shape.line.project(stop.lat, stop.lon).off_m;
            assert!(
                closest > 40.0 || off < 60.0,
                "trip {} stop {} placed {off} m away, closest point is {closest} m",
                trip.id,
                stop.id
            );
        }
        assert!(trip.stop_times.windows(2).all(|w| w[0].departure_s <= w[1].arrival_s));
    }
}

#[test]
fn expired_calendar_falls_back_to_weekday_patterns() {
    let net = Network::load(cairns()).unwrap();
    let monday = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
    let sunday = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
    let weekday = net.services_on(monday);
    assert!(!weekday.is_empty());
    assert!(weekday.iter().all(|&s| net.services[s as usize].weekdays[0]));
    assert_ne!(weekday, net.services_on(sunday));
    // Inside the feed's validity the calendar itself decides, exceptions included.
    let removed = NaiveDate::from_ymd_opt(2014, 6, 9).unwrap();
    assert!(
        !net.services_on(removed)
            .iter()
            .any(|&s| net.services[s as usize].id == "CNS2014-CNS_MUL-Weekday-00")
    );
}

#[test]
fn nearest_shapes_come_from_the_spatial_index() {
    let net = Network::load(cairns()).unwrap();
    let shape = net.shape(net.shape_by_id("1100015").unwrap());
    let (lat, lon, _) = shape.line.point_at(shape.line.length_m() / 2.0);
    let near = net.shapes_near(lat, lon, 50.0);
    assert!(near.iter().any(|n| net.shape(n.shape).id == "1100015"));
    assert!(near.iter().all(|n| n.projection.off_m <= 50.0));
    assert!(net.shapes_near(-17.5, 146.5, 100.0).is_empty());
}

#[test]
fn feed_without_shapes_derives_them_from_stops() {
    let dir = unpacked();
    std::fs::remove_file(dir.path().join("shapes.txt")).unwrap();
    let net = Network::load(dir.path()).unwrap();
    assert!(!net.shapes.is_empty());
    assert!(net.shapes.iter().all(|s| s.derived));
    assert_eq!(net.routes.len(), 22);
}

#[test]
fn malformed_stop_times_names_the_file_and_line() {
    let dir = unpacked();
    let path = dir.path().join("stop_times.txt");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("CNS2014-CNS_MUL-Weekday-00-4165878,not-a-time,05:50:00,750000,99,0,0\n");
    std::fs::write(&path, text).unwrap();
    let err = Network::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("stop_times.txt"), "{err}");
    assert!(err.contains("not-a-time") || err.contains("line"), "{err}");
}

#[test]
fn missing_files_are_named() {
    let dir = unpacked();
    std::fs::remove_file(dir.path().join("routes.txt")).unwrap();
    let err = Network::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("routes.txt"), "{err}");
    let err = Network::load("/nonexistent/feed.zip").unwrap_err().to_string();
    assert!(err.contains("/nonexistent/feed.zip"), "{err}");
}

#[test]
fn garbage_zip_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("feed.zip");
    std::fs::write(&p, b"this is not a zip").unwrap();
    let err = Network::load(&p).unwrap_err().to_string();
    assert!(err.contains("feed.zip"), "{err}");
}

/// Found by fuzzing: gtfs-structures panics on a colour that is not ASCII hex (it slices the
/// string by bytes); the loader must turn that into an error naming the feed.
#[test]
fn non_ascii_route_colour_is_an_error_not_a_panic() {
    let dir = unpacked();
    let path = dir.path().join("routes.txt");
    let text = std::fs::read_to_string(&path).unwrap().replacen("7BC142", "7\u{e9}ABC", 1);
    std::fs::write(&path, text).unwrap();
    let err = Network::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
    assert!(err.contains("malformed"), "{err}");
}
