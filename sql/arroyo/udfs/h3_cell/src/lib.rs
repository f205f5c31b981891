/*
[dependencies]
h3o = "0.11"
*/

//! `h3_cell(lat, lon, res)`: the H3 cell containing a WGS84 point, as busflow writes it on the
//! wire: the cell index as 15 lowercase hex digits (busflow_core::h3::cell_string).
//!
//! This file is what gets pasted into Arroyo's UDF editor (or sent to its UDF API): Arroyo reads
//! the dependency comment above, generates a Cargo.toml from it and builds the file as a dynamic
//! library. `h3o` must stay on the minor version the main workspace uses, so that Arroyo and the
//! timely pipeline put a point in the same cell.

use arroyo_udf_plugin::udf;
use h3o::{LatLng, Resolution};

/// NULL (None) when the resolution is not 0..=15 or the coordinates are not a WGS84 position
/// (NaN, infinite, |lat| > 90, |lon| > 180: H3 itself would wrap those around the globe); the
/// same inputs for which busflow-core's `h3::resolution` / `h3::cell_string` return an error.
#[udf]
pub fn h3_cell(lat: f64, lon: f64, res: i64) -> Option<String> {
    if !(lat.abs() <= 90.0 && lon.abs() <= 180.0) {
        return None;
    }
    let res = Resolution::try_from(u8::try_from(res).ok()?).ok()?;
    let point = LatLng::new(lat, lon).ok()?;
    Some(point.to_cell(res).to_string())
}
