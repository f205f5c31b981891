//! A simulated fleet must not depend on when its test runs (the Cairns timetable on a Sunday or
//! at night runs a handful of buses). Two guards:
//! - every test, script and benchmark that gives the simulator a start time also gives it the
//!   service date (a start without a date is "today", whichever day that is);
//! - one run on the real clock on purpose, asserting only what holds at any hour.
//!
//! CI runs everything else with `BUSFLOW_SIM_CLOCK` set to a Sunday night in Cairns, so a test
//! that leaves out both the date and the start meets the emptiest service there is.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{FixedOffset, NaiveDate, NaiveTime, Utc};

/// The flag and the variable that set a start time. Spelled in pieces so that this file, which
/// the check scans like any other, holds no unpinned start of its own, only fixtures built from
/// these.
const START: &str = concat!("--", "start");
const START_ENV: &str = concat!("BUSFLOW_SIM_", "START");

/// What sets a start time, and what must then set the service date beside it.
const PAIRS: [(&str, &str); 2] = [(START, "--date"), (START_ENV, "BUSFLOW_SIM_DATE")];

/// Where tests, scripts and benchmarks live; docs and READMEs may show `--start` alone.
const EXTENSIONS: [&str; 6] = ["rs", "sh", "mjs", "js", "py", "yml"];
const SKIP_DIRS: [&str; 6] = ["target", ".git", "node_modules", "corpus", "docs", "artifacts"];

/// The units a command is written in: shell logical lines (backslash continuations joined),
/// or statements up to `;` elsewhere (an argument array and the call that spawns it).
fn units(path: &Path, text: &str) -> Vec<(usize, String)> {
    let shell = matches!(path.extension().and_then(|e| e.to_str()), Some("sh" | "yml"));
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut first = 1;
    for (i, line) in text.lines().enumerate() {
        if cur.is_empty() {
            first = i + 1;
        }
        if shell {
            let t = line.trim_end();
            let trimmed = t.trim_start();
            if trimmed.starts_with('#') {
                continue;
            }
            if let Some(head) = t.strip_suffix('\\') {
                cur.push_str(head);
                cur.push(' ');
                continue;
            }
            cur.push_str(t);
            out.push((first, std::mem::take(&mut cur)));
        } else {
            let code = line.split("//").next().unwrap_or("");
            let mut rest = code;
            while let Some(k) = rest.find(';') {
                cur.push_str(&rest[..k]);
                out.push((first, std::mem::take(&mut cur)));
                first = i + 1;
                rest = &rest[k + 1..];
            }
            cur.push_str(rest);
            cur.push('\n');
        }
    }
    if !cur.trim().is_empty() {
        out.push((first, cur));
    }
    out
}

/// `flag` as a whole word: not the start of `--start-time` or `BUSFLOW_SIM_START_X`.
fn mentions(unit: &str, flag: &str) -> bool {
    unit.match_indices(flag).any(|(k, _)| {
        let after = unit[k + flag.len()..].chars().next();
        !after.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-')
    })
}

/// Every unit of `text` that sets a start without a date: (first line, the flag).
fn unpinned(path: &Path, text: &str) -> Vec<(usize, &'static str)> {
    let mut found = Vec::new();
    for (line, unit) in units(path, text) {
        for (start, date) in PAIRS {
            if mentions(&unit, start) && !mentions(&unit, date) {
                found.push((line, start));
            }
        }
    }
    found
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if !SKIP_DIRS.contains(&name.as_str()) {
                walk(&p, out);
            }
        } else if p.extension().and_then(|x| x.to_str()).is_some_and(|x| EXTENSIONS.contains(&x)) {
            out.push(p);
        }
    }
}

#[test]
fn every_start_time_comes_with_its_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(root, &mut files);
    assert!(files.len() > 50, "walked only {} files under {}", files.len(), root.display());
    let mut bad = Vec::new();
    for f in &files {
        let Ok(text) = std::fs::read_to_string(f) else { continue };
        for (line, flag) in unpinned(f, &text) {
            bad.push(format!("{}:{line}: {flag} without its date", f.display()));
        }
    }
    assert!(bad.is_empty(), "a fleet that depends on the day it runs:\n{}", bad.join("\n"));
}

/// A fixture with `@S` for the start flag and `@E` for the start variable.
fn fixture(text: &str) -> String {
    text.replace("@S", START).replace("@E", START_ENV)
}

#[test]
fn the_check_sees_a_start_without_a_date() {
    let sh = Path::new("x.sh");
    let rs = Path::new("x.rs");
    let mjs = Path::new("x.mjs");
    let check = |path, text: &str| unpinned(path, &fixture(text));
    // The invocation that failed CI on a Sunday, and its fixed form.
    let failing = r#"Command::new(BIN).args(["up", "--http-addr", &http, "@S", "08:00"]).spawn();"#;
    assert_eq!(check(rs, failing), vec![(1, START)]);
    let fixed = r#"Command::new(BIN)
        .args(["up", "@S", "08:00", "--date", "2026-11-24"])
        .spawn(); let other = "@S";"#;
    assert_eq!(check(rs, fixed), vec![(3, START)], "the second statement has no date");
    assert!(check(sh, "busflow simulate \\\n  @S 08:00 \\\n  --date 2026-11-24 &\n").is_empty());
    assert_eq!(check(sh, "ok\n# @S in a comment\nbusflow up \\\n  @S 08:00\n"), vec![(3, START)]);
    assert_eq!(check(sh, "@E=08:00 busflow up\n"), vec![(1, START_ENV)]);
    assert!(check(sh, "tool @S-time 3 --dates\n").is_empty());
    assert_eq!(
        check(mjs, "const a = [\n  \"@S\", \"08:30\",\n];\nspawn(bin, a);\n"),
        vec![(1, START)]
    );
}

fn brisbane_today() -> NaiveDate {
    // Queensland keeps UTC+10 all year.
    Utc::now().with_timezone(&FixedOffset::east_opt(10 * 3600).unwrap()).date_naive()
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let rest = line.split(&format!("{name}=")).nth(1)?;
    rest.split_whitespace().next()
}

/// On the real clock, with no --date or --start (and no override): whatever the hour, the
/// system comes up, simulates the service day of now in Cairns from now, and serves its fleet
/// (possibly empty: there is no bus at 3 a.m.).
#[test]
fn up_on_the_real_clock_simulates_now_in_cairns() {
    let before = brisbane_today();
    let up = common::start_up(&[], &["BUSFLOW_SIM_CLOCK", "BUSFLOW_SIM_START", "BUSFLOW_SIM_DATE"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let line = loop {
        let log = strip_ansi(&up.log_text());
        if let Some(l) = log.lines().find(|l| l.contains("simulated service day")) {
            break l.to_string();
        }
        assert!(Instant::now() < deadline, "no 'simulated service day' line:\n{log}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let after = brisbane_today();
    let date: NaiveDate = field(&line, "service_date").unwrap().parse().unwrap();
    assert!(date == before || date == after, "{date} is not today in Cairns ({before}): {line}");
    let start = NaiveTime::parse_from_str(field(&line, "start").unwrap(), "%H:%M:%S").unwrap();
    let now = Utc::now().with_timezone(&FixedOffset::east_opt(10 * 3600).unwrap()).time();
    let off = (now - start).num_seconds().rem_euclid(86_400);
    assert!(off < 120, "started at {start}, {off} s before now in Cairns ({now})");

    let (status, body) = common::http_get_raw(&up.http, "/readyz").unwrap();
    assert_eq!(status, 200, "{body}");
    let vehicles = common::http_get(&up.http, "/v1/vehicles").unwrap();
    let n = vehicles["count"].as_u64().unwrap_or_else(|| panic!("no count in {vehicles}"));
    assert_eq!(n as usize, vehicles["vehicles"].as_array().unwrap().len());
}
