/*
[dependencies]
h3o = "0.11"
*/

//! `h3_parent(cell, res)`: the ancestor of a wire-form H3 cell (15 lowercase hex digits) at a
//! coarser resolution, in wire form (busflow_core::h3::parent_string). `bus.positions` carries
//! cells at resolution 12; consumers derive any coarser cell with this.
//!
//! This file is what gets pasted into Arroyo's UDF editor (or sent to its UDF API); see
//! sql/arroyo/README.md.

use arroyo_udf_plugin::udf;
use h3o::{CellIndex, Resolution};

/// NULL (None) when `cell` is not a valid cell id, the resolution is not 0..=15, or it is finer
/// than the cell's own; the same inputs for which busflow-core's `h3::parent_string` fails.
#[udf]
pub fn h3_parent(cell: &str, res: i64) -> Option<String> {
    let cell = cell.parse::<CellIndex>().ok()?;
    let res = Resolution::try_from(u8::try_from(res).ok()?).ok()?;
    cell.parent(res).map(|p| p.to_string())
}
