//! SQL functions over positions, computed by the same code as the pipeline (`busflow_core`), so a
//! cell computed in SQL is the cell the pipeline wrote.
//!
//! | function | returns |
//! |---|---|
//! | `h3_cell(lat, lon, res)` | the H3 cell (15 hex digits) containing the point |
//! | `h3_parent(cell, res)` | the cell's ancestor at a coarser resolution |
//! | `h3_to_lat(cell)`, `h3_to_lon(cell)` | the cell centre |
//! | `h3_resolution(cell)` | the cell's resolution |
//! | `haversine_m(lat1, lon1, lat2, lon2)` | great-circle distance in metres |
//!
//! Invalid input (NaN or out-of-range coordinates, a resolution outside 0..=15, a malformed
//! cell, a parent finer than its cell) gives NULL, as SQL functions do for undefined values.

use std::sync::Arc;

use busflow_core::{geometry, h3};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray as _, Float64Array, Float64Builder, Int64Array, Int64Builder,
    PrimitiveArray, StringBuilder,
};
use datafusion::arrow::datatypes::{ArrowPrimitiveType, DataType, Float64Type, Int64Type};
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;

/// Every function this module defines.
pub fn all() -> Vec<ScalarUDF> {
    use DataType::{Float64, Int64, Utf8};
    let f = |name: &str, args: Vec<DataType>, ret: DataType, imp: Imp| {
        create_udf(name, args, ret, Volatility::Immutable, Arc::new(imp))
    };
    vec![
        f("h3_cell", vec![Float64, Float64, Int64], Utf8, h3_cell),
        f("h3_parent", vec![Utf8, Int64], Utf8, h3_parent),
        f("h3_to_lat", vec![Utf8], Float64, |a| h3_center(a, 0)),
        f("h3_to_lon", vec![Utf8], Float64, |a| h3_center(a, 1)),
        f("h3_resolution", vec![Utf8], Int64, h3_resolution),
        f("haversine_m", vec![Float64, Float64, Float64, Float64], Float64, haversine),
    ]
}

/// Registers every function on a session.
pub fn register(ctx: &SessionContext) {
    for f in all() {
        ctx.register_udf(f);
    }
}

type Imp = fn(&[ColumnarValue]) -> Result<ColumnarValue>;

/// The arguments as arrays of one length (scalars broadcast), and whether all were scalars.
fn arrays(args: &[ColumnarValue]) -> Result<(Vec<ArrayRef>, bool)> {
    let scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    Ok((ColumnarValue::values_to_arrays(args)?, scalar))
}

fn finish(out: ArrayRef, scalar: bool) -> Result<ColumnarValue> {
    if scalar {
        return Ok(ColumnarValue::Scalar(datafusion::scalar::ScalarValue::try_from_array(
            &out, 0,
        )?));
    }
    Ok(ColumnarValue::Array(out))
}

fn f64s(a: &ArrayRef) -> Result<&Float64Array> {
    a.as_primitive_opt::<Float64Type>()
        .ok_or_else(|| DataFusionError::Internal(format!("expected DOUBLE, got {}", a.data_type())))
}

fn i64s(a: &ArrayRef) -> Result<&Int64Array> {
    a.as_primitive_opt::<Int64Type>()
        .ok_or_else(|| DataFusionError::Internal(format!("expected BIGINT, got {}", a.data_type())))
}

fn strs(a: &ArrayRef) -> Result<Vec<Option<&str>>> {
    match a.data_type() {
        DataType::Utf8 => Ok(a.as_string::<i32>().iter().collect()),
        DataType::LargeUtf8 => Ok(a.as_string::<i64>().iter().collect()),
        DataType::Utf8View => Ok(a.as_string_view().iter().collect()),
        t => Err(DataFusionError::Internal(format!("expected VARCHAR, got {t}"))),
    }
}

fn opt<T: ArrowPrimitiveType>(a: &PrimitiveArray<T>, i: usize) -> Option<T::Native> {
    a.is_valid(i).then(|| a.value(i))
}

/// The resolution as H3 takes it, when it is one.
fn res_of(r: i64) -> Option<h3o::Resolution> {
    u8::try_from(r).ok().and_then(|r| h3::resolution(r).ok())
}

fn h3_cell(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let (a, scalar) = arrays(args)?;
    let (lat, lon, res) = (f64s(&a[0])?, f64s(&a[1])?, i64s(&a[2])?);
    let mut out = StringBuilder::with_capacity(lat.len(), lat.len() * 15);
    for i in 0..lat.len() {
        let cell = match (opt(lat, i), opt(lon, i), opt(res, i).and_then(res_of)) {
            (Some(la), Some(lo), Some(r)) => h3::cell_string(la, lo, r).ok(),
            _ => None,
        };
        out.append_option(cell);
    }
    finish(Arc::new(out.finish()), scalar)
}

fn h3_parent(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let (a, scalar) = arrays(args)?;
    let (cells, res) = (strs(&a[0])?, i64s(&a[1])?);
    let mut out = StringBuilder::with_capacity(cells.len(), cells.len() * 15);
    for (i, cell) in cells.iter().enumerate() {
        let parent = match (cell, opt(res, i).and_then(|r| u8::try_from(r).ok())) {
            (Some(c), Some(r)) => h3::parent_string(c, r).ok(),
            _ => None,
        };
        out.append_option(parent);
    }
    finish(Arc::new(out.finish()), scalar)
}

fn h3_center(args: &[ColumnarValue], which: usize) -> Result<ColumnarValue> {
    let (a, scalar) = arrays(args)?;
    let cells = strs(&a[0])?;
    let mut out = Float64Builder::with_capacity(cells.len());
    for cell in &cells {
        let c = cell.and_then(|c| h3::center(c).ok());
        out.append_option(c.map(|(lat, lon)| if which == 0 { lat } else { lon }));
    }
    finish(Arc::new(out.finish()), scalar)
}

fn h3_resolution(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let (a, scalar) = arrays(args)?;
    let cells = strs(&a[0])?;
    let mut out = Int64Builder::with_capacity(cells.len());
    for cell in &cells {
        let r =
            cell.and_then(|c| h3::parse_cell(c).ok()).map(|c| i64::from(u8::from(c.resolution())));
        out.append_option(r);
    }
    finish(Arc::new(out.finish()), scalar)
}

fn haversine(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let (a, scalar) = arrays(args)?;
    let cols = [f64s(&a[0])?, f64s(&a[1])?, f64s(&a[2])?, f64s(&a[3])?];
    let mut out = Float64Builder::with_capacity(cols[0].len());
    for i in 0..cols[0].len() {
        let d = match cols.map(|c| opt(c, i)) {
            [Some(la1), Some(lo1), Some(la2), Some(lo2)] => {
                let d = geometry::haversine_m(la1, lo1, la2, lo2);
                d.is_finite().then_some(d)
            }
            _ => None,
        };
        out.append_option(d);
    }
    finish(Arc::new(out.finish()), scalar)
}
