//! The GTFS network: routes, trips, shapes with distances, stops along shapes, schedules.
//!
//! Loaded once from a static feed (zip or directory) with `gtfs-structures`, then turned into
//! index-addressed, immutable structures that the simulator, pipeline and gateway share
//! read-only (wrap it in an `Arc`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};

use crate::Error;
use crate::geometry::{LocalFrame, Polyline, Projection};

/// Index of a route in [`Network::routes`].
pub type RouteIdx = u32;
/// Index of a shape in [`Network::shapes`].
pub type ShapeIdx = u32;
/// Index of a stop in [`Network::stops`].
pub type StopIdx = u32;
/// Index of a trip in [`Network::trips`].
pub type TripIdx = u32;
/// Index of a service in [`Network::services`].
pub type ServiceIdx = u32;

/// A GTFS route.
#[derive(Debug, Clone)]
pub struct Route {
    /// route_id.
    pub id: String,
    /// route_short_name, falling back to route_long_name, then route_id.
    pub short_name: String,
    /// route_long_name (may be empty).
    pub long_name: String,
    /// Six hex digits without `#`; a stable generated colour when the feed has none.
    pub color: String,
    /// Text colour, six hex digits.
    pub text_color: String,
    /// Shapes used by this route's trips.
    pub shapes: Vec<ShapeIdx>,
}

/// A GTFS stop (only stops with coordinates are kept).
#[derive(Debug, Clone)]
pub struct Stop {
    /// stop_id.
    pub id: String,
    /// stop_name.
    pub name: String,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
}

/// A shape with its geometry and cumulative distances.
#[derive(Debug, Clone)]
pub struct Shape {
    /// shape_id, or `derived:<trip_id>` when built from a trip's stops.
    pub id: String,
    /// The geometry.
    pub line: Polyline,
    /// True when the feed had no usable shape and this one joins the stops in sequence.
    pub derived: bool,
    /// The route that uses this shape (the first one, if several do).
    pub route: RouteIdx,
    /// direction_id of the trips that use it, when they agree.
    pub direction_id: Option<u8>,
    /// The most common headsign among trips using it.
    pub headsign: Option<String>,
    /// The stops of the most common stop pattern on this shape, with distances.
    pub stops: Arc<[StopOnShape]>,
}

/// A stop's position along a shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StopOnShape {
    /// The stop.
    pub stop: StopIdx,
    /// Distance along the shape, metres.
    pub dist_m: f64,
}

/// One scheduled call of a trip at a stop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StopTime {
    /// The stop.
    pub stop: StopIdx,
    /// Arrival, seconds after the service day's midnight (may exceed 24 h).
    pub arrival_s: u32,
    /// Departure, seconds after the service day's midnight.
    pub departure_s: u32,
    /// Distance along the trip's shape, metres.
    pub dist_m: f64,
}

/// A frequency-based service window (frequencies.txt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frequency {
    /// Window start, seconds after midnight.
    pub start_s: u32,
    /// Window end, seconds after midnight.
    pub end_s: u32,
    /// Headway, seconds.
    pub headway_s: u32,
}

/// A GTFS trip.
#[derive(Debug, Clone)]
pub struct Trip {
    /// trip_id.
    pub id: String,
    /// Route.
    pub route: RouteIdx,
    /// Service calendar.
    pub service: ServiceIdx,
    /// direction_id.
    pub direction_id: Option<u8>,
    /// trip_headsign.
    pub headsign: Option<String>,
    /// Index into [`Network::blocks`] when the trip belongs to a block.
    pub block: Option<u32>,
    /// Shape the trip runs along.
    pub shape: ShapeIdx,
    /// Calls, in sequence, with distances along the shape. Times are interpolated where the
    /// feed leaves them blank.
    pub stop_times: Vec<StopTime>,
    /// Frequency windows; empty for a trip with fixed times.
    pub frequencies: Vec<Frequency>,
}

impl Trip {
    /// First departure, seconds after midnight.
    pub fn start_s(&self) -> u32 {
        self.stop_times.first().map_or(0, |s| s.departure_s)
    }

    /// Last arrival, seconds after midnight.
    pub fn end_s(&self) -> u32 {
        self.stop_times.last().map_or(0, |s| s.arrival_s)
    }
}

/// A service calendar (calendar.txt plus calendar_dates.txt).
#[derive(Debug, Clone)]
pub struct Service {
    /// service_id.
    pub id: String,
    /// Runs on Monday..Sunday.
    pub weekdays: [bool; 7],
    /// First valid date, when calendar.txt has the service.
    pub start: Option<NaiveDate>,
    /// Last valid date.
    pub end: Option<NaiveDate>,
    /// Dates added by calendar_dates.txt.
    pub added: Vec<NaiveDate>,
    /// Dates removed by calendar_dates.txt.
    pub removed: Vec<NaiveDate>,
}

impl Service {
    /// Whether the service runs on `date` according to the feed.
    pub fn runs_on(&self, date: NaiveDate) -> bool {
        if self.removed.contains(&date) {
            return false;
        }
        if self.added.contains(&date) {
            return true;
        }
        match (self.start, self.end) {
            (Some(s), Some(e)) if date >= s && date <= e => self.runs_on_weekday(date),
            _ => false,
        }
    }

    /// Whether the service's weekly pattern includes `date`'s weekday.
    pub fn runs_on_weekday(&self, date: NaiveDate) -> bool {
        self.weekdays[date.weekday().num_days_from_monday() as usize]
    }
}

/// A shared stop pattern and how many trips use it.
type PatternCount = (Arc<[StopOnShape]>, usize);

type SegmentEntry = GeomWithData<Rectangle<[f64; 2]>, (ShapeIdx, u32)>;

/// A loaded GTFS feed.
#[derive(Debug)]
pub struct Network {
    /// Where it was loaded from.
    pub source: PathBuf,
    /// Agency name(s), for attribution.
    pub agency: String,
    /// The IANA time zone the schedule's times are in (the first agency's `agency_timezone`;
    /// GTFS requires every agency of a feed to share it), e.g. `Australia/Brisbane`.
    pub timezone: String,
    /// Routes.
    pub routes: Vec<Route>,
    /// Shapes.
    pub shapes: Vec<Shape>,
    /// Stops.
    pub stops: Vec<Stop>,
    /// Trips, sorted by route then first departure.
    pub trips: Vec<Trip>,
    /// Service calendars.
    pub services: Vec<Service>,
    /// Blocks: trips of one block, in departure order.
    pub blocks: Vec<Vec<TripIdx>>,
    route_by_id: HashMap<String, RouteIdx>,
    trip_by_id: HashMap<String, TripIdx>,
    shape_by_id: HashMap<String, ShapeIdx>,
    stop_by_id: HashMap<String, StopIdx>,
    segments: RTree<SegmentEntry>,
    bbox: [f64; 4],
}

/// A shape near a point, from [`Network::shapes_near`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NearShape {
    /// The shape.
    pub shape: ShapeIdx,
    /// Closest point on it.
    pub projection: Projection,
}

impl Network {
    /// Loads a feed from a `.zip` file or a directory of `.txt` files.
    pub fn load(path: impl AsRef<Path>) -> Result<Network, Error> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(Error::Gtfs {
                path: path.to_path_buf(),
                detail: "no such file or directory".into(),
            });
        }
        // gtfs-structures 0.52 panics on or misreads some malformed values (a non-ASCII
        // `route_color` is sliced off a character boundary; an hour count like 12714106
        // overflows u32; both found by fuzzing): refuse those first, naming file and line.
        crate::gtfs_check::check_feed(path)?;
        // The second line of defence: a panic the check does not foresee must still be an
        // error that names the feed, not an abort of whatever process loads it.
        let read = std::panic::catch_unwind(|| {
            gtfs_structures::GtfsReader::default()
                .read_stop_times(true)
                .read_shapes(true)
                .read_from_path(path)
        });
        let gtfs = match read {
            Ok(r) => r.map_err(|e| Error::Gtfs {
                path: path.to_path_buf(),
                detail: describe_gtfs_error(&e),
            })?,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("no message");
                return Err(Error::Gtfs {
                    path: path.to_path_buf(),
                    detail: format!("the GTFS reader failed on a malformed value: {why}"),
                });
            }
        };
        build(path, gtfs)
    }

    /// Looks up a route by route_id.
    pub fn route_by_id(&self, id: &str) -> Option<RouteIdx> {
        self.route_by_id.get(id).copied()
    }

    /// Looks up a trip by trip_id.
    pub fn trip_by_id(&self, id: &str) -> Option<TripIdx> {
        self.trip_by_id.get(id).copied()
    }

    /// Looks up a shape by shape_id.
    pub fn shape_by_id(&self, id: &str) -> Option<ShapeIdx> {
        self.shape_by_id.get(id).copied()
    }

    /// Looks up a stop by stop_id.
    pub fn stop_by_id(&self, id: &str) -> Option<StopIdx> {
        self.stop_by_id.get(id).copied()
    }

    /// The route.
    pub fn route(&self, r: RouteIdx) -> &Route {
        &self.routes[r as usize]
    }

    /// The shape.
    pub fn shape(&self, s: ShapeIdx) -> &Shape {
        &self.shapes[s as usize]
    }

    /// The trip.
    pub fn trip(&self, t: TripIdx) -> &Trip {
        &self.trips[t as usize]
    }

    /// The stop.
    pub fn stop(&self, s: StopIdx) -> &Stop {
        &self.stops[s as usize]
    }

    /// Bounding box of all shapes and stops: `[west, south, east, north]`.
    pub fn bbox(&self) -> [f64; 4] {
        self.bbox
    }

    /// Services that run on `date`. A feed whose calendar does not cover `date` at all (it has
    /// expired, or not yet started) falls back to its weekly patterns, so an old feed still runs.
    pub fn services_on(&self, date: NaiveDate) -> Vec<ServiceIdx> {
        let exact: Vec<ServiceIdx> = (0..self.services.len() as ServiceIdx)
            .filter(|&i| self.services[i as usize].runs_on(date))
            .collect();
        if !exact.is_empty() || self.calendar_covers(date) {
            return exact;
        }
        (0..self.services.len() as ServiceIdx)
            .filter(|&i| self.services[i as usize].runs_on_weekday(date))
            .collect()
    }

    fn calendar_covers(&self, date: NaiveDate) -> bool {
        self.services.iter().any(|s| match (s.start, s.end) {
            (Some(a), Some(b)) => date >= a && date <= b,
            _ => s.added.contains(&date),
        })
    }

    /// Shapes with a segment within `radius_m` of the point, closest first, one entry per shape.
    pub fn shapes_near(&self, lat: f64, lon: f64, radius_m: f64) -> Vec<NearShape> {
        let frame = LocalFrame::new(lat, lon);
        let (dlat, dlon) = frame.degrees_for(radius_m);
        let env = AABB::from_corners([lon - dlon, lat - dlat], [lon + dlon, lat + dlat]);
        let mut best: Vec<NearShape> = Vec::new();
        // Where each shape's entry is in `best`: in the city centre dozens of shapes share a
        // street and a query meets hundreds of their segments, so finding a hit's shape by
        // scanning `best` (or sorting the hits) was most of this function's cost.
        let mut slot: Vec<u32> = vec![u32::MAX; self.shapes.len()];
        for entry in self.segments.locate_in_envelope_intersecting(&env) {
            let (shape, seg) = entry.data;
            let line = &self.shapes[shape as usize].line;
            let p = line.project_segment_in(&frame, seg as usize);
            if p.off_m > radius_m {
                continue;
            }
            let Some(k) = slot.get_mut(shape as usize) else { continue };
            match best.get_mut(*k as usize) {
                Some(n) => {
                    // The closer segment; of two as close (a shared vertex), the earlier one,
                    // so the answer does not depend on the index's traversal order.
                    let q = &n.projection;
                    if (p.off_m, p.segment) < (q.off_m, q.segment) {
                        n.projection = p;
                    }
                }
                None => {
                    *k = best.len() as u32;
                    best.push(NearShape { shape, projection: p });
                }
            }
        }
        // Ties broken by shape, for the same reason.
        best.sort_unstable_by(|a, b| {
            a.projection.off_m.total_cmp(&b.projection.off_m).then(a.shape.cmp(&b.shape))
        });
        best
    }

    /// Stops inside a bounding box `[west, south, east, north]`.
    pub fn stops_in(&self, bbox: [f64; 4]) -> impl Iterator<Item = (StopIdx, &Stop)> {
        self.stops.iter().enumerate().filter_map(move |(i, s)| {
            (s.lon >= bbox[0] && s.lat >= bbox[1] && s.lon <= bbox[2] && s.lat <= bbox[3])
                .then_some((i as StopIdx, s))
        })
    }
}

fn describe_gtfs_error(e: &gtfs_structures::Error) -> String {
    use gtfs_structures::Error as G;
    match e {
        G::CSVError { file_name, source, line_in_error } => {
            let line = source.position().map(|p| p.line());
            let mut s = match line {
                Some(l) => format!("{file_name} line {l}: {source}"),
                None => format!("{file_name}: {source}"),
            };
            if let Some(le) = line_in_error {
                s.push_str(&format!(" (values: {})", le.values.join(",")));
            }
            s
        }
        G::NamedFileIO { file_name, source } => format!("{file_name}: {source}"),
        G::MissingFile(f) => format!("required file {f} is missing"),
        G::ReferenceError(id) => format!("a record refers to unknown id {id}"),
        other => {
            let mut s = other.to_string();
            let mut src = std::error::Error::source(other);
            while let Some(inner) = src {
                s.push_str(&format!(": {inner}"));
                src = inner.source();
            }
            s
        }
    }
}

fn invalid(path: &Path, detail: impl Into<String>) -> Error {
    Error::Gtfs { path: path.to_path_buf(), detail: detail.into() }
}

// gtfs-structures exposes `jiff` dates and `rgb` colours without re-exporting those crates, so
// these convert structurally instead of naming the types.
macro_rules! to_naive {
    ($d:expr) => {{
        let d = $d;
        NaiveDate::from_ymd_opt(i32::from(d.year()), d.month() as u32, d.day() as u32)
    }};
}

macro_rules! rgb_hex {
    ($c:expr) => {{
        let c = $c;
        format!("{:02X}{:02X}{:02X}", c.r, c.g, c.b)
    }};
}

/// A deterministic colour for routes that have none, so they remain distinguishable.
fn fallback_color(id: &str) -> String {
    const PALETTE: [&str; 10] = [
        "1F77B4", "FF7F0E", "2CA02C", "D62728", "9467BD", "8C564B", "E377C2", "7F7F7F", "BCBD22",
        "17BECF",
    ];
    let h = id.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    PALETTE[h as usize % PALETTE.len()].to_string()
}

fn build(path: &Path, gtfs: gtfs_structures::Gtfs) -> Result<Network, Error> {
    // Stops.
    let mut stop_ids: Vec<&String> = gtfs.stops.keys().collect();
    stop_ids.sort();
    let mut stops = Vec::new();
    let mut stop_by_id = HashMap::new();
    for id in stop_ids {
        let s = &gtfs.stops[id];
        if let (Some(lat), Some(lon)) = (s.latitude, s.longitude) {
            if !(lat.is_finite() && lon.is_finite() && lat.abs() <= 90.0 && lon.abs() <= 180.0) {
                return Err(invalid(path, format!("stops.txt: stop {id} has invalid coordinates")));
            }
            stop_by_id.insert(id.clone(), stops.len() as StopIdx);
            stops.push(Stop { id: id.clone(), name: s.name.clone().unwrap_or_default(), lat, lon });
        }
    }

    // Routes.
    let mut route_ids: Vec<&String> = gtfs.routes.keys().collect();
    route_ids.sort();
    let mut routes = Vec::new();
    let mut route_by_id = HashMap::new();
    for id in route_ids {
        let r = &gtfs.routes[id];
        let long_name = r.long_name.clone().unwrap_or_default();
        let short_name = r
            .short_name
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| (!long_name.is_empty()).then(|| long_name.clone()))
            .unwrap_or_else(|| id.clone());
        route_by_id.insert(id.clone(), routes.len() as RouteIdx);
        routes.push(Route {
            id: id.clone(),
            short_name,
            long_name,
            color: r.color.map(|c| rgb_hex!(c)).unwrap_or_else(|| fallback_color(id)),
            text_color: r.text_color.map(|c| rgb_hex!(c)).unwrap_or_else(|| "000000".into()),
            shapes: Vec::new(),
        });
    }
    if routes.is_empty() {
        return Err(invalid(path, "routes.txt has no routes"));
    }

    // Services.
    let mut services: Vec<Service> = Vec::new();
    let mut service_by_id: HashMap<String, ServiceIdx> = HashMap::new();
    let mut service_idx = |id: &str, services: &mut Vec<Service>| -> ServiceIdx {
        *service_by_id.entry(id.to_string()).or_insert_with(|| {
            services.push(Service {
                id: id.to_string(),
                weekdays: [false; 7],
                start: None,
                end: None,
                added: Vec::new(),
                removed: Vec::new(),
            });
            (services.len() - 1) as ServiceIdx
        })
    };
    let mut cal_ids: Vec<&String> = gtfs.calendar.keys().collect();
    cal_ids.sort();
    for id in cal_ids {
        let c = &gtfs.calendar[id];
        let i = service_idx(id, &mut services) as usize;
        services[i].weekdays =
            [c.monday, c.tuesday, c.wednesday, c.thursday, c.friday, c.saturday, c.sunday];
        services[i].start = to_naive!(c.start_date);
        services[i].end = to_naive!(c.end_date);
    }
    let mut cd_ids: Vec<&String> = gtfs.calendar_dates.keys().collect();
    cd_ids.sort();
    for id in cd_ids {
        let i = service_idx(id, &mut services) as usize;
        for d in &gtfs.calendar_dates[id] {
            let Some(date) = to_naive!(d.date) else { continue };
            match d.exception_type {
                gtfs_structures::Exception::Added => services[i].added.push(date),
                gtfs_structures::Exception::Deleted => services[i].removed.push(date),
            }
        }
    }

    // Shapes from shapes.txt.
    let mut shapes: Vec<Shape> = Vec::new();
    let mut shape_by_id: HashMap<String, ShapeIdx> = HashMap::new();
    let mut shape_ids: Vec<&String> = gtfs.shapes.keys().collect();
    shape_ids.sort();
    let mut unusable_shapes = Vec::new();
    for id in shape_ids {
        let mut pts = gtfs.shapes[id].clone();
        pts.sort_by_key(|p| p.sequence);
        if pts.iter().any(|p| !(p.latitude.is_finite() && p.longitude.is_finite())) {
            return Err(invalid(path, format!("shapes.txt: shape {id} has invalid coordinates")));
        }
        match Polyline::new(pts.iter().map(|p| (p.latitude, p.longitude))) {
            Some(line) => {
                shape_by_id.insert(id.clone(), shapes.len() as ShapeIdx);
                shapes.push(Shape {
                    id: id.clone(),
                    line,
                    derived: false,
                    route: 0,
                    direction_id: None,
                    headsign: None,
                    stops: Arc::from(Vec::new()),
                });
            }
            None => unusable_shapes.push(id.clone()),
        }
    }
    if !unusable_shapes.is_empty() {
        tracing::warn!(
            shapes = ?unusable_shapes,
            "shapes.txt: shapes with fewer than two distinct points; their trips use stop-derived shapes"
        );
    }

    // Trips.
    let mut trip_ids: Vec<&String> = gtfs.trips.keys().collect();
    trip_ids.sort();
    let mut trips: Vec<(Trip, Arc<[StopOnShape]>)> = Vec::new();
    // Stop patterns already projected onto a shape, shared between trips.
    let mut patterns: HashMap<(ShapeIdx, Vec<StopIdx>), Arc<[StopOnShape]>> = HashMap::new();
    let mut derived_by_pattern: HashMap<Vec<StopIdx>, ShapeIdx> = HashMap::new();
    let mut block_by_id: HashMap<String, u32> = HashMap::new();
    let mut skipped = 0usize;
    for id in trip_ids {
        let t = &gtfs.trips[id];
        let Some(&route) = route_by_id.get(&t.route_id) else {
            return Err(invalid(
                path,
                format!("trips.txt: trip {id} has unknown route {}", t.route_id),
            ));
        };
        let mut calls: Vec<(StopIdx, Option<u32>, Option<u32>)> = Vec::new();
        let mut st = t.stop_times.clone();
        st.sort_by_key(|s| s.stop_sequence);
        for s in &st {
            if let Some(&si) = stop_by_id.get(&s.stop.id) {
                calls.push((si, s.arrival_time, s.departure_time));
            }
        }
        if calls.len() < 2 {
            skipped += 1;
            continue;
        }
        let stop_seq: Vec<StopIdx> = calls.iter().map(|c| c.0).collect();
        let shape = match t.shape_id.as_ref().and_then(|s| shape_by_id.get(s)) {
            Some(&s) => s,
            None => match derived_by_pattern.get(&stop_seq) {
                Some(&s) => s,
                None => {
                    let pts =
                        stop_seq.iter().map(|&s| (stops[s as usize].lat, stops[s as usize].lon));
                    let Some(line) = Polyline::new(pts) else {
                        skipped += 1;
                        continue;
                    };
                    let sid = format!("derived:{id}");
                    let idx = shapes.len() as ShapeIdx;
                    shape_by_id.insert(sid.clone(), idx);
                    shapes.push(Shape {
                        id: sid,
                        line,
                        derived: true,
                        route,
                        direction_id: None,
                        headsign: None,
                        stops: Arc::from(Vec::new()),
                    });
                    derived_by_pattern.insert(stop_seq.clone(), idx);
                    idx
                }
            },
        };
        let on_shape = patterns
            .entry((shape, stop_seq.clone()))
            .or_insert_with(|| project_stops(&shapes[shape as usize].line, &stop_seq, &stops))
            .clone();
        let times = fill_times(&calls, &on_shape);
        let Some(times) = times else {
            return Err(invalid(
                path,
                format!("stop_times.txt: trip {id} has no arrival or departure times"),
            ));
        };
        let stop_times = on_shape
            .iter()
            .zip(times)
            .map(|(s, (arrival_s, departure_s))| StopTime {
                stop: s.stop,
                arrival_s,
                departure_s,
                dist_m: s.dist_m,
            })
            .collect();
        let block = t.block_id.as_ref().filter(|b| !b.is_empty()).map(|b| {
            let n = block_by_id.len() as u32;
            *block_by_id.entry(b.clone()).or_insert(n)
        });
        let trip = Trip {
            id: id.clone(),
            route,
            service: service_idx(&t.service_id, &mut services),
            direction_id: t.direction_id.map(|d| match d {
                gtfs_structures::DirectionType::Outbound => 0,
                gtfs_structures::DirectionType::Inbound => 1,
            }),
            headsign: t.trip_headsign.clone().filter(|h| !h.is_empty()),
            block,
            shape,
            stop_times,
            frequencies: t
                .frequencies
                .iter()
                .filter(|f| f.headway_secs > 0 && f.end_time > f.start_time)
                .map(|f| Frequency {
                    start_s: f.start_time,
                    end_s: f.end_time,
                    headway_s: f.headway_secs,
                })
                .collect(),
        };
        trips.push((trip, on_shape));
    }
    if trips.is_empty() {
        return Err(invalid(
            path,
            "no trip has two or more stops with coordinates (trips.txt / stop_times.txt)",
        ));
    }
    if skipped > 0 {
        tracing::warn!(skipped, "trips without two usable stops were skipped");
    }
    // Shape metadata from the trips that use them.
    // Patterns are shared Arcs, so identity is equality.
    let mut shape_patterns: HashMap<ShapeIdx, Vec<PatternCount>> = HashMap::new();
    let mut shape_headsigns: HashMap<ShapeIdx, HashMap<String, usize>> = HashMap::new();
    let mut shape_dirs: HashMap<ShapeIdx, Vec<Option<u8>>> = HashMap::new();
    let mut shape_route: HashMap<ShapeIdx, RouteIdx> = HashMap::new();
    for (t, pattern) in &trips {
        shape_route.entry(t.shape).or_insert(t.route);
        let counts = shape_patterns.entry(t.shape).or_default();
        match counts.iter_mut().find(|(p, _)| Arc::ptr_eq(p, pattern)) {
            Some((_, n)) => *n += 1,
            None => counts.push((pattern.clone(), 1)),
        }
        if let Some(h) = &t.headsign {
            *shape_headsigns.entry(t.shape).or_default().entry(h.clone()).or_default() += 1;
        }
        shape_dirs.entry(t.shape).or_default().push(t.direction_id);
    }
    let mut trips: Vec<Trip> = trips.into_iter().map(|(t, _)| t).collect();
    trips.sort_by(|a, b| (a.route, a.start_s(), &a.id).cmp(&(b.route, b.start_s(), &b.id)));
    let trip_by_id: HashMap<String, TripIdx> =
        trips.iter().enumerate().map(|(i, t)| (t.id.clone(), i as TripIdx)).collect();

    let mut blocks: Vec<Vec<TripIdx>> = vec![Vec::new(); block_by_id.len()];
    for (i, t) in trips.iter().enumerate() {
        if let Some(b) = t.block {
            blocks[b as usize].push(i as TripIdx);
        }
    }
    for b in &mut blocks {
        b.sort_by_key(|&t| trips[t as usize].start_s());
    }

    for (i, shape) in shapes.iter_mut().enumerate() {
        let i = i as ShapeIdx;
        if let Some(&r) = shape_route.get(&i) {
            shape.route = r;
            if !routes[r as usize].shapes.contains(&i) {
                routes[r as usize].shapes.push(i);
            }
        }
        if let Some(p) =
            shape_patterns.get(&i).and_then(|m| m.iter().max_by_key(|(p, n)| (*n, p.len())))
        {
            shape.stops = p.0.clone();
        }
        if let Some(h) = shape_headsigns
            .get(&i)
            .and_then(|m| m.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))))
        {
            shape.headsign = Some(h.0.clone());
        }
        if let Some(d) = shape_dirs.get(&i)
            && d.iter().all(|x| *x == d[0])
        {
            shape.direction_id = d[0];
        }
    }

    // Spatial index over every segment of every shape.
    let mut entries = Vec::new();
    let mut bbox = [f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY];
    for (si, shape) in shapes.iter().enumerate() {
        let l = &shape.line;
        for k in 0..l.len() - 1 {
            let (a_lat, a_lon) = l.point(k);
            let (b_lat, b_lon) = l.point(k + 1);
            entries.push(GeomWithData::new(
                Rectangle::from_corners([a_lon, a_lat], [b_lon, b_lat]),
                (si as ShapeIdx, k as u32),
            ));
        }
        for k in 0..l.len() {
            let (lat, lon) = l.point(k);
            extend(&mut bbox, lat, lon);
        }
    }
    for s in &stops {
        extend(&mut bbox, s.lat, s.lon);
    }

    let agency = gtfs.agencies.iter().map(|a| a.name.clone()).collect::<Vec<_>>().join(", ");
    let timezone = gtfs.agencies.first().map(|a| a.timezone.trim().to_string()).unwrap_or_default();
    Ok(Network {
        timezone,
        source: path.to_path_buf(),
        agency,
        routes,
        shapes,
        stops,
        trips,
        services,
        blocks,
        route_by_id,
        trip_by_id,
        shape_by_id,
        stop_by_id,
        segments: RTree::bulk_load(entries),
        bbox,
    })
}

fn extend(bbox: &mut [f64; 4], lat: f64, lon: f64) {
    bbox[0] = bbox[0].min(lon);
    bbox[1] = bbox[1].min(lat);
    bbox[2] = bbox[2].max(lon);
    bbox[3] = bbox[3].max(lat);
}

/// Places a trip's stops along its shape in order, minimising the total distance from each stop
/// to its placement. Greedy nearest-point placement fails on real feeds: on a loop the first and
/// last stop share a place, and a terminus that lies beyond the shape's start projects mid-way
/// and drags the following stops with it. So each stop gets a few candidates (local minima of
/// its distance to the line, plus the two ends) and a small dynamic programme picks the
/// cheapest non-decreasing sequence.
fn project_stops(line: &Polyline, seq: &[StopIdx], stops: &[Stop]) -> Arc<[StopOnShape]> {
    const MAX_CANDIDATES: usize = 8;
    let segments = line.len() - 1;
    let candidates: Vec<Vec<Projection>> = seq
        .iter()
        .map(|&s| {
            let stop = &stops[s as usize];
            let per_seg: Vec<Projection> =
                (0..segments).map(|k| line.project_segment(stop.lat, stop.lon, k)).collect();
            let mut c: Vec<Projection> = (0..segments)
                .filter(|&k| {
                    let off = per_seg[k].off_m;
                    (k == 0 || per_seg[k - 1].off_m >= off)
                        && (k + 1 == segments || per_seg[k + 1].off_m >= off)
                })
                .map(|k| per_seg[k])
                .collect();
            c.sort_by(|a, b| a.off_m.total_cmp(&b.off_m));
            c.truncate(MAX_CANDIDATES);
            // The ends keep every sequence feasible.
            c.push(line.project_window(stop.lat, stop.lon, 0.0, 0.0));
            c.push(line.project_window(stop.lat, stop.lon, line.length_m(), line.length_m()));
            c
        })
        .collect();

    // cost[i][c]: least total offset placing stops 0..=i with stop i at candidate c.
    let mut cost: Vec<Vec<f64>> = Vec::with_capacity(seq.len());
    let mut back: Vec<Vec<usize>> = Vec::with_capacity(seq.len());
    for (i, cands) in candidates.iter().enumerate() {
        let mut row = Vec::with_capacity(cands.len());
        let mut brow = Vec::with_capacity(cands.len());
        for c in cands {
            if i == 0 {
                row.push(c.off_m);
                brow.push(0);
                continue;
            }
            let (mut best, mut arg) = (f64::INFINITY, 0);
            for (j, p) in candidates[i - 1].iter().enumerate() {
                if p.dist_along_m <= c.dist_along_m && cost[i - 1][j] < best {
                    best = cost[i - 1][j];
                    arg = j;
                }
            }
            row.push(best + c.off_m);
            brow.push(arg);
        }
        cost.push(row);
        back.push(brow);
    }
    let mut out = vec![StopOnShape { stop: 0, dist_m: 0.0 }; seq.len()];
    let Some(last) = cost.last() else { return Arc::from(out) };
    let mut c = (0..last.len()).min_by(|&a, &b| last[a].total_cmp(&last[b])).unwrap_or(0);
    for i in (0..seq.len()).rev() {
        out[i] = StopOnShape { stop: seq[i], dist_m: candidates[i][c].dist_along_m };
        c = back[i][c];
    }
    Arc::from(out)
}

/// Arrival/departure for every call, interpolating blanks by distance between timed calls.
fn fill_times(
    calls: &[(StopIdx, Option<u32>, Option<u32>)],
    on_shape: &[StopOnShape],
) -> Option<Vec<(u32, u32)>> {
    let known: Vec<(usize, u32, u32)> = calls
        .iter()
        .enumerate()
        .filter_map(|(i, &(_, a, d))| match (a, d) {
            (Some(a), Some(d)) => Some((i, a, d.max(a))),
            (Some(a), None) => Some((i, a, a)),
            (None, Some(d)) => Some((i, d, d)),
            (None, None) => None,
        })
        .collect();
    let first = *known.first()?;
    let last = *known.last()?;
    let mut out = Vec::with_capacity(calls.len());
    let mut k = 0;
    for i in 0..calls.len() {
        while k + 1 < known.len() && known[k + 1].0 <= i {
            k += 1;
        }
        if i <= first.0 {
            out.push((first.1, first.2));
        } else if i >= last.0 {
            out.push(if i == last.0 { (last.1, last.2) } else { (last.2, last.2) });
        } else if known[k].0 == i {
            out.push((known[k].1, known[k].2));
        } else {
            let (a, b) = (known[k], known[k + 1]);
            let (da, db) = (on_shape[a.0].dist_m, on_shape[b.0].dist_m);
            let frac = if db > da { (on_shape[i].dist_m - da) / (db - da) } else { 0.5 };
            let t = a.2 as f64 + frac.clamp(0.0, 1.0) * (b.1.saturating_sub(a.2)) as f64;
            let t = t.round() as u32;
            out.push((t, t));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stop(id: &str, lat: f64, lon: f64) -> Stop {
        Stop { id: id.into(), name: id.into(), lat, lon }
    }

    #[test]
    fn loop_shape_places_first_and_last_stop_at_its_ends() {
        // A square loop starting and ending at the same corner.
        let line = Polyline::new([
            (-16.92, 145.77),
            (-16.92, 145.78),
            (-16.91, 145.78),
            (-16.91, 145.77),
            (-16.92, 145.77),
        ])
        .unwrap();
        let stops =
            vec![stop("a", -16.92, 145.77), stop("b", -16.91, 145.78), stop("a2", -16.92, 145.77)];
        let placed = project_stops(&line, &[0, 1, 2], &stops);
        assert!(placed[0].dist_m < 1.0, "{placed:?}");
        assert!((placed[2].dist_m - line.length_m()).abs() < 1.0, "{placed:?}");
        assert!(placed[1].dist_m > placed[0].dist_m && placed[1].dist_m < placed[2].dist_m);
    }

    #[test]
    fn blank_times_are_interpolated_by_distance() {
        let on = [
            StopOnShape { stop: 0, dist_m: 0.0 },
            StopOnShape { stop: 1, dist_m: 250.0 },
            StopOnShape { stop: 2, dist_m: 1000.0 },
        ];
        let t = fill_times(
            &[(0, Some(100), Some(100)), (1, None, None), (2, Some(500), Some(500))],
            &on,
        )
        .unwrap();
        assert_eq!(t, vec![(100, 100), (200, 200), (500, 500)]);
        assert!(fill_times(&[(0, None, None), (1, None, None)], &on).is_none());
    }

    /// `load` refuses what gtfs-structures would panic on or misread before it reads the feed,
    /// naming the feed, the file and the line (the fuzz findings, docs/fuzzing.md 3 and 4).
    #[test]
    fn load_refuses_values_gtfs_structures_mishandles() {
        use crate::gtfs_check::tests::bundled_dir_with;
        // The first call of the bundled feed (05:50:00, line 2), with an hour count whose
        // seconds overflow u32.
        let dir =
            bundled_dir_with("stop_times.txt", |t| t.replacen(",05:50:00,", ",12714106:35:00,", 1));
        let err = Network::load(dir.path()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        assert!(
            err.contains("stop_times.txt line 2: malformed arrival_time \"12714106:35:00\""),
            "{err}"
        );
        let dir = bundled_dir_with("routes.txt", |t| t.replacen("7BC142", "7B\u{feff}2", 1));
        let err = Network::load(dir.path()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("routes.txt line 2: malformed route_color"), "{err}");
    }
}
