//! Viewports (bounding boxes), the filter a subscription applies, and the H3 cells that cover a
//! viewport.

use std::collections::HashSet;

use busflow_core::VehiclePosition;
use h3o::{CellIndex, LatLng, Resolution};

/// Coarsest resolution used to index subscriptions (edge about 60 km).
pub const MIN_INDEX_RES: u8 = 3;
/// Finest resolution used to index subscriptions (edge about 170 m).
pub const MAX_INDEX_RES: u8 = 9;
/// A viewport is indexed at the finest resolution that covers it with at most this many cells
/// (before the one-cell safety ring), so subscribing stays cheap and lookups stay exact enough.
const TARGET_COVER_CELLS: f64 = 24.0;

/// `[west, south, east, north]` in WGS84 degrees, with `west < east` and `south < north`
/// (viewports across the antimeridian are not supported).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bbox {
    /// Western longitude.
    pub west: f64,
    /// Southern latitude.
    pub south: f64,
    /// Eastern longitude.
    pub east: f64,
    /// Northern latitude.
    pub north: f64,
}

/// Why a bbox parameter was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BboxError {
    /// Not four comma-separated numbers.
    #[error("bbox must be four comma-separated numbers west,south,east,north; got {0:?}")]
    Malformed(String),
    /// A coordinate outside WGS84 ranges or not finite.
    #[error("bbox {0}: longitudes must be within -180..180 and latitudes within -90..90")]
    OutOfRange(String),
    /// West is east of east.
    #[error(
        "bbox west ({west}) is greater than east ({east}); order is west,south,east,north and \
         viewports crossing the antimeridian are not supported"
    )]
    WestOfEast {
        /// Given west.
        west: f64,
        /// Given east.
        east: f64,
    },
    /// South is north of north.
    #[error("bbox south ({south}) is greater than north ({north}); order is west,south,east,north")]
    Inverted {
        /// Given south.
        south: f64,
        /// Given north.
        north: f64,
    },
    /// Zero width or height.
    #[error("bbox has zero width or height")]
    Empty,
    /// Larger than the exact-stream limit.
    #[error("bbox spans {lon_span:.3}° x {lat_span:.3}°; the limit is {max}° on each side")]
    TooLarge {
        /// Longitude span.
        lon_span: f64,
        /// Latitude span.
        lat_span: f64,
        /// Allowed span.
        max: f64,
    },
}

impl Bbox {
    /// Parses and validates `west,south,east,north`.
    pub fn parse(s: &str) -> Result<Bbox, BboxError> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        if parts.len() != 4 {
            return Err(BboxError::Malformed(s.to_string()));
        }
        let mut v = [0.0f64; 4];
        for (slot, p) in v.iter_mut().zip(&parts) {
            *slot = p.parse::<f64>().map_err(|_| BboxError::Malformed(s.to_string()))?;
        }
        Bbox::new(v[0], v[1], v[2], v[3])
    }

    /// Validates a bbox.
    pub fn new(west: f64, south: f64, east: f64, north: f64) -> Result<Bbox, BboxError> {
        let text = format!("{west},{south},{east},{north}");
        if ![west, south, east, north].iter().all(|x| x.is_finite())
            || !(-180.0..=180.0).contains(&west)
            || !(-180.0..=180.0).contains(&east)
            || !(-90.0..=90.0).contains(&south)
            || !(-90.0..=90.0).contains(&north)
        {
            return Err(BboxError::OutOfRange(text));
        }
        if west > east {
            return Err(BboxError::WestOfEast { west, east });
        }
        if south > north {
            return Err(BboxError::Inverted { south, north });
        }
        if west == east || south == north {
            return Err(BboxError::Empty);
        }
        Ok(Bbox { west, south, east, north })
    }

    /// Refuses a bbox larger than `max_span_deg` on either side.
    pub fn check_span(self, max_span_deg: f64) -> Result<Bbox, BboxError> {
        let (lon_span, lat_span) = (self.east - self.west, self.north - self.south);
        if lon_span > max_span_deg || lat_span > max_span_deg {
            return Err(BboxError::TooLarge { lon_span, lat_span, max: max_span_deg });
        }
        Ok(self)
    }

    /// Whether the point is inside (edges included).
    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        lon >= self.west && lon <= self.east && lat >= self.south && lat <= self.north
    }

    /// `[west, south, east, north]`.
    pub fn to_array(self) -> [f64; 4] {
        [self.west, self.south, self.east, self.north]
    }

    /// Approximate width and height in metres (at the middle latitude).
    pub fn size_m(&self) -> (f64, f64) {
        let mid = ((self.south + self.north) / 2.0).to_radians();
        let m_per_deg = 111_320.0;
        let w = (self.east - self.west) * m_per_deg * mid.cos().max(0.01);
        let h = (self.north - self.south) * m_per_deg;
        (w, h)
    }

    /// The finest resolution in `min..=max` whose cells cover this bbox with about `target`
    /// cells or fewer.
    pub fn resolution_for(&self, target: f64, min: u8, max: u8) -> Resolution {
        let (w, h) = self.size_m();
        let area = (w * h).max(1.0);
        let mut best = res(min);
        for r in min..=max {
            let candidate = res(r);
            if area / candidate.area_m2() <= target {
                best = candidate;
            } else {
                break;
            }
        }
        best
    }

    /// Index resolution for a subscription with this viewport.
    pub fn index_resolution(&self) -> Resolution {
        self.resolution_for(TARGET_COVER_CELLS, MIN_INDEX_RES, MAX_INDEX_RES)
    }

    /// [`Bbox::cover`], or `None` when it would need more than about `limit` cells.
    pub fn cover_limited(&self, r: Resolution, limit: usize) -> Option<Vec<CellIndex>> {
        let (w, h) = self.size_m();
        if (w * h) / r.area_m2() > limit as f64 {
            return None;
        }
        Some(self.cover(r))
    }

    /// Every cell at `r` that intersects this bbox (a superset: callers check exact bounds).
    ///
    /// Samples a grid finer than the cell size, edges included, then adds each sampled cell's
    /// neighbours, so cells that only clip a corner of the bbox are covered too.
    pub fn cover(&self, r: Resolution) -> Vec<CellIndex> {
        let (w, h) = self.size_m();
        let step = r.edge_length_m() * 0.5;
        let nx = ((w / step).ceil() as usize).clamp(1, 4096);
        let ny = ((h / step).ceil() as usize).clamp(1, 4096);
        let mut sampled = HashSet::new();
        for i in 0..=nx {
            let lon = self.west + (self.east - self.west) * i as f64 / nx as f64;
            for j in 0..=ny {
                let lat = self.south + (self.north - self.south) * j as f64 / ny as f64;
                if let Some(c) = cell_at(lat, lon, r) {
                    sampled.insert(c);
                }
            }
        }
        let mut all: HashSet<CellIndex> = HashSet::with_capacity(sampled.len() * 3);
        for c in &sampled {
            all.extend(c.grid_disk_safe(1));
        }
        let mut v: Vec<CellIndex> = all.into_iter().collect();
        v.sort_unstable();
        v
    }
}

pub(crate) fn res(r: u8) -> Resolution {
    Resolution::try_from(r.min(15)).unwrap_or(Resolution::Fifteen)
}

/// The cell containing a point, when the coordinates are valid.
pub fn cell_at(lat: f64, lon: f64, r: Resolution) -> Option<CellIndex> {
    LatLng::new(lat, lon).ok().map(|ll| ll.to_cell(r))
}

/// Where a vehicle is drawn: the snapped point when there is one, else the reported one.
pub fn display_point(p: &VehiclePosition) -> (f64, f64) {
    match (p.snapped_lat, p.snapped_lon) {
        (Some(lat), Some(lon)) => (lat, lon),
        _ => (p.lat, p.lon),
    }
}

/// What a subscription wants: a viewport and optionally a set of routes.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// Viewport.
    pub bbox: Bbox,
    /// Route ids; `None` means every route.
    pub routes: Option<HashSet<String>>,
}

impl Filter {
    /// A filter for the whole viewport and every route.
    pub fn bbox(bbox: Bbox) -> Filter {
        Filter { bbox, routes: None }
    }

    /// Whether the vehicle is inside the viewport.
    pub fn in_view(&self, p: &VehiclePosition) -> bool {
        let (lat, lon) = display_point(p);
        self.bbox.contains(lat, lon)
    }

    /// Whether the vehicle's route is wanted.
    pub fn route_ok(&self, p: &VehiclePosition) -> bool {
        match (&self.routes, &p.route_id) {
            (None, _) => true,
            (Some(set), Some(r)) => set.contains(r),
            (Some(_), None) => false,
        }
    }

    /// Whether the vehicle matches both.
    pub fn matches(&self, p: &VehiclePosition) -> bool {
        self.in_view(p) && self.route_ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn parse_validates() {
        assert!(Bbox::parse("145.7,-17.0,145.8,-16.9").is_ok());
        assert!(matches!(Bbox::parse("1,2,3"), Err(BboxError::Malformed(_))));
        assert!(matches!(Bbox::parse("a,2,3,4"), Err(BboxError::Malformed(_))));
        assert!(matches!(Bbox::parse("145.8,-17,145.7,-16.9"), Err(BboxError::WestOfEast { .. })));
        assert!(matches!(Bbox::parse("145.7,-16.9,145.8,-17"), Err(BboxError::Inverted { .. })));
        assert!(matches!(Bbox::parse("190,0,191,1"), Err(BboxError::OutOfRange(_))));
        assert!(matches!(Bbox::parse("NaN,0,1,1"), Err(BboxError::OutOfRange(_))));
        assert!(matches!(Bbox::parse("1,1,1,2"), Err(BboxError::Empty)));
        let big = Bbox::parse("140,-20,146,-10").unwrap();
        assert!(matches!(big.check_span(4.0), Err(BboxError::TooLarge { .. })));
    }

    #[test]
    fn resolution_shrinks_with_viewport() {
        let small = Bbox::new(145.77, -16.93, 145.78, -16.92).unwrap();
        let city = Bbox::new(145.6, -17.1, 145.9, -16.7).unwrap();
        assert!(small.index_resolution() > city.index_resolution());
        assert!(small.cover(small.index_resolution()).len() < 200);
        assert!(city.cover(city.index_resolution()).len() < 200);
    }

    #[test]
    fn cover_contains_every_point_inside() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..40 {
            let w = rng.random_range(145.0..146.0);
            let s = rng.random_range(-17.5..-16.5);
            let b =
                Bbox::new(w, s, w + rng.random_range(0.001..0.5), s + rng.random_range(0.001..0.5))
                    .unwrap();
            let r = b.index_resolution();
            let cover: HashSet<CellIndex> = b.cover(r).into_iter().collect();
            for _ in 0..500 {
                let lat = rng.random_range(b.south..=b.north);
                let lon = rng.random_range(b.west..=b.east);
                let c = cell_at(lat, lon, r).unwrap();
                assert!(cover.contains(&c), "{b:?} res {r} misses ({lat},{lon})");
            }
            for (lat, lon) in
                [(b.south, b.west), (b.north, b.east), (b.south, b.east), (b.north, b.west)]
            {
                assert!(cover.contains(&cell_at(lat, lon, r).unwrap()));
            }
        }
    }
}
