//! `h3_parent` must give exactly what busflow-core's `h3::parent_string` gives, and NULL (None)
//! wherever busflow-core returns an error.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use busflow_arroyo_udf_h3_parent::h3_parent;
use busflow_core::h3;

fn core_parent(cell: &str, res: i64) -> Option<String> {
    h3::parent_string(cell, u8::try_from(res).ok()?).ok()
}

#[test]
fn parents_of_a_grid_over_cairns_match_core() {
    let mut some = 0;
    let mut none = 0;
    for i in 0..=40 {
        let lat = -17.1 + f64::from(i) * 0.01;
        for j in 0..=30 {
            let lon = 145.6 + f64::from(j) * 0.01;
            for cell_res in [0u8, 7, 12, 15] {
                let cell = h3::cell_string(lat, lon, h3::resolution(cell_res).unwrap()).unwrap();
                for res in -1..=16 {
                    let udf = h3_parent(&cell, res);
                    assert_eq!(udf, core_parent(&cell, res), "{cell} -> res {res}");
                    // Coarser or equal resolution: a parent; finer, or out of range: NULL.
                    let expect_some = (0..=i64::from(cell_res)).contains(&res);
                    assert_eq!(udf.is_some(), expect_some, "{cell} -> res {res}");
                    if expect_some {
                        some += 1;
                    } else {
                        none += 1;
                    }
                }
            }
        }
    }
    assert!(some > 20_000 && none > 20_000, "{some} {none}");
}

#[test]
fn parent_is_the_cell_of_the_point_at_the_coarser_resolution() {
    let c12 = h3::cell_string(-16.9186, 145.7781, h3::resolution(12).unwrap()).unwrap();
    let c7 = h3::cell_string(-16.9186, 145.7781, h3::resolution(7).unwrap()).unwrap();
    assert_eq!(h3_parent(&c12, 7), Some(c7));
    assert_eq!(h3_parent(&c12, 12), Some(c12.clone()));
    assert_eq!(h3_parent(&c12, 13), None, "finer than the cell");
}

#[test]
fn bad_cell_strings_and_resolutions_match_core() {
    let good = h3::cell_string(-16.9186, 145.7781, h3::resolution(12).unwrap()).unwrap();
    let upper = good.to_uppercase();
    let padded = format!(" {good}");
    let truncated = good[..14].to_string();
    let longer = format!("{good}f");
    let cells = [
        "",
        "zz",
        "0",
        "ffffffffffffffff",
        "8c2a1072b59ffff0",
        "not a cell",
        upper.as_str(),
        padded.as_str(),
        truncated.as_str(),
        longer.as_str(),
        good.as_str(),
    ];
    for cell in cells {
        for res in [-5, -1, 0, 5, 12, 13, 15, 16, 255, 256, i64::MAX, i64::MIN] {
            assert_eq!(h3_parent(cell, res), core_parent(cell, res), "{cell:?} -> res {res}");
        }
    }
    assert_eq!(h3_parent("zz", 5), None);
    assert_eq!(h3_parent("", 0), None);
    assert_eq!(h3_parent(&good, 16), None);
    assert_eq!(h3_parent(&good, -1), None);
}
