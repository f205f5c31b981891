//! The latest position of every active vehicle, indexed by H3 cell.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use busflow_core::VehiclePosition;
use h3o::{CellIndex, Resolution};

use crate::viewport::{Bbox, Filter, cell_at, display_point};

/// Resolution of the state's spatial index (edge about 1.2 km): a city viewport covers tens to
/// hundreds of cells, a street viewport a handful.
const STORE_RES: Resolution = Resolution::Seven;
/// Above this many cells a bbox query scans every vehicle instead.
const MAX_QUERY_CELLS: usize = 4096;

#[derive(Debug, Clone)]
struct Stored {
    pos: Arc<VehiclePosition>,
    cell: Option<CellIndex>,
    seen_ms: i64,
}

/// What [`VehicleStore::upsert`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Upsert {
    /// A new vehicle.
    Inserted,
    /// A newer position replaced this one.
    Replaced(Arc<VehiclePosition>),
    /// The record was older than what is held (replayed or out of order) and was ignored.
    Ignored,
}

/// Latest [`VehiclePosition`] per vehicle with a spatial index.
#[derive(Debug, Default)]
pub struct VehicleStore {
    vehicles: HashMap<Arc<str>, Stored>,
    cells: HashMap<CellIndex, HashSet<Arc<str>>>,
}

impl VehicleStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of vehicles held.
    pub fn len(&self) -> usize {
        self.vehicles.len()
    }

    /// Whether no vehicle is held.
    pub fn is_empty(&self) -> bool {
        self.vehicles.is_empty()
    }

    /// Stores a position seen at `seen_ms` (wall clock) unless an equal or newer one (by device
    /// time `ts`) is already held.
    pub fn upsert(&mut self, pos: Arc<VehiclePosition>, seen_ms: i64) -> Upsert {
        let (lat, lon) = display_point(&pos);
        let cell = cell_at(lat, lon, STORE_RES);
        if let Some(cur) = self.vehicles.get_mut(pos.vehicle_id.as_str()) {
            if pos.ts < cur.pos.ts {
                return Upsert::Ignored;
            }
            let old = std::mem::replace(&mut cur.pos, pos);
            cur.seen_ms = cur.seen_ms.max(seen_ms);
            if cur.cell != cell {
                let key: Arc<str> = Arc::from(old.vehicle_id.as_str());
                let old_cell = std::mem::replace(&mut cur.cell, cell);
                self.unindex(old_cell, &key);
                if let Some(c) = cell {
                    self.cells.entry(c).or_default().insert(key);
                }
            }
            return Upsert::Replaced(old);
        }
        let key: Arc<str> = Arc::from(pos.vehicle_id.as_str());
        if let Some(c) = cell {
            self.cells.entry(c).or_default().insert(key.clone());
        }
        self.vehicles.insert(key, Stored { pos, cell, seen_ms });
        Upsert::Inserted
    }

    fn unindex(&mut self, cell: Option<CellIndex>, key: &Arc<str>) {
        if let Some(c) = cell
            && let Some(set) = self.cells.get_mut(&c)
        {
            set.remove(key);
            if set.is_empty() {
                self.cells.remove(&c);
            }
        }
    }

    /// The vehicle's latest position.
    pub fn get(&self, id: &str) -> Option<&Arc<VehiclePosition>> {
        self.vehicles.get(id).map(|s| &s.pos)
    }

    /// Removes and returns every vehicle last seen before `cutoff_ms`.
    pub fn evict_seen_before(&mut self, cutoff_ms: i64) -> Vec<Arc<VehiclePosition>> {
        let stale: Vec<Arc<str>> = self
            .vehicles
            .iter()
            .filter(|(_, s)| s.seen_ms < cutoff_ms)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::with_capacity(stale.len());
        for key in stale {
            if let Some(s) = self.vehicles.remove(&key) {
                self.unindex(s.cell, &key);
                out.push(s.pos);
            }
        }
        out
    }

    /// Every vehicle, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<VehiclePosition>> {
        self.vehicles.values().map(|s| &s.pos)
    }

    /// Vehicles inside the bbox, through the cell index when the bbox is small enough.
    pub fn in_bbox(&self, bbox: &Bbox) -> Vec<&Arc<VehiclePosition>> {
        let cover = bbox.cover_limited(STORE_RES, MAX_QUERY_CELLS);
        let mut out = Vec::new();
        match cover {
            Some(cells) if cells.len() < self.cells.len() => {
                for c in cells {
                    if let Some(set) = self.cells.get(&c) {
                        for k in set {
                            if let Some(s) = self.vehicles.get(k) {
                                let (lat, lon) = display_point(&s.pos);
                                if bbox.contains(lat, lon) {
                                    out.push(&s.pos);
                                }
                            }
                        }
                    }
                }
            }
            _ => {
                for s in self.vehicles.values() {
                    let (lat, lon) = display_point(&s.pos);
                    if bbox.contains(lat, lon) {
                        out.push(&s.pos);
                    }
                }
            }
        }
        out
    }

    /// Vehicles matching a filter, sorted by id (stable output for clients and tests).
    pub fn matching(&self, filter: &Filter) -> Vec<Arc<VehiclePosition>> {
        let mut v: Vec<Arc<VehiclePosition>> = self
            .in_bbox(&filter.bbox)
            .into_iter()
            .filter(|p| filter.route_ok(p))
            .cloned()
            .collect();
        v.sort_by(|a, b| a.vehicle_id.cmp(&b.vehicle_id));
        v
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use busflow_core::{SCHEMA_VERSION, VehicleStatus};

    pub(crate) fn vp(
        id: &str,
        ts: i64,
        lat: f64,
        lon: f64,
        route: Option<&str>,
    ) -> VehiclePosition {
        VehiclePosition {
            v: SCHEMA_VERSION,
            vehicle_id: id.into(),
            ts,
            lat,
            lon,
            snapped_lat: None,
            snapped_lon: None,
            route_id: route.map(String::from),
            route_short_name: None,
            route_color: None,
            trip_id: None,
            shape_id: None,
            direction_id: None,
            headsign: None,
            dist_along_m: None,
            off_route_m: None,
            speed_mps: None,
            bearing_deg: None,
            next_stop_id: None,
            next_stop_dist_m: None,
            h3_cell: String::new(),
            status: VehicleStatus::InTransit,
            seq: None,
            processed_ts: ts,
            partition: 0,
            offset: 0,
        }
    }

    #[test]
    fn keeps_newest_and_moves_cells() {
        let mut s = VehicleStore::new();
        assert_eq!(s.upsert(Arc::new(vp("a", 10, -16.92, 145.77, None)), 10), Upsert::Inserted);
        assert_eq!(s.upsert(Arc::new(vp("a", 5, -16.0, 145.0, None)), 11), Upsert::Ignored);
        assert!(matches!(
            s.upsert(Arc::new(vp("a", 20, -17.2, 145.9, None)), 12),
            Upsert::Replaced(_)
        ));
        let near = Bbox::new(145.76, -16.93, 145.78, -16.91).unwrap();
        let far = Bbox::new(145.85, -17.3, 145.95, -17.1).unwrap();
        assert!(s.in_bbox(&near).is_empty());
        assert_eq!(s.in_bbox(&far).len(), 1);
        assert_eq!(s.cells.len(), 1);
    }

    #[test]
    fn evicts_silent_vehicles() {
        let mut s = VehicleStore::new();
        s.upsert(Arc::new(vp("a", 1, -16.92, 145.77, None)), 1000);
        s.upsert(Arc::new(vp("b", 1, -16.92, 145.77, None)), 5000);
        let gone = s.evict_seen_before(2000);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].vehicle_id, "a");
        assert_eq!(s.len(), 1);
        assert_eq!(s.cells.values().map(HashSet::len).sum::<usize>(), 1);
    }

    #[test]
    fn bbox_query_matches_scan() {
        let mut s = VehicleStore::new();
        for i in 0..500 {
            let lat = -17.2 + (i % 25) as f64 * 0.02;
            let lon = 145.5 + (i / 25) as f64 * 0.025;
            s.upsert(Arc::new(vp(&format!("v{i}"), 1, lat, lon, None)), 1);
        }
        let b = Bbox::new(145.6, -17.0, 145.75, -16.85).unwrap();
        let mut via_index: Vec<String> =
            s.in_bbox(&b).iter().map(|p| p.vehicle_id.clone()).collect();
        let mut scan: Vec<String> =
            s.iter().filter(|p| b.contains(p.lat, p.lon)).map(|p| p.vehicle_id.clone()).collect();
        via_index.sort();
        scan.sort();
        assert!(!scan.is_empty());
        assert_eq!(via_index, scan);
    }
}
