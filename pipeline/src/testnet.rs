//! A small synthetic GTFS feed with the awkward geometries: two directions on one road, a
//! loop, an out-and-back and a two-trip block.

use std::fmt::Write as _;
use std::sync::Arc;

use busflow_core::Network;

pub(crate) struct Shape {
    pub id: &'static str,
    pub points: Vec<(f64, f64)>,
}

pub(crate) fn shapes() -> Vec<Shape> {
    let east = vec![(-16.92, 145.70), (-16.92, 145.71), (-16.92, 145.72), (-16.92, 145.728)];
    let mut west = east.clone();
    west.reverse();
    vec![
        Shape { id: "line_e", points: east },
        Shape { id: "line_w", points: west },
        Shape {
            id: "loop",
            points: vec![
                (-16.95, 145.70),
                (-16.95, 145.71),
                (-16.94, 145.71),
                (-16.94, 145.70),
                (-16.95, 145.70),
            ],
        },
        Shape {
            id: "outback",
            points: vec![
                (-16.97, 145.70),
                (-16.97, 145.71),
                (-16.97, 145.72),
                (-16.97, 145.71),
                (-16.97, 145.70),
            ],
        },
        Shape { id: "b1", points: vec![(-16.90, 145.70), (-16.90, 145.71)] },
        Shape { id: "b2", points: vec![(-16.90, 145.71), (-16.89, 145.71)] },
    ]
}

/// (trip_id, route_id, shape_id, direction_id, block_id, start hour)
const TRIPS: [(&str, &str, &str, u8, &str, u32); 6] = [
    ("t_e", "R1", "line_e", 0, "", 6),
    ("t_w", "R1", "line_w", 1, "", 6),
    ("t_loop", "R2", "loop", 0, "", 6),
    ("t_ob", "R3", "outback", 0, "", 6),
    ("t_b1", "R4", "b1", 0, "blk", 6),
    ("t_b2", "R4", "b2", 0, "blk", 7),
];

pub(crate) fn network() -> Arc<Network> {
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
    w(
        "agency.txt",
        "agency_id,agency_name,agency_url,agency_timezone\nA,Test,http://x,Australia/Brisbane\n"
            .into(),
    );
    w(
        "routes.txt",
        "route_id,agency_id,route_short_name,route_long_name,route_type,route_color\n\
         R1,A,1,One,3,FF0000\nR2,A,2,Loop,3,00FF00\nR3,A,3,Out and back,3,0000FF\nR4,A,4,Block,3,123456\n"
            .into(),
    );
    w("calendar.txt", "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\nS,1,1,1,1,1,1,1,20200101,20301231\n".into());
    let mut shapes_txt = String::from("shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence\n");
    let mut stops_txt = String::from("stop_id,stop_name,stop_lat,stop_lon\n");
    let mut trips_txt =
        String::from("route_id,service_id,trip_id,trip_headsign,direction_id,block_id,shape_id\n");
    let mut st_txt = String::from("trip_id,arrival_time,departure_time,stop_id,stop_sequence\n");
    let all = shapes();
    for s in &all {
        for (i, (lat, lon)) in s.points.iter().enumerate() {
            writeln!(shapes_txt, "{},{lat},{lon},{}", s.id, i + 1).unwrap();
        }
    }
    for (trip, route, shape, dir, block, hour) in TRIPS {
        let s = all.iter().find(|s| s.id == shape).unwrap();
        writeln!(trips_txt, "{route},S,{trip},to {shape},{dir},{block},{shape}").unwrap();
        for (i, (lat, lon)) in s.points.iter().enumerate() {
            let stop = format!("{shape}_{i}");
            writeln!(stops_txt, "{stop},{stop},{lat},{lon}").unwrap();
            let t = format!("{hour:02}:{:02}:00", i * 5);
            writeln!(st_txt, "{trip},{t},{t},{stop},{}", i + 1).unwrap();
        }
    }
    w("shapes.txt", shapes_txt);
    w("stops.txt", stops_txt);
    w("trips.txt", trips_txt);
    w("stop_times.txt", st_txt);
    Arc::new(Network::load(dir.path()).unwrap())
}
