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

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::datasource::MemTable;

    /// A grid over Cairns at every resolution, plus inputs H3 refuses.
    fn points() -> Vec<(Option<f64>, Option<f64>, Option<i64>)> {
        let mut out = Vec::new();
        for i in 0..21 {
            for j in 0..16 {
                let lat = -17.1 + 0.02 * f64::from(i);
                let lon = 145.6 + 0.02 * f64::from(j);
                out.push((Some(lat), Some(lon), Some(i64::from(j))));
            }
        }
        out.extend([
            (Some(f64::NAN), Some(145.7), Some(9)),
            (Some(91.0), Some(145.7), Some(9)),
            (Some(-16.9), Some(f64::INFINITY), Some(9)),
            (Some(-16.9), Some(145.7), Some(16)),
            (Some(-16.9), Some(145.7), Some(-1)),
            (None, Some(145.7), Some(9)),
            (Some(-16.9), Some(145.7), None),
        ]);
        out
    }

    async fn session() -> SessionContext {
        let pts = points();
        let schema = Arc::new(Schema::new(vec![
            Field::new("lat", DataType::Float64, true),
            Field::new("lon", DataType::Float64, true),
            Field::new("res", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(pts.iter().map(|p| p.0).collect::<Float64Array>()),
                Arc::new(pts.iter().map(|p| p.1).collect::<Float64Array>()),
                Arc::new(pts.iter().map(|p| p.2).collect::<Int64Array>()),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        register(&ctx);
        ctx.register_table("pts", Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()))
            .unwrap();
        ctx
    }

    fn core_cell(lat: Option<f64>, lon: Option<f64>, res: Option<i64>) -> Option<String> {
        let r = h3::resolution(u8::try_from(res?).ok()?).ok()?;
        h3::cell_string(lat?, lon?, r).ok()
    }

    #[tokio::test]
    async fn every_function_agrees_with_the_pipelines_code() {
        let ctx = session().await;
        let sql = "SELECT h3_cell(lat, lon, res) AS c, h3_parent(h3_cell(lat, lon, res), res - 2) AS p, \
                   h3_to_lat(h3_cell(lat, lon, res)) AS clat, h3_to_lon(h3_cell(lat, lon, res)) AS clon, \
                   h3_resolution(h3_cell(lat, lon, res)) AS r, haversine_m(lat, lon, -16.92, 145.77) AS d \
                   FROM pts";
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, points().len());
        let mut i = 0;
        let mut nulls = 0;
        for b in &batches {
            let c = b.column(0).as_string::<i32>();
            let p = b.column(1).as_string::<i32>();
            let clat = b.column(2).as_primitive::<Float64Type>();
            let clon = b.column(3).as_primitive::<Float64Type>();
            let r = b.column(4).as_primitive::<Int64Type>();
            let d = b.column(5).as_primitive::<Float64Type>();
            for k in 0..b.num_rows() {
                let (lat, lon, res) = points()[i];
                let want = core_cell(lat, lon, res);
                assert_eq!(c.is_valid(k).then(|| c.value(k).to_string()), want, "row {i}");
                let want_parent = want.as_deref().and_then(|w| {
                    u8::try_from(res? - 2).ok().and_then(|pr| h3::parent_string(w, pr).ok())
                });
                assert_eq!(p.is_valid(k).then(|| p.value(k).to_string()), want_parent, "row {i}");
                let centre = want.as_deref().and_then(|w| h3::center(w).ok());
                assert_eq!(opt(clat, k).zip(opt(clon, k)), centre, "row {i}");
                assert_eq!(opt(r, k), want.as_ref().and(res), "row {i}");
                let want_d = match (lat, lon) {
                    (Some(a), Some(o)) => {
                        Some(geometry::haversine_m(a, o, -16.92, 145.77)).filter(|x| x.is_finite())
                    }
                    _ => None,
                };
                assert_eq!(opt(d, k), want_d, "row {i}");
                nulls += usize::from(want.is_none());
                i += 1;
            }
        }
        assert_eq!(nulls, 7, "exactly the refused inputs give NULL");
    }

    #[tokio::test]
    async fn scalars_and_narrower_types_are_accepted() {
        let ctx = session().await;
        let sql = "SELECT h3_cell(-16.92, 145.77, 9) AS a, \
                   h3_cell(CAST(-16.92 AS FLOAT), CAST(145.77 AS FLOAT), CAST(9 AS INT)) AS b, \
                   h3_parent(CAST(h3_cell(-16.92, 145.77, 9) AS VARCHAR), 7) AS p";
        let b = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let row = &b[0];
        let want = h3::cell_string(-16.92, 145.77, h3o::Resolution::Nine).unwrap();
        assert_eq!(strs(row.column(0)).unwrap(), [Some(want.as_str())]);
        // FLOAT and INT arguments are widened to DOUBLE and BIGINT; the float's rounding
        // (about 1e-6 degrees) is far smaller than a resolution-9 cell, so the cell is the same.
        let b32 = strs(row.column(1)).unwrap();
        assert_eq!(b32, [Some(want.as_str())]);
        let parent = h3::parent_string(&want, 7).unwrap();
        assert_eq!(strs(row.column(2)).unwrap(), [Some(parent.as_str())]);
        assert!(ctx.sql("SELECT h3_cell(1.0, 2.0)").await.is_err(), "arity is checked");
    }
}
