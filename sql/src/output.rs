//! Writing results: an aligned table for people, CSV, JSON lines or Parquet for programs.

use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::json::WriterBuilder as JsonWriterBuilder;
use datafusion::arrow::json::writer::LineDelimited;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches_with_schema;
use datafusion::parquet::arrow::ArrowWriter;

use crate::Error;
use crate::session::QueryOutput;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Aligned text table.
    #[default]
    Table,
    /// CSV with a header row; timestamps in RFC 3339.
    Csv,
    /// One JSON object per row, every column present (null where empty).
    Json,
    /// Apache Parquet (needs a file).
    Parquet,
}

impl Format {
    /// The format's name as the `--format` flag takes it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Parquet => "parquet",
        }
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" | "jsonl" | "ndjson" => Ok(Format::Json),
            "parquet" => Ok(Format::Parquet),
            other => {
                Err(format!("unknown format {other:?}: expected one of table, csv, json, parquet"))
            }
        }
    }
}

fn out_err(e: impl std::fmt::Display) -> Error {
    Error::Output(e.to_string())
}

/// Writes a result in a text format.
pub fn write_text(out: &QueryOutput, format: Format, w: &mut dyn Write) -> Result<(), Error> {
    // An empty result still shows its columns (the header) in every format.
    let empty;
    let batches: &[RecordBatch] = if out.batches.is_empty() {
        empty = [RecordBatch::new_empty(out.schema.clone())];
        &empty
    } else {
        &out.batches
    };
    match format {
        Format::Table => {
            let t =
                pretty_format_batches_with_schema(out.schema.clone(), batches).map_err(out_err)?;
            writeln!(w, "{t}").map_err(out_err)?;
        }
        Format::Csv => {
            let mut cw = CsvWriterBuilder::new().with_header(true).build(&mut *w);
            for b in batches {
                cw.write(b).map_err(out_err)?;
            }
        }
        Format::Json => {
            let mut jw = JsonWriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, LineDelimited>(&mut *w);
            for b in batches {
                jw.write(b).map_err(out_err)?;
            }
            jw.finish().map_err(out_err)?;
        }
        Format::Parquet => {
            return Err(Error::Usage(
                "parquet output needs a file: pass --output FILE.parquet".into(),
            ));
        }
    }
    w.flush().map_err(out_err)
}

/// Writes a result as a Parquet file.
pub fn write_parquet(out: &QueryOutput, path: &Path) -> Result<(), Error> {
    let file = std::fs::File::create(path)
        .map_err(|source| Error::File { path: path.to_path_buf(), source })?;
    let mut pw = ArrowWriter::try_new(file, out.schema.clone(), None).map_err(out_err)?;
    for b in &out.batches {
        pw.write(b).map_err(out_err)?;
    }
    pw.close().map_err(out_err)?;
    Ok(())
}
