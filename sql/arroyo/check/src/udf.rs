//! The UDFs under `sql/arroyo/udfs/`, read from their `src/lib.rs` the way Arroyo reads an
//! uploaded UDF: one `#[udf]` function (its name is the SQL name, its parameters the arguments)
//! and an optional leading `/* [dependencies] ... */` comment in Cargo.toml syntax.

use std::fs;
use std::path::{Path, PathBuf};

/// One UDF crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Udf {
    /// SQL name: the name of the `#[udf]` function.
    pub name: String,
    /// Number of parameters.
    pub arity: usize,
    /// The crate's directory.
    pub dir: PathBuf,
    /// `(crate, requirement)` pairs from the `[dependencies]` comment, as written.
    pub dependencies: Vec<(String, String)>,
}

/// Every `udfs/*/src/lib.rs`, sorted by directory name.
pub fn discover_udfs(udfs_dir: &Path) -> Result<Vec<Udf>, String> {
    let entries = fs::read_dir(udfs_dir).map_err(|e| format!("{}: {e}", udfs_dir.display()))?;
    let mut dirs: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", udfs_dir.display()))?;
        if entry.path().join("src/lib.rs").is_file() {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let path = dir.join("src/lib.rs");
            let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let (name, arity) =
                udf_signature(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            let dependencies =
                dependency_comment(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(Udf { name, arity, dir, dependencies })
        })
        .collect()
}

/// Name and parameter count of the single `#[udf]` function in a UDF file.
pub fn udf_signature(text: &str) -> Result<(String, usize), String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[udf") {
        let after = &rest[at..];
        let Some(fn_at) = after.find("fn ") else {
            return Err("#[udf] without a following fn".into());
        };
        let sig = &after[fn_at + 3..];
        let name: String =
            sig.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if name.is_empty() {
            return Err("#[udf] fn without a name".into());
        }
        let Some(open) = sig.find('(') else {
            return Err(format!("fn {name} without parameters"));
        };
        let params = matching_paren(&sig[open..]).ok_or(format!("fn {name}: unclosed ("))?;
        found.push((name, count_params(params)));
        rest = &sig[open..];
    }
    match found.len() {
        1 => found.pop().ok_or_else(|| "no #[udf] fn".to_string()),
        0 => Err("no #[udf] fn".into()),
        n => Err(format!("{n} #[udf] fns; Arroyo wants exactly one per UDF")),
    }
}

/// The text between `(` at the start of `s` and its matching `)`.
fn matching_paren(s: &str) -> Option<&str> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return s.get(1..i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Top-level comma-separated parameters (commas inside `<>`, `()`, `[]` do not count).
fn count_params(params: &str) -> usize {
    let mut depth = 0i32;
    let mut count = 0;
    let mut current = false;
    for c in params.chars() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                if current {
                    count += 1;
                }
                current = false;
                continue;
            }
            _ => {}
        }
        if !c.is_whitespace() {
            current = true;
        }
    }
    count + usize::from(current)
}

/// `(crate, requirement)` pairs of the leading `/* [dependencies] ... */` comment; empty when
/// there is none. Only the `name = "requirement"` form is accepted, which is all busflow uses.
pub fn dependency_comment(text: &str) -> Result<Vec<(String, String)>, String> {
    let trimmed = text.trim_start();
    let Some(body) = trimmed.strip_prefix("/*") else {
        return Ok(Vec::new());
    };
    let end = body.find("*/").ok_or("unclosed leading comment")?;
    let mut lines = body[..end].lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some("[dependencies]") {
        return Ok(Vec::new());
    }
    lines
        .map(|line| {
            let (name, req) = line
                .split_once('=')
                .ok_or_else(|| format!("dependency line {line:?} is not name = \"version\""))?;
            let req = req.trim();
            let req = req
                .strip_prefix('"')
                .and_then(|r| r.strip_suffix('"'))
                .ok_or_else(|| format!("dependency line {line:?}: version must be a \"string\""))?;
            Ok((name.trim().to_string(), req.to_string()))
        })
        .collect()
}
