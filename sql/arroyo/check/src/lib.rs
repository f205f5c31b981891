//! Checks busflow's Arroyo SQL without an Arroyo cluster.
//!
//! Dialect: [`PostgreSqlDialect`]. Arroyo's own dialect (crates/arroyo-planner/src/dialect.rs
//! in ArroyoSystems/arroyo) is documented there as "based on the Postgres dialect" and differs
//! only in tokenizer/precedence details busflow's SQL does not use (struct literals, some
//! operators); GenericDialect would accept things Postgres and Arroyo do not, such as backtick
//! identifiers. What upstream sqlparser cannot parse are Arroyo's DDL extensions,
//! `WATERMARK FOR <col> [AS <expr>]` and `<col> <type> METADATA FROM '<key>'`: [`check_arroyo`]
//! finds them in the tokens of each `CREATE TABLE`, validates them, and blanks them out (line and
//! column positions kept) before handing the text to sqlparser. Anything else it cannot parse is
//! an error with the file and line.
//!
//! Then, on the parsed statements:
//! - every connector `CREATE TABLE`: `connector = 'kafka'`, every `WITH` option known
//!   ([`kafka::OPTIONS`]), allowed for the table's type, with an allowed value; the
//!   [`kafka::REQUIRED`] options present; options naming a column name one of the table's;
//!   watermark and metadata columns only on sources;
//! - every `INSERT INTO`: the target is a sink (or memory) table defined in the file; its column
//!   list names columns of that table; the SELECT projection has as many items as the target has
//!   columns, each named (a column or an alias) like the target column in the same position;
//! - every function call: a built-in ([`functions::BUILTINS`]) or a UDF found under
//!   `sql/arroyo/udfs/` ([`discover_udfs`]), with an accepted number of arguments.

pub mod functions;
pub mod kafka;
pub mod udf;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, ColumnOption, CreateTableOptions, Expr, FunctionArguments, ObjectName,
    ObjectNamePart, Query, SelectItem, SetExpr, SqlOption, Statement, TableObject, Value,
};
use sqlparser::dialect::{Dialect, PostgreSqlDialect};
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

pub use udf::{discover_udfs, Udf};

/// One problem, located in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// File name as given to the checker.
    pub file: String,
    /// 1-based line; 0 when unknown.
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// What a table is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// `type = 'source'`.
    Source,
    /// `type = 'sink'`.
    Sink,
    /// No `WITH` clause: an in-memory table.
    Memory,
}

/// A table defined in a file.
#[derive(Debug, Clone)]
pub struct Table {
    /// Lowercase name.
    pub name: String,
    /// What it is for.
    pub kind: TableKind,
    /// Column names (lowercase) in order; generated and metadata columns included.
    pub columns: Vec<String>,
    /// Columns an INSERT writes: all but generated (virtual) columns.
    pub writable: Vec<String>,
    /// `WITH` options.
    pub options: BTreeMap<String, String>,
    /// The event-time column named by `WATERMARK FOR`, if any.
    pub watermark: Option<String>,
}

/// What a clean file contained.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Tables, in order.
    pub tables: Vec<Table>,
    /// Views, lowercase.
    pub views: Vec<String>,
    /// `(target table, number of columns)` per INSERT, in order.
    pub inserts: Vec<(String, usize)>,
    /// Every function called, lowercase.
    pub functions: BTreeSet<String>,
}

/// An Arroyo-only clause found in a CREATE TABLE.
#[derive(Debug, Clone)]
struct Extension {
    /// Index of the CREATE TABLE among the file's statements.
    statement: usize,
    line: u64,
    kind: ExtensionKind,
}

#[derive(Debug, Clone)]
enum ExtensionKind {
    Watermark { column: String, expr: Option<Box<Expr>> },
    Metadata { column: String, key: String },
}

/// Parses one file of DataFusion SQL (busflow's `sql/queries/`): only that it parses.
/// Returns the number of statements.
pub fn check_parses(file: &str, sql: &str, dialect: &dyn Dialect) -> Result<usize, Diagnostic> {
    Parser::parse_sql(dialect, sql)
        .map(|statements| statements.len())
        .map_err(|e| diagnostic_from_error(file, &e.to_string()))
}

/// Checks one file of Arroyo SQL against the UDFs that exist. All problems are returned.
pub fn check_arroyo(file: &str, sql: &str, udfs: &[Udf]) -> Result<Summary, Vec<Diagnostic>> {
    let (text, statement_lines, extensions) = strip_extensions(file, sql).map_err(|d| vec![d])?;
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, &text)
        .map_err(|e| vec![diagnostic_from_error(file, &e.to_string())])?;
    if statements.len() != statement_lines.len() {
        return Err(vec![diag(
            file,
            0,
            format!(
                "found {} statements by tokens but sqlparser parsed {}",
                statement_lines.len(),
                statements.len()
            ),
        )]);
    }
    let mut checker = Checker { file, udfs, summary: Summary::default(), problems: Vec::new() };
    for (index, statement) in statements.iter().enumerate() {
        let line = statement_lines.get(index).copied().unwrap_or(0);
        let ext: Vec<&Extension> = extensions.iter().filter(|e| e.statement == index).collect();
        checker.statement(statement, line, &ext);
    }
    if checker.problems.is_empty() {
        Ok(checker.summary)
    } else {
        Err(checker.problems)
    }
}

fn diag(file: &str, line: u64, message: impl Into<String>) -> Diagnostic {
    Diagnostic { file: file.to_string(), line, message: message.into() }
}

/// sqlparser's messages end in "at Line: N, Column: M"; take N.
fn diagnostic_from_error(file: &str, message: &str) -> Diagnostic {
    let line = message
        .rfind("Line: ")
        .and_then(|at| {
            let digits: String =
                message[at + 6..].chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse().ok()
        })
        .unwrap_or(0);
    diag(file, line, format!("does not parse: {message}"))
}

// ---------------------------------------------------------------------------------------------
// Arroyo-only clauses: find, validate, blank out.

/// Byte offset of a tokenizer location (1-based line and column, columns in characters).
fn byte_offset(line_starts: &[usize], text: &str, loc: Location) -> usize {
    let Some(&start) =
        usize::try_from(loc.line).ok().and_then(|l| line_starts.get(l.wrapping_sub(1)))
    else {
        return text.len();
    };
    let column = usize::try_from(loc.column).unwrap_or(1).saturating_sub(1);
    text[start..].char_indices().nth(column).map_or(text.len(), |(i, _)| start + i)
}

fn is_word(t: &Token, word: &str) -> bool {
    matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

fn is_keyword(t: &Token, kw: Keyword) -> bool {
    matches!(t, Token::Word(w) if w.quote_style.is_none() && w.keyword == kw)
}

fn is_trivia(t: &Token) -> bool {
    matches!(t, Token::Whitespace(_))
}

/// Returns the text with Arroyo's clauses blanked, the first line of every statement, and the
/// clauses found.
fn strip_extensions(
    file: &str,
    sql: &str,
) -> Result<(String, Vec<u64>, Vec<Extension>), Diagnostic> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| diagnostic_from_error(file, &e.to_string()))?;
    let significant: Vec<&TokenWithSpan> = tokens.iter().filter(|t| !is_trivia(&t.token)).collect();

    let mut line_starts = vec![0];
    line_starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));

    let mut blank: Vec<(usize, usize)> = Vec::new();
    let mut extensions = Vec::new();
    let mut statement_lines = Vec::new();
    let mut statement = 0usize;
    let mut i = 0;
    while i < significant.len() {
        // One statement: significant[i..end].
        let end = (i..significant.len())
            .find(|&j| significant[j].token == Token::SemiColon)
            .unwrap_or(significant.len());
        if end > i {
            statement_lines.push(significant[i].span.start.line);
            let stmt = &significant[i..end];
            if let Some(open) = create_table_columns_start(stmt) {
                let found = column_list_extensions(file, stmt, open, statement)?;
                for (range, ext) in found {
                    let from = byte_offset(&line_starts, sql, range.0);
                    let to = byte_offset(&line_starts, sql, range.1);
                    blank.push((from, to));
                    extensions.push(ext);
                }
            }
            statement += 1;
        }
        i = end + 1;
    }

    let mut text = String::with_capacity(sql.len());
    for (at, ch) in sql.char_indices() {
        if ch != '\n' && blank.iter().any(|&(from, to)| at >= from && at < to) {
            text.push(' ');
        } else {
            text.push(ch);
        }
    }
    Ok((text, statement_lines, extensions))
}

/// For `CREATE [TEMP|TEMPORARY] TABLE [IF NOT EXISTS] name (`, the index of that `(`.
fn create_table_columns_start(stmt: &[&TokenWithSpan]) -> Option<usize> {
    let mut i = 0;
    let at = |i: usize| stmt.get(i).map(|t| &t.token);
    if !at(i).is_some_and(|t| is_keyword(t, Keyword::CREATE)) {
        return None;
    }
    i += 1;
    if at(i).is_some_and(|t| is_keyword(t, Keyword::TEMP) || is_keyword(t, Keyword::TEMPORARY)) {
        i += 1;
    }
    if !at(i).is_some_and(|t| is_keyword(t, Keyword::TABLE)) {
        return None;
    }
    (i + 1..stmt.len()).find(|&j| stmt[j].token == Token::LParen).filter(|&j| {
        // Only a column list directly after the name (not `AS (SELECT ...)`).
        !stmt[i + 1..j].iter().any(|t| is_keyword(&t.token, Keyword::AS))
    })
}

type Range = (Location, Location);

/// Walks the column list starting at `stmt[open] == (`; returns the ranges to blank and what
/// they were.
fn column_list_extensions(
    file: &str,
    stmt: &[&TokenWithSpan],
    open: usize,
    statement: usize,
) -> Result<Vec<(Range, Extension)>, Diagnostic> {
    // Split the list into elements at depth-1 commas.
    let mut elements: Vec<(usize, usize)> = Vec::new(); // [start, end) token indices
    let mut depth = 0usize;
    let mut start = open + 1;
    let mut close = None;
    for (j, t) in stmt.iter().enumerate().skip(open) {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    elements.push((start, j));
                    close = Some(j);
                    break;
                }
            }
            Token::Comma if depth == 1 => {
                elements.push((start, j));
                start = j + 1;
            }
            _ => {}
        }
    }
    if close.is_none() {
        let line = stmt[open].span.start.line;
        return Err(diag(file, line, "CREATE TABLE column list is not closed"));
    }

    let mut found = Vec::new();
    for (n, &(from, to)) in elements.iter().enumerate() {
        let Some(first) = stmt.get(from) else { continue };
        if from >= to {
            continue;
        }
        let line = first.span.start.line;
        if is_word(&first.token, "WATERMARK") {
            let (column, expr) = parse_watermark(file, &stmt[from + 1..to], line)?;
            // Blank the element and one separating comma, so the list stays well-formed.
            let range = if n > 0 {
                (stmt[from - 1].span.start, stmt[to - 1].span.end)
            } else if elements.len() > 1 {
                (stmt[from].span.start, stmt[to].span.end)
            } else {
                (stmt[from].span.start, stmt[to - 1].span.end)
            };
            let kind = ExtensionKind::Watermark { column, expr: expr.map(Box::new) };
            found.push((range, Extension { statement, line, kind }));
            continue;
        }
        // `name type ... METADATA FROM 'key' ...`
        for k in from..to {
            if !is_word(&stmt[k].token, "METADATA") {
                continue;
            }
            let from_kw = stmt.get(k + 1).map(|t| &t.token);
            let key = stmt.get(k + 2).map(|t| &t.token);
            let (Some(f), Some(Token::SingleQuotedString(key))) = (from_kw, key) else {
                let line = stmt[k].span.start.line;
                return Err(diag(file, line, "METADATA must be followed by FROM '<key>'"));
            };
            if !is_keyword(f, Keyword::FROM) || k + 2 >= to {
                let line = stmt[k].span.start.line;
                return Err(diag(file, line, "METADATA must be followed by FROM '<key>'"));
            }
            let column = match &first.token {
                Token::Word(w) => w.value.to_lowercase(),
                other => other.to_string(),
            };
            let range = (stmt[k].span.start, stmt[k + 2].span.end);
            let kind = ExtensionKind::Metadata { column, key: key.clone() };
            found.push((range, Extension { statement, line: stmt[k].span.start.line, kind }));
        }
    }
    Ok(found)
}

/// `FOR <column> [AS <expr>]`, the tokens after `WATERMARK`.
fn parse_watermark(
    file: &str,
    tokens: &[&TokenWithSpan],
    line: u64,
) -> Result<(String, Option<Expr>), Diagnostic> {
    let bad = |why: String| {
        diag(
            file,
            line,
            format!("bad WATERMARK clause (want WATERMARK FOR <column> [AS <expr>]): {why}"),
        )
    };
    let owned: Vec<TokenWithSpan> = tokens.iter().map(|t| (*t).clone()).collect();
    let dialect = PostgreSqlDialect {};
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(owned);
    parser.expect_keyword(Keyword::FOR).map_err(|e| bad(e.to_string()))?;
    let column = parser.parse_identifier().map_err(|e| bad(e.to_string()))?;
    let expr = if parser.parse_keyword(Keyword::AS) {
        Some(parser.parse_expr().map_err(|e| bad(e.to_string()))?)
    } else {
        None
    };
    let rest = parser.peek_token();
    if rest.token != Token::EOF {
        return Err(bad(format!("unexpected {} at Line: {}", rest.token, rest.span.start.line)));
    }
    Ok((column.value.to_lowercase(), expr))
}

// ---------------------------------------------------------------------------------------------
// Checks on the parsed statements.

struct Checker<'a> {
    file: &'a str,
    udfs: &'a [Udf],
    summary: Summary,
    problems: Vec<Diagnostic>,
}

fn object_name(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => ident.value.to_lowercase(),
            other => other.to_string().to_lowercase(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A string literal's value.
fn string_value(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

impl Checker<'_> {
    fn problem(&mut self, line: u64, message: impl Into<String>) {
        self.problems.push(diag(self.file, line, message));
    }

    fn statement(&mut self, statement: &Statement, line: u64, ext: &[&Extension]) {
        self.functions(statement, line);
        for e in ext {
            if let ExtensionKind::Watermark { expr: Some(expr), .. } = &e.kind {
                self.functions(expr, e.line);
            }
        }
        match statement {
            Statement::CreateTable(create) => {
                if create.query.is_some() {
                    self.summary.views.push(object_name(&create.name));
                    return;
                }
                let columns: Vec<String> =
                    create.columns.iter().map(|c| c.name.value.to_lowercase()).collect();
                let writable = create
                    .columns
                    .iter()
                    .filter(|c| {
                        !c.options
                            .iter()
                            .any(|o| matches!(o.option, ColumnOption::Generated { .. }))
                    })
                    .map(|c| c.name.value.to_lowercase())
                    .collect();
                let options = match &create.table_options {
                    CreateTableOptions::None => None,
                    CreateTableOptions::With(options) => Some(options.as_slice()),
                    other => {
                        self.problem(line, format!("unsupported table options: {other}"));
                        return;
                    }
                };
                let table =
                    self.table(object_name(&create.name), columns, writable, options, ext, line);
                if let Some(table) = table {
                    self.summary.tables.push(table);
                }
            }
            Statement::CreateView(view) => self.summary.views.push(object_name(&view.name)),
            Statement::Insert(insert) => {
                let target = match &insert.table {
                    TableObject::TableName(name) => object_name(name),
                    other => {
                        self.problem(line, format!("INSERT INTO {other}: not a table name"));
                        return;
                    }
                };
                let columns: Vec<String> = insert.columns.iter().map(object_name).collect();
                match &insert.source {
                    Some(query) => self.insert(&target, &columns, query, line),
                    None => self.problem(line, format!("INSERT INTO {target} without a query")),
                }
            }
            Statement::Query(_) => {}
            other => {
                let first = other.to_string();
                let head: String = first.chars().take(40).collect();
                self.problem(line, format!("statement not used by busflow's Arroyo SQL: {head}"));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn table(
        &mut self,
        name: String,
        columns: Vec<String>,
        writable: Vec<String>,
        options: Option<&[SqlOption]>,
        ext: &[&Extension],
        line: u64,
    ) -> Option<Table> {
        if self.summary.tables.iter().any(|t| t.name == name) {
            self.problem(line, format!("table {name} is defined twice"));
        }
        let mut map = BTreeMap::new();
        for option in options.unwrap_or_default() {
            match option {
                SqlOption::KeyValue { key, value } => {
                    let key = key
                        .0
                        .iter()
                        .map(|p| p.as_ident().map_or_else(|| p.to_string(), |i| i.value.clone()))
                        .collect::<Vec<_>>()
                        .join(".");
                    match string_value(value) {
                        Some(v) => {
                            if map.insert(key.clone(), v).is_some() {
                                self.problem(line, format!("{name}: option {key} given twice"));
                            }
                        }
                        None => self.problem(
                            line,
                            format!("{name}: option {key} = {value}: the value must be a 'string'"),
                        ),
                    }
                }
                other => self.problem(line, format!("{name}: option {other} is not key = 'value'")),
            }
        }

        let kind = if options.is_none() {
            TableKind::Memory
        } else {
            match map.get("type").map(String::as_str) {
                Some("source") => TableKind::Source,
                Some("sink") => TableKind::Sink,
                _ => TableKind::Memory, // reported below
            }
        };
        let mut watermark = None;
        for e in ext {
            match &e.kind {
                ExtensionKind::Watermark { column, .. } => {
                    if watermark.is_some() {
                        self.problem(e.line, format!("{name}: more than one WATERMARK FOR"));
                    }
                    if !columns.contains(column) {
                        self.problem(
                            e.line,
                            format!("{name}: WATERMARK FOR {column}: no such column"),
                        );
                    }
                    if kind != TableKind::Source {
                        self.problem(
                            e.line,
                            format!("{name}: WATERMARK FOR on a table that is not a source"),
                        );
                    }
                    watermark = Some(column.clone());
                }
                ExtensionKind::Metadata { column, key } => {
                    if !kafka::METADATA_KEYS.contains(&key.as_str()) {
                        self.problem(
                            e.line,
                            format!(
                                "{name}.{column}: METADATA FROM '{key}': Kafka offers {}",
                                kafka::METADATA_KEYS.join(", ")
                            ),
                        );
                    }
                    if kind != TableKind::Source {
                        self.problem(
                            e.line,
                            format!(
                                "{name}.{column}: METADATA FROM on a table that is not a source"
                            ),
                        );
                    }
                }
            }
        }
        if options.is_some() {
            self.kafka_options(&name, &map, &columns, line);
        }
        Some(Table { name, kind, columns, writable, options: map, watermark })
    }

    fn kafka_options(
        &mut self,
        name: &str,
        map: &BTreeMap<String, String>,
        columns: &[String],
        line: u64,
    ) {
        for required in kafka::REQUIRED {
            if !map.contains_key(*required) {
                self.problem(line, format!("{name}: required option {required} is missing"));
            }
        }
        let kind = map.get("type").map(String::as_str);
        for (key, value) in map {
            let Some(known) = kafka::option(key) else {
                self.problem(
                    line,
                    format!("{name}: unknown option {key} for Arroyo's Kafka connector"),
                );
                continue;
            };
            if !known.values.is_empty() && !known.values.contains(&value.as_str()) {
                self.problem(
                    line,
                    format!(
                        "{name}: {key} = '{value}': expected one of {}",
                        known.values.join(", ")
                    ),
                );
            }
            match (known.scope, kind) {
                (kafka::Scope::Source, Some("sink")) => {
                    self.problem(line, format!("{name}: {key} applies only to sources"))
                }
                (kafka::Scope::Sink, Some("source")) => {
                    self.problem(line, format!("{name}: {key} applies only to sinks"))
                }
                _ => {}
            }
            if kafka::COLUMN_OPTIONS.contains(&key.as_str())
                && !columns.contains(&value.to_lowercase())
            {
                self.problem(line, format!("{name}: {key} = '{value}': no such column"));
            }
        }
        if map.get("bootstrap_servers").is_some_and(|s| s.trim().is_empty()) {
            self.problem(line, format!("{name}: bootstrap_servers is empty"));
        }
        if map.get("topic").is_some_and(|s| s.trim().is_empty()) {
            self.problem(line, format!("{name}: topic is empty"));
        }
    }

    fn insert(&mut self, target: &str, columns: &[String], query: &Query, line: u64) {
        let Some(table) = self.summary.tables.iter().find(|t| t.name == target).cloned() else {
            self.problem(line, format!("INSERT INTO {target}: no such table in this file"));
            return;
        };
        if table.kind == TableKind::Source {
            self.problem(line, format!("INSERT INTO {target}: it is a source, not a sink"));
            return;
        }
        let wanted: Vec<String> = if columns.is_empty() {
            table.writable.clone()
        } else {
            for c in columns {
                if !table.writable.contains(c) {
                    self.problem(line, format!("INSERT INTO {target}: no writable column {c}"));
                }
            }
            columns.to_vec()
        };
        match projection_names(query) {
            Err(why) => self.problem(line, format!("INSERT INTO {target}: {why}")),
            Ok(names) => {
                if names.len() != wanted.len() {
                    self.problem(
                        line,
                        format!(
                            "INSERT INTO {target}: the SELECT gives {} columns, the table takes {} ({})",
                            names.len(),
                            wanted.len(),
                            wanted.join(", ")
                        ),
                    );
                }
                for (n, (got, want)) in names.iter().zip(&wanted).enumerate() {
                    match got {
                        Some(got) if got == want => {}
                        Some(got) => self.problem(
                            line,
                            format!("INSERT INTO {target}: column {} is {got}, the table's is {want}", n + 1),
                        ),
                        None => self.problem(
                            line,
                            format!(
                                "INSERT INTO {target}: column {} ({want}) is an expression without a name; add AS {want}",
                                n + 1
                            ),
                        ),
                    }
                }
            }
        }
        self.summary.inserts.push((target.to_string(), wanted.len()));
    }

    fn functions<V: sqlparser::ast::Visit>(&mut self, node: &V, line: u64) {
        let mut calls: Vec<(String, usize, u64)> = Vec::new();
        let _ = visit_expressions(node, |expr| {
            if let Expr::Function(f) = expr {
                let name = f
                    .name
                    .0
                    .last()
                    .and_then(ObjectNamePart::as_ident)
                    .map_or_else(|| object_name(&f.name), |i| i.value.to_lowercase());
                let at = f
                    .name
                    .0
                    .last()
                    .and_then(ObjectNamePart::as_ident)
                    .map(|i| i.span.start.line)
                    .filter(|&l| l > 0)
                    .unwrap_or(line);
                let args = match &f.args {
                    FunctionArguments::None => 0,
                    FunctionArguments::Subquery(_) => 1,
                    FunctionArguments::List(list) => list.args.len(),
                };
                calls.push((name, args, at));
            }
            ControlFlow::<()>::Continue(())
        });
        for (name, args, at) in calls {
            if let Some(udf) = self.udfs.iter().find(|u| u.name == name) {
                if udf.arity != args {
                    self.problem(
                        at,
                        format!("UDF {name} takes {} arguments, called with {args}", udf.arity),
                    );
                }
            } else if let Some((lo, hi)) = functions::builtin(&name) {
                if args < lo || args > hi {
                    let takes = if lo == hi { lo.to_string() } else { format!("{lo}..") };
                    self.problem(at, format!("{name} takes {takes} arguments, called with {args}"));
                }
            } else {
                self.problem(
                    at,
                    format!("unknown function {name}: neither a listed built-in nor a UDF under sql/arroyo/udfs"),
                );
            }
            self.summary.functions.insert(name);
        }
    }
}

/// The output column names of a query, `None` for an unnamed expression.
fn projection_names(query: &Query) -> Result<Vec<Option<String>>, String> {
    fn of(body: &SetExpr) -> Result<Vec<Option<String>>, String> {
        match body {
            SetExpr::Select(select) => select
                .projection
                .iter()
                .map(|item| match item {
                    SelectItem::UnnamedExpr(Expr::Identifier(i)) => {
                        Ok(Some(i.value.to_lowercase()))
                    }
                    SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
                        Ok(parts.last().map(|i| i.value.to_lowercase()))
                    }
                    SelectItem::UnnamedExpr(_) => Ok(None),
                    SelectItem::ExprWithAlias { alias, .. } => Ok(Some(alias.value.to_lowercase())),
                    other => Err(format!("cannot check the columns of `{other}`; list them")),
                })
                .collect(),
            SetExpr::Query(q) => of(&q.body),
            SetExpr::SetOperation { left, .. } => of(left),
            other => {
                let head: String = other.to_string().chars().take(40).collect();
                Err(format!("cannot check the columns of `{head}`"))
            }
        }
    }
    of(&query.body)
}
