//! Built-in functions the checker accepts in Arroyo SQL, with their argument counts.
//!
//! Arroyo's SQL functions are DataFusion's plus its own window functions. Written down from
//! Arroyo's docs (ArroyoSystems/arroyo-docs: sql/windows.mdx for tumble/hop/session,
//! sql/window-functions.mdx for row_number, sql/aggregate-functions.mdx and
//! sql/scalar-functions/*.mdx, which follow DataFusion's function reference). Only functions
//! busflow's SQL has a use for are listed; add one here (with its arity) before using it.
//! `CAST`, `CASE`, `TRIM`, `EXTRACT`, `IS NULL` and the like are syntax, not function calls, so
//! they never reach this list.

/// `(name, min args, max args)`; `usize::MAX` means variadic.
pub const BUILTINS: &[(&str, usize, usize)] = &[
    // windows (Arroyo)
    ("tumble", 1, 1),
    ("hop", 2, 2),
    ("session", 1, 1),
    // window functions
    ("row_number", 0, 0),
    // aggregates
    ("count", 1, 1),
    ("sum", 1, 1),
    ("min", 1, 1),
    ("max", 1, 1),
    ("avg", 1, 1),
    ("first_value", 1, 1),
    ("last_value", 1, 1),
    ("approx_distinct", 1, 1),
    // conditional
    ("coalesce", 1, usize::MAX),
    ("nullif", 2, 2),
    // math
    ("abs", 1, 1),
    ("isnan", 1, 1),
    ("round", 1, 2),
    ("floor", 1, 1),
    ("ceil", 1, 1),
    ("sqrt", 1, 1),
    ("power", 2, 2),
    ("radians", 1, 1),
    ("degrees", 1, 1),
    ("sin", 1, 1),
    ("cos", 1, 1),
    ("asin", 1, 1),
    ("atan2", 2, 2),
    // strings
    ("char_length", 1, 1),
    ("character_length", 1, 1),
    ("length", 1, 1),
    ("octet_length", 1, 1),
    ("lower", 1, 1),
    ("upper", 1, 1),
    ("btrim", 1, 2),
    ("concat", 1, usize::MAX),
    ("substr", 2, 3),
    // time
    ("to_timestamp_millis", 1, usize::MAX),
    ("to_timestamp", 1, usize::MAX),
    ("from_unixtime", 1, 1),
    ("now", 0, 0),
    ("date_trunc", 2, 2),
    ("date_part", 2, 2),
];

/// The allowed argument counts of a built-in, by lowercase name.
pub fn builtin(name: &str) -> Option<(usize, usize)> {
    BUILTINS.iter().find(|(n, _, _)| *n == name).map(|&(_, lo, hi)| (lo, hi))
}
