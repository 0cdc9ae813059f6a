//! A DynamoDB table as a [`RecordSink`]: validated records become items, written only when
//! their item is absent or older, so a replayed file writes nothing and an older version never
//! overwrites a newer one, even with concurrent writers. The contract (type mapping, why the
//! writes are idempotent, retries, limits) is `docs/RECORDS.md`, section "DynamoDB sink".
//!
//! One [`RecordSink::write`] call:
//! 1. checks the table's key schema once per sink (`DescribeTable`) against the record
//!    schema's key, and every record against DynamoDB's limits, before anything is written;
//! 2. reads the records' current items (`BatchGetItem`, 100 keys a call, strongly
//!    consistent, `UnprocessedKeys` retried) and skips every record whose item already holds
//!    the same or a newer version (without a version: the same values);
//! 3. writes the rest: with a version, one conditional `PutItem` per record
//!    (`attribute_not_exists(key) OR attribute_not_exists(version) OR version < :v`), a
//!    bounded number in flight, a failed condition counting as skipped; without a version, or
//!    when [`DynamoSink::single_writer`] is set, `BatchWriteItem` in groups of 25 with
//!    `UnprocessedItems` retried (exponential backoff, full jitter, bounded attempts).

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::RequestId;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeyType, KeysAndAttributes, PutRequest, ScalarAttributeType, WriteRequest,
};
use cipherflow_core::records::{
    ColumnType, Record, RecordSchema, RecordSink, SinkError, SinkReport, Value,
};
use tokio::sync::OnceCell;
use tokio::task::JoinSet;

/// The attribute holding a timestamp version as a number (nanoseconds since
/// 1970-01-01T00:00:00Z), which the write condition compares; a schema may not name a column
/// so when its version is a timestamp.
pub const VERSION_ATTRIBUTE: &str = "_cipherflow_version";

/// `BatchWriteItem`'s most requests in one call.
pub const BATCH_WRITE_MAX: usize = 25;
/// `BatchGetItem`'s most keys in one call.
pub const BATCH_GET_MAX: usize = 100;

const DEFAULT_MAX_ATTEMPTS: u32 = 8;
const DEFAULT_BASE_BACKOFF: Duration = Duration::from_millis(50);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5);
const DEFAULT_CONCURRENCY: usize = 25;
/// Keys named in an error message at most (the total is always given).
const KEYS_SHOWN: usize = 100;

/// A DynamoDB table written idempotently from validated records. Build with
/// [`DynamoSink::new`] or [`DynamoSink::from_url`], then set what differs from the defaults.
pub struct DynamoSink {
    client: Client,
    table: String,
    retry: Retry,
    concurrency: usize,
    single_writer: bool,
    keys: OnceCell<TableKeys>,
    batch: Arc<dyn BatchWrite>,
}

impl fmt::Debug for DynamoSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoSink")
            .field("table", &self.table)
            .field("retry", &self.retry)
            .field("concurrency", &self.concurrency)
            .field("single_writer", &self.single_writer)
            .finish_non_exhaustive()
    }
}

impl DynamoSink {
    /// A sink on `table` through `client`, with the defaults: 8 attempts per batch, backoff
    /// from 50 ms doubling up to 5 s (full jitter), 25 conditional writes in flight, several
    /// writers allowed.
    pub fn new(client: Client, table: impl Into<String>) -> DynamoSink {
        DynamoSink {
            batch: Arc::new(SdkBatchWrite(client.clone())),
            client,
            table: table.into(),
            retry: Retry {
                max_attempts: DEFAULT_MAX_ATTEMPTS,
                base: DEFAULT_BASE_BACKOFF,
                cap: DEFAULT_MAX_BACKOFF,
            },
            concurrency: DEFAULT_CONCURRENCY,
            single_writer: false,
            keys: OnceCell::new(),
        }
    }

    /// A sink on the table `dynamodb://TABLE` names, with a client from `config` (its
    /// region, credentials and endpoint, so `AWS_ENDPOINT_URL` works) and the defaults.
    pub fn from_url(config: &SdkConfig, url: &str) -> Result<DynamoSink, SinkError> {
        let refuse = |reason: String| SinkError {
            sink: url.to_owned(),
            reason,
        };
        let table = url
            .strip_prefix("dynamodb://")
            .ok_or_else(|| refuse("not a dynamodb://TABLE address".into()))?;
        // DynamoDB's table names: 3 to 255 of [A-Za-z0-9_.-].
        if !(3..=255).contains(&table.len())
            || !table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(refuse(format!(
                "{table:?} is not a DynamoDB table name (3 to 255 letters, digits, '_', '-', '.')"
            )));
        }
        Ok(DynamoSink::new(Client::new(config), table))
    }

    /// Calls per batch (the first included) before records still unprocessed are given up
    /// with an error (default 8). Applies to `BatchWriteItem` and `BatchGetItem`.
    ///
    /// # Panics
    /// If zero.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        assert!(attempts > 0, "DynamoSink needs at least one attempt");
        self.retry.max_attempts = attempts;
        self
    }

    /// The backoff before the second call of a batch (default 50 ms); it doubles for each
    /// further call, up to [`max_backoff`](Self::max_backoff), and the sleep is drawn
    /// uniformly between zero and it (full jitter).
    pub fn base_backoff(mut self, backoff: Duration) -> Self {
        self.retry.base = backoff;
        self
    }

    /// The longest backoff between two calls of a batch (default 5 s).
    pub fn max_backoff(mut self, backoff: Duration) -> Self {
        self.retry.cap = backoff;
        self
    }

    /// Conditional `PutItem` calls in flight at once (default 25).
    ///
    /// # Panics
    /// If zero.
    pub fn concurrency(mut self, writes: usize) -> Self {
        assert!(writes > 0, "DynamoSink concurrency must be at least 1");
        self.concurrency = writes;
        self
    }

    /// Declares that this sink is the only writer of its table (default `false`). With a
    /// version field, the records that the read step found newer are then written with
    /// `BatchWriteItem` (25 a call, no condition) instead of one conditional `PutItem` each.
    /// **Correct only when no other writer writes the table at the same time**: a concurrent
    /// writer's newer item, written between the read and the batch, would be overwritten.
    pub fn single_writer(mut self, yes: bool) -> Self {
        self.single_writer = yes;
        self
    }

    /// The DynamoDB client, for what the sink does not do (creating tables, scans).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn error(&self, reason: impl Into<String>) -> SinkError {
        SinkError {
            sink: self.describe(),
            reason: reason.into(),
        }
    }

    /// The table's key attributes and types, asked once per sink.
    async fn table_keys(&self) -> Result<&TableKeys, SinkError> {
        self.keys
            .get_or_try_init(|| async {
                let out = self
                    .client
                    .describe_table()
                    .table_name(&self.table)
                    .send()
                    .await
                    .map_err(|e| self.error(sdk_reason("DescribeTable", e)))?;
                let table = out
                    .table
                    .ok_or_else(|| self.error("DescribeTable answered without a table"))?;
                let types: HashMap<&str, &ScalarAttributeType> = table
                    .attribute_definitions()
                    .iter()
                    .map(|d| (d.attribute_name(), d.attribute_type()))
                    .collect();
                let mut keys = TableKeys::default();
                for element in table.key_schema() {
                    let name = element.attribute_name().to_owned();
                    let ty = types
                        .get(name.as_str())
                        .map(|t| t.as_str().to_owned())
                        .unwrap_or_default();
                    match element.key_type() {
                        KeyType::Hash => keys.hash = Some((name, ty)),
                        KeyType::Range => keys.range = Some((name, ty)),
                        other => {
                            return Err(self.error(format!(
                                "the table's key schema has a key type {other:?} this sink does not know"
                            )));
                        }
                    }
                }
                Ok(keys)
            })
            .await
    }

    /// The plan for writing `schema`'s records to this table, or why they cannot be.
    async fn plan(&self, schema: &RecordSchema) -> Result<Plan, SinkError> {
        let key = schema.key().to_vec();
        if key.len() > 2 {
            return Err(self.error(format!(
                "schema {:?} has a key of {} columns ({}); a DynamoDB table's key has at most two \
                 (hash and range)",
                schema.name(),
                key.len(),
                key_names(schema, &key)
            )));
        }
        let version = match schema.version() {
            None => None,
            Some(i) => match schema.columns()[i].ty() {
                ColumnType::Int64 => Some(VersionPlan {
                    column: i,
                    attribute: schema.columns()[i].name().to_owned(),
                    timestamp: false,
                }),
                ColumnType::Timestamp => {
                    if schema.column_index(VERSION_ATTRIBUTE).is_some() {
                        return Err(self.error(format!(
                            "schema {:?} has a column named {VERSION_ATTRIBUTE:?}, the attribute \
                             this sink keeps a timestamp version in",
                            schema.name()
                        )));
                    }
                    Some(VersionPlan {
                        column: i,
                        attribute: VERSION_ATTRIBUTE.to_owned(),
                        timestamp: true,
                    })
                }
                other => {
                    return Err(self.error(format!(
                        "version column has type {}, which orders nothing",
                        other.name()
                    )));
                }
            },
        };
        let table = self.table_keys().await?;
        // The schema's key columns and the table's key attributes, as (name, type) sets.
        let wanted: Vec<(String, String)> = key
            .iter()
            .map(|&i| {
                let c = &schema.columns()[i];
                (c.name().to_owned(), attribute_type(c.ty()).to_owned())
            })
            .collect();
        let found: Vec<(String, String)> = table.hash.iter().chain(&table.range).cloned().collect();
        let sorted = |v: &[(String, String)]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        if sorted(&wanted) != sorted(&found) {
            let show = |v: &[(String, String)]| {
                v.iter()
                    .map(|(n, t)| format!("{n} ({t})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(self.error(format!(
                "the table's key is {}, but schema {:?} needs the key {} (string and timestamp \
                 columns are S, int64 and decimal columns N)",
                show(&found),
                schema.name(),
                show(&wanted)
            )));
        }
        let hash = table
            .hash
            .as_ref()
            .map(|(n, _)| n.clone())
            .expect("a table has a hash key (checked equal to the schema's non-empty key)");
        Ok(Plan { key, hash, version })
    }

    /// Reads the current items of `items` (keys only and the version with a version field,
    /// whole items without), strongly consistent, 100 keys a call, unprocessed keys retried.
    async fn read_current(
        &self,
        plan: &Plan,
        schema: &RecordSchema,
        items: &[Item],
        index: &HashMap<KeyCanon, usize>,
    ) -> Result<Vec<Option<Item>>, SinkError> {
        let mut current: Vec<Option<Item>> = vec![None; items.len()];
        let mut names: HashMap<String, String> = HashMap::new();
        let projection = plan.version.as_ref().map(|v| {
            let mut parts = Vec::new();
            for (n, &col) in plan.key.iter().enumerate() {
                names.insert(format!("#k{n}"), schema.columns()[col].name().to_owned());
                parts.push(format!("#k{n}"));
            }
            // An int64 version may be a key column: a path may be projected only once.
            if !plan.key.contains(&v.column) || v.timestamp {
                names.insert("#v".into(), v.attribute.clone());
                parts.push("#v".into());
            }
            parts.join(", ")
        });
        for chunk in items.chunks(BATCH_GET_MAX) {
            let mut keys: Vec<Item> = chunk.iter().map(|i| plan.key_of(schema, i)).collect();
            let mut attempt = 1;
            loop {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .set_projection_expression(projection.clone())
                    .set_expression_attribute_names(if names.is_empty() {
                        None
                    } else {
                        Some(names.clone())
                    })
                    .build()
                    .expect("keys are set");
                let mut out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| self.error(sdk_reason("BatchGetItem", e)))?;
                if let Some(found) = out.responses.as_mut().and_then(|r| r.remove(&self.table)) {
                    for item in found {
                        if let Some(&i) = index.get(&plan.canon(schema, &item)) {
                            current[i] = Some(item);
                        }
                    }
                }
                let unprocessed = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
                if unprocessed.is_empty() {
                    break;
                }
                if attempt >= self.retry.max_attempts {
                    return Err(self.error(format!(
                        "BatchGetItem left {} keys unprocessed after {attempt} attempts; nothing \
                         was written: {}",
                        unprocessed.len(),
                        list_keys(
                            unprocessed
                                .iter()
                                .filter_map(|k| index.get(&plan.canon(schema, k)).copied()),
                            |i| items_key_text(plan, schema, &items[i]),
                            unprocessed.len()
                        )
                    )));
                }
                tokio::time::sleep(self.retry.backoff(attempt)).await;
                attempt += 1;
                keys = unprocessed;
            }
        }
        Ok(current)
    }

    /// One conditional `PutItem` per record, at most `concurrency` in flight. Returns the
    /// positions written; a failed condition is a concurrent newer (or equal) item: skipped.
    async fn put_conditional(
        &self,
        plan: &Plan,
        version: &VersionPlan,
        schema: &RecordSchema,
        records: &[Record],
        todo: Vec<(usize, Item)>,
    ) -> Result<Vec<usize>, SinkError> {
        let mut written = Vec::new();
        let mut in_flight = JoinSet::new();
        let mut todo = todo.into_iter();
        let mut failure: Option<SinkError> = None;
        loop {
            while failure.is_none() && in_flight.len() < self.concurrency {
                let Some((i, item)) = todo.next() else { break };
                let value = version_number(&records[i].values[version.column]);
                let request = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression(
                        "attribute_not_exists(#h) OR attribute_not_exists(#v) OR #v < :v",
                    )
                    .expression_attribute_names("#h", &plan.hash)
                    .expression_attribute_names("#v", &version.attribute)
                    .expression_attribute_values(":v", AttributeValue::N(value));
                in_flight.spawn(async move { (i, request.send().await) });
            }
            let Some(done) = in_flight.join_next().await else {
                break;
            };
            let (i, out) = match done {
                Ok(done) => done,
                Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
                Err(join) => {
                    return Err(self.error(format!("a PutItem task was cancelled: {join}")));
                }
            };
            match out {
                Ok(_) => written.push(i),
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                Err(err) => {
                    // Let the calls in flight finish (they are idempotent), then report.
                    if failure.is_none() {
                        failure = Some(self.error(format!(
                            "record {} (line {}, key {}): {}",
                            records[i].index,
                            records[i].line,
                            key_text(schema, &records[i]),
                            sdk_reason("PutItem", err)
                        )));
                    }
                }
            }
        }
        match failure {
            Some(err) => Err(SinkError {
                reason: format!(
                    "{}; {} records of this call were written before the failure (the sink is \
                     idempotent: run the object again)",
                    err.reason,
                    written.len()
                ),
                ..err
            }),
            None => Ok(written),
        }
    }
}

#[async_trait]
impl RecordSink for DynamoSink {
    /// `dynamodb://TABLE`.
    fn describe(&self) -> String {
        format!("dynamodb://{}", self.table)
    }

    async fn write(
        &self,
        object: &str,
        schema: &RecordSchema,
        records: &[Record],
    ) -> Result<SinkReport, SinkError> {
        if records.is_empty() {
            return Ok(SinkReport::default());
        }
        let plan = self.plan(schema).await?;
        check_limits(object, schema, &plan, records).map_err(|r| self.error(r))?;
        let items: Vec<Item> = records.iter().map(|r| plan.item(schema, r)).collect();
        let mut index: HashMap<KeyCanon, usize> = HashMap::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if let Some(j) = index.insert(plan.canon(schema, item), i) {
                return Err(self.error(format!(
                    "{object}: records {} and {} have the same DynamoDB key {}",
                    records[j].index,
                    records[i].index,
                    key_text(schema, &records[i])
                )));
            }
        }
        let current = self.read_current(&plan, schema, &items, &index).await?;
        let todo: Vec<(usize, Item)> = items
            .into_iter()
            .zip(current)
            .enumerate()
            .filter(|(i, (item, stored))| match (stored, &plan.version) {
                (None, _) => true,
                (Some(stored), Some(v)) => {
                    let ours = version_number(&records[*i].values[v.column]);
                    match (
                        stored.get(&v.attribute).and_then(number_of),
                        parse_int(&ours),
                    ) {
                        (Some(theirs), Some(ours)) => theirs < ours,
                        // Unreadable or missing: let the write's condition decide.
                        _ => true,
                    }
                }
                (Some(stored), None) => !items_equal(stored, item),
            })
            .map(|(i, (item, _))| (i, item))
            .collect();
        let mut written: Vec<usize> = match (&plan.version, self.single_writer) {
            (Some(version), false) => {
                self.put_conditional(&plan, version, schema, records, todo)
                    .await?
            }
            _ => {
                let positions: Vec<usize> = todo.iter().map(|(i, _)| *i).collect();
                let key = |item: &Item| plan.canon(schema, item);
                write_batches(self.batch.as_ref(), &self.table, todo, &key, &self.retry)
                    .await
                    .map_err(|e| {
                        self.error(e.message(|i| {
                            format!(
                                "record {} ({})",
                                records[i].index,
                                key_text(schema, &records[i])
                            )
                        }))
                    })?;
                positions
            }
        };
        written.sort_unstable();
        Ok(SinkReport {
            skipped: (records.len() - written.len()) as u64,
            written: written.into_iter().map(|i| records[i].index).collect(),
        })
    }
}

/// An item: attribute name to value.
type Item = HashMap<String, AttributeValue>;

/// A key as comparable text: per key attribute, its type and its canonical text (numbers in
/// normal form, since DynamoDB compares numbers by value).
type KeyCanon = Vec<String>;

/// The table's hash and range key attributes, with their types (`S`, `N`, `B`).
#[derive(Debug, Default, Clone)]
struct TableKeys {
    hash: Option<(String, String)>,
    range: Option<(String, String)>,
}

/// How one schema's records are written to the table.
struct Plan {
    /// The schema's key columns.
    key: Vec<usize>,
    /// The table's hash key attribute.
    hash: String,
    version: Option<VersionPlan>,
}

struct VersionPlan {
    /// The schema's version column.
    column: usize,
    /// The attribute the condition compares: the int64 column itself, or
    /// [`VERSION_ATTRIBUTE`] for a timestamp.
    attribute: String,
    timestamp: bool,
}

impl Plan {
    /// The record as an item (see the mapping in `docs/RECORDS.md`).
    fn item(&self, schema: &RecordSchema, record: &Record) -> Item {
        let mut item: Item = schema
            .columns()
            .iter()
            .zip(&record.values)
            .enumerate()
            .map(|(i, (column, value))| {
                (
                    column.name().to_owned(),
                    attribute(value, self.key.contains(&i)),
                )
            })
            .collect();
        if let Some(v) = self.version.as_ref().filter(|v| v.timestamp) {
            item.insert(
                v.attribute.clone(),
                AttributeValue::N(version_number(&record.values[v.column])),
            );
        }
        item
    }

    fn key_of(&self, schema: &RecordSchema, item: &Item) -> Item {
        self.key
            .iter()
            .map(|&i| {
                let name = schema.columns()[i].name();
                (name.to_owned(), item[name].clone())
            })
            .collect()
    }

    fn canon(&self, schema: &RecordSchema, item: &Item) -> KeyCanon {
        self.key
            .iter()
            .map(|&i| match item.get(schema.columns()[i].name()) {
                Some(AttributeValue::S(s)) => format!("S{s}"),
                Some(AttributeValue::N(n)) => match DynamoNumber::parse(n) {
                    Some(d) => format!("N{d}"),
                    None => format!("N?{n}"),
                },
                other => format!("?{other:?}"),
            })
            .collect()
    }
}

/// The DynamoDB attribute type of a key column's values.
fn attribute_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Int64 | ColumnType::Decimal => "N",
        _ => "S",
    }
}

/// A value as an attribute. Key timestamps are the UTC instant
/// ([`Rfc3339::utc_text`](cipherflow_core::records::Rfc3339::utc_text)), so that one
/// instant written with two offsets is one item, as in the merge engine.
fn attribute(value: &Value, key: bool) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::String(s) => AttributeValue::S(s.to_string()),
        Value::Int64(v) => AttributeValue::N(v.to_string()),
        Value::Decimal(d) => AttributeValue::N(d.to_string()),
        Value::Timestamp(t) if key => AttributeValue::S(t.utc_text()),
        Value::Timestamp(t) => AttributeValue::S(t.text().to_owned()),
        Value::Bool(b) => AttributeValue::Bool(*b),
    }
}

/// A version value as the number the condition compares: an int64 itself, a timestamp its
/// nanoseconds since 1970-01-01T00:00:00Z.
fn version_number(value: &Value) -> String {
    match value {
        Value::Int64(v) => v.to_string(),
        Value::Timestamp(t) => t.unix_nanos().to_string(),
        other => unreachable!("version columns are int64 or timestamp, found {other:?}"),
    }
}

fn parse_int(text: &str) -> Option<i128> {
    text.parse().ok()
}

/// A stored version as an integer, whatever form DynamoDB answers it in; `None` for anything
/// else (another type, a fraction), which the pre-read leaves to the write's condition.
fn number_of(value: &AttributeValue) -> Option<i128> {
    match value {
        AttributeValue::N(n) => {
            let d = DynamoNumber::parse(n)?;
            d.to_integer()
        }
        _ => None,
    }
}

fn put_request(item: Item) -> WriteRequest {
    WriteRequest::builder()
        .put_request(
            PutRequest::builder()
                .set_item(Some(item))
                .build()
                .expect("the item is set"),
        )
        .build()
}

/// Whether a stored item equals the one a record would write: the same attributes, numbers
/// equal by value (DynamoDB trims a number's zeros: `7308.00` may come back as `7308`).
fn items_equal(stored: &Item, ours: &Item) -> bool {
    stored.len() == ours.len()
        && ours.iter().all(|(name, value)| {
            stored.get(name).is_some_and(|s| match (s, value) {
                (AttributeValue::N(a), AttributeValue::N(b)) => {
                    a == b
                        || matches!((DynamoNumber::parse(a), DynamoNumber::parse(b)),
                                    (Some(x), Some(y)) if x == y)
                }
                (a, b) => a == b,
            })
        })
}

fn key_names(schema: &RecordSchema, key: &[usize]) -> String {
    key.iter()
        .map(|&i| schema.columns()[i].name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A record's key for messages: `device-001, 2026-02-01T10:00:00`.
fn key_text(schema: &RecordSchema, record: &Record) -> String {
    schema
        .key()
        .iter()
        .map(|&i| match &record.values[i] {
            Value::Timestamp(t) => t.utc_text(),
            v => v.cell_text().into_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn items_key_text(plan: &Plan, schema: &RecordSchema, item: &Item) -> String {
    plan.key
        .iter()
        .map(|&i| match item.get(schema.columns()[i].name()) {
            Some(AttributeValue::S(s) | AttributeValue::N(s)) => s.clone(),
            other => format!("{other:?}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `N: a; b; ...` naming at most [`KEYS_SHOWN`] of `total` records.
fn list_keys(
    positions: impl Iterator<Item = usize>,
    name: impl Fn(usize) -> String,
    total: usize,
) -> String {
    let mut out = String::new();
    for (n, i) in positions.take(KEYS_SHOWN).enumerate() {
        if n > 0 {
            out.push_str("; ");
        }
        out.push_str(&name(i));
    }
    if total > KEYS_SHOWN {
        let _ = write!(out, "; and {} more", total - KEYS_SHOWN);
    }
    out
}

/// Checks every record against DynamoDB's limits before anything is written, so a record
/// DynamoDB would refuse fails the call up front instead of half way: numbers of at most 38
/// significant digits within 1E-130 to 1E126, key strings non-empty and within 2048 (hash)
/// and 1024 (range) bytes.
fn check_limits(
    object: &str,
    schema: &RecordSchema,
    plan: &Plan,
    records: &[Record],
) -> Result<(), String> {
    let mut errors = Vec::new();
    for record in records {
        for (i, (column, value)) in schema.columns().iter().zip(&record.values).enumerate() {
            let at = || {
                format!(
                    "{object}, record {} (line {}), field {:?}",
                    record.index,
                    record.line,
                    column.name()
                )
            };
            if let Value::Decimal(d) = value
                && let Some(why) = DynamoNumber::parse(d)
                    .map_or(Some("is not a number".to_owned()), |n| n.out_of_range())
            {
                errors.push(format!("{}: {d} {why}", at()));
            }
            if plan.key.contains(&i) {
                let text = match value {
                    Value::String(s) => s.to_string(),
                    Value::Timestamp(t) => t.utc_text(),
                    _ => continue,
                };
                let is_hash = column.name() == plan.hash;
                let limit = if is_hash { 2048 } else { 1024 };
                if text.is_empty() {
                    errors.push(format!(
                        "{}: an empty string, which DynamoDB refuses as a key",
                        at()
                    ));
                } else if text.len() > limit {
                    errors.push(format!(
                        "{}: {} bytes, more than DynamoDB's {limit} for a {} key",
                        at(),
                        text.len(),
                        if is_hash { "hash" } else { "range" }
                    ));
                }
            }
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    let total = errors.len();
    let mut out = format!(
        "{total} values DynamoDB would refuse, nothing written: {}",
        errors[..total.min(KEYS_SHOWN)].join("; ")
    );
    if total > KEYS_SHOWN {
        let _ = write!(out, "; and {} more", total - KEYS_SHOWN);
    }
    Err(out)
}

/// A DynamoDB number in normal form: sign, significant digits (no leading or trailing
/// zeros), and the power of ten of the last digit; zero has no digits. Two numbers are equal
/// exactly when their normal forms are, which is how DynamoDB compares them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DynamoNumber {
    negative: bool,
    digits: String,
    exponent: i64,
}

impl DynamoNumber {
    /// Parses `[+-]digits[.digits][(e|E)[+-]digits]` (DynamoDB may answer in exponent form).
    fn parse(text: &str) -> Option<DynamoNumber> {
        let (mantissa, exp) = match text.find(['e', 'E']) {
            Some(p) => (&text[..p], text[p + 1..].parse::<i64>().ok()?),
            None => (text, 0),
        };
        let (negative, rest) = match mantissa.as_bytes().first() {
            Some(b'-') => (true, &mantissa[1..]),
            Some(b'+') => (false, &mantissa[1..]),
            _ => (false, mantissa),
        };
        let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
        if int.is_empty() && frac.is_empty()
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let all: String = format!("{int}{frac}");
        let trimmed_start = all.trim_start_matches('0');
        let digits = trimmed_start.trim_end_matches('0');
        if digits.is_empty() {
            return Some(DynamoNumber {
                negative: false,
                digits: String::new(),
                exponent: 0,
            });
        }
        let trailing = (trimmed_start.len() - digits.len()) as i64;
        Some(DynamoNumber {
            negative,
            digits: digits.to_owned(),
            exponent: exp - frac.len() as i64 + trailing,
        })
    }

    /// Why DynamoDB would refuse this number, if it would: more than 38 significant digits,
    /// or a magnitude outside 1E-130 to 9.99...E+125.
    fn out_of_range(&self) -> Option<String> {
        if self.digits.is_empty() {
            return None;
        }
        if self.digits.len() > 38 {
            return Some(format!(
                "has {} significant digits, more than DynamoDB's 38",
                self.digits.len()
            ));
        }
        // The power of ten of the leading digit.
        let magnitude = self.exponent + self.digits.len() as i64 - 1;
        if magnitude > 125 {
            return Some("is larger than DynamoDB's largest number, 9.99...E+125".into());
        }
        if magnitude < -130 {
            return Some("is smaller than DynamoDB's smallest non-zero number, 1E-130".into());
        }
        None
    }

    fn to_integer(&self) -> Option<i128> {
        if self.digits.is_empty() {
            return Some(0);
        }
        if self.exponent < 0 || self.digits.len() as i64 + self.exponent > 38 {
            return None;
        }
        let mut v: i128 = self.digits.parse().ok()?;
        for _ in 0..self.exponent {
            v = v.checked_mul(10)?;
        }
        Some(if self.negative { -v } else { v })
    }
}

impl fmt::Display for DynamoNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        write!(
            f,
            "{}e{}",
            if self.digits.is_empty() {
                "0"
            } else {
                &self.digits
            },
            self.exponent
        )
    }
}

/// The backoff policy for batch calls.
#[derive(Debug, Clone)]
struct Retry {
    max_attempts: u32,
    base: Duration,
    cap: Duration,
}

impl Retry {
    /// The sleep after failed attempt `attempt` (1-based): uniform in
    /// `[0, min(cap, base * 2^(attempt-1))]` ("full jitter").
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(
                1u32.checked_shl(attempt.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(self.cap);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }
}

/// The seam for `BatchWriteItem`: one call with up to 25 requests, answering the requests
/// left unprocessed. The sink uses the SDK client; tests use a double that refuses some.
#[async_trait]
trait BatchWrite: Send + Sync {
    async fn call(
        &self,
        table: &str,
        requests: Vec<WriteRequest>,
    ) -> Result<Vec<WriteRequest>, String>;
}

struct SdkBatchWrite(Client);

#[async_trait]
impl BatchWrite for SdkBatchWrite {
    async fn call(
        &self,
        table: &str,
        requests: Vec<WriteRequest>,
    ) -> Result<Vec<WriteRequest>, String> {
        let out = self
            .0
            .batch_write_item()
            .request_items(table, requests)
            .send()
            .await
            .map_err(|e| sdk_reason("BatchWriteItem", e))?;
        Ok(out
            .unprocessed_items
            .and_then(|mut u| u.remove(table))
            .unwrap_or_default())
    }
}

/// Why [`write_batches`] stopped.
#[derive(Debug)]
enum BatchError {
    /// A call failed.
    Call {
        reason: String,
        /// Positions not written (not sent, or in the failed call).
        not_written: Vec<usize>,
    },
    /// Requests were still unprocessed after the last attempt.
    Exhausted {
        attempts: u32,
        /// Positions still unprocessed after the last attempt.
        unprocessed: Vec<usize>,
        /// Positions of later batches, not sent.
        not_sent: Vec<usize>,
    },
}

impl BatchError {
    fn message(&self, name: impl Fn(usize) -> String) -> String {
        match self {
            BatchError::Call {
                reason,
                not_written,
            } => format!(
                "{reason}; {} records not written (the sink is idempotent: run the object \
                 again): {}",
                not_written.len(),
                list_keys(not_written.iter().copied(), name, not_written.len())
            ),
            BatchError::Exhausted {
                attempts,
                unprocessed,
                not_sent,
            } => {
                let all: Vec<usize> = unprocessed.iter().chain(not_sent).copied().collect();
                format!(
                    "BatchWriteItem left {} records unprocessed after {attempts} attempts and {} \
                     were not sent; {} records not written (the sink is idempotent: run the \
                     object again): {}",
                    unprocessed.len(),
                    not_sent.len(),
                    all.len(),
                    list_keys(all.iter().copied(), name, all.len())
                )
            }
        }
    }
}

/// Writes `items` (each with its position) in groups of 25, retrying each group's
/// unprocessed requests with [`Retry::backoff`] until none is left or the attempts run out.
/// Unprocessed requests are matched back to positions by `key` (DynamoDB may answer numbers
/// in another form than they were sent).
async fn write_batches(
    writer: &dyn BatchWrite,
    table: &str,
    items: Vec<(usize, Item)>,
    key: &(dyn Fn(&Item) -> KeyCanon + Sync),
    retry: &Retry,
) -> Result<(), BatchError> {
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let mut pending: Vec<(usize, WriteRequest)> = items
            .by_ref()
            .take(BATCH_WRITE_MAX)
            .map(|(i, item)| (i, put_request(item)))
            .collect();
        let mut attempt = 1;
        loop {
            let batch: Vec<WriteRequest> = pending.iter().map(|(_, r)| r.clone()).collect();
            let unprocessed = match writer.call(table, batch).await {
                Ok(u) => u,
                Err(reason) => {
                    return Err(BatchError::Call {
                        reason,
                        not_written: pending
                            .iter()
                            .map(|(i, _)| *i)
                            .chain(items.map(|(i, _)| i))
                            .collect(),
                    });
                }
            };
            if unprocessed.is_empty() {
                break;
            }
            let mut by_key: HashMap<KeyCanon, (usize, WriteRequest)> = pending
                .into_iter()
                .map(|(i, r)| (key(request_item(&r)), (i, r)))
                .collect();
            let mut left: Vec<(usize, WriteRequest)> = Vec::with_capacity(unprocessed.len());
            for request in &unprocessed {
                match by_key.remove(&key(request_item(request))) {
                    Some(entry) => left.push(entry),
                    None => {
                        return Err(BatchError::Call {
                            reason: "BatchWriteItem answered an unprocessed item it was not sent \
                                     in this call"
                                .into(),
                            not_written: unprocessed_positions(&left, &by_key)
                                .chain(items.map(|(i, _)| i))
                                .collect(),
                        });
                    }
                }
            }
            if attempt >= retry.max_attempts {
                return Err(BatchError::Exhausted {
                    attempts: attempt,
                    unprocessed: left.iter().map(|(i, _)| *i).collect(),
                    not_sent: items.map(|(i, _)| i).collect(),
                });
            }
            tokio::time::sleep(retry.backoff(attempt)).await;
            attempt += 1;
            left.sort_unstable_by_key(|(i, _)| *i);
            pending = left;
        }
    }
    Ok(())
}

/// The positions of a group that an inconsistent answer leaves in doubt: all not yet known
/// written.
fn unprocessed_positions<'a>(
    left: &'a [(usize, WriteRequest)],
    rest: &'a HashMap<KeyCanon, (usize, WriteRequest)>,
) -> impl Iterator<Item = usize> + 'a {
    left.iter()
        .map(|(i, _)| *i)
        .chain(rest.values().map(|(i, _)| *i))
}

/// The item a put request carries (every request here is a put).
fn request_item(request: &WriteRequest) -> &Item {
    static EMPTY: std::sync::OnceLock<Item> = std::sync::OnceLock::new();
    request
        .put_request()
        .map(|p| p.item())
        .unwrap_or_else(|| EMPTY.get_or_init(Item::new))
}

/// An SDK error as text: code and message, HTTP status, request id.
fn sdk_reason<E>(operation: &str, err: SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let mut message = match (err.code(), err.message()) {
        (Some(code), Some(text)) => format!("{operation}: {code}: {text}"),
        (Some(code), None) => format!("{operation}: {code}"),
        _ => format!("{operation}: {}", DisplayErrorContext(&err)),
    };
    if let Some(response) = err.raw_response() {
        let _ = write!(message, " (HTTP {})", response.status().as_u16());
    }
    if let Some(id) = err.request_id() {
        let _ = write!(message, " [request id {id}]");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: usize) -> Item {
        HashMap::from([
            ("id".to_owned(), AttributeValue::N(id.to_string())),
            ("v".to_owned(), AttributeValue::S(format!("value {id}"))),
        ])
    }

    fn key(item: &Item) -> KeyCanon {
        vec![format!("{:?}", item["id"])]
    }

    fn retry(max_attempts: u32) -> Retry {
        Retry {
            max_attempts,
            base: Duration::from_micros(10),
            cap: Duration::from_micros(100),
        }
    }

    /// A table in memory that leaves all but the first `keep` requests of each of its first
    /// `throttled` calls unprocessed, as a throttled DynamoDB table does.
    struct Throttled {
        throttled: u32,
        keep: usize,
        calls: std::sync::Mutex<Vec<usize>>,
        table: std::sync::Mutex<HashMap<KeyCanon, Item>>,
    }

    impl Throttled {
        fn new(throttled: u32, keep: usize) -> Throttled {
            Throttled {
                throttled,
                keep,
                calls: Default::default(),
                table: Default::default(),
            }
        }
    }

    #[async_trait]
    impl BatchWrite for Throttled {
        async fn call(
            &self,
            table: &str,
            requests: Vec<WriteRequest>,
        ) -> Result<Vec<WriteRequest>, String> {
            assert_eq!(table, "t");
            assert!(requests.len() <= BATCH_WRITE_MAX, "at most 25 a call");
            let mut calls = self.calls.lock().unwrap();
            calls.push(requests.len());
            let throttled = calls.len() as u32 <= self.throttled;
            let keep = if throttled { self.keep } else { requests.len() };
            let mut requests = requests;
            let rest = requests.split_off(keep.min(requests.len()));
            let mut stored = self.table.lock().unwrap();
            for r in requests {
                let item = request_item(&r).clone();
                stored.insert(key(&item), item);
            }
            Ok(rest)
        }
    }

    #[tokio::test]
    async fn unprocessed_items_are_retried_until_written() {
        let table = Throttled::new(5, 3);
        let items: Vec<(usize, Item)> = (0..60).map(|i| (i, item(i))).collect();
        write_batches(&table, "t", items, &key, &retry(8))
            .await
            .expect("all written within 8 attempts");
        let stored = table.table.lock().unwrap();
        assert_eq!(stored.len(), 60);
        for i in 0..60 {
            assert_eq!(stored[&key(&item(i))], item(i));
        }
        // Group 1 (25): 25, then 22, 19, 16, 13 left (throttled calls 1-5), then 10 in one
        // unthrottled call; groups 2 and 3 (25, 10) in one call each.
        assert_eq!(
            *table.calls.lock().unwrap(),
            [25, 22, 19, 16, 13, 10, 25, 10]
        );
    }

    #[tokio::test]
    async fn attempts_are_bounded_and_the_error_names_the_records() {
        let table = Throttled::new(u32::MAX, 2);
        let items: Vec<(usize, Item)> = (0..30).map(|i| (i, item(i))).collect();
        let err = write_batches(&table, "t", items, &key, &retry(4))
            .await
            .expect_err("throttled for ever");
        // 4 attempts of the first group wrote 2 each; 17 left; the second group never sent.
        let BatchError::Exhausted {
            attempts,
            unprocessed,
            not_sent,
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(*attempts, 4);
        assert_eq!(*unprocessed, (8..25).collect::<Vec<_>>());
        assert_eq!(*not_sent, (25..30).collect::<Vec<_>>());
        assert_eq!(*table.calls.lock().unwrap(), [25, 23, 21, 19]);
        assert_eq!(table.table.lock().unwrap().len(), 8);
        let message = err.message(|i| format!("#{i}"));
        assert_eq!(
            message,
            format!(
                "BatchWriteItem left 17 records unprocessed after 4 attempts and 5 were not \
                 sent; 22 records not written (the sink is idempotent: run the object again): {}",
                (8..30)
                    .map(|i| format!("#{i}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        );
    }

    struct Failing;

    #[async_trait]
    impl BatchWrite for Failing {
        async fn call(&self, _: &str, _: Vec<WriteRequest>) -> Result<Vec<WriteRequest>, String> {
            Err("BatchWriteItem: ValidationException: boom (HTTP 400)".into())
        }
    }

    #[tokio::test]
    async fn a_failed_call_names_every_record_not_written() {
        let items: Vec<(usize, Item)> = (0..27).map(|i| (i, item(i))).collect();
        let err = write_batches(&Failing, "t", items, &key, &retry(3))
            .await
            .unwrap_err();
        let BatchError::Call { not_written, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*not_written, (0..27).collect::<Vec<_>>());
        assert!(err.message(|i| i.to_string()).starts_with(
            "BatchWriteItem: ValidationException: boom (HTTP 400); 27 records not written"
        ));
    }

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_cap() {
        let r = Retry {
            max_attempts: 10,
            base: Duration::from_millis(10),
            cap: Duration::from_millis(300),
        };
        for attempt in 1..=40 {
            let ceiling = Duration::from_millis(10 * (1u64 << (attempt - 1).min(20)))
                .min(Duration::from_millis(300));
            for _ in 0..50 {
                assert!(r.backoff(attempt) <= ceiling, "attempt {attempt}");
            }
        }
        // Drawn, not fixed: 200 draws under a 300 ms ceiling are not all equal.
        let draws: std::collections::HashSet<Duration> = (0..200).map(|_| r.backoff(10)).collect();
        assert!(draws.len() > 1);
    }

    #[test]
    fn numbers_compare_by_value_and_respect_dynamodb_limits() {
        let n = |s: &str| DynamoNumber::parse(s).unwrap_or_else(|| panic!("{s}"));
        assert_eq!(n("7308.00"), n("7308"));
        assert_eq!(n("007308.0"), n("7.308E3"));
        assert_eq!(n("-0.0"), n("0"));
        assert_eq!(n("0.00120"), n("1.2e-3"));
        assert_ne!(n("1.5"), n("15"));
        assert_ne!(n("-1"), n("1"));
        assert!(DynamoNumber::parse("1e").is_none() && DynamoNumber::parse(".").is_none());
        assert_eq!(
            n("1769904000000000000").to_integer(),
            Some(1_769_904_000_000_000_000)
        );
        assert_eq!(n("-42").to_integer(), Some(-42));
        assert_eq!(n("4.2E1").to_integer(), Some(42));
        assert_eq!(n("4.2").to_integer(), None);
        assert_eq!(n(&"9".repeat(38)).out_of_range(), None);
        assert_eq!(
            n(&format!("0.{}", "1".repeat(39)))
                .out_of_range()
                .as_deref(),
            Some("has 39 significant digits, more than DynamoDB's 38")
        );
        assert_eq!(n(&format!("1{}", "0".repeat(125))).out_of_range(), None);
        assert!(n(&format!("1{}", "0".repeat(126))).out_of_range().is_some());
        assert_eq!(n(&format!("0.{}1", "0".repeat(129))).out_of_range(), None);
        assert!(
            n(&format!("0.{}1", "0".repeat(130)))
                .out_of_range()
                .is_some()
        );
        assert_eq!(n("0.000").out_of_range(), None);
    }

    #[test]
    fn stored_items_equal_when_numbers_are_equal_in_value() {
        let ours: Item = HashMap::from([
            ("v".to_owned(), AttributeValue::N("7308.00".into())),
            ("s".to_owned(), AttributeValue::S("x".into())),
            ("n".to_owned(), AttributeValue::Null(true)),
        ]);
        let mut stored = ours.clone();
        stored.insert("v".into(), AttributeValue::N("7308".into()));
        assert!(items_equal(&stored, &ours));
        stored.insert("v".into(), AttributeValue::N("7308.01".into()));
        assert!(!items_equal(&stored, &ours));
        let mut extra = ours.clone();
        extra.insert("other".into(), AttributeValue::Bool(true));
        assert!(
            !items_equal(&extra, &ours),
            "the put would drop an attribute"
        );
        let mut missing = ours.clone();
        missing.remove("n");
        assert!(!items_equal(&missing, &ours));
    }

    #[test]
    fn values_map_to_attributes_exactly() {
        let t = cipherflow_core::records::Rfc3339::parse("2026-02-01T11:00:00.50+01:00").unwrap();
        assert_eq!(
            attribute(&Value::Timestamp(t.clone()), false),
            AttributeValue::S("2026-02-01T11:00:00.50+01:00".into())
        );
        assert_eq!(
            attribute(&Value::Timestamp(t.clone()), true),
            AttributeValue::S("2026-02-01T10:00:00.5".into())
        );
        assert_eq!(version_number(&Value::Timestamp(t)), "1769940000500000000");
        assert_eq!(
            attribute(&Value::Decimal("-0.10".into()), false),
            AttributeValue::N("-0.10".into())
        );
        assert_eq!(
            attribute(&Value::Int64(i64::MIN), false),
            AttributeValue::N("-9223372036854775808".into())
        );
        assert_eq!(
            attribute(&Value::Bool(false), false),
            AttributeValue::Bool(false)
        );
        assert_eq!(attribute(&Value::Null, false), AttributeValue::Null(true));
        assert_eq!(
            attribute(&Value::String("".into()), false),
            AttributeValue::S(String::new())
        );
    }
}
