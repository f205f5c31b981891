//! Map matching: which shape a vehicle is on and how far along it.
//!
//! Each vehicle keeps a few candidate tracks (shape + distance along it + a smoothed misfit
//! score). A candidate seen before is followed forward from its last distance, inside a window
//! as long as the vehicle could have driven since. Near a turnaround that window also holds the
//! way back (the same road, the other direction), so the choice inside it weighs the heading and,
//! between legs that fit alike, takes the one nearest where the vehicle's speed puts it: the bus
//! is put on the leg it is on, not the one it will drive in a minute. When the track of the
//! shape last reported loses the vehicle it holds its distance (the window already spans all
//! the vehicle could have driven), so on one shape progress never goes back; only a new trip
//! (or a vehicle off route for a couple of minutes, see `Fix::restart`) starts over. A new candidate gets a fresh match over the whole shape that,
//! where legs overlap, prefers the leg whose direction agrees with the heading.

use busflow_core::geometry::LocalFrame;
use busflow_core::network::ShapeIdx;
use busflow_core::{Polyline, Projection};

/// Candidate tracks kept per vehicle.
pub(crate) const MAX_TRACKS: usize = 6;
/// Weight of the newest misfit in a track's smoothed score.
const SCORE_ALPHA: f32 = 0.35;
/// Extra misfit for a leg heading the opposite way, metres.
const HEADING_PENALTY_M: f64 = 40.0;
/// A lost track may be found ahead beyond its window by at most this many times the straight
/// distance the vehicle moved since its last fix: roads wind, but a fix that moved 60 m has not
/// driven the kilometre to where a loop shape comes back near its start.
const SKIP_PER_MOVED: f64 = 3.0;
/// Fits within this many metres are equally good; on a shared road (an out-and-back) both legs
/// fit alike and something else must choose.
const TIE_M: f64 = 1.0;

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
    /// How far it has likely moved along the shape since (its speed), metres.
    pub advance_m: f64,
    /// Straight-line distance from the vehicle's last fix, metres.
    pub moved_m: f64,
    /// How far it may appear to go backwards (GPS noise), metres.
    pub back_m: f64,
    pub max_off_m: f64,
    /// The vehicle has been off route so long that finding it behind its track is a new run of
    /// the shape (a curtailed trip started again), not noise.
    pub restart: bool,
}

fn angle_diff(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(360.0);
    if d > 180.0 { 360.0 - d } else { d }
}

/// Angle between two plane vectors, degrees in [0, 180], to within 0.02 degrees (0.005 m of
/// penalty): a polynomial arctangent, because `scan` may need it for most segments of a window
/// on every fix, where `f64::atan2` and the wrap-around would be its dearest step.
fn angle_between_deg((ax, ay): (f64, f64), (bx, by): (f64, f64)) -> f64 {
    let dot = ax * bx + ay * by;
    let cross = (ax * by - ay * bx).abs();
    let (lo, hi) = (cross.min(dot.abs()), cross.max(dot.abs()));
    if hi == 0.0 {
        return 0.0;
    }
    let a = lo / hi;
    let s = a * a;
    let mut r = ((-0.046_496_474_9 * s + 0.159_314_22) * s - 0.327_622_764) * s * a + a;
    if cross > dot.abs() {
        r = std::f64::consts::FRAC_PI_2 - r;
    }
    if dot < 0.0 {
        r = std::f64::consts::PI - r;
    }
    r.to_degrees()
}

pub(crate) fn heading_penalty(line: &Polyline, seg: usize, fix: &Fix) -> f64 {
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
pub(crate) fn fresh(line: &Polyline, fix: &Fix) -> (Projection, f64) {
    scan(line, fix, 0.0, f64::INFINITY, None)
}

/// Best position on the part of `line` between `from_m` and `to_m` metres along it, and its
/// cost: the distance to the line plus a penalty for a leg heading against the fix's heading.
/// Nothing within `max_off_m`: the nearest position.
///
/// Near-equal costs on different legs (more than `back_m` apart along the line) go to the one
/// nearest `expect_m`, where a followed track expects the vehicle to be by now, else to the
/// earliest. So when the heading is unknown, a bus approaching a turn stays on the way out and
/// one that has turned is not held at the turn by its mirror image on the way out. Within one
/// leg the closer fit wins, so nothing pulls the snapped point off the nearest one.
///
/// One local frame for the whole scan and no trigonometry except for segments that could win:
/// this runs for every fix and every new candidate, so it must stay cheap on shapes with a
/// thousand points.
pub(crate) fn scan(
    line: &Polyline,
    fix: &Fix,
    from_m: f64,
    to_m: f64,
    expect_m: Option<f64>,
) -> (Projection, f64) {
    let from = from_m.clamp(0.0, line.length_m());
    let to = to_m.clamp(from, line.length_m());
    let segments = line.segments_between(from, to);
    let frame = LocalFrame::new(fix.lat, fix.lon);
    let expect = expect_m.unwrap_or(f64::NEG_INFINITY);
    // Bearings are clockwise from north, so the heading's (east, north) vector is (sin, cos).
    let heading = fix.heading.map(|h| {
        let (s, c) = h.to_radians().sin_cos();
        (s, c)
    });
    let mut best: Option<(Projection, f64)> = None;
    let (alat, alon) = line.point(segments.start);
    let (mut ax, mut ay) = frame.to_xy(alat, alon);
    for seg in segments {
        let (blat, blon) = line.point(seg + 1);
        let (bx, by) = frame.to_xy(blat, blon);
        let (dx, dy) = (bx - ax, by - ay);
        let start_m = line.cum_m(seg);
        let seg_m = line.cum_m(seg + 1) - start_m;
        // The window in this segment's own parameter; the segment is dropped if outside it.
        let (t_min, t_max) = if seg_m > 0.0 {
            (((from - start_m) / seg_m).max(0.0), ((to - start_m) / seg_m).min(1.0))
        } else {
            (0.0, 0.0)
        };
        let len2 = dx * dx + dy * dy;
        if t_min <= t_max {
            let t = if len2 > 0.0 { (-ax * dx - ay * dy) / len2 } else { 0.0 };
            let t = t.clamp(t_min, t_max);
            let (px, py) = (ax + t * dx, ay + t * dy);
            let off = (px * px + py * py).sqrt();
            // Every penalty is non-negative, so `off` alone rules most segments out.
            let bound = best.as_ref().map_or(f64::INFINITY, |(_, c)| c + TIE_M);
            // Far segments only count while nothing is within reach (then the nearest is
            // reported).
            let in_reach = off <= fix.max_off_m;
            let best_far = best.as_ref().is_none_or(|(b, _)| b.off_m > fix.max_off_m);
            if off < bound && (in_reach || best_far) {
                let dist = start_m + t * seg_m;
                let mut cost = off;
                if let Some(h) = heading {
                    cost += HEADING_PENALTY_M * angle_between_deg(h, (dx, dy)) / 180.0;
                }
                let better = match &best {
                    None => true,
                    Some((b, _)) if in_reach && b.off_m > fix.max_off_m => true,
                    Some((b, c)) if (dist - b.dist_along_m).abs() > fix.back_m => {
                        cost < c - TIE_M
                            || (cost <= c + TIE_M
                                && (dist - expect).abs() < (b.dist_along_m - expect).abs())
                    }
                    Some((_, c)) => cost < *c,
                };
                if better {
                    let (slat, slon) = line.point(seg);
                    let p = Projection {
                        dist_along_m: dist,
                        off_m: off,
                        lat: slat + t * (blat - slat),
                        lon: slon + t * (blon - slon),
                        segment: seg,
                    };
                    best = Some((p, cost));
                }
            }
        }
        (ax, ay) = (bx, by);
    }
    best.unwrap_or_else(|| (line.project_window(fix.lat, fix.lon, from, to), f64::INFINITY))
}

/// Matches a fix on `shape` (whose geometry is `line`), following `prev` when the vehicle was
/// already tracked on it.
///
/// A track that no longer fits asks `rescan` for a fresh position on its shape at or beyond the
/// given distance (`None`: the shape is nowhere near). The `reported` track (the shape the
/// vehicle was last reported on) never goes back. Beyond its window it looks as far ahead as
/// the fix itself moved (`SKIP_PER_MOVED`: a GPS that froze while the bus drove on); over the
/// rest of the shape only when its smoothed misfit was already high (it has been
/// losing the vehicle for several fixes: it was put on a nearby leg of the same shape), not
/// for one outlier after a good fit; behind it only once `fix.restart` says the vehicle has
/// been off route long enough to be on a new run. Else it holds its distance. An alternative
/// rescans the whole shape at once: that is how a vehicle driving a shape backwards is seen to
/// be on the other direction.
/// `seed` is a projection already known for a new candidate (from the spatial index), used
/// instead of a fresh scan.
pub(crate) fn follow(
    line: &Polyline,
    shape: ShapeIdx,
    prev: Option<&Track>,
    reported: bool,
    seed: Option<Projection>,
    fix: &Fix,
    rescan: &mut dyn FnMut(ShapeIdx, f64) -> Option<(Projection, f64)>,
) -> Matched {
    let Some(prev) = prev else {
        let (p, cost) = match seed {
            Some(p) => (p, p.off_m + heading_penalty(line, p.segment, fix)),
            None => fresh(line, fix),
        };
        let score = if cost.is_finite() { cost as f32 } else { p.off_m as f32 };
        return Matched { track: Track { shape, dist_m: p.dist_along_m, score }, projection: p };
    };
    let from = prev.dist_m - fix.back_m;
    let expect = prev.dist_m + fix.advance_m;
    let (mut p, _) = scan(line, fix, from, prev.dist_m + fix.reach_m, Some(expect));
    let mut misfit = p.off_m;
    // Progress never goes backwards: noise around a stationary bus must not move it back.
    let mut floor = prev.dist_m;
    if p.off_m > fix.max_off_m {
        // A fresh match wins only when it is clearly better.
        let clearly_better =
            |g: &Projection| g.off_m <= fix.max_off_m && g.off_m + fix.back_m < p.off_m;
        let skip_to = prev.dist_m + SKIP_PER_MOVED * fix.moved_m + 2.0 * fix.back_m;
        let skipped = (reported && skip_to > prev.dist_m + fix.reach_m)
            .then(|| scan(line, fix, from, skip_to, Some(expect)))
            .filter(|(g, _)| clearly_better(g));
        // Half the noise allowance: above what the noise alone averages to on the right leg,
        // below what a track reaches as the bus pulls away from it at speed.
        let drifting = reported && f64::from(prev.score) > fix.back_m / 2.0;
        let ahead = skipped.or_else(|| {
            drifting
                .then(|| rescan(shape, from))
                .flatten()
                .filter(|(g, _)| g.dist_along_m >= from && clearly_better(g))
        });
        let found = match ahead {
            Some(g) => Some(g),
            None if fix.restart || !reported => {
                floor = 0.0;
                rescan(shape, 0.0).filter(|(g, _)| clearly_better(g))
            }
            None => None,
        };
        match found {
            Some((g, cost)) => {
                // The heading penalty stays in the score, so a reversed leg does not win by
                // re-seeding itself.
                p = g;
                misfit = if cost.is_finite() { cost } else { g.off_m };
            }
            None => floor = prev.dist_m,
        }
    }
    let dist = if p.off_m <= fix.max_off_m { p.dist_along_m.max(floor) } else { prev.dist_m };
    if dist > p.dist_along_m {
        let (lat, lon, _) = line.point_at(dist);
        p.lat = lat;
        p.lon = lon;
        p.dist_along_m = dist;
    }
    let score = (1.0 - SCORE_ALPHA) * prev.score + SCORE_ALPHA * misfit as f32;
    Matched { track: Track { shape, dist_m: dist, score }, projection: p }
}

#[cfg(test)]
mod tests {
    use super::*;

    use busflow_core::geometry::destination;

    const START: (f64, f64) = (-16.92, 145.77);

    /// Due east `out_m`, then `gap_m` north (none: straight back), then due west `out_m`.
    fn turnaround(out_m: f64, gap_m: f64) -> Polyline {
        let tip = destination(START.0, START.1, 90.0, out_m);
        let mut pts = vec![START, tip];
        let back_from = if gap_m > 0.0 {
            let b = destination(tip.0, tip.1, 0.0, gap_m);
            pts.push(b);
            b
        } else {
            tip
        };
        pts.push(destination(back_from.0, back_from.1, 270.0, out_m));
        Polyline::new(pts).unwrap()
    }

    /// A fix at `at_m` along `line`, moved `off_m` metres north.
    fn fix(line: &Polyline, at_m: f64, off_m: f64, heading: Option<f64>, advance_m: f64) -> Fix {
        let (lat, lon, _) = line.point_at(at_m);
        let (lat, lon) = destination(lat, lon, 0.0, off_m);
        Fix {
            lat,
            lon,
            heading,
            reach_m: 40.0 * 3.0 + 50.0,
            advance_m,
            moved_m: 30.0,
            back_m: 25.0,
            max_off_m: 60.0,
            restart: false,
        }
    }

    fn track(dist_m: f64) -> Track {
        Track { shape: 0, dist_m, score: 2.0 }
    }

    fn no_rescan(_: ShapeIdx, _: f64) -> Option<(Projection, f64)> {
        panic!("the reported track must not look for the vehicle elsewhere")
    }

    fn dist(line: &Polyline, prev: f64, f: &Fix) -> f64 {
        follow(line, 0, Some(&track(prev)), true, None, f, &mut no_rescan).track.dist_m
    }

    #[test]
    fn out_and_back_approaching_the_turn_stays_on_the_way_out() {
        let line = turnaround(1000.0, 0.0);
        // 50 m before the turn the window (to 1120 m) holds both legs, which fit alike.
        for heading in [Some(92.0), None] {
            let f = fix(&line, 960.0, 4.0, heading, 9.0);
            let d = dist(&line, 951.0, &f);
            assert!((d - 960.0).abs() < 2.0, "{heading:?}: {d}");
        }
        // The device says it is heading back: the return leg, though it fits no better.
        let f = fix(&line, 960.0, 4.0, Some(268.0), 9.0);
        assert!((dist(&line, 951.0, &f) - 1040.0).abs() < 2.0);
    }

    #[test]
    fn out_and_back_after_the_turn_is_not_held_by_the_way_out() {
        let line = turnaround(1000.0, 0.0);
        // Turned 13 m ago, last seen 5 m before the turn. Its mirror image on the way out
        // (987 m) fits as well and is nearer the last distance, not where it is expected.
        let f = fix(&line, 1013.0, 3.0, None, 9.0);
        let d = dist(&line, 995.0, &f);
        assert!((d - 1013.0).abs() < 2.0, "{d}");
        let f = fix(&line, 1013.0, 3.0, Some(271.0), 0.0);
        assert!((dist(&line, 995.0, &f) - 1013.0).abs() < 2.0);
    }

    #[test]
    fn hairpin_noise_towards_the_other_leg_keeps_the_heading() {
        // Legs 30 m apart; the fix is 20 m off the way out, 10 m off the way back.
        let line = turnaround(600.0, 30.0);
        let f = fix(&line, 500.0, 20.0, Some(85.0), 9.0);
        let m = follow(&line, 0, Some(&track(490.0)), true, None, &f, &mut no_rescan);
        assert!((m.track.dist_m - 500.0).abs() < 2.0, "{m:?}");
        assert!((m.projection.off_m - 20.0).abs() < 1.0, "{m:?}");
        // Back on its own leg the next fix snaps there without a jump.
        let f = fix(&line, 509.0, 2.0, Some(91.0), 9.0);
        assert!((dist(&line, m.track.dist_m, &f) - 509.0).abs() < 3.0);
    }

    #[test]
    fn within_one_leg_the_nearest_point_wins() {
        // The tie rule is between legs: on a plain line the snap is the foot of the fix, not
        // a point nearer the expected distance.
        let line =
            Polyline::new((0..=50).map(|i| destination(START.0, START.1, 90.0, i as f64 * 20.0)))
                .unwrap();
        let f = fix(&line, 300.0, 10.0, None, 60.0);
        assert!((dist(&line, 290.0, &f) - 300.0).abs() < 0.01);
    }

    #[test]
    fn a_lost_reported_track_holds_its_distance() {
        let line = turnaround(1000.0, 0.0);
        // Wrongly ahead on the way back (1200 m) while the bus is still at 900 m on the way
        // out: the window finds nothing and the whole shape would put it behind.
        let f = fix(&line, 900.0, 0.0, Some(90.0), 9.0);
        let m = follow(&line, 0, Some(&track(1200.0)), true, None, &f, &mut no_rescan);
        assert_eq!(m.track.dist_m, 1200.0);
        assert!(m.projection.off_m > f.max_off_m, "{m:?}");
        // A multipath fix on the shape far beyond where the bus could have driven is no jump.
        let m = follow(&line, 0, Some(&track(100.0)), true, None, &f, &mut no_rescan);
        assert_eq!(m.track.dist_m, 100.0);
        // After a frozen GPS the vehicle is found as far ahead as the fix moved, no farther.
        let frozen = Fix { moved_m: 300.0, ..fix(&line, 650.0, 5.0, Some(90.0), 9.0) };
        let m = follow(&line, 0, Some(&track(400.0)), true, None, &frozen, &mut no_rescan);
        assert!((m.track.dist_m - 650.0).abs() < 1.0, "{m:?}");
        let frozen = Fix { moved_m: 20.0, ..frozen };
        let m = follow(&line, 0, Some(&track(400.0)), true, None, &frozen, &mut no_rescan);
        assert_eq!(m.track.dist_m, 400.0);
        // A track that has been drifting off the vehicle (smoothed misfit above the noise) was
        // put on the wrong leg: it may jump ahead to the right one, never back.
        let drifting = Track { score: 40.0, ..track(400.0) };
        let mut whole =
            |_: ShapeIdx, from: f64| Some(scan(&line, &frozen, from, f64::INFINITY, None));
        let m = follow(&line, 0, Some(&drifting), true, None, &frozen, &mut whole);
        assert!((m.track.dist_m - 650.0).abs() < 1.0, "{m:?}");
        let mut whole = |_: ShapeIdx, from: f64| Some(scan(&line, &f, from, f64::INFINITY, None));
        let m = follow(
            &line,
            0,
            Some(&Track { score: 40.0, ..track(1200.0) }),
            true,
            None,
            &f,
            &mut whole,
        );
        assert_eq!(m.track.dist_m, 1200.0);
        // An alternative track is no report: it goes wherever the vehicle is.
        let mut whole = |_: ShapeIdx, from: f64| Some(scan(&line, &f, from, f64::INFINITY, None));
        let m = follow(&line, 0, Some(&track(1200.0)), false, None, &f, &mut whole);
        assert!((m.track.dist_m - 900.0).abs() < 1.0, "{m:?}");
        // Off route long enough, the reported track is on a new run and may start behind.
        let f = Fix { restart: true, ..f };
        let mut whole = |_: ShapeIdx, from: f64| Some(scan(&line, &f, from, f64::INFINITY, None));
        let m = follow(&line, 0, Some(&track(1200.0)), true, None, &f, &mut whole);
        assert!((m.track.dist_m - 900.0).abs() < 1.0, "{m:?}");
    }

    #[test]
    fn fast_angle_matches_atan2() {
        for i in 0..3600 {
            let h = i as f64 / 10.0;
            for (dx, dy) in [(1.0, 0.0), (0.3, -2.0), (-5.0, 0.01), (0.0, 1.0), (-0.7, -0.7)] {
                let b = f64::atan2(dx, dy).to_degrees();
                let (s, c) = h.to_radians().sin_cos();
                let fast = angle_between_deg((s, c), (dx, dy));
                assert!((fast - angle_diff(h, b)).abs() < 0.02, "{h} {dx} {dy}: {fast}");
            }
        }
        assert_eq!(angle_between_deg((1.0, 0.0), (0.0, 0.0)), 0.0);
    }

    #[test]
    fn angle_difference_wraps() {
        assert_eq!(angle_diff(350.0, 10.0), 20.0);
        assert_eq!(angle_diff(10.0, 350.0), 20.0);
        assert_eq!(angle_diff(90.0, 270.0), 180.0);
    }
}
