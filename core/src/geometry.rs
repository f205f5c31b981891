//! Geometry on WGS84 coordinates at city scale.
//!
//! Lengths along shapes are great-circle (haversine) distances from `geo`. Projection of a point
//! onto a segment uses an equirectangular frame centred on the query point: over the few hundred
//! metres of a snapping window its error is far below GPS noise, and it costs a multiply instead
//! of a trigonometric call per segment, which matters on the per-event hot path.

use geo::{Bearing, Destination, Distance, Haversine, LineString, Point};

/// Mean Earth radius used by `geo`'s haversine, metres.
const EARTH_RADIUS_M: f64 = 6_371_008.8;
const M_PER_DEG_LAT: f64 = EARTH_RADIUS_M * std::f64::consts::PI / 180.0;

/// Great-circle distance between two points, metres.
pub fn haversine_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    Haversine.distance(Point::new(lon1, lat1), Point::new(lon2, lat2))
}

/// Initial bearing from the first point to the second, degrees clockwise from north in [0, 360).
pub fn bearing_deg(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let b = Haversine.bearing(Point::new(lon1, lat1), Point::new(lon2, lat2));
    b.rem_euclid(360.0)
}

/// The point reached by travelling `dist_m` metres from a start point on a bearing.
pub fn destination(lat: f64, lon: f64, bearing_deg: f64, dist_m: f64) -> (f64, f64) {
    let p = Haversine.destination(Point::new(lon, lat), bearing_deg, dist_m);
    (p.y(), p.x())
}

/// An equirectangular frame around a reference latitude: degrees to local metres.
#[derive(Debug, Clone, Copy)]
pub struct LocalFrame {
    lat0: f64,
    lon0: f64,
    m_per_deg_lon: f64,
}

impl LocalFrame {
    /// A frame centred on the given point.
    pub fn new(lat0: f64, lon0: f64) -> Self {
        LocalFrame { lat0, lon0, m_per_deg_lon: M_PER_DEG_LAT * lat0.to_radians().cos() }
    }

    /// Local (east, north) metres of a point.
    #[inline]
    pub fn to_xy(&self, lat: f64, lon: f64) -> (f64, f64) {
        ((lon - self.lon0) * self.m_per_deg_lon, (lat - self.lat0) * M_PER_DEG_LAT)
    }

    /// Degrees of latitude and longitude spanned by `m` metres around the frame centre.
    pub fn degrees_for(&self, m: f64) -> (f64, f64) {
        (m / M_PER_DEG_LAT, m / self.m_per_deg_lon.max(1e-9))
    }
}

/// Where a point lands on a shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Projection {
    /// Distance along the shape from its first point, metres.
    pub dist_along_m: f64,
    /// Distance from the point to the shape, metres.
    pub off_m: f64,
    /// Latitude of the projected point.
    pub lat: f64,
    /// Longitude of the projected point.
    pub lon: f64,
    /// Index of the segment (from point `segment` to `segment + 1`).
    pub segment: usize,
}

/// A polyline with cumulative distances, the geometry behind a GTFS shape.
#[derive(Debug, Clone)]
pub struct Polyline {
    lat: Vec<f64>,
    lon: Vec<f64>,
    cum_m: Vec<f64>,
}

impl Polyline {
    /// Builds a polyline from `(lat, lon)` points, dropping consecutive duplicates.
    /// Returns `None` when fewer than two distinct points remain.
    pub fn new(points: impl IntoIterator<Item = (f64, f64)>) -> Option<Self> {
        let mut lat = Vec::new();
        let mut lon = Vec::new();
        let mut cum_m = Vec::new();
        for (la, lo) in points {
            match (lat.last(), lon.last(), cum_m.last()) {
                (Some(&pla), Some(&plo), Some(&pc)) => {
                    let d = haversine_m(pla, plo, la, lo);
                    if d <= 0.0 {
                        continue;
                    }
                    cum_m.push(pc + d);
                }
                _ => cum_m.push(0.0),
            }
            lat.push(la);
            lon.push(lo);
        }
        (lat.len() >= 2).then_some(Polyline { lat, lon, cum_m })
    }

    /// Total length, metres.
    pub fn length_m(&self) -> f64 {
        self.cum_m.last().copied().unwrap_or(0.0)
    }

    /// Number of vertices.
    pub fn len(&self) -> usize {
        self.lat.len()
    }

    /// Always false: a polyline has at least two points.
    pub fn is_empty(&self) -> bool {
        self.lat.is_empty()
    }

    /// Vertex `i` as `(lat, lon)`.
    pub fn point(&self, i: usize) -> (f64, f64) {
        (self.lat[i], self.lon[i])
    }

    /// Cumulative distance at vertex `i`, metres.
    pub fn cum_m(&self, i: usize) -> f64 {
        self.cum_m[i]
    }

    /// The vertices as a `geo` LineString (x = longitude, y = latitude).
    pub fn to_line_string(&self) -> LineString<f64> {
        self.lon.iter().zip(&self.lat).map(|(&x, &y)| (x, y)).collect()
    }

    /// The point at `dist_m` along the line (clamped to its ends) and the bearing of the segment
    /// it lies on.
    pub fn point_at(&self, dist_m: f64) -> (f64, f64, f64) {
        let d = dist_m.clamp(0.0, self.length_m());
        // First vertex strictly beyond d, so the segment is [i-1, i].
        let i = self.cum_m.partition_point(|&c| c <= d).clamp(1, self.len() - 1);
        let (a, b) = (i - 1, i);
        let seg = self.cum_m[b] - self.cum_m[a];
        let t = if seg > 0.0 { (d - self.cum_m[a]) / seg } else { 0.0 };
        let lat = self.lat[a] + t * (self.lat[b] - self.lat[a]);
        let lon = self.lon[a] + t * (self.lon[b] - self.lon[a]);
        (lat, lon, bearing_deg(self.lat[a], self.lon[a], self.lat[b], self.lon[b]))
    }

    /// Bearing of the segment containing `dist_m`.
    pub fn bearing_at(&self, dist_m: f64) -> f64 {
        self.point_at(dist_m).2
    }

    /// Projects a point onto the part of the line between `from_m` and `to_m` metres along it,
    /// returning the closest position in that window.
    pub fn project_window(&self, lat: f64, lon: f64, from_m: f64, to_m: f64) -> Projection {
        let from = from_m.clamp(0.0, self.length_m());
        let to = to_m.clamp(from, self.length_m());
        let segments = self.segments_between(from, to);
        self.project_segments(&LocalFrame::new(lat, lon), segments.start, segments.end, from, to)
    }

    /// Indices of the segments (segment `i` runs from vertex `i` to `i + 1`) that hold some part
    /// of the line between `from_m` and `to_m` metres along it; never empty.
    pub fn segments_between(&self, from_m: f64, to_m: f64) -> std::ops::Range<usize> {
        let first = self.cum_m.partition_point(|&c| c <= from_m).clamp(1, self.len() - 1) - 1;
        let last = self.cum_m.partition_point(|&c| c < to_m).clamp(1, self.len() - 1);
        // A window of no length on a vertex still names the segment that starts there.
        first..last.max(first + 1)
    }

    /// Projects a point onto the whole line.
    pub fn project(&self, lat: f64, lon: f64) -> Projection {
        self.project_segments(&LocalFrame::new(lat, lon), 0, self.len() - 1, 0.0, self.length_m())
    }

    /// Projects onto segment `i` only (used by spatial-index candidates).
    pub fn project_segment(&self, lat: f64, lon: f64, i: usize) -> Projection {
        self.project_segment_in(&LocalFrame::new(lat, lon), i)
    }

    /// [`Polyline::project_segment`] of the point `frame` is centred on: a spatial query
    /// projects one point onto many segments, and the frame's cosine was most of their cost.
    pub fn project_segment_in(&self, frame: &LocalFrame, i: usize) -> Projection {
        let i = i.min(self.len() - 2);
        self.project_segments(frame, i, i + 1, 0.0, self.length_m())
    }

    /// Closest point to the centre of `frame` over segments `first..last` (vertex indices),
    /// clamped to `[from, to]` metres.
    fn project_segments(
        &self,
        frame: &LocalFrame,
        first: usize,
        last: usize,
        from: f64,
        to: f64,
    ) -> Projection {
        let mut best = Projection {
            dist_along_m: from,
            off_m: f64::INFINITY,
            lat: self.lat[first],
            lon: self.lon[first],
            segment: first,
        };
        for s in first..last {
            let (ax, ay) = frame.to_xy(self.lat[s], self.lon[s]);
            let (bx, by) = frame.to_xy(self.lat[s + 1], self.lon[s + 1]);
            let (dx, dy) = (bx - ax, by - ay);
            let len2 = dx * dx + dy * dy;
            let mut t = if len2 > 0.0 { (-ax * dx - ay * dy) / len2 } else { 0.0 };
            // Keep the result inside the window: convert the window bounds to this segment's t.
            let seg_m = self.cum_m[s + 1] - self.cum_m[s];
            if seg_m > 0.0 {
                let t_min = ((from - self.cum_m[s]) / seg_m).max(0.0);
                let t_max = ((to - self.cum_m[s]) / seg_m).min(1.0);
                if t_min > t_max {
                    continue;
                }
                t = t.clamp(t_min, t_max);
            } else {
                t = 0.0;
            }
            let (px, py) = (ax + t * dx, ay + t * dy);
            let off = (px * px + py * py).sqrt();
            if off < best.off_m {
                best = Projection {
                    dist_along_m: self.cum_m[s] + t * seg_m,
                    off_m: off,
                    lat: self.lat[s] + t * (self.lat[s + 1] - self.lat[s]),
                    lon: self.lon[s] + t * (self.lon[s + 1] - self.lon[s]),
                    segment: s,
                };
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> Polyline {
        // About 1.1 km due east, then 1.1 km due north, near Cairns.
        Polyline::new([(-16.92, 145.77), (-16.92, 145.7804), (-16.91, 145.7804)]).unwrap()
    }

    #[test]
    fn rejects_degenerate_lines() {
        assert!(Polyline::new([(1.0, 1.0), (1.0, 1.0)]).is_none());
        assert!(Polyline::new([]).is_none());
    }

    #[test]
    fn projecting_in_a_shared_frame_matches_projecting_alone() {
        let l = line();
        let (lat, lon) = (-16.9195, 145.7801);
        let frame = LocalFrame::new(lat, lon);
        for i in 0..l.len() - 1 {
            assert_eq!(l.project_segment_in(&frame, i), l.project_segment(lat, lon, i));
        }
        // The closer of the two segments is the one `project` picks.
        let whole = l.project(lat, lon);
        let best = (0..l.len() - 1)
            .map(|i| l.project_segment_in(&frame, i))
            .min_by(|a, b| a.off_m.total_cmp(&b.off_m))
            .unwrap();
        assert_eq!(whole, best);
    }

    #[test]
    fn point_at_walks_the_line() {
        let l = line();
        let (lat, lon, b) = l.point_at(0.0);
        assert_eq!((lat, lon), (-16.92, 145.77));
        assert!((b - 90.0).abs() < 0.1, "{b}");
        let (lat, _, b) = l.point_at(l.length_m());
        assert!((lat + 16.91).abs() < 1e-9);
        assert!(b.abs() < 0.1 || (b - 360.0).abs() < 0.1, "{b}");
        let mid = l.point_at(l.cum_m(1) + 500.0);
        assert!((haversine_m(mid.0, mid.1, -16.92, 145.7804) - 500.0).abs() < 1.0);
    }

    #[test]
    fn projection_finds_offset_and_distance() {
        let l = line();
        // 50 m north of the first segment, 300 m along it.
        let (plat, plon, _) = l.point_at(300.0);
        let (qlat, qlon) = destination(plat, plon, 0.0, 50.0);
        let p = l.project(qlat, qlon);
        assert!((p.dist_along_m - 300.0).abs() < 0.5, "{p:?}");
        assert!((p.off_m - 50.0).abs() < 0.5, "{p:?}");
        assert_eq!(p.segment, 0);
    }

    #[test]
    fn window_restricts_the_search() {
        let l = line();
        let (qlat, qlon, _) = l.point_at(200.0);
        let p = l.project_window(qlat, qlon, 600.0, 900.0);
        assert!((p.dist_along_m - 600.0).abs() < 1e-6, "{p:?}");
        assert!((p.off_m - 400.0).abs() < 1.0, "{p:?}");
    }

    #[test]
    fn segments_between_covers_the_window() {
        let l = line();
        let corner = l.cum_m(1);
        assert_eq!(l.segments_between(0.0, 10.0), 0..1);
        assert_eq!(l.segments_between(10.0, corner + 10.0), 0..2);
        assert_eq!(l.segments_between(corner + 10.0, l.length_m()), 1..2);
        // A window of no length exactly on the corner: the segment that starts there.
        assert_eq!(l.segments_between(corner, corner), 1..2);
        let p = l.project_window(-16.0, 145.7804, corner, corner);
        assert!((p.dist_along_m - corner).abs() < 1e-6 && p.off_m.is_finite(), "{p:?}");
    }

    #[test]
    fn local_frame_matches_haversine_at_city_scale() {
        let f = LocalFrame::new(-16.92, 145.77);
        let (x, y) = f.to_xy(-16.915, 145.775);
        let planar = (x * x + y * y).sqrt();
        let h = haversine_m(-16.92, 145.77, -16.915, 145.775);
        assert!((planar - h).abs() / h < 1e-3, "{planar} vs {h}");
    }
}
