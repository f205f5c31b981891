//! The SQL tables: their Arrow schemas and the conversion of topic records into record batches.
//!
//! Column names and types follow the wire contracts (`docs/topics.md`): epoch-millisecond fields
//! become `TIMESTAMP` (UTC), optional fields become nullable columns. Every table also carries
//! where its rows came from on Kafka (`kafka_partition`, `kafka_offset`, `kafka_ts`), so a result
//! can always be traced back to the message behind it.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use busflow_core::{RawPosition, Rejected, VehiclePosition};
use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, Float32Builder, Float64Builder, Int32Builder, Int64Builder,
    StringBuilder, TimestampMillisecondBuilder, UInt8Builder, UInt16Builder, UInt64Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

/// One message as read from a topic or a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Kafka partition; `None` for records read from a file.
    pub partition: Option<i32>,
    /// Kafka offset, or the 0-based line number for records read from a file.
    pub offset: i64,
    /// The message's Kafka timestamp, epoch milliseconds, when it has one.
    pub timestamp_ms: Option<i64>,
    /// Message key.
    pub key: Option<Vec<u8>>,
    /// Message value; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
}

/// The tables `busflow sql` can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TableName {
    /// `bus.positions`: every accepted, enriched position.
    Positions,
    /// `bus.rejected`: every refused raw message with its reason.
    Rejected,
    /// `bus.raw`: raw device messages, parsed where possible.
    Raw,
    /// Latest position per active vehicle (from the compacted `bus.latest`).
    Vehicles,
}

impl TableName {
    /// Every table.
    pub const ALL: [TableName; 4] =
        [TableName::Positions, TableName::Rejected, TableName::Raw, TableName::Vehicles];

    /// The table's SQL name.
    pub fn as_str(self) -> &'static str {
        match self {
            TableName::Positions => "positions",
            TableName::Rejected => "rejected",
            TableName::Raw => "raw",
            TableName::Vehicles => "vehicles",
        }
    }

    /// The table with this SQL name (case-insensitive, as SQL identifiers are).
    pub fn parse(name: &str) -> Option<TableName> {
        TableName::ALL.into_iter().find(|t| t.as_str().eq_ignore_ascii_case(name))
    }

    /// The table's Arrow schema.
    pub fn schema(self) -> SchemaRef {
        match self {
            TableName::Positions | TableName::Vehicles => position_schema(),
            TableName::Rejected => rejected_schema(),
            TableName::Raw => raw_schema(),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn kafka_fields() -> [Field; 3] {
    [
        Field::new("kafka_partition", DataType::Int32, true),
        Field::new("kafka_offset", DataType::Int64, false),
        Field::new("kafka_ts", timestamp(), true),
    ]
}

fn with_kafka(mut fields: Vec<Field>) -> SchemaRef {
    fields.extend(kafka_fields());
    Arc::new(Schema::new(fields))
}

/// Schema of `positions` and `vehicles`: [`VehiclePosition`] field for field.
pub fn position_schema() -> SchemaRef {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    let f64n = |n: &str| Field::new(n, DataType::Float64, true);
    with_kafka(vec![
        Field::new("v", DataType::UInt16, false),
        Field::new("vehicle_id", DataType::Utf8, false),
        Field::new("ts", timestamp(), false),
        Field::new("lat", DataType::Float64, false),
        Field::new("lon", DataType::Float64, false),
        f64n("snapped_lat"),
        f64n("snapped_lon"),
        s("route_id"),
        s("route_short_name"),
        s("route_color"),
        s("trip_id"),
        s("shape_id"),
        Field::new("direction_id", DataType::UInt8, true),
        s("headsign"),
        f64n("dist_along_m"),
        f64n("off_route_m"),
        Field::new("speed_mps", DataType::Float32, true),
        Field::new("bearing_deg", DataType::Float32, true),
        s("next_stop_id"),
        f64n("next_stop_dist_m"),
        Field::new("h3_cell", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("seq", DataType::UInt64, true),
        Field::new("processed_ts", timestamp(), false),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
    ])
}

/// Schema of `rejected`: [`Rejected`] plus the original bytes decoded from base64.
pub fn rejected_schema() -> SchemaRef {
    with_kafka(vec![
        Field::new("v", DataType::UInt16, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, false),
        Field::new("vehicle_id", DataType::Utf8, true),
        Field::new("raw_b64", DataType::Utf8, false),
        Field::new("key_b64", DataType::Utf8, true),
        // Decoded for convenience: the bytes, and the text when they are UTF-8.
        Field::new("raw", DataType::Binary, true),
        Field::new("raw_text", DataType::Utf8, true),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new("rejected_ts", timestamp(), false),
    ])
}

/// Schema of `raw`: every message, with [`RawPosition`]'s fields where the value parses and the
/// parse error where it does not.
pub fn raw_schema() -> SchemaRef {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    let f32n = |n: &str| Field::new(n, DataType::Float32, true);
    with_kafka(vec![
        s("key"),
        Field::new("value", DataType::Binary, true),
        s("value_text"),
        s("parse_error"),
        Field::new("v", DataType::UInt16, true),
        s("vehicle_id"),
        Field::new("ts", timestamp(), true),
        Field::new("lat", DataType::Float64, true),
        Field::new("lon", DataType::Float64, true),
        f32n("speed_mps"),
        f32n("bearing_deg"),
        f32n("accuracy_m"),
        s("route_id"),
        s("trip_id"),
        Field::new("seq", DataType::UInt64, true),
    ])
}

/// A record that could not be decoded into its table's contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    /// Where it was.
    pub partition: Option<i32>,
    /// Its offset (or 0-based line in a file).
    pub offset: i64,
    /// Why.
    pub detail: String,
}

/// Rows built from records, and the records that were left out.
#[derive(Debug)]
pub struct Converted {
    /// The rows.
    pub batch: RecordBatch,
    /// Records that did not decode (never silently: callers report them).
    pub undecodable: Vec<Undecodable>,
}

#[derive(Default)]
struct KafkaCols {
    partition: Int32Builder,
    offset: Int64Builder,
    ts: TimestampMillisecondBuilder,
}

impl KafkaCols {
    fn push(&mut self, r: &Record) {
        self.partition.append_option(r.partition);
        self.offset.append_value(r.offset);
        self.ts.append_option(r.timestamp_ms);
    }

    fn finish(mut self, cols: &mut Vec<ArrayRef>) {
        cols.push(Arc::new(self.partition.finish()));
        cols.push(Arc::new(self.offset.finish()));
        cols.push(Arc::new(self.ts.finish().with_timezone("UTC")));
    }
}

#[derive(Default)]
struct PositionCols {
    v: UInt16Builder,
    vehicle_id: StringBuilder,
    ts: TimestampMillisecondBuilder,
    lat: Float64Builder,
    lon: Float64Builder,
    snapped_lat: Float64Builder,
    snapped_lon: Float64Builder,
    route_id: StringBuilder,
    route_short_name: StringBuilder,
    route_color: StringBuilder,
    trip_id: StringBuilder,
    shape_id: StringBuilder,
    direction_id: UInt8Builder,
    headsign: StringBuilder,
    dist_along_m: Float64Builder,
    off_route_m: Float64Builder,
    speed_mps: Float32Builder,
    bearing_deg: Float32Builder,
    next_stop_id: StringBuilder,
    next_stop_dist_m: Float64Builder,
    h3_cell: StringBuilder,
    status: StringBuilder,
    seq: UInt64Builder,
    processed_ts: TimestampMillisecondBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    kafka: KafkaCols,
}

impl PositionCols {
    fn push(&mut self, p: &VehiclePosition, r: &Record) {
        self.v.append_value(p.v);
        self.vehicle_id.append_value(&p.vehicle_id);
        self.ts.append_value(p.ts);
        self.lat.append_value(p.lat);
        self.lon.append_value(p.lon);
        self.snapped_lat.append_option(p.snapped_lat);
        self.snapped_lon.append_option(p.snapped_lon);
        self.route_id.append_option(p.route_id.as_deref());
        self.route_short_name.append_option(p.route_short_name.as_deref());
        self.route_color.append_option(p.route_color.as_deref());
        self.trip_id.append_option(p.trip_id.as_deref());
        self.shape_id.append_option(p.shape_id.as_deref());
        self.direction_id.append_option(p.direction_id);
        self.headsign.append_option(p.headsign.as_deref());
        self.dist_along_m.append_option(p.dist_along_m);
        self.off_route_m.append_option(p.off_route_m);
        self.speed_mps.append_option(p.speed_mps);
        self.bearing_deg.append_option(p.bearing_deg);
        self.next_stop_id.append_option(p.next_stop_id.as_deref());
        self.next_stop_dist_m.append_option(p.next_stop_dist_m);
        self.h3_cell.append_value(&p.h3_cell);
        self.status.append_value(p.status.as_str());
        self.seq.append_option(p.seq);
        self.processed_ts.append_value(p.processed_ts);
        self.partition.append_value(p.partition);
        self.offset.append_value(p.offset);
        self.kafka.push(r);
    }

    fn finish(mut self) -> Vec<ArrayRef> {
        let mut c: Vec<ArrayRef> = vec![
            Arc::new(self.v.finish()),
            Arc::new(self.vehicle_id.finish()),
            Arc::new(self.ts.finish().with_timezone("UTC")),
            Arc::new(self.lat.finish()),
            Arc::new(self.lon.finish()),
            Arc::new(self.snapped_lat.finish()),
            Arc::new(self.snapped_lon.finish()),
            Arc::new(self.route_id.finish()),
            Arc::new(self.route_short_name.finish()),
            Arc::new(self.route_color.finish()),
            Arc::new(self.trip_id.finish()),
            Arc::new(self.shape_id.finish()),
            Arc::new(self.direction_id.finish()),
            Arc::new(self.headsign.finish()),
            Arc::new(self.dist_along_m.finish()),
            Arc::new(self.off_route_m.finish()),
            Arc::new(self.speed_mps.finish()),
            Arc::new(self.bearing_deg.finish()),
            Arc::new(self.next_stop_id.finish()),
            Arc::new(self.next_stop_dist_m.finish()),
            Arc::new(self.h3_cell.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.seq.finish()),
            Arc::new(self.processed_ts.finish().with_timezone("UTC")),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
        ];
        self.kafka.finish(&mut c);
        c
    }
}

fn undecodable(r: &Record, detail: impl Into<String>) -> Undecodable {
    Undecodable { partition: r.partition, offset: r.offset, detail: detail.into() }
}

/// Decodes a position record; tombstones and bad JSON are reported, not guessed at.
pub fn decode_position(r: &Record) -> Result<VehiclePosition, Undecodable> {
    let value = r.value.as_deref().ok_or_else(|| undecodable(r, "no value (tombstone)"))?;
    serde_json::from_slice(value).map_err(|e| undecodable(r, format!("not a VehiclePosition: {e}")))
}

/// `positions` rows from position records.
pub fn positions(records: &[Record]) -> Result<Converted, ArrowError> {
    let mut cols = PositionCols::default();
    let mut bad = Vec::new();
    for r in records {
        match decode_position(r) {
            Ok(p) => cols.push(&p, r),
            Err(u) => bad.push(u),
        }
    }
    let batch = RecordBatch::try_new(position_schema(), cols.finish())?;
    Ok(Converted { batch, undecodable: bad })
}

/// `vehicles` rows: the newest position (by `ts`, then by where it was read) of each vehicle
/// whose last record the pipeline wrote at most `stale_after_ms` before `as_of_ms`. Without
/// `as_of_ms` the clock is the newest record's `processed_ts` (a recording's "now").
pub fn vehicles(
    records: &[Record],
    as_of_ms: Option<i64>,
    stale_after_ms: i64,
) -> Result<Converted, ArrowError> {
    let mut newest: std::collections::HashMap<String, (VehiclePosition, &Record)> =
        std::collections::HashMap::new();
    let mut bad = Vec::new();
    let mut newest_processed = i64::MIN;
    for r in records {
        let p = match decode_position(r) {
            Ok(p) => p,
            Err(u) => {
                bad.push(u);
                continue;
            }
        };
        newest_processed = newest_processed.max(p.processed_ts);
        let newer = |cur: &(VehiclePosition, &Record)| {
            (p.ts, r.partition, r.offset) > (cur.0.ts, cur.1.partition, cur.1.offset)
        };
        match newest.get(&p.vehicle_id) {
            Some(cur) if !newer(cur) => {}
            _ => {
                newest.insert(p.vehicle_id.clone(), (p, r));
            }
        }
    }
    let active_since = as_of_ms.unwrap_or(newest_processed).saturating_sub(stale_after_ms);
    let mut rows: Vec<_> =
        newest.into_values().filter(|(p, _)| p.processed_ts >= active_since).collect();
    rows.sort_by(|a, b| a.0.vehicle_id.cmp(&b.0.vehicle_id));
    let mut cols = PositionCols::default();
    for (p, r) in &rows {
        cols.push(p, r);
    }
    let batch = RecordBatch::try_new(position_schema(), cols.finish())?;
    Ok(Converted { batch, undecodable: bad })
}

/// `rejected` rows from rejection records.
pub fn rejected(records: &[Record]) -> Result<Converted, ArrowError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut v = UInt16Builder::new();
    let mut reason = StringBuilder::new();
    let mut detail = StringBuilder::new();
    let mut vehicle_id = StringBuilder::new();
    let mut raw_b64 = StringBuilder::new();
    let mut key_b64 = StringBuilder::new();
    let mut raw = BinaryBuilder::new();
    let mut raw_text = StringBuilder::new();
    let mut partition = Int32Builder::new();
    let mut offset = Int64Builder::new();
    let mut rejected_ts = TimestampMillisecondBuilder::new();
    let mut kafka = KafkaCols::default();
    let mut bad = Vec::new();
    for r in records {
        let Some(value) = r.value.as_deref() else {
            bad.push(undecodable(r, "no value (tombstone)"));
            continue;
        };
        let j: Rejected = match serde_json::from_slice(value) {
            Ok(j) => j,
            Err(e) => {
                bad.push(undecodable(r, format!("not a Rejected record: {e}")));
                continue;
            }
        };
        let bytes = b64.decode(&j.raw_b64).ok();
        v.append_value(j.v);
        reason.append_value(j.reason.as_str());
        detail.append_value(&j.detail);
        vehicle_id.append_option(j.vehicle_id.as_deref());
        raw_b64.append_value(&j.raw_b64);
        key_b64.append_option(j.key_b64.as_deref());
        raw.append_option(bytes.as_deref());
        raw_text.append_option(bytes.as_deref().and_then(|b| std::str::from_utf8(b).ok()));
        partition.append_value(j.partition);
        offset.append_value(j.offset);
        rejected_ts.append_value(j.rejected_ts);
        kafka.push(r);
    }
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(v.finish()),
        Arc::new(reason.finish()),
        Arc::new(detail.finish()),
        Arc::new(vehicle_id.finish()),
        Arc::new(raw_b64.finish()),
        Arc::new(key_b64.finish()),
        Arc::new(raw.finish()),
        Arc::new(raw_text.finish()),
        Arc::new(partition.finish()),
        Arc::new(offset.finish()),
        Arc::new(rejected_ts.finish().with_timezone("UTC")),
    ];
    kafka.finish(&mut cols);
    Ok(Converted { batch: RecordBatch::try_new(rejected_schema(), cols)?, undecodable: bad })
}

/// `raw` rows: one per message, whatever it holds. Fields are filled where the value is a
/// [`RawPosition`]; otherwise `parse_error` says why (and `vehicle_id` is read if it can be).
pub fn raw(records: &[Record]) -> Result<Converted, ArrowError> {
    let mut key = StringBuilder::new();
    let mut value = BinaryBuilder::new();
    let mut value_text = StringBuilder::new();
    let mut parse_error = StringBuilder::new();
    let mut v = UInt16Builder::new();
    let mut vehicle_id = StringBuilder::new();
    let mut ts = TimestampMillisecondBuilder::new();
    let mut lat = Float64Builder::new();
    let mut lon = Float64Builder::new();
    let mut speed = Float32Builder::new();
    let mut bearing = Float32Builder::new();
    let mut accuracy = Float32Builder::new();
    let mut route_id = StringBuilder::new();
    let mut trip_id = StringBuilder::new();
    let mut seq = UInt64Builder::new();
    let mut kafka = KafkaCols::default();
    for r in records {
        key.append_option(r.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()));
        value.append_option(r.value.as_deref());
        let text = r.value.as_deref().and_then(|b| std::str::from_utf8(b).ok());
        value_text.append_option(text);
        let parsed: Result<RawPosition, String> = match (r.value.as_deref(), text) {
            (None, _) => Err("no value (tombstone)".into()),
            (Some(_), None) => Err("value is not valid UTF-8".into()),
            (Some(_), Some(t)) => serde_json::from_str(t).map_err(|e| e.to_string()),
        };
        match parsed {
            Ok(p) => {
                parse_error.append_null();
                v.append_value(p.v);
                vehicle_id.append_value(&p.vehicle_id);
                ts.append_value(p.ts);
                lat.append_value(p.lat);
                lon.append_value(p.lon);
                speed.append_option(p.speed_mps);
                bearing.append_option(p.bearing_deg);
                accuracy.append_option(p.accuracy_m);
                route_id.append_option(p.route_id.as_deref());
                trip_id.append_option(p.trip_id.as_deref());
                seq.append_option(p.seq);
            }
            Err(e) => {
                parse_error.append_value(e);
                v.append_null();
                vehicle_id.append_option(text.and_then(vehicle_id_of));
                ts.append_null();
                lat.append_null();
                lon.append_null();
                speed.append_null();
                bearing.append_null();
                accuracy.append_null();
                route_id.append_null();
                trip_id.append_null();
                seq.append_null();
            }
        }
        kafka.push(r);
    }
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(key.finish()),
        Arc::new(value.finish()),
        Arc::new(value_text.finish()),
        Arc::new(parse_error.finish()),
        Arc::new(v.finish()),
        Arc::new(vehicle_id.finish()),
        Arc::new(ts.finish().with_timezone("UTC")),
        Arc::new(lat.finish()),
        Arc::new(lon.finish()),
        Arc::new(speed.finish()),
        Arc::new(bearing.finish()),
        Arc::new(accuracy.finish()),
        Arc::new(route_id.finish()),
        Arc::new(trip_id.finish()),
        Arc::new(seq.finish()),
    ];
    kafka.finish(&mut cols);
    Ok(Converted { batch: RecordBatch::try_new(raw_schema(), cols)?, undecodable: Vec::new() })
}

fn vehicle_id_of(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v.get("vehicle_id")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use busflow_core::{RejectReason, VehicleStatus};
    use datafusion::arrow::array::{Array, StringArray, TimestampMillisecondArray};

    fn rec(offset: i64, value: &[u8]) -> Record {
        Record {
            partition: Some(0),
            offset,
            timestamp_ms: Some(1_000 + offset),
            key: Some(b"b1".to_vec()),
            value: Some(value.to_vec()),
        }
    }

    fn position(vehicle: &str, ts: i64, processed_ts: i64) -> VehiclePosition {
        VehiclePosition {
            v: 1,
            vehicle_id: vehicle.into(),
            ts,
            lat: -16.92,
            lon: 145.77,
            snapped_lat: Some(-16.9201),
            snapped_lon: None,
            route_id: Some("110".into()),
            route_short_name: Some("110".into()),
            route_color: None,
            trip_id: None,
            shape_id: None,
            direction_id: Some(1),
            headsign: None,
            dist_along_m: Some(12.5),
            off_route_m: None,
            speed_mps: Some(7.5),
            bearing_deg: None,
            next_stop_id: None,
            next_stop_dist_m: None,
            h3_cell: "8c9d5a0a1b2c3ff".into(),
            status: VehicleStatus::InTransit,
            seq: None,
            processed_ts,
            partition: 2,
            offset: 40,
        }
    }

    fn json<T: serde::Serialize>(t: &T) -> Vec<u8> {
        serde_json::to_vec(t).unwrap()
    }

    #[test]
    fn schemas_match_the_batches_and_every_column_name_is_unique() {
        for t in TableName::ALL {
            let s = t.schema();
            let mut names: Vec<_> = s.fields().iter().map(|f| f.name().clone()).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), s.fields().len(), "{t}");
            assert_eq!(TableName::parse(&t.as_str().to_uppercase()), Some(t));
        }
        assert_eq!(TableName::parse("nope"), None);
    }

    #[test]
    fn positions_are_typed_and_bad_records_reported() {
        let recs = vec![
            rec(0, &json(&position("b1", 5_000, 6_000))),
            rec(1, b"{not json"),
            Record { value: None, ..rec(2, b"") },
        ];
        let c = positions(&recs).unwrap();
        assert_eq!(c.batch.num_rows(), 1);
        assert_eq!(c.undecodable.len(), 2);
        assert_eq!(c.undecodable[0].offset, 1);
        let ts = c.batch.column_by_name("ts").unwrap();
        let ts = ts.as_any().downcast_ref::<TimestampMillisecondArray>().unwrap();
        assert_eq!(ts.value(0), 5_000);
        let status = c.batch.column_by_name("status").unwrap();
        let status = status.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(status.value(0), "in_transit");
        assert!(c.batch.column_by_name("snapped_lon").unwrap().is_null(0));
    }

    #[test]
    fn vehicles_keep_the_newest_position_of_each_active_vehicle() {
        let recs = vec![
            rec(0, &json(&position("b1", 5_000, 10_000))),
            rec(1, &json(&position("b1", 9_000, 11_000))),
            // Older fix read later (a replay): the newer one wins.
            rec(2, &json(&position("b1", 7_000, 12_000))),
            rec(3, &json(&position("b2", 1_000, 2_000))),
            rec(4, &json(&position("b3", 1_000, 10_500))),
        ];
        let c = vehicles(&recs, Some(11_000), 1_000).unwrap();
        let ids = c.batch.column_by_name("vehicle_id").unwrap();
        let ids = ids.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(ids.iter().flatten().collect::<Vec<_>>(), ["b1", "b3"]);
        let ts = c.batch.column_by_name("ts").unwrap();
        let ts = ts.as_any().downcast_ref::<TimestampMillisecondArray>().unwrap();
        assert_eq!(ts.value(0), 9_000);
        // Without a clock, the newest record (processed at 12,000) is "now": b3 (10,500) is
        // more than 1,200 before it, b1's newest fix (11,000) is not.
        let c = vehicles(&recs, None, 1_200).unwrap();
        assert_eq!(c.batch.num_rows(), 1);
    }

    #[test]
    fn rejected_rows_decode_the_original_bytes() {
        let r = Rejected::new(RejectReason::NotUtf8, "bad", None, &[0xff, 0x00], None, 3, 9, 77);
        let ok = Rejected::new(RejectReason::Stale, "old", Some("b1".into()), b"{}", None, 1, 2, 3);
        let c = rejected(&[rec(0, &json(&r)), rec(1, &json(&ok)), rec(2, b"[]")]).unwrap();
        assert_eq!(c.batch.num_rows(), 2);
        assert_eq!(c.undecodable.len(), 1);
        let text = c.batch.column_by_name("raw_text").unwrap();
        assert!(text.is_null(0), "non-UTF-8 bytes have no text");
        let text = text.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(text.value(1), "{}");
        let reason = c.batch.column_by_name("reason").unwrap();
        let reason = reason.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(reason.value(0), "not_utf8");
    }

    #[test]
    fn raw_keeps_every_message_and_says_why_it_does_not_parse() {
        let good = br#"{"vehicle_id":"b1","ts":5,"lat":-16.9,"lon":145.7,"seq":3}"#;
        let missing = br#"{"vehicle_id":"b7","lat":1.0,"lon":2.0}"#;
        let recs = vec![rec(0, good), rec(1, missing), rec(2, &[0xff, 0xfe])];
        let c = raw(&recs).unwrap();
        assert_eq!(c.batch.num_rows(), 3);
        let err = c.batch.column_by_name("parse_error").unwrap();
        assert!(err.is_null(0));
        let err = err.as_any().downcast_ref::<StringArray>().unwrap();
        assert!(err.value(1).contains("missing field `ts`"), "{}", err.value(1));
        assert!(err.value(2).contains("UTF-8"));
        let ids = c.batch.column_by_name("vehicle_id").unwrap();
        let ids = ids.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(ids.value(1), "b7", "the vehicle is read from a message that fails later");
    }
}
