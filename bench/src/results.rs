//! Reading what a benchmark run wrote: `results.jsonl` (one JSON object per line, from the
//! `BENCH_RESULT` lines and the records run.sh writes itself) and criterion's estimates.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Every figure of one run, in the order written.
#[derive(Debug, Default)]
pub struct Results {
    /// The records, each tagged with `stage` (and usually `kind`).
    pub records: Vec<Value>,
    /// The directory the results file is in (load reports are referenced relative to it).
    pub dir: PathBuf,
}

impl Results {
    /// Reads a results file; a bad line is an error naming the file and the line.
    pub fn read(path: &Path) -> Result<Results> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut records = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not a JSON object", path.display(), i + 1))?;
            if v.get("stage").and_then(Value::as_str).is_none() {
                bail!("{}:{}: record without a \"stage\"", path.display(), i + 1);
            }
            records.push(v);
        }
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Results { records, dir })
    }

    /// Records of one stage and kind (`kind` None: any).
    pub fn of<'a>(
        &'a self,
        stage: &'a str,
        kind: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Value> {
        self.records.iter().filter(move |r| {
            r.get("stage").and_then(Value::as_str) == Some(stage)
                && kind.is_none_or(|k| r.get("kind").and_then(Value::as_str) == Some(k))
        })
    }

    /// The load report a record points to (`"load_report": "file.json"`).
    pub fn load_report(&self, record: &Value) -> Result<Value> {
        let name = record
            .get("load_report")
            .and_then(Value::as_str)
            .context("record has no load_report")?;
        let path = self.dir.join(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))
    }
}

/// A number from a record (`a.b.c` paths), NaN when absent.
pub fn num(v: &Value, path: &str) -> f64 {
    let mut cur = v;
    for key in path.split('.') {
        match cur.get(key) {
            Some(next) => cur = next,
            None => return f64::NAN,
        }
    }
    cur.as_f64().unwrap_or(f64::NAN)
}

/// One criterion benchmark: its id and mean time per iteration.
#[derive(Debug, Clone, PartialEq)]
pub struct CriterionBench {
    /// `group/function/parameter`, as criterion names the directories.
    pub id: String,
    /// Mean time per iteration, nanoseconds.
    pub mean_ns: f64,
    /// Lower and upper bound of the mean's 95% confidence interval, nanoseconds.
    pub ci_ns: (f64, f64),
    /// Elements per iteration, when the bench declared a throughput.
    pub elements: Option<f64>,
}

/// Every benchmark under criterion's output directory (`target/criterion`) that has a
/// `new/estimates.json`; sorted by id.
pub fn criterion(dir: &Path) -> Result<Vec<CriterionBench>> {
    let mut out = Vec::new();
    if dir.is_dir() {
        walk(dir, dir, &mut out)?;
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<CriterionBench>) -> Result<()> {
    let estimates = dir.join("new/estimates.json");
    if estimates.is_file() {
        let text = std::fs::read_to_string(&estimates)
            .with_context(|| format!("reading {}", estimates.display()))?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not JSON", estimates.display()))?;
        let bench = dir.join("new/benchmark.json");
        let meta: Option<Value> =
            std::fs::read_to_string(&bench).ok().and_then(|t| serde_json::from_str(&t).ok());
        let id = meta
            .as_ref()
            .and_then(|m| m.get("full_id").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| dir.strip_prefix(root).unwrap_or(dir).display().to_string());
        let elements = meta
            .as_ref()
            .and_then(|m| m.get("throughput"))
            .and_then(|t| t.get("Elements").or_else(|| t.get("ElementsAndBytes")))
            .and_then(|e| e.as_f64().or_else(|| e.get("elements").and_then(Value::as_f64)));
        out.push(CriterionBench {
            id,
            mean_ns: num(&v, "mean.point_estimate"),
            ci_ns: (
                num(&v, "mean.confidence_interval.lower_bound"),
                num(&v, "mean.confidence_interval.upper_bound"),
            ),
            elements,
        });
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        // criterion's own summary pages live in `report/`; only benchmark directories count.
        if path.is_dir() && path.file_name().is_some_and(|n| n != "report") {
            walk(root, &path, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bad_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.jsonl");
        std::fs::write(&path, "{\"stage\":\"a\"}\nnot json\n").unwrap();
        let err = format!("{:#}", Results::read(&path).unwrap_err());
        assert!(err.contains("results.jsonl:2"), "{err}");
        std::fs::write(&path, "{\"kind\":\"a\"}\n").unwrap();
        let err = format!("{:#}", Results::read(&path).unwrap_err());
        assert!(err.contains(":1: record without"), "{err}");
    }

    #[test]
    fn filters_and_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        std::fs::write(
            &path,
            "{\"stage\":\"pipeline\",\"kind\":\"latency\",\"p\":{\"q\":3.5}}\n\
             {\"stage\":\"pipeline\",\"kind\":\"throughput\"}\n{\"stage\":\"feed\"}\n",
        )
        .unwrap();
        let r = Results::read(&path).unwrap();
        assert_eq!(r.of("pipeline", None).count(), 2);
        assert_eq!(r.of("pipeline", Some("latency")).count(), 1);
        let rec = r.of("pipeline", Some("latency")).next().unwrap();
        assert_eq!(num(rec, "p.q"), 3.5);
        assert!(num(rec, "p.missing").is_nan());
    }

    #[test]
    fn reads_criterion_estimates() {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path().join("group/case/new");
        std::fs::create_dir_all(&b).unwrap();
        std::fs::create_dir_all(dir.path().join("report")).unwrap();
        std::fs::write(
            b.join("estimates.json"),
            r#"{"mean":{"point_estimate":2500.0,"confidence_interval":{"lower_bound":2400.0,"upper_bound":2600.0}}}"#,
        )
        .unwrap();
        std::fs::write(
            b.join("benchmark.json"),
            r#"{"full_id":"group/case","throughput":{"Elements":100}}"#,
        )
        .unwrap();
        let v = criterion(dir.path()).unwrap();
        assert_eq!(
            v,
            vec![CriterionBench {
                id: "group/case".into(),
                mean_ns: 2500.0,
                ci_ns: (2400.0, 2600.0),
                elements: Some(100.0)
            }]
        );
    }
}
