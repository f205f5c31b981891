//! A DataFusion session whose tables are busflow's topics, loaded when a query first scans them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use busflow_core::Topics;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::datasource::{MemTable, TableType};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::DFParser;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::source::{KafkaRead, ReadRange, read_file, read_topic};
use crate::table::{self, Converted, Record, TableName, Undecodable};

/// What a session reads and how.
#[derive(Debug, Clone)]
pub struct SqlConfig {
    /// The Kafka cluster; `None` when every table used comes from a file.
    pub kafka: Option<KafkaRead>,
    /// Topic names.
    pub topics: Topics,
    /// The slice of `positions`, `rejected` and `raw` to read. `vehicles` is always the current
    /// state, whatever the range.
    pub range: ReadRange,
    /// Tables read from recordings (NDJSON, one topic value per line) instead of Kafka.
    pub files: BTreeMap<TableName, PathBuf>,
    /// `vehicles` holds vehicles whose last record the pipeline wrote within this long (the
    /// gateway's `--stale-after`): before now for Kafka, before the newest record for a file.
    pub stale_after: Duration,
}

impl SqlConfig {
    /// Reads everything from Kafka, whole topics, default topic names.
    pub fn kafka(read: KafkaRead) -> Self {
        SqlConfig {
            kafka: Some(read),
            topics: Topics::default(),
            range: ReadRange::default(),
            files: BTreeMap::new(),
            stale_after: Duration::from_secs(120),
        }
    }

    /// Reads only from recordings.
    pub fn files(files: BTreeMap<TableName, PathBuf>) -> Self {
        SqlConfig {
            kafka: None,
            topics: Topics::default(),
            range: ReadRange::default(),
            files,
            stale_after: Duration::from_secs(120),
        }
    }
}

/// What loading one table did, for the user to see.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// The table.
    pub table: TableName,
    /// `topic bus.positions` or the file's path.
    pub source: String,
    /// Records read.
    pub records: usize,
    /// Rows in the table.
    pub rows: usize,
    /// Records that did not decode into the table's contract (left out, and said so).
    pub undecodable: Vec<Undecodable>,
    /// Time spent reading and converting.
    pub elapsed: Duration,
}

/// One statement's result.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    /// Columns (also for an empty result).
    pub schema: SchemaRef,
    /// Rows.
    pub batches: Vec<RecordBatch>,
}

impl QueryOutput {
    /// Rows in the result.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// Whether the statement produces rows at all (a query) rather than only acting (DDL).
    pub fn has_columns(&self) -> bool {
        !self.schema.fields().is_empty()
    }
}

#[derive(Debug)]
struct Loader {
    cfg: SqlConfig,
    cancel: CancellationToken,
    reports: Mutex<Vec<LoadReport>>,
    /// The typed error behind a failed load: DataFusion only carries it as text.
    failure: Mutex<Option<Error>>,
}

impl Loader {
    async fn load(&self, t: TableName) -> Result<Arc<MemTable>, Error> {
        let started = Instant::now();
        let (source, records) = match self.cfg.files.get(&t) {
            Some(path) => {
                let p = path.clone();
                let recs = tokio::task::spawn_blocking(move || read_file(&p))
                    .await
                    .map_err(|e| Error::Task(e.to_string()))??;
                (path.display().to_string(), recs)
            }
            None => {
                let topic = match t {
                    TableName::Positions => self.cfg.topics.positions.clone(),
                    TableName::Rejected => self.cfg.topics.rejected.clone(),
                    TableName::Raw => self.cfg.topics.raw.clone(),
                    TableName::Vehicles => self.cfg.topics.latest.clone(),
                };
                let read = self
                    .cfg
                    .kafka
                    .clone()
                    .ok_or_else(|| Error::NoBroker { table: t, topic: topic.clone() })?;
                let range =
                    if t == TableName::Vehicles { ReadRange::default() } else { self.cfg.range };
                let (tp, cancel) = (topic.clone(), self.cancel.clone());
                let recs =
                    tokio::task::spawn_blocking(move || read_topic(&read, &tp, range, &cancel))
                        .await
                        .map_err(|e| Error::Task(e.to_string()))??;
                (format!("topic {topic}"), recs)
            }
        };
        let from_file = self.cfg.files.contains_key(&t);
        let converted = convert(t, &records, from_file, self.cfg.stale_after)?;
        let report = LoadReport {
            table: t,
            source,
            records: records.len(),
            rows: converted.batch.num_rows(),
            undecodable: converted.undecodable,
            elapsed: started.elapsed(),
        };
        tracing::info!(
            table = %t,
            source = %report.source,
            records = report.records,
            rows = report.rows,
            undecodable = report.undecodable.len(),
            elapsed_ms = report.elapsed.as_millis() as u64,
            "table loaded"
        );
        if let Some(u) = report.undecodable.first() {
            let at = match u.partition {
                Some(p) => format!("partition {p} offset {}", u.offset),
                None => format!("line {}", u.offset + 1),
            };
            tracing::warn!(
                "{}: {} record(s) left out of table {t}, first at {at}: {}",
                report.source,
                report.undecodable.len(),
                u.detail
            );
        }
        let schema = converted.batch.schema();
        let mem = MemTable::try_new(schema, vec![vec![converted.batch]])?;
        if let Ok(mut r) = self.reports.lock() {
            r.push(report);
        }
        Ok(Arc::new(mem))
    }
}

fn convert(
    t: TableName,
    records: &[Record],
    from_file: bool,
    stale_after: Duration,
) -> Result<Converted, Error> {
    let out = match t {
        TableName::Positions => table::positions(records),
        TableName::Rejected => table::rejected(records),
        TableName::Raw => table::raw(records),
        TableName::Vehicles => {
            // A recording's "now" is its newest record, so a saved state queries as it was.
            let as_of = (!from_file).then(now_ms);
            table::vehicles(records, as_of, stale_after.as_millis() as i64)
        }
    };
    Ok(out?)
}

/// Wall-clock time, unix epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A table whose schema is known up front and whose rows are read on the first scan, so
/// `DESCRIBE` and `information_schema` cost nothing and a query pays only for what it reads.
#[derive(Debug)]
struct TopicTable {
    table: TableName,
    loader: Arc<Loader>,
    data: OnceCell<Arc<MemTable>>,
}

#[async_trait]
impl TableProvider for TopicTable {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let data = self
            .data
            .get_or_try_init(|| async {
                self.loader.load(self.table).await.map_err(|e| {
                    let msg = e.to_string();
                    if let Ok(mut f) = self.loader.failure.lock() {
                        f.get_or_insert(e);
                    }
                    DataFusionError::External(msg.into())
                })
            })
            .await?;
        data.scan(state, projection, filters, limit).await
    }
}

/// A SQL session over busflow's topics.
pub struct SqlSession {
    ctx: SessionContext,
    loader: Arc<Loader>,
}

impl std::fmt::Debug for SqlSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSession").field("session_id", &self.ctx.session_id()).finish()
    }
}

impl SqlSession {
    /// A session with the four tables and busflow's functions registered. Nothing is read until
    /// a query scans a table.
    pub fn new(cfg: SqlConfig, cancel: CancellationToken) -> Result<SqlSession, Error> {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("busflow", "public");
        let ctx = SessionContext::new_with_config(config);
        crate::udf::register(&ctx);
        let loader = Arc::new(Loader {
            cfg,
            cancel,
            reports: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
        });
        for t in TableName::ALL {
            let provider = TopicTable { table: t, loader: loader.clone(), data: OnceCell::new() };
            ctx.register_table(t.as_str(), Arc::new(provider))?;
        }
        Ok(SqlSession { ctx, loader })
    }

    /// The DataFusion context, for registering more tables or functions.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs every statement in `sql` (separated by `;`) in order and returns each one's result.
    pub async fn execute(&self, sql: &str) -> Result<Vec<QueryOutput>, Error> {
        let statements = DFParser::parse_sql(sql)?;
        if statements.is_empty() {
            return Err(Error::Usage("no SQL statement given".into()));
        }
        let mut out = Vec::with_capacity(statements.len());
        for statement in statements {
            let run = async {
                let plan = self.ctx.state().statement_to_plan(statement).await?;
                let df = self.ctx.execute_logical_plan(plan).await?;
                let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
                let batches = df.collect().await?;
                Ok::<_, DataFusionError>(QueryOutput { schema, batches })
            };
            let result = tokio::select! {
                r = run => r,
                _ = self.loader.cancel.cancelled() => return Err(Error::Cancelled),
            };
            match result {
                Ok(o) => out.push(o),
                Err(e) => {
                    let typed = self.loader.failure.lock().ok().and_then(|mut f| f.take());
                    return Err(typed.unwrap_or(Error::Sql(e)));
                }
            }
        }
        Ok(out)
    }

    /// What was loaded so far, in load order.
    pub fn loads(&self) -> Vec<LoadReport> {
        self.loader.reports.lock().map(|r| r.clone()).unwrap_or_default()
    }
}
