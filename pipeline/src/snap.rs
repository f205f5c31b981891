//! Map matching: which shape a vehicle is on and how far along it.
//!
//! Each vehicle keeps a few candidate tracks (shape + distance along it + a smoothed misfit
//! score). A candidate seen before is followed forward from its last distance, inside a window
//! as long as the vehicle could have driven since, so on a loop or an out-and-back shape the
//! fix lands on the leg the bus is actually on. A new candidate gets a fresh match over the whole
//! shape that, where legs overlap, prefers the leg whose direction agrees with the heading.

use busflow_core::geometry::LocalFrame;
use busflow_core::network::ShapeIdx;
use busflow_core::{Network, Projection};

/// Candidate tracks kept per vehicle.
pub(crate) const MAX_TRACKS: usize = 6;
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

pub(crate) fn heading_penalty(line: &busflow_core::Polyline, seg: usize, fix: &Fix) -> f64 {
    let Some(h) = fix.heading else { return 0.0 };
    let seg = seg.min(line.len().saturating_sub(2));
    let frame = LocalFrame::new(fix.lat, fix.lon);
    let (alat, alon) = line.point(seg);
    let (blat, blon) = line.point(seg + 1);
    let (ax, ay) = frame.to_xy(alat, alon);
    let (bx, by) = frame.to_xy(blat, blon);
    let b = (bx - ax).atan2(by - ay).to_degrees().rem_euclid(360.0);
    HEADING_PENALTY_M * angle_diff(h, b) / 180.0
}

/// Best position on the whole shape, preferring legs that agree with the heading and, among
/// equally good ones, the earliest.
///
/// One local frame for the whole scan and no trigonometry except for segments that could win:
/// this runs for every new candidate, so it must stay cheap on shapes with a thousand points.
pub(crate) fn fresh(net: &Network, shape: ShapeIdx, fix: &Fix) -> (Projection, f64) {
    let line = &net.shape(shape).line;
    let frame = LocalFrame::new(fix.lat, fix.lon);
    let mut best: Option<(Projection, f64)> = None;
    let (alat, alon) = line.point(0);
    let (mut ax, mut ay) = frame.to_xy(alat, alon);
    for seg in 0..line.len().saturating_sub(1) {
        let (blat, blon) = line.point(seg + 1);
        let (bx, by) = frame.to_xy(blat, blon);
        let (dx, dy) = (bx - ax, by - ay);
        let len2 = dx * dx + dy * dy;
        let t = if len2 > 0.0 { ((-ax * dx - ay * dy) / len2).clamp(0.0, 1.0) } else { 0.0 };
        let (px, py) = (ax + t * dx, ay + t * dy);
        let off = (px * px + py * py).sqrt();
        // Strictly better by a metre, so near-ties keep the earlier leg.
        let bound = best.as_ref().map_or(f64::INFINITY, |(_, c)| c - 1.0);
        // Far segments only count while nothing is within reach (then the nearest is reported).
        let in_reach = off <= fix.max_off_m;
        if off < bound && (in_reach || best.as_ref().is_none_or(|(b, _)| b.off_m > fix.max_off_m)) {
            let mut cost = off;
            if let Some(h) = fix.heading {
                let seg_bearing = dx.atan2(dy).to_degrees().rem_euclid(360.0);
                cost += HEADING_PENALTY_M * angle_diff(h, seg_bearing) / 180.0;
            }
            let fallback_better =
                best.as_ref().is_some_and(|(b, _)| b.off_m > fix.max_off_m && in_reach);
            if cost < bound || fallback_better {
                let (slat, slon) = line.point(seg);
                let seg_m = line.cum_m(seg + 1) - line.cum_m(seg);
                let p = Projection {
                    dist_along_m: line.cum_m(seg) + t * seg_m,
                    off_m: off,
                    lat: slat + t * (blat - slat),
                    lon: slon + t * (blon - slon),
                    segment: seg,
                };
                best = Some((p, cost));
            }
        }
        (ax, ay) = (bx, by);
    }
    best.unwrap_or_else(|| (line.project(fix.lat, fix.lon), f64::INFINITY))
}

/// Matches a fix on `shape`, following `prev` when the vehicle was already tracked on it.
/// A track that no longer fits asks `rescan` for a new position on its shape (`None`: the
/// shape is nowhere near).
/// `seed` is a projection already known for a new candidate (from the spatial index), used
/// instead of a fresh scan.
pub(crate) fn follow(
    net: &Network,
    shape: ShapeIdx,
    prev: Option<&Track>,
    seed: Option<Projection>,
    fix: &Fix,
    rescan: &mut dyn FnMut(ShapeIdx) -> Option<(Projection, f64)>,
) -> Matched {
    let line = &net.shape(shape).line;
    let Some(prev) = prev else {
        let (p, cost) = match seed {
            Some(p) => (p, p.off_m + heading_penalty(line, p.segment, fix)),
            None => fresh(net, shape, fix),
        };
        let score = if cost.is_finite() { cost as f32 } else { p.off_m as f32 };
        return Matched { track: Track { shape, dist_m: p.dist_along_m, score }, projection: p };
    };
    let from = prev.dist_m - fix.back_m;
    let to = prev.dist_m + fix.reach_m;
    let mut p = line.project_window(fix.lat, fix.lon, from, to);
    if p.off_m > fix.max_off_m {
        // Lost the thread (a new trip on the same shape, or we had the wrong leg): a fresh
        // match wins only when it is clearly better.
        if let Some((g, cost)) = rescan(shape)
            && g.off_m <= fix.max_off_m
            && g.off_m + fix.back_m < p.off_m
        {
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
