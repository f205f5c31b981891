//! A pre-scan of a feed's raw CSV for the values gtfs-structures 0.52 mishandles, run by
//! [`Network::load`](crate::Network::load) before that crate reads the feed.
//!
//! Two of its parsers trust their input (both found by fuzzing, docs/fuzzing.md):
//! - the colour parser (`route_color`, `route_text_color`) checks the length in bytes and then
//!   slices by byte offsets, so a non-ASCII colour panics, in every build;
//! - the time parser (`arrival_time`, `departure_time` of stop_times.txt, `start_time`,
//!   `end_time` of frequencies.txt) multiplies the hours by 3600 unchecked, so a huge hour count
//!   panics with debug assertions and wraps to a wrong time in release.
//!
//! This module reads only those columns, locates each file the way gtfs-structures does (a
//! directory's `routes.txt`, or the zip entry whose last path component is `routes.txt`),
//! skips one UTF-8 byte-order mark and trims fields as it does, and refuses a bad value with
//! the file, the line, the column and the value. Everything else (missing files, broken CSV,
//! unreadable archives, other columns) is left to gtfs-structures, which reports it itself.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::Error;

/// Longest stop or frequency time accepted, in hours from the start of the service day. GTFS
/// allows more than 24 h for trips that run past midnight; the longest scheduled passenger journeys
/// (multi-day trains such as Moscow–Vladivostok, about 7 days) stay under 10 days. 240 h is far
/// below where gtfs-structures' `hours * 3600` overflows u32 (1,193,046 h), and keeps busflow's
/// own arithmetic on those seconds (u32, plus offsets and durations) far from overflowing.
pub(crate) const MAX_HOURS: u32 = 240;

/// What a column must hold when it is not empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Exactly six ASCII hexadecimal digits, `RRGGBB` (GTFS "Color").
    Colour,
    /// `H:MM:SS` or `HH:MM:SS` (three hour digits beyond 99 h), at most [`MAX_HOURS`].
    Time,
}

impl Kind {
    fn accepts(self, value: &str) -> bool {
        match self {
            Kind::Colour => value.len() == 6 && value.bytes().all(|b| b.is_ascii_hexdigit()),
            Kind::Time => time_ok(value),
        }
    }

    fn expected(self) -> String {
        match self {
            Kind::Colour => "expected six hexadecimal digits RRGGBB, or nothing".to_string(),
            Kind::Time => {
                format!("expected H:MM:SS or HH:MM:SS of at most {MAX_HOURS} hours, or nothing")
            }
        }
    }
}

/// The files and columns checked; a file's columns may come in any order or be absent.
const CHECKS: [(&str, &[(&str, Kind)]); 3] = [
    ("routes.txt", &[("route_color", Kind::Colour), ("route_text_color", Kind::Colour)]),
    ("stop_times.txt", &[("arrival_time", Kind::Time), ("departure_time", Kind::Time)]),
    ("frequencies.txt", &[("start_time", Kind::Time), ("end_time", Kind::Time)]),
];

/// Values longer than this are cut in the error message (a fuzzed field can be kilobytes).
const SHOWN_VALUE_CHARS: usize = 40;

/// Refuses a feed (a `.zip` file or a directory, like `read_from_path`) whose checked columns
/// hold a value gtfs-structures would panic on or misread.
pub(crate) fn check_feed(feed: &Path) -> Result<(), Error> {
    let refuse = |bad: BadValue| Error::Gtfs { path: feed.to_path_buf(), detail: bad.to_string() };
    if feed.is_dir() {
        for (file, columns) in CHECKS {
            // A file that cannot be opened is gtfs-structures' to report (missing required
            // file) or to skip (optional file), exactly as without this check.
            let Ok(f) = File::open(feed.join(file)) else { continue };
            if let Err(mut bad) = scan(f, file, columns) {
                // Only on the way out: read the file again to count lines as a person does.
                bad.line = File::open(feed.join(file)).ok().and_then(|f| line_at(f, bad.offset));
                return Err(refuse(bad));
            }
        }
    } else if feed.is_file() {
        let Ok(f) = File::open(feed) else { return Ok(()) };
        // Not a readable zip: gtfs-structures says so with its own message.
        let Ok(mut archive) = zip::ZipArchive::new(BufReader::new(f)) else { return Ok(()) };
        for (file, columns) in CHECKS {
            let Some((index, entry_name)) = entry_for(&archive, file) else { continue };
            let Ok(entry) = archive.by_index(index) else { continue };
            if let Err(mut bad) = scan(entry, &entry_name, columns) {
                bad.line = archive.by_index(index).ok().and_then(|e| line_at(e, bad.offset));
                return Err(refuse(bad));
            }
        }
    }
    Ok(())
}

/// The entry gtfs-structures reads for `file`: it maps every entry whose last path component is
/// the file name, a later entry replacing an earlier one.
fn entry_for<R: Read + std::io::Seek>(
    archive: &zip::ZipArchive<R>,
    file: &str,
) -> Option<(usize, String)> {
    (0..archive.len()).rev().find_map(|i| {
        let name = archive.name_for_index(i)?;
        (Path::new(name).file_name() == Some(std::ffi::OsStr::new(file)))
            .then(|| (i, name.to_string()))
    })
}

/// A refused value, with where it was found.
#[derive(Debug)]
struct BadValue {
    /// The file, or the entry's name in the archive.
    file: String,
    /// Byte offset of the record in the file after its byte-order mark, from the CSV reader.
    offset: u64,
    /// 1-based line where the record starts, the header being line 1; see [`line_at`].
    line: Option<u64>,
    column: &'static str,
    value: String,
    kind: Kind,
}

impl std::fmt::Display for BadValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown: String = self.value.chars().take(SHOWN_VALUE_CHARS).collect();
        if shown.len() < self.value.len() {
            shown.push('…');
        }
        match self.line {
            Some(line) => write!(f, "{} line {line}: ", self.file)?,
            None => write!(f, "{} (record at byte {}): ", self.file, self.offset)?,
        }
        write!(f, "malformed {} {:?} ({})", self.column, shown, self.kind.expected())
    }
}

/// Checks one file's columns. A read error ends the scan without a finding: gtfs-structures
/// reads the same bytes in the same order and meets the same error before any later value.
fn scan(
    mut reader: impl Read,
    file: &str,
    columns: &'static [(&'static str, Kind)],
) -> Result<(), BadValue> {
    // gtfs-structures drops the first three bytes when they are a UTF-8 byte-order mark, and
    // nothing else; a file shorter than that is an error there.
    let mut head = [0u8; 3];
    if reader.read_exact(&mut head).is_err() {
        return Ok(());
    }
    const BOM: [u8; 3] = [0xef, 0xbb, 0xbf];
    let head: &[u8] = if head == BOM { &[] } else { &head };
    let mut csv = csv::ReaderBuilder::new()
        // Rows may be shorter or longer than the header, as gtfs-structures allows.
        .flexible(true)
        .buffer_capacity(64 * 1024)
        .from_reader(head.chain(reader));
    let Ok(headers) = csv.byte_headers() else { return Ok(()) };
    // Every column with a checked name (a repeated header is checked in each place).
    let wanted: Vec<(usize, &'static str, Kind)> = headers
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let h = std::str::from_utf8(h).ok()?.trim();
            columns.iter().find(|(name, _)| *name == h).map(|&(name, kind)| (i, name, kind))
        })
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let mut record = csv::ByteRecord::new();
    while let Ok(true) = csv.read_byte_record(&mut record) {
        for &(i, column, kind) in &wanted {
            let Some(raw) = record.get(i) else { continue };
            // gtfs-structures trims fields as `str::trim` does and reads an empty one as absent.
            let value = std::str::from_utf8(raw).map(str::trim);
            let ok = match value {
                Ok(v) => v.is_empty() || kind.accepts(v),
                Err(_) => false,
            };
            if !ok {
                return Err(BadValue {
                    file: file.to_string(),
                    offset: record.position().map_or(0, |p| p.byte()),
                    line: None,
                    column,
                    value: String::from_utf8_lossy(raw).into_owned(),
                    kind,
                });
            }
        }
    }
    Ok(())
}

/// The line on which the record at `offset` (as [`scan`] reports it) starts, counting `\n`,
/// `\r\n` and a lone `\r` as one line break each, as editors do. The CSV reader's own line
/// count is one short for every record after a `\r\n` (it counts a `\n` when it consumes it,
/// which for CRLF is at the start of the next record) and ignores a lone `\r`.
fn line_at(reader: impl Read, offset: u64) -> Option<u64> {
    let mut bytes = BufReader::new(reader).bytes();
    let mut head = Vec::with_capacity(3);
    for b in bytes.by_ref().take(3) {
        head.push(b.ok()?);
    }
    // Offsets count from after the byte-order mark the scan skipped.
    let head = if head == [0xef, 0xbb, 0xbf] { Vec::new() } else { head };
    let (mut line, mut pos, mut after_cr) = (1u64, 0u64, false);
    for b in head.into_iter().map(Ok).chain(bytes) {
        let b = b.ok()?;
        // The record starts at its first byte that is not a line break: the reader may report
        // the offset of the blank lines (or the `\n` of a `\r\n`) it skipped before it.
        if pos >= offset && b != b'\n' && b != b'\r' {
            return Some(line);
        }
        match b {
            b'\n' if after_cr => {}
            b'\n' | b'\r' => line += 1,
            _ => {}
        }
        after_cr = b == b'\r';
        pos += 1;
    }
    Some(line)
}

/// `H:MM:SS` or `HH:MM:SS` (or `HHH:MM:SS` up to [`MAX_HOURS`]), ASCII digits only, minutes and
/// seconds below 60. Stricter than gtfs-structures (which takes `+1:99:99`): what it accepts
/// beyond this is not a GTFS time either.
fn time_ok(value: &str) -> bool {
    fn digits(s: &str) -> Option<u32> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }
    let mut parts = value.split(':');
    let (Some(h), Some(m), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if !(1..=3).contains(&h.len()) || m.len() != 2 || s.len() != 2 {
        return false;
    }
    matches!(
        (digits(h), digits(m), digits(s)),
        (Some(h), Some(m), Some(s)) if h <= MAX_HOURS && m < 60 && s < 60
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use std::io::{Read, Write};
    use std::path::PathBuf;

    use super::*;

    /// Writes `files` (name, contents) into a fresh directory.
    pub(crate) fn dir_feed(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    /// Writes `files` into `feed.zip` in a fresh directory, deflated, under `prefix`.
    fn zip_feed(files: &[(&str, &[u8])], prefix: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feed.zip");
        let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in files {
            zip.start_file(format!("{prefix}{name}"), opts).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
        (dir, path)
    }

    fn bundled() -> PathBuf {
        crate::bundled_gtfs_path()
    }

    /// The bundled feed's files, unpacked.
    pub(crate) fn bundled_files() -> Vec<(String, Vec<u8>)> {
        let mut archive = zip::ZipArchive::new(File::open(bundled()).unwrap()).unwrap();
        (0..archive.len())
            .map(|i| {
                let mut f = archive.by_index(i).unwrap();
                let mut bytes = Vec::new();
                f.read_to_end(&mut bytes).unwrap();
                (f.name().to_string(), bytes)
            })
            .collect()
    }

    /// The bundled feed unpacked into a directory, with `edit` applied to one file.
    pub(crate) fn bundled_dir_with(file: &str, edit: impl Fn(&str) -> String) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in bundled_files() {
            let bytes = if name == file {
                edit(std::str::from_utf8(&bytes).unwrap()).into_bytes()
            } else {
                bytes
            };
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        dir
    }

    fn detail(r: Result<(), Error>) -> String {
        match r {
            Err(Error::Gtfs { detail, .. }) => detail,
            other => panic!("expected a GTFS error, got {other:?}"),
        }
    }

    const ROUTES: &str = "route_id,route_short_name,route_long_name,route_type,route_color,route_text_color\n\
        r1,1,One,3,7BC142,000000\n\
        r2,2,Two,3,,\n";

    #[test]
    fn the_bundled_feed_passes_as_zip_and_as_directory() {
        check_feed(&bundled()).unwrap();
        let dir = bundled_dir_with("routes.txt", str::to_string);
        check_feed(dir.path()).unwrap();
    }

    #[test]
    fn a_good_small_feed_passes() {
        let dir = dir_feed(&[
            ("routes.txt", ROUTES),
            (
                "stop_times.txt",
                "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n\
                 t,8:00:00,08:00:00,a,1\n\
                 t,,,b,2\n\
                 t, 25:59:59 ,240:59:59,c,3\n",
            ),
            (
                "frequencies.txt",
                "trip_id,start_time,end_time,headway_secs\nt,06:00:00,26:00:00,600\n",
            ),
        ]);
        check_feed(dir.path()).unwrap();
    }

    #[test]
    fn a_non_hex_route_color_names_file_line_column_and_value() {
        // The fuzz finding: a byte-order mark inside the field, 6 bytes long but not ASCII.
        let routes = format!("{ROUTES}r3,3,Three,3,7B\u{feff}2,FFFFFF\n");
        let dir = dir_feed(&[("routes.txt", &routes)]);
        let d = detail(check_feed(dir.path()));
        // Shown escaped, so the invisible character is visible in the message.
        assert!(d.starts_with(r#"routes.txt line 4: malformed route_color "7B\u{feff}2""#), "{d}");
        for bad in ["7BC14", "7BC1422", "GGGGGG", "#7BC14", "7\u{e9}ABC"] {
            let routes = format!("{ROUTES}r3,3,Three,3,7BC142,{bad}\n");
            let dir = dir_feed(&[("routes.txt", &routes)]);
            let d = detail(check_feed(dir.path()));
            assert!(d.starts_with("routes.txt line 4: malformed route_text_color"), "{bad}: {d}");
            assert!(d.contains(&format!("{bad:?}")), "{d}");
        }
    }

    #[test]
    fn a_bad_stop_time_names_file_line_column_and_value() {
        // The fuzz finding: hours * 3600 overflows u32 inside gtfs-structures.
        let dir = dir_feed(&[(
            "stop_times.txt",
            "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n\
             t,08:00:00,08:00:00,a,1\n\
             t,08:10:00,12714106:35:00,b,2\n",
        )]);
        let d = detail(check_feed(dir.path()));
        assert!(
            d.starts_with("stop_times.txt line 3: malformed departure_time \"12714106:35:00\""),
            "{d}"
        );
        assert!(d.contains("240 hours"), "{d}");
    }

    #[test]
    fn a_bad_frequency_time_names_file_line_column_and_value() {
        let dir = dir_feed(&[(
            "frequencies.txt",
            "trip_id,start_time,end_time,headway_secs\nt,06:00:00,4294967295:00:00,600\n",
        )]);
        let d = detail(check_feed(dir.path()));
        assert!(d.starts_with("frequencies.txt line 2: malformed end_time"), "{d}");
    }

    #[test]
    fn times_are_checked_strictly() {
        for good in ["0:00:00", "8:05:09", "08:05:09", "23:59:59", "47:00:00", "240:59:59"] {
            assert!(time_ok(good), "{good}");
        }
        for bad in [
            "241:00:00",
            "12714106:35:00",
            "0240:00:00",
            "8:5:00",
            "08:60:00",
            "08:00:60",
            "+8:00:00",
            "08:00",
            "08:00:00:00",
            ":00:00",
            "\u{0668}:00:00",
            "08h00:00",
        ] {
            assert!(!time_ok(bad), "{bad}");
        }
    }

    #[test]
    fn columns_in_any_order_bom_quotes_and_multiline_records() {
        // A BOM before the header, the colour first, quoted fields, and a record spanning two
        // lines before the bad one: the line is the one a person counts in an editor.
        let routes = "\u{feff}route_text_color,route_id,route_long_name,route_color\n\
            \"000000\",r1,\"City, North\",\"7BC142\"\n\
            FFFFFF,r2,\"Two\nlines\",  ABCDEF  \n\
            FFFFFF,r3,Three,\"7B C1 42\"\n";
        let dir = dir_feed(&[("routes.txt", routes)]);
        let d = detail(check_feed(dir.path()));
        assert!(d.starts_with("routes.txt line 5: malformed route_color \"7B C1 42\""), "{d}");
        // The same without the bad record passes: the BOM did not hide the first column.
        let good = routes.lines().take(4).collect::<Vec<_>>().join("\n");
        let dir = dir_feed(&[("routes.txt", &good)]);
        check_feed(dir.path()).unwrap();
        let dir = dir_feed(&[("routes.txt", "\u{feff}route_color,route_id\nnothex,r1\n")]);
        assert!(detail(check_feed(dir.path())).starts_with("routes.txt line 2:"));
    }

    #[test]
    fn line_numbers_count_crlf_lone_cr_and_blank_lines() {
        // Line 3 spans two lines inside quotes, line 5 is blank, the bad record is on line 6.
        let lines = [
            "route_id,route_long_name,route_color",
            "r1,One,7BC142",
            "r2,\"Two",
            "lines\",",
            "",
            "r3,Three,7BC1",
        ];
        for (eol, bom) in [("\n", ""), ("\r\n", ""), ("\r", ""), ("\r\n", "\u{feff}")] {
            let text = format!("{bom}{}{eol}", lines.join(eol));
            let dir = dir_feed(&[("routes.txt", &text)]);
            let d = detail(check_feed(dir.path()));
            assert!(
                d.starts_with("routes.txt line 6: malformed route_color \"7BC1\""),
                "{eol:?}: {d}"
            );
            let (_tmp, zip) = zip_feed(&[("routes.txt", text.as_bytes())], "");
            let d = detail(check_feed(&zip));
            assert!(d.starts_with("routes.txt line 6: "), "{eol:?} zip: {d}");
        }
    }

    #[test]
    fn missing_files_columns_and_short_rows_are_not_this_checks_business() {
        // No colour columns, no frequencies.txt, no stop_times.txt, a short row, a tiny file.
        let dir =
            dir_feed(&[("routes.txt", "route_id,route_type\nr1,3\n"), ("frequencies.txt", "ab")]);
        check_feed(dir.path()).unwrap();
        let dir = dir_feed(&[("routes.txt", "route_id,route_color\nr1\n")]);
        check_feed(dir.path()).unwrap();
        check_feed(&dir.path().join("nonexistent.zip")).unwrap();
        let (_tmp, garbage) = zip_feed(&[], "");
        std::fs::write(&garbage, b"not a zip").unwrap();
        check_feed(&garbage).unwrap();
    }

    #[test]
    fn a_zip_feed_is_checked_like_a_directory() {
        let bad = format!("{ROUTES}r3,3,Three,3,7BC14\u{e9},\n");
        let (_tmp, zip) =
            zip_feed(&[("agency.txt", b"agency_name\nA\n"), ("routes.txt", bad.as_bytes())], "");
        let d = detail(check_feed(&zip));
        assert!(d.starts_with("routes.txt line 4: malformed route_color"), "{d}");
        // In a folder inside the archive, as gtfs-structures also accepts; named as stored.
        let times = "trip_id,arrival_time\nt,99999999:00:00\n";
        let (_tmp, zip) = zip_feed(&[("stop_times.txt", times.as_bytes())], "feed/");
        let d = detail(check_feed(&zip));
        assert!(d.starts_with("feed/stop_times.txt line 2: malformed arrival_time"), "{d}");
        // And the bundled feed repacked, with one bad colour.
        let files: Vec<(String, Vec<u8>)> = bundled_files()
            .into_iter()
            .map(|(n, b)| {
                let b = if n == "routes.txt" {
                    String::from_utf8(b).unwrap().replacen("7BC142", "7BC1\u{e9}", 1).into_bytes()
                } else {
                    b
                };
                (n, b)
            })
            .collect();
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), &b[..])).collect();
        let (_tmp, zip) = zip_feed(&refs, "");
        assert!(detail(check_feed(&zip)).starts_with("routes.txt line 2: malformed route_color"));
    }

    #[test]
    fn long_values_are_cut_in_the_message() {
        let long = "9".repeat(5000);
        let dir = dir_feed(&[("stop_times.txt", &format!("arrival_time\n{long}:00:00\n"))]);
        let d = detail(check_feed(dir.path()));
        assert!(d.len() < 300 && d.contains('…'), "{d}");
    }
}
