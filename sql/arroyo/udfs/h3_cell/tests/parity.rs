//! `h3_cell` must give exactly what busflow-core gives the timely pipeline: the same cell for
//! every point and resolution, and NULL (None) wherever busflow-core returns an error.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use busflow_arroyo_udf_h3_cell::h3_cell;
use busflow_core::h3;

/// What busflow-core says for the same call, with a UDF-style i64 resolution.
fn core_cell(lat: f64, lon: f64, res: i64) -> Option<String> {
    let res = u8::try_from(res).ok()?;
    let res = h3::resolution(res).ok()?;
    h3::cell_string(lat, lon, res).ok()
}

#[test]
fn grid_over_cairns_matches_core_at_every_resolution() {
    // The Sunbus Cairns network lies within about -17.1..-16.7 S, 145.6..145.9 E.
    let mut compared = 0;
    for i in 0..=80 {
        let lat = -17.1 + f64::from(i) * 0.005;
        for j in 0..=60 {
            let lon = 145.6 + f64::from(j) * 0.005;
            for res in 0..=15 {
                let udf = h3_cell(lat, lon, res);
                assert!(udf.is_some(), "({lat}, {lon}) res {res}");
                assert_eq!(udf, core_cell(lat, lon, res), "({lat}, {lon}) res {res}");
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 81 * 61 * 16);
}

#[test]
fn wire_form_is_15_lowercase_hex_digits() {
    let c = h3_cell(-16.9186, 145.7781, 12).unwrap();
    assert_eq!(c.len(), 15, "{c}");
    assert!(c.chars().all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase()), "{c}");
}

#[test]
fn edge_cases_match_core_and_are_null_where_core_fails() {
    let points = [
        (f64::NAN, 145.7),
        (-16.9, f64::NAN),
        (f64::INFINITY, 0.0),
        (0.0, f64::NEG_INFINITY),
        (0.0, 0.0),
        (90.0, 180.0),
        (-90.0, -180.0),
        (89.999_999, 179.999_999),
        (91.0, 0.0),
        (0.0, 181.0),
        (-1000.0, 5000.0),
        (f64::MAX, f64::MIN),
        (1e-7, -1e-7),
        (-16.9186, 145.7781),
    ];
    let resolutions = [-1, 0, 1, 12, 15, 16, 255, 256, i64::MIN, i64::MAX];
    for (lat, lon) in points {
        for res in resolutions {
            assert_eq!(
                h3_cell(lat, lon, res),
                core_cell(lat, lon, res),
                "({lat}, {lon}) res {res}"
            );
        }
    }
    assert_eq!(h3_cell(f64::NAN, 145.7, 12), None);
    assert_eq!(h3_cell(-16.9, f64::INFINITY, 12), None);
    assert_eq!(h3_cell(-16.9, 145.7, 16), None);
    assert_eq!(h3_cell(-16.9, 145.7, -1), None);
    assert_eq!(h3_cell(91.0, 0.0, 12), None, "out of range, not wrapped round the pole");
}
