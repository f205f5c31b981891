//! Every `.sql` file under sql/arroyo/ passes the checker; sql/queries/*.sql (DataFusion, the
//! lead's `busflow sql`) parse. The negative tests show the checker can fail.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use busflow_arroyo_check::{check_arroyo, check_parses, discover_udfs, Diagnostic, TableKind, Udf};
use busflow_core::RejectReason;
use sqlparser::dialect::GenericDialect;

fn arroyo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn udfs() -> Vec<Udf> {
    discover_udfs(&arroyo_dir().join("udfs")).unwrap()
}

fn sql_files(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // Build output is not source.
            if recursive && path.file_name().is_some_and(|n| n != "target") {
                sql_files(&path, recursive, out);
            }
        } else if path.extension().is_some_and(|e| e == "sql") {
            out.push(path);
        }
    }
    out.sort();
}

fn report(problems: &[Diagnostic]) -> String {
    problems.iter().map(|d| format!("  {d}\n")).collect()
}

#[test]
fn every_arroyo_sql_file_passes() {
    let mut files = Vec::new();
    sql_files(&arroyo_dir(), true, &mut files);
    assert!(files.iter().any(|f| f.ends_with("pipeline.sql")), "{files:?}");
    let udfs = udfs();
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let name = file.display().to_string();
        if let Err(problems) = check_arroyo(&name, &text, &udfs) {
            panic!("{name}:\n{}", report(&problems));
        }
    }
}

#[test]
fn pipeline_sql_has_the_expected_shape() {
    let text = fs::read_to_string(arroyo_dir().join("pipeline.sql")).unwrap();
    let summary = check_arroyo("pipeline.sql", &text, &udfs()).unwrap();
    let table = |name: &str| summary.tables.iter().find(|t| t.name == name).unwrap();

    let raw = table("raw_positions");
    assert_eq!(raw.kind, TableKind::Source);
    assert_eq!(raw.options["topic"], "bus.raw");
    assert_eq!(raw.options["format"], "json");
    assert_eq!(raw.watermark.as_deref(), Some("event_time"));
    // RawPosition's fields (core/src/contract.rs), in order.
    let contract = [
        "v",
        "vehicle_id",
        "ts",
        "lat",
        "lon",
        "speed_mps",
        "bearing_deg",
        "accuracy_m",
        "route_id",
        "trip_id",
        "seq",
    ];
    assert_eq!(&raw.columns[..contract.len()], contract);

    let positions = table("positions_arroyo");
    assert_eq!(positions.kind, TableKind::Sink);
    assert_eq!(positions.options["topic"], "bus.positions.arroyo");
    assert_eq!(positions.options["sink.key_field"], "vehicle_id");
    let rejected = table("rejected_arroyo");
    assert_eq!(rejected.options["topic"], "bus.rejected.arroyo");
    assert!(rejected.columns.contains(&"reason".to_string()));

    let targets: Vec<&str> = summary.inserts.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(targets, ["rejected_arroyo", "positions_arroyo", "rejected_arroyo"]);
    for f in ["h3_cell", "h3_parent", "tumble", "row_number"] {
        assert!(summary.functions.contains(f), "{f} not used: {:?}", summary.functions);
    }
}

#[test]
fn reason_codes_in_pipeline_sql_are_busflow_reason_codes() {
    let known: Vec<&str> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
    let text = fs::read_to_string(arroyo_dir().join("pipeline.sql")).unwrap();
    let mut used = 0;
    for (i, line) in text.lines().enumerate() {
        let code = line.trim();
        let Some(rest) = code.strip_prefix("THEN '").or_else(|| code.strip_prefix("'")) else {
            continue;
        };
        let Some(end) = rest.find('\'') else { continue };
        let value = &rest[..end];
        if line.contains("THEN") || line.contains("AS reason") {
            assert!(known.contains(&value), "pipeline.sql:{}: {value} is not a reason code", i + 1);
            used += 1;
        }
    }
    assert!(used >= 7, "only {used} reason codes found");
}

#[test]
fn datafusion_queries_parse() {
    let dir = arroyo_dir().join("../queries");
    let mut files = Vec::new();
    sql_files(&dir, false, &mut files);
    if files.is_empty() {
        eprintln!("no {}/*.sql yet: nothing to parse", dir.display());
        return;
    }
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let name = file.display().to_string();
        // DataFusion parses with sqlparser's GenericDialect unless told otherwise.
        if let Err(d) = check_parses(&name, &text, &GenericDialect {}) {
            panic!("{d}");
        }
    }
}

// -------------------------------------------------------------------------------------------
// UDF crates: what the checker reads from them, and that their manifests match.

#[test]
fn udfs_are_discovered_from_their_source() {
    let udfs = udfs();
    let sig: Vec<(&str, usize)> = udfs.iter().map(|u| (u.name.as_str(), u.arity)).collect();
    assert_eq!(sig, [("h3_cell", 3), ("h3_parent", 2)]);
}

#[test]
fn udf_dependency_comments_match_their_cargo_toml_and_the_main_workspace() {
    // The h3o the main workspace resolved (busflow-core's cells).
    let main_lock = fs::read_to_string(arroyo_dir().join("../../Cargo.lock")).unwrap();
    let main_h3o = locked_version(&main_lock, "h3o").unwrap();
    let own_lock = fs::read_to_string(arroyo_dir().join("Cargo.lock")).unwrap();
    assert_eq!(locked_version(&own_lock, "h3o").as_deref(), Some(main_h3o.as_str()));

    for udf in udfs() {
        let manifest = fs::read_to_string(udf.dir.join("Cargo.toml")).unwrap();
        let deps = manifest_dependencies(&manifest);
        assert!(!udf.dependencies.is_empty(), "{}: no [dependencies] comment", udf.name);
        for (name, req) in &udf.dependencies {
            assert_eq!(
                deps.iter().find(|(n, _)| n == name).map(|(_, r)| r.as_str()),
                Some(req.as_str()),
                "{}: {name} = {req:?} in the comment but not in Cargo.toml",
                udf.name
            );
            if name == "h3o" {
                assert!(main_h3o.starts_with(&format!("{req}.")), "h3o {req} vs main {main_h3o}");
            }
        }
        for (name, _) in deps {
            assert!(
                name == "arroyo-udf-plugin" || udf.dependencies.iter().any(|(n, _)| *n == name),
                "{}: Cargo.toml depends on {name}, which the comment does not list",
                udf.name
            );
        }
        let lib = fs::read_to_string(udf.dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("use arroyo_udf_plugin::udf;"), "{}", udf.name);
    }
}

/// The version of a package in a Cargo.lock.
fn locked_version(lock: &str, package: &str) -> Option<String> {
    let header = format!("name = \"{package}\"\nversion = \"");
    let at = lock.find(&header)? + header.len();
    lock[at..].split('"').next().map(str::to_string)
}

/// `name = "req"` lines of a manifest's `[dependencies]` table.
fn manifest_dependencies(manifest: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if !in_deps || line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((name, value)) = line.split_once('=') {
            let name = name.trim().trim_end_matches(".workspace").to_string();
            out.push((name, value.trim().trim_matches('"').to_string()));
        }
    }
    out
}

// -------------------------------------------------------------------------------------------
// Negative tests: each must be refused, for the right reason, at the right line.

const SOURCE: &str = "CREATE TABLE src (
    vehicle_id TEXT,
    ts BIGINT,
    lat DOUBLE,
    lon DOUBLE,
    event_time TIMESTAMP GENERATED ALWAYS AS (to_timestamp_millis(ts)) STORED,
    WATERMARK FOR event_time AS event_time - INTERVAL '5 seconds'
) WITH (
    connector = 'kafka',
    bootstrap_servers = 'localhost:9092',
    topic = 'bus.raw',
    type = 'source',
    format = 'json'
);
CREATE TABLE snk (
    vehicle_id TEXT,
    h3_cell TEXT
) WITH (
    connector = 'kafka',
    bootstrap_servers = 'localhost:9092',
    topic = 'out',
    type = 'sink',
    format = 'json',
    'sink.key_field' = 'vehicle_id'
);
";

/// The problems with SOURCE + `extra`; panics when there are none.
fn refused(extra: &str) -> Vec<Diagnostic> {
    let sql = format!("{SOURCE}{extra}");
    match check_arroyo("inline.sql", &sql, &udfs()) {
        Ok(summary) => panic!("accepted:\n{sql}\n{summary:?}"),
        Err(problems) => problems,
    }
}

fn assert_refused(problems: &[Diagnostic], needle: &str, line: u64) {
    assert!(
        problems.iter().any(|d| d.message.contains(needle) && d.line == line),
        "wanted {needle:?} at line {line}, got:\n{}",
        report(problems)
    );
    assert!(problems.iter().all(|d| d.file == "inline.sql"));
}

#[test]
fn the_inline_base_is_accepted() {
    let sql = format!(
        "{SOURCE}INSERT INTO snk SELECT vehicle_id, h3_cell(lat, lon, 12) AS h3_cell FROM src;"
    );
    let summary = check_arroyo("inline.sql", &sql, &udfs()).unwrap();
    assert_eq!(summary.inserts, [("snk".to_string(), 2)]);
}

#[test]
fn refuses_an_unknown_option() {
    let p = refused(
        "CREATE TABLE other (a TEXT) WITH (connector = 'kafka', bootstrap_servers = 'b:9092',
            topic = 't', type = 'source', format = 'json', 'scan.startup.mode' = 'earliest');",
    );
    assert_refused(&p, "unknown option scan.startup.mode", 26);
}

#[test]
fn refuses_a_missing_topic() {
    let p = refused(
        "CREATE TABLE other (a TEXT) WITH (connector = 'kafka', bootstrap_servers = 'b:9092',
            type = 'source', format = 'json');",
    );
    assert_refused(&p, "required option topic is missing", 26);
}

#[test]
fn refuses_bad_option_values_and_misplaced_options() {
    let p = refused(
        "CREATE TABLE other (a TEXT) WITH (connector = 'kafka', bootstrap_servers = 'b:9092',
            topic = 't', type = 'stream', format = 'xml', 'source.offset' = 'newest');",
    );
    assert_refused(&p, "type = 'stream'", 26);
    assert_refused(&p, "format = 'xml'", 26);
    assert_refused(&p, "source.offset = 'newest'", 26);
    let p = refused(
        "CREATE TABLE other (a TEXT) WITH (connector = 'kafka', bootstrap_servers = 'b:9092',
            topic = 't', type = 'sink', format = 'json', 'source.offset' = 'earliest',
            'sink.key_field' = 'b');",
    );
    assert_refused(&p, "source.offset applies only to sources", 26);
    assert_refused(&p, "sink.key_field = 'b': no such column", 26);
}

#[test]
fn refuses_insert_column_mismatches() {
    // One column too few.
    let p = refused("INSERT INTO snk SELECT vehicle_id FROM src;");
    assert_refused(&p, "the SELECT gives 1 columns, the table takes 2", 26);
    // Right arity, wrong name in position 2.
    let p = refused("INSERT INTO snk SELECT vehicle_id, lat AS h3 FROM src;");
    assert_refused(&p, "column 2 is h3, the table's is h3_cell", 26);
    // An expression without a name.
    let p = refused("INSERT INTO snk\nSELECT vehicle_id, h3_cell(lat, lon, 12) FROM src;");
    assert_refused(&p, "expression without a name", 26);
    // A column list naming a column the sink does not have.
    let p = refused("INSERT INTO snk (vehicle_id, cell) SELECT vehicle_id, lat AS cell FROM src;");
    assert_refused(&p, "no writable column cell", 26);
    // Not a sink.
    let p = refused("INSERT INTO src SELECT vehicle_id, ts, lat, lon FROM src;");
    assert_refused(&p, "it is a source", 26);
    let p = refused("INSERT INTO nowhere SELECT vehicle_id FROM src;");
    assert_refused(&p, "no such table", 26);
}

#[test]
fn refuses_unknown_functions_and_wrong_arity() {
    let p =
        refused("INSERT INTO snk\nSELECT vehicle_id,\n  h3_cel(lat, lon, 12) AS h3_cell FROM src;");
    assert_refused(&p, "unknown function h3_cel", 28);
    let p = refused("INSERT INTO snk SELECT vehicle_id, h3_cell(lat, lon) AS h3_cell FROM src;");
    assert_refused(&p, "UDF h3_cell takes 3 arguments, called with 2", 26);
    let p = refused("INSERT INTO snk SELECT vehicle_id, abs(lat, lon) AS h3_cell FROM src;");
    assert_refused(&p, "abs takes 1 arguments, called with 2", 26);
}

#[test]
fn refuses_bad_watermark_clauses() {
    let table = |watermark: &str| {
        format!(
            "CREATE TABLE w (\n  ts TIMESTAMP,\n  {watermark}\n) WITH (connector = 'kafka',
            bootstrap_servers = 'b:9092', topic = 't', type = 'source', format = 'json');"
        )
    };
    // Missing FOR.
    let p = refused(&table("WATERMARK ts AS ts - INTERVAL '1 second'"));
    assert_refused(&p, "bad WATERMARK clause", 28);
    // Trailing garbage after the expression.
    let p = refused(&table("WATERMARK FOR ts AS ts - INTERVAL '1 second' DELAY"));
    assert_refused(&p, "bad WATERMARK clause", 28);
    // AS without an expression.
    let p = refused(&table("WATERMARK FOR ts AS"));
    assert_refused(&p, "bad WATERMARK clause", 28);
    // A column the table does not have.
    let p = refused(&table("WATERMARK FOR event_time"));
    assert_refused(&p, "WATERMARK FOR event_time: no such column", 28);
    // A function nobody defines, inside the watermark expression.
    let p = refused(&table("WATERMARK FOR ts AS lag_by(ts)"));
    assert_refused(&p, "unknown function lag_by", 28);
}

#[test]
fn refuses_bad_metadata_and_unparseable_sql() {
    let p = refused(
        "CREATE TABLE m (\n  a TEXT,\n  k BYTEA METADATA FROM 'headers'\n) WITH (connector = 'kafka',
            bootstrap_servers = 'b:9092', topic = 't', type = 'source', format = 'json');",
    );
    assert_refused(&p, "METADATA FROM 'headers'", 28);
    // Plain bad SQL: the file and line of the error.
    let p = refused("\nINSERT INTO snk SELEC vehicle_id FROM src;");
    assert_refused(&p, "does not parse", 27);
}
