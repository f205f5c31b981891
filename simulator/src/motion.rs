//! How a bus moves along one trip: dwell at stops, accelerate, cruise under the route's speed
//! limit, brake into the next stop, try to keep to the timetable and run late when it cannot.
//!
//! A [`TripProfile`] is planned once when a vehicle starts a trip (one small `Vec` of legs,
//! reused between trips); sampling it is a handful of multiplications, so the per-report cost
//! stays far below a microsecond.

use busflow_core::Polyline;
use busflow_core::geometry::bearing_deg;
use busflow_core::network::StopTime;
use rand::Rng;

/// Bus acceleration, m/s².
pub const ACCEL: f64 = 1.0;
/// Bus service braking, m/s².
pub const DECEL: f64 = 1.3;
/// Cruising slower than this looks wrong; the bus waits at the stop instead.
const MIN_CRUISE: f64 = 6.0;
/// Dwell the timetable does not show (Cairns has arrival == departure), seconds.
const DWELL_MIN_S: f64 = 8.0;
const DWELL_MAX_S: f64 = 35.0;
const DWELL_MEAN_S: f64 = (DWELL_MIN_S + DWELL_MAX_S) / 2.0;

/// `k` in t(v) = k·v + d/v, the time to cover d metres with a trapezoidal profile peaking at v.
const K: f64 = 1.0 / (2.0 * ACCEL) + 1.0 / (2.0 * DECEL);

/// A shape's vertices laid out for fast sampling: distances, and bearings per segment.
#[derive(Debug, Clone)]
pub struct ShapeGeom {
    lat: Vec<f64>,
    lon: Vec<f64>,
    cum: Vec<f64>,
    bearing: Vec<f32>,
    /// Metres per degree of longitude at the shape's first vertex.
    pub m_per_deg_lon: f64,
}

/// Metres per degree of latitude (mean Earth radius, as `busflow_core::geometry`).
pub const M_PER_DEG_LAT: f64 = 6_371_008.8 * std::f64::consts::PI / 180.0;

impl ShapeGeom {
    /// Copies a polyline's vertices.
    pub fn new(line: &Polyline) -> Self {
        let n = line.len();
        let mut g = ShapeGeom {
            lat: Vec::with_capacity(n),
            lon: Vec::with_capacity(n),
            cum: Vec::with_capacity(n),
            bearing: Vec::with_capacity(n),
            m_per_deg_lon: 0.0,
        };
        for i in 0..n {
            let (la, lo) = line.point(i);
            g.lat.push(la);
            g.lon.push(lo);
            g.cum.push(line.cum_m(i));
        }
        for i in 0..n {
            let j = (i + 1).min(n - 1);
            let (a, b) = if j > i { (i, j) } else { (i.saturating_sub(1), i) };
            g.bearing.push(bearing_deg(g.lat[a], g.lon[a], g.lat[b], g.lon[b]) as f32);
        }
        g.m_per_deg_lon = M_PER_DEG_LAT * g.lat[0].to_radians().cos();
        g
    }

    /// Length, metres.
    pub fn length_m(&self) -> f64 {
        self.cum.last().copied().unwrap_or(0.0)
    }

    /// Point and bearing at `dist` metres along, starting the search at `*cursor` (the segment
    /// index of the previous call), so a vehicle moving forward costs O(1) per sample.
    #[inline]
    pub fn sample(&self, dist: f64, cursor: &mut usize) -> (f64, f64, f32) {
        let last_seg = self.cum.len() - 2;
        let mut i = (*cursor).min(last_seg);
        if dist < self.cum[i] {
            i = self.cum.partition_point(|&c| c <= dist).saturating_sub(1).min(last_seg);
        }
        while i < last_seg && self.cum[i + 1] <= dist {
            i += 1;
        }
        *cursor = i;
        let seg = self.cum[i + 1] - self.cum[i];
        let t = if seg > 0.0 { ((dist - self.cum[i]) / seg).clamp(0.0, 1.0) } else { 0.0 };
        let lat = self.lat[i] + t * (self.lat[i + 1] - self.lat[i]);
        let lon = self.lon[i] + t * (self.lon[i + 1] - self.lon[i]);
        (lat, lon, self.bearing[i])
    }
}

/// One movement between two consecutive stops.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Leg {
    /// Departure from the stop, simulated seconds.
    depart: f64,
    /// Distance along the shape at departure.
    from_m: f64,
    /// Length of the leg.
    len: f64,
    /// Peak (cruise) speed.
    v: f64,
    /// Accelerating, cruising and braking durations.
    ta: f64,
    tc: f64,
    tb: f64,
}

impl Leg {
    fn arrive(&self) -> f64 {
        self.depart + self.ta + self.tc + self.tb
    }

    /// Distance covered and speed `tau` seconds after departure.
    #[inline]
    fn at(&self, tau: f64) -> (f64, f64) {
        if tau <= 0.0 {
            (0.0, 0.0)
        } else if tau < self.ta {
            (0.5 * ACCEL * tau * tau, ACCEL * tau)
        } else if tau < self.ta + self.tc {
            (0.5 * ACCEL * self.ta * self.ta + self.v * (tau - self.ta), self.v)
        } else {
            let u = self.ta + self.tc + self.tb - tau;
            if u <= 0.0 { (self.len, 0.0) } else { (self.len - 0.5 * DECEL * u * u, DECEL * u) }
        }
    }
}

/// The planned motion of one vehicle through one trip.
#[derive(Debug, Clone, Default)]
pub struct TripProfile {
    legs: Vec<Leg>,
    start_m: f64,
    cursor: usize,
}

/// A vehicle's state at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Distance along the shape, metres.
    pub dist_m: f64,
    /// Speed, m/s.
    pub speed: f64,
}

impl TripProfile {
    /// Plans a trip whose timetable is `stops` shifted by `offset_s`, leaving the first stop no
    /// earlier than `not_before` (a bus still finishing its previous trip starts late), at most
    /// `vmax` m/s. Dwell times are drawn from `rng`.
    pub fn plan(
        &mut self,
        stops: &[StopTime],
        offset_s: f64,
        not_before: f64,
        vmax: f64,
        rng: &mut impl Rng,
    ) {
        self.legs.clear();
        self.cursor = 0;
        self.start_m = stops.first().map_or(0.0, |s| s.dist_m);
        let Some(first) = stops.first() else { return };
        let mut depart = (first.departure_s as f64 + offset_s).max(not_before);
        for w in stops.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            let len = (b.dist_m - a.dist_m).max(0.0);
            // Aim to arrive early enough that the dwell at the next stop ends on time.
            let target = b.arrival_s as f64 + offset_s - DWELL_MEAN_S / 2.0 - depart;
            let v = cruise_speed(len, target, vmax);
            let (ta, tb, tc) = if len <= 0.0 || v <= 0.0 {
                (0.0, 0.0, 0.0)
            } else {
                let (ta, tb) = (v / ACCEL, v / DECEL);
                (ta, tb, ((len - v * v * K) / v).max(0.0))
            };
            let leg = Leg { depart, from_m: a.dist_m, len, v, ta, tc, tb };
            let arrive = leg.arrive();
            self.legs.push(leg);
            let dwell = rng.random_range(DWELL_MIN_S..DWELL_MAX_S);
            depart = (b.departure_s as f64 + offset_s).max(arrive + dwell);
        }
    }

    /// When the bus leaves its first stop.
    pub fn start(&self) -> f64 {
        self.legs.first().map_or(0.0, |l| l.depart)
    }

    /// When the bus reaches its last stop.
    pub fn end(&self) -> f64 {
        self.legs.last().map_or(0.0, Leg::arrive)
    }

    /// Where the bus is at `t` (monotonic calls are O(1); earlier times also work).
    #[inline]
    pub fn sample(&mut self, t: f64) -> Sample {
        let Some(first) = self.legs.first() else {
            return Sample { dist_m: self.start_m, speed: 0.0 };
        };
        if t <= first.depart {
            self.cursor = 0;
            return Sample { dist_m: first.from_m, speed: 0.0 };
        }
        if t < self.legs[self.cursor.min(self.legs.len() - 1)].depart {
            self.cursor = 0;
        }
        while self.cursor + 1 < self.legs.len() && self.legs[self.cursor + 1].depart <= t {
            self.cursor += 1;
        }
        let leg = &self.legs[self.cursor];
        let (s, speed) = leg.at(t - leg.depart);
        Sample { dist_m: leg.from_m + s.min(leg.len), speed }
    }
}

/// Peak speed of a trapezoidal profile covering `len` metres in `target` seconds, clamped to
/// what a bus does: never above `vmax`, never crawling (it waits at the stop instead), never
/// above the triangular peak that leaves no room to cruise.
fn cruise_speed(len: f64, target: f64, vmax: f64) -> f64 {
    if len <= 0.0 {
        return 0.0;
    }
    let peak = (len / K).sqrt();
    let disc = target * target - 4.0 * K * len;
    let v = if target > 0.0 && disc >= 0.0 {
        (target - disc.sqrt()) / (2.0 * K)
    } else {
        // Not enough time: drive as fast as allowed and run late.
        vmax
    };
    v.max(MIN_CRUISE.min(peak)).min(vmax).min(peak)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn st(arr: u32, dep: u32, dist: f64) -> StopTime {
        StopTime { stop: 0, arrival_s: arr, departure_s: dep, dist_m: dist }
    }

    #[test]
    fn leg_profile_is_continuous_and_ends_at_the_stop() {
        let v = cruise_speed(800.0, 100.0, 15.0);
        let leg = Leg {
            depart: 0.0,
            from_m: 0.0,
            len: 800.0,
            v,
            ta: v / ACCEL,
            tb: v / DECEL,
            tc: (800.0 - v * v * K) / v,
        };
        assert!((leg.arrive() - (100.0 - 0.0)).abs() < 1e-6, "{}", leg.arrive());
        let mut prev = 0.0;
        let mut t = 0.0;
        while t <= leg.arrive() + 1.0 {
            let (s, speed) = leg.at(t);
            assert!(s + 1e-9 >= prev, "went backwards at {t}");
            assert!(s - prev <= v * 0.1 + 1e-6, "jump at {t}");
            assert!(speed <= v + 1e-9);
            prev = s;
            t += 0.1;
        }
        assert!((prev - 800.0).abs() < 1e-6);
    }

    #[test]
    fn too_little_time_runs_late_at_the_limit() {
        assert_eq!(cruise_speed(2000.0, 60.0, 15.0), 15.0);
        // Plenty of time: does not crawl.
        assert_eq!(cruise_speed(2000.0, 3000.0, 15.0), MIN_CRUISE);
        // Short hop: triangular peak.
        assert!((cruise_speed(10.0, 100.0, 15.0) - (10.0 / K).sqrt()).abs() < 1e-9);
    }

    #[test]
    fn trip_keeps_timetable_when_possible_and_dwells() {
        let stops = [st(0, 0, 0.0), st(120, 120, 1000.0), st(300, 300, 3000.0)];
        let mut p = TripProfile::default();
        let mut rng = SmallRng::seed_from_u64(1);
        p.plan(&stops, 3600.0, 0.0, 14.0, &mut rng);
        assert_eq!(p.start(), 3600.0);
        // Within a dwell of the timetable at the end.
        assert!((p.end() - 3900.0).abs() < DWELL_MAX_S, "{}", p.end());
        // Stopped at the middle stop for a while.
        let s = p.sample(3600.0 + 119.0);
        assert!((s.dist_m - 1000.0).abs() < 20.0, "{s:?}");
        let mut prev = 0.0;
        let mut t = 3590.0;
        while t < 4000.0 {
            let s = p.sample(t);
            assert!(s.dist_m + 1e-9 >= prev);
            assert!(s.speed <= 14.0 + 1e-9);
            prev = s.dist_m;
            t += 0.5;
        }
        assert!((prev - 3000.0).abs() < 1e-6);
        // Sampling backwards still works.
        assert_eq!(p.sample(3000.0).dist_m, 0.0);
    }

    #[test]
    fn late_start_shifts_the_trip() {
        let stops = [st(0, 0, 0.0), st(100, 100, 1000.0)];
        let mut p = TripProfile::default();
        p.plan(&stops, 0.0, 50.0, 14.0, &mut SmallRng::seed_from_u64(1));
        assert_eq!(p.start(), 50.0);
        assert!(p.end() > 100.0);
    }

    #[test]
    fn shape_sampling_matches_polyline() {
        let line = Polyline::new([(-16.92, 145.77), (-16.92, 145.78), (-16.91, 145.78)]).unwrap();
        let g = ShapeGeom::new(&line);
        let mut cur = 0;
        for d in [0.0, 10.0, 900.0, 1100.0, 1500.0, line.length_m(), line.length_m() + 5.0] {
            let (la, lo, _) = g.sample(d, &mut cur);
            let (la2, lo2, _) = line.point_at(d);
            assert!((la - la2).abs() < 1e-9 && (lo - lo2).abs() < 1e-9, "{d}");
        }
        let (_, _, b) = g.sample(10.0, &mut cur);
        assert!((b - 90.0).abs() < 1.0, "{b}");
    }
}
