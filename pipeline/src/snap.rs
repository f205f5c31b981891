//! Map matching: which shape a vehicle is on and how far along it.
//!
//! Each vehicle keeps a few candidate tracks (shape + distance along it + a smoothed misfit
//! score). A candidate seen before is followed forward from its last distance, inside a window
//! as long as the vehicle could have driven since, so on a loop or an out-and-back shape the
//! fix lands on the leg the bus is actually on. A new candidate gets a fresh match over the whole
//! shape that, where legs overlap, prefers the leg whose direction agrees with the heading.

use busflow_core::geometry::bearing_deg;
use busflow_core::network::ShapeIdx;
use busflow_core::{Network, Projection};

/// Candidate tracks kept per vehicle.
pub(crate) const MAX_TRACKS: usize = 4;
/// Weight of the newest misfit in a track's smoothed score.
const SCORE_ALPHA: f32 = 0.35;
/// Extra misfit for a leg heading the opposite way, metres.
const HEADING_PENALTY_M: f64 = 40.0;

/// One candidate: a shape and where on it the vehicle was last seen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Track {
    pub shape: ShapeIdx,
    pub dist_m: f64,
    pub score: f32,
}

/// The outcome of matching one fix against one shape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Matched {
    pub track: Track,
    pub projection: Projection,
}

/// Parameters of one match.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fix {
    pub lat: f64,
    pub lon: f64,
    /// Heading to prefer on overlapping legs, degrees.
    pub heading: Option<f64>,
    /// How far along the shape the vehicle may have moved since the track's last fix, metres.
    pub reach_m: f64,
    /// How far it may appear to go backwards (GPS noise), metres.
    pub back_m: f64,
    pub max_off_m: f64,
}

fn angle_diff(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(360.0);
    if d > 180.0 { 360.0 - d } else { d }
}

/// Best position on the whole shape, preferring legs that agree with the heading and, among
/// equally good ones, the earliest.
pub(crate) fn fresh(net: &Network, shape: ShapeIdx, fix: &Fix) -> (Projection, f64) {
    let line = &net.shape(shape).line;
    let mut best: Option<(Projection, f64)> = None;
    for seg in 0..line.len().saturating_sub(1) {
        let p = line.project_segment(fix.lat, fix.lon, seg);
        if p.off_m > fix.max_off_m && best.is_some() {
            continue;
        }
        let mut cost = p.off_m;
        if let Some(h) = fix.heading {
            let (alat, alon) = line.point(seg);
            let (blat, blon) = line.point(seg + 1);
            let seg_bearing = bearing_deg(alat, alon, blat, blon);
            cost += HEADING_PENALTY_M * angle_diff(h, seg_bearing) / 180.0;
        }
        // Strictly better by a metre, so near-ties keep the earlier leg.
        if best.as_ref().is_none_or(|(_, c)| cost < c - 1.0) {
            best = Some((p, cost));
        }
    }
    best.unwrap_or_else(|| (line.project(fix.lat, fix.lon), f64::INFINITY))
}

/// Matches a fix on `shape`, following `prev` when the vehicle was already tracked on it.
pub(crate) fn follow(net: &Network, shape: ShapeIdx, prev: Option<&Track>, fix: &Fix) -> Matched {
    let line = &net.shape(shape).line;
    let Some(prev) = prev else {
        let (p, cost) = fresh(net, shape, fix);
        let score = if cost.is_finite() { cost as f32 } else { p.off_m as f32 };
        return Matched { track: Track { shape, dist_m: p.dist_along_m, score }, projection: p };
    };
    let from = prev.dist_m - fix.back_m;
    let to = prev.dist_m + fix.reach_m;
    let mut p = line.project_window(fix.lat, fix.lon, from, to);
    if p.off_m > fix.max_off_m {
        // Lost the thread (a new trip on the same shape, or we had the wrong leg): a fresh
        // match wins only when it is clearly better.
        let (g, cost) = fresh(net, shape, fix);
        if g.off_m <= fix.max_off_m && g.off_m + fix.back_m < p.off_m {
            // The heading penalty stays in the score, so a reversed leg does not win by
            // re-seeding itself.
            let score = (1.0 - SCORE_ALPHA) * prev.score + SCORE_ALPHA * cost as f32;
            return Matched {
                track: Track { shape, dist_m: g.dist_along_m, score },
                projection: g,
            };
        }
    }
    // Progress never goes backwards: noise around a stationary bus must not move it back.
    let dist = if p.off_m <= fix.max_off_m { p.dist_along_m.max(prev.dist_m) } else { prev.dist_m };
    if dist > p.dist_along_m {
        let (lat, lon, _) = line.point_at(dist);
        p.lat = lat;
        p.lon = lon;
        p.dist_along_m = dist;
    }
    let score = (1.0 - SCORE_ALPHA) * prev.score + SCORE_ALPHA * p.off_m as f32;
    Matched { track: Track { shape, dist_m: dist, score }, projection: p }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn angle_difference_wraps() {
        assert_eq!(angle_diff(350.0, 10.0), 20.0);
        assert_eq!(angle_diff(10.0, 350.0), 20.0);
        assert_eq!(angle_diff(90.0, 270.0), 180.0);
    }
}
