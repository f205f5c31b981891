//! The GTFS loader (`Network::load`) on mutated feeds: a bad feed must give an error, never a
//! panic, and a feed it accepts must hold the network's invariants.
//!
//! Input: the feed's files in the order of `FILES`, separated by NUL bytes (which a GTFS CSV
//! file never contains); an empty part leaves that file out, so the fuzzer also removes
//! required and optional files. The parts are written to a per-process directory, under
//! `$BUSFLOW_FUZZ_DIR` when set (scripts/fuzz.sh points it at a directory it deletes
//! afterwards), else under /dev/shm, and loaded from there as a directory feed.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use busflow_core::Network;
use libfuzzer_sys::fuzz_target;

/// The files a part maps to, in input order.
const FILES: [&str; 9] = [
    "agency.txt",
    "stops.txt",
    "routes.txt",
    "trips.txt",
    "stop_times.txt",
    "shapes.txt",
    "calendar.txt",
    "calendar_dates.txt",
    "frequencies.txt",
];

/// This process's feed directory, made once; every input overwrites its files.
fn feed_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::var_os("BUSFLOW_FUZZ_DIR").map(PathBuf::from).unwrap_or_else(|| {
            // Memory-backed, so the fuzzer is not bound by disk writes.
            let shm = PathBuf::from("/dev/shm");
            if shm.is_dir() { shm } else { std::env::temp_dir() }
        });
        // One directory per process: `-fork`/`-jobs` runs must not load each other's files.
        let dir = base.join(format!("busflow-fuzz-gtfs-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("fuzz harness setup: cannot create {}: {e}", dir.display());
        }
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = feed_dir();
    let mut parts = data.split(|&b| b == 0);
    for name in FILES {
        let path = dir.join(name);
        let written = match parts.next() {
            Some(part) if !part.is_empty() => std::fs::write(&path, part),
            _ => match std::fs::remove_file(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            },
        };
        if let Err(e) = written {
            panic!("fuzz harness setup: cannot write {}: {e}", path.display());
        }
    }
    let Ok(net) = Network::load(dir) else { return };
    assert!(!net.routes.is_empty(), "accepted a feed without routes");
    for s in &net.stops {
        assert!(s.lat.is_finite() && s.lon.is_finite(), "stop {} at ({}, {})", s.id, s.lat, s.lon);
    }
    for t in &net.trips {
        assert!((t.shape as usize) < net.shapes.len(), "trip {} has no shape", t.id);
        assert!((t.route as usize) < net.routes.len(), "trip {} has no route", t.id);
        assert!(t.stop_times.len() >= 2, "trip {} has fewer than two calls", t.id);
        for s in &t.stop_times {
            assert!((s.stop as usize) < net.stops.len());
            assert!(s.dist_m.is_finite(), "trip {} calls at a non-finite distance", t.id);
        }
    }
    let [w, s, e, n] = net.bbox();
    assert!(![w, s, e, n].iter().any(|x| x.is_nan()), "bbox {:?}", net.bbox());
    // The first thing every consumer of a network does: look up what is near a point.
    let _ = net.shapes_near((s + n) / 2.0, (w + e) / 2.0, 500.0);
});
