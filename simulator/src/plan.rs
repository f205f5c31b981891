//! Which vehicle runs which trip when: the timetable expanded into trip instances (stop_times,
//! frequencies, services per day with the expired-calendar fallback), assigned to vehicles by
//! block where the feed has blocks, else greedily to the nearest free bus.

use std::collections::HashMap;
use std::sync::Arc;

use busflow_core::Network;
use busflow_core::network::TripIdx;
use chrono::{Days, NaiveDate};

use crate::motion::ShapeGeom;

pub(crate) const DAY_S: f64 = 86_400.0;
/// A bus needs this long at a terminus before its next trip.
const MIN_LAYOVER_S: f64 = 120.0;
/// A free bus this close to a trip's first stop takes it without deadheading.
const NEAR_M: f64 = 1_000.0;
/// A bus further away needs this long to get there.
const DEADHEAD_S: f64 = 1_800.0;

/// Everything immutable the generator threads share.
#[derive(Debug)]
pub(crate) struct World {
    pub network: Arc<Network>,
    pub shapes: Vec<ShapeGeom>,
    /// Speed limit per route, m/s.
    pub route_vmax: Vec<f64>,
    /// `"route_id":"..","trip_id":".."` per trip, JSON-escaped once.
    pub ids_json: Vec<Box<str>>,
}

impl World {
    pub fn new(network: Arc<Network>) -> World {
        let shapes = network.shapes.iter().map(|s| ShapeGeom::new(&s.line)).collect();
        let route_vmax = route_speed_limits(&network);
        let ids_json = network
            .trips
            .iter()
            .map(|t| {
                let route = &network.route(t.route).id;
                format!("\"route_id\":{},\"trip_id\":{}", json_string(route), json_string(&t.id))
                    .into_boxed_str()
            })
            .collect();
        World { network, shapes, route_vmax, ids_json }
    }

    pub fn trip_start_point(&self, trip: TripIdx) -> (f64, f64) {
        let t = self.network.trip(trip);
        let g = &self.shapes[t.shape as usize];
        let d = t.stop_times.first().map_or(0.0, |s| s.dist_m);
        let (la, lo, _) = g.sample(d, &mut 0);
        (la, lo)
    }

    pub fn trip_end_point(&self, trip: TripIdx) -> (f64, f64) {
        let t = self.network.trip(trip);
        let g = &self.shapes[t.shape as usize];
        let d = t.stop_times.last().map_or(g.length_m(), |s| s.dist_m);
        let (la, lo, _) = g.sample(d, &mut 0);
        (la, lo)
    }

    /// Trips whose services run on the service day `day` after `day0`.
    pub fn trips_on(&self, day0: NaiveDate, day: i64) -> Vec<TripIdx> {
        let date = if day >= 0 {
            day0.checked_add_days(Days::new(day as u64))
        } else {
            day0.checked_sub_days(Days::new(day.unsigned_abs()))
        };
        let Some(date) = date else { return Vec::new() };
        let services = self.network.services_on(date);
        let mut runs = vec![false; self.network.services.len()];
        for s in services {
            runs[s as usize] = true;
        }
        (0..self.network.trips.len() as TripIdx)
            .filter(|&t| runs[self.network.trip(t).service as usize])
            .collect()
    }
}

/// Fast enough equirectangular distance for choosing buses, metres.
pub(crate) fn approx_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let dy = (a.0 - b.0) * crate::motion::M_PER_DEG_LAT;
    let dx = (a.1 - b.1) * crate::motion::M_PER_DEG_LAT * a.0.to_radians().cos();
    (dx * dx + dy * dy).sqrt()
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A route's speed limit: well above its scheduled average speed (buses stop a lot), within
/// urban (40 km/h) and highway (80 km/h) bounds.
fn route_speed_limits(network: &Network) -> Vec<f64> {
    let mut sums = vec![(0.0f64, 0.0f64); network.routes.len()];
    for t in &network.trips {
        if let (Some(a), Some(b)) = (t.stop_times.first(), t.stop_times.last())
            && b.arrival_s > a.departure_s
        {
            let e = &mut sums[t.route as usize];
            e.0 += b.dist_m - a.dist_m;
            e.1 += f64::from(b.arrival_s - a.departure_s);
        }
    }
    sums.into_iter()
        .map(|(d, s)| if s > 0.0 { (1.8 * d / s).clamp(11.1, 22.2) } else { 13.9 })
        .collect()
}

/// One trip run: the trip's timetable shifted by `offset_s` (day offset, plus the headway
/// departure for frequency-based trips), run by `vehicle`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Assignment {
    pub trip: TripIdx,
    pub offset_s: f64,
    pub vehicle: u32,
}

#[derive(Debug, Clone, Copy)]
struct Instance {
    start: f64,
    end: f64,
    trip: TripIdx,
    offset_s: f64,
    day: i64,
}

#[derive(Debug, Clone, Copy)]
struct FreeBus {
    vehicle: u32,
    free_at: f64,
    at: (f64, f64),
}

/// Hands out trip instances in departure order, planning service days as the clock reaches
/// them, so a run of any length follows the timetable day after day.
#[derive(Debug)]
pub(crate) struct Dispatcher {
    day0: NaiveDate,
    next_day: i64,
    /// Sorted by start, latest first, so the next one pops off the end.
    pending: Vec<Instance>,
    free: Vec<FreeBus>,
    busy: Vec<FreeBus>,
    blocks: HashMap<(i64, u32), u32>,
    next_vehicle: u32,
}

impl Dispatcher {
    pub fn new(day0: NaiveDate) -> Dispatcher {
        // Day -1: yesterday's trips that run past midnight.
        Dispatcher {
            day0,
            next_day: -1,
            pending: Vec::new(),
            free: Vec::new(),
            busy: Vec::new(),
            blocks: HashMap::new(),
            next_vehicle: 0,
        }
    }

    /// Vehicles created so far.
    #[cfg(test)]
    pub fn vehicles(&self) -> u32 {
        self.next_vehicle
    }

    fn plan_day(&mut self, world: &World) {
        let day = self.next_day;
        self.next_day += 1;
        let base = day as f64 * DAY_S;
        for trip in world.trips_on(self.day0, day) {
            let t = world.network.trip(trip);
            let (s, e) = (f64::from(t.start_s()), f64::from(t.end_s()));
            if t.frequencies.is_empty() {
                self.pending.push(Instance {
                    start: base + s,
                    end: base + e,
                    trip,
                    offset_s: base,
                    day,
                });
            } else {
                for f in &t.frequencies {
                    let mut dep = f.start_s;
                    while dep < f.end_s {
                        let shift = f64::from(dep) - s;
                        self.pending.push(Instance {
                            start: base + s + shift,
                            end: base + e + shift,
                            trip,
                            offset_s: base + shift,
                            day,
                        });
                        dep += f.headway_s.max(1);
                    }
                }
            }
        }
        self.pending.sort_by(|a, b| {
            b.start.total_cmp(&a.start).then(b.trip.cmp(&a.trip)).then(b.day.cmp(&a.day))
        });
    }

    /// Assigns every trip instance departing up to `until` (simulated seconds after the
    /// first day's midnight). Instances that ended before `skip_before` are assigned (so
    /// vehicle numbering does not depend on the start time's history) but not returned.
    pub fn dispatch_until(
        &mut self,
        world: &World,
        until: f64,
        skip_before: f64,
        out: &mut Vec<Assignment>,
    ) {
        while (self.next_day as f64) * DAY_S <= until {
            self.plan_day(world);
        }
        while self.pending.last().is_some_and(|i| i.start <= until) {
            let Some(inst) = self.pending.pop() else { break };
            let vehicle = self.assign(world, &inst);
            if inst.end >= skip_before {
                out.push(Assignment { trip: inst.trip, offset_s: inst.offset_s, vehicle });
            }
        }
    }

    fn assign(&mut self, world: &World, inst: &Instance) -> u32 {
        let trip = world.network.trip(inst.trip);
        let end_at = world.trip_end_point(inst.trip);
        let busy_until = inst.end + MIN_LAYOVER_S;
        if let Some(block) = trip.block {
            let v = *self.blocks.entry((inst.day, block)).or_insert_with(|| {
                let v = self.next_vehicle;
                self.next_vehicle += 1;
                v
            });
            return v;
        }
        // Buses whose last trip has ended become free.
        let mut k = 0;
        while k < self.busy.len() {
            if self.busy[k].free_at <= inst.start {
                let b = self.busy.swap_remove(k);
                self.free.push(b);
            } else {
                k += 1;
            }
        }
        let start_at = world.trip_start_point(inst.trip);
        let mut best: Option<(usize, f64)> = None;
        for (i, b) in self.free.iter().enumerate() {
            let d = approx_m(b.at, start_at);
            let ok = d <= NEAR_M || b.free_at + DEADHEAD_S <= inst.start;
            // Nearest first; ties by vehicle number so the choice is deterministic.
            if ok
                && best
                    .is_none_or(|(j, bd)| d < bd || (d == bd && b.vehicle < self.free[j].vehicle))
            {
                best = Some((i, d));
            }
        }
        let vehicle = match best {
            Some((i, _)) => self.free.swap_remove(i).vehicle,
            None => {
                let v = self.next_vehicle;
                self.next_vehicle += 1;
                v
            }
        };
        self.busy.push(FreeBus { vehicle, free_at: busy_until, at: end_at });
        vehicle
    }
}

/// For `--vehicles N`: trips that can follow each trip (first stop near its last stop), by
/// shape, so a vehicle keeps driving the network instead of teleporting.
#[derive(Debug)]
pub(crate) struct Rotation {
    /// The day's trips, sorted by departure.
    pub trips: Vec<TripIdx>,
    /// Per shape index: positions in `trips` of trips that can follow a trip on that shape.
    pub next_by_shape: Vec<Vec<u32>>,
}

impl Rotation {
    pub fn new(world: &World, day0: NaiveDate) -> Rotation {
        let mut trips = world.trips_on(day0, 0);
        if trips.is_empty() {
            trips = (0..world.network.trips.len() as TripIdx).collect();
        }
        let net = &world.network;
        trips.sort_by_key(|&t| (net.trip(t).start_s(), t));
        let starts: Vec<(f64, f64)> = trips.iter().map(|&t| world.trip_start_point(t)).collect();
        let mut next_by_shape = vec![Vec::new(); world.shapes.len()];
        let mut end_of_shape: Vec<Option<(f64, f64)>> = vec![None; world.shapes.len()];
        for &t in &trips {
            let s = net.trip(t).shape as usize;
            if end_of_shape[s].is_none() {
                end_of_shape[s] = Some(world.trip_end_point(t));
            }
        }
        for (s, end) in end_of_shape.iter().enumerate() {
            let Some(end) = end else { continue };
            next_by_shape[s] = starts
                .iter()
                .enumerate()
                .filter(|(_, p)| approx_m(**p, *end) <= 400.0)
                .map(|(i, _)| i as u32)
                .collect();
        }
        Rotation { trips, next_by_shape }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn world() -> World {
        let net = Network::load(busflow_core::bundled_gtfs_path()).unwrap();
        World::new(Arc::new(net))
    }

    #[test]
    fn expired_calendar_still_runs_weekday_trips_and_every_instance_gets_one_bus() {
        let w = world();
        // A Tuesday long after the Cairns calendar expired.
        let day0 = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        assert!(!w.trips_on(day0, 0).is_empty());
        let mut d = Dispatcher::new(day0);
        let mut out = Vec::new();
        d.dispatch_until(&w, DAY_S, 0.0, &mut out);
        let today = w.trips_on(day0, 0).len();
        let count_today = out.iter().filter(|a| a.offset_s == 0.0).count();
        assert_eq!(count_today, today);
        // Buses are reused: far fewer vehicles than trips, and no bus runs two trips at once.
        assert!((d.vehicles() as usize) < today / 3, "{} buses for {today} trips", d.vehicles());
        let mut by_vehicle: HashMap<u32, Vec<(f64, f64)>> = HashMap::new();
        for a in &out {
            let t = w.network.trip(a.trip);
            by_vehicle
                .entry(a.vehicle)
                .or_default()
                .push((f64::from(t.start_s()) + a.offset_s, f64::from(t.end_s()) + a.offset_s));
        }
        for runs in by_vehicle.values_mut() {
            runs.sort_by(|a, b| a.0.total_cmp(&b.0));
            for w2 in runs.windows(2) {
                assert!(w2[1].0 >= w2[0].1 + MIN_LAYOVER_S, "{runs:?}");
            }
        }
    }

    /// A tiny feed with a block of two trips and a frequency-based trip.
    pub(crate) fn tiny_feed(dir: &std::path::Path) {
        let files = [
            (
                "agency.txt",
                "agency_id,agency_name,agency_url,agency_timezone\nA,Test,http://example.com,Australia/Brisbane\n",
            ),
            (
                "stops.txt",
                "stop_id,stop_name,stop_lat,stop_lon\nS1,One,-16.92,145.77\nS2,Two,-16.92,145.78\nS3,Three,-16.91,145.78\n",
            ),
            (
                "routes.txt",
                "route_id,agency_id,route_short_name,route_long_name,route_type\nR1,A,1,One,3\nR2,A,2,Two,3\n",
            ),
            (
                "trips.txt",
                "route_id,service_id,trip_id,block_id\nR1,WK,T1,B1\nR1,WK,T2,B1\nR2,WK,F1,\n",
            ),
            (
                "stop_times.txt",
                "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n\
                 T1,08:00:00,08:00:00,S1,1\nT1,08:05:00,08:05:00,S2,2\nT1,08:10:00,08:10:00,S3,3\n\
                 T2,08:20:00,08:20:00,S3,1\nT2,08:25:00,08:25:00,S2,2\nT2,08:30:00,08:30:00,S1,3\n\
                 F1,10:00:00,10:00:00,S1,1\nF1,10:10:00,10:10:00,S3,2\n",
            ),
            (
                "calendar.txt",
                "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\n\
                 WK,1,1,1,1,1,1,1,20200101,20201231\n",
            ),
            (
                "frequencies.txt",
                "trip_id,start_time,end_time,headway_secs\nF1,10:00:00,11:00:00,600\n",
            ),
        ];
        for (name, body) in files {
            std::fs::write(dir.join(name), body).unwrap();
        }
    }

    #[test]
    fn blocks_keep_one_bus_and_frequencies_expand_into_departures() {
        let dir = tempfile::tempdir().unwrap();
        tiny_feed(dir.path());
        let w = World::new(Arc::new(Network::load(dir.path()).unwrap()));
        let day0 = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        let mut d = Dispatcher::new(day0);
        let mut out = Vec::new();
        d.dispatch_until(&w, DAY_S - 1.0, 0.0, &mut out);
        let net = &w.network;
        let by_trip = |id: &str| -> Vec<Assignment> {
            out.iter().filter(|a| net.trip(a.trip).id == id).copied().collect()
        };
        let (t1, t2) = (by_trip("T1"), by_trip("T2"));
        assert_eq!((t1.len(), t2.len()), (1, 1));
        assert_eq!(t1[0].vehicle, t2[0].vehicle, "one bus works the block");
        let f1 = by_trip("F1");
        let starts: Vec<f64> = f1.iter().map(|a| a.offset_s).collect();
        assert_eq!(starts, vec![0.0, 600.0, 1200.0, 1800.0, 2400.0, 3000.0]);
        // Headway departures overlap in time (10-minute trips every 10 minutes, plus layover):
        // more than one bus.
        let buses: std::collections::HashSet<u32> = f1.iter().map(|a| a.vehicle).collect();
        assert!(buses.len() >= 2, "{buses:?}");
    }

    #[test]
    fn speed_limits_are_urban_to_highway() {
        let w = world();
        assert!(w.route_vmax.iter().all(|v| (11.1..=22.2).contains(v)));
        assert!(w.ids_json[0].starts_with("\"route_id\":\""));
    }
}
