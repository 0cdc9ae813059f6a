//! The DynamoDB records sink against the moto server (real HTTP, real SDK): 10,000 seed-001
//! records through `Ingest`, replays, versions, concurrent writers, `UnprocessedItems` and
//! `UnprocessedKeys` (an interceptor withholds requests, as a throttled table would), refused
//! files and reject mode. The retry loop's own bounds are unit-tested in `src/dynamodb.rs`
//! with a test double.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cipherflow_aws::aws_sdk_dynamodb::Client;
use cipherflow_aws::aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextMut, BeforeSerializationInterceptorContextRef,
    FinalizerInterceptorContextMut,
};
use cipherflow_aws::aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use cipherflow_aws::aws_sdk_dynamodb::error::BoxError;
use cipherflow_aws::aws_sdk_dynamodb::operation::batch_get_item::{
    BatchGetItemInput, BatchGetItemOutput,
};
use cipherflow_aws::aws_sdk_dynamodb::operation::batch_write_item::{
    BatchWriteItemInput, BatchWriteItemOutput,
};
use cipherflow_aws::aws_sdk_dynamodb::operation::put_item::PutItemInput;
use cipherflow_aws::aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, KeysAndAttributes,
    ScalarAttributeType, WriteRequest,
};
use cipherflow_aws::dynamodb::DynamoSink;
use cipherflow_aws::s3::{S3Options, S3Store};
use cipherflow_core::records::{
    Format, Ingest, IngestError, IngestReport, RecordSchema, RecordSink, RecordsError, RejectTarget,
};
use cipherflow_core::store::{ObjectKey, ObjectStore};

type Item = HashMap<String, AttributeValue>;

/// The seed-001 record (device, timestamp, value: the core tests' fixture) with one column
/// of every other type.
const SEED_SCHEMA: &str = concat!(
    include_str!("../../cipherflow-core/tests/data/records/readings.toml"),
    r#"
[columns.unit]
type = "string"
values = ["kWh", "C", "%"]
[columns.battery]
type = "int64"
nullable = true
[columns.ok]
type = "bool"
[columns.received_at]
type = "timestamp"
"#
);

/// 2026-02-01T00:00:00Z in seconds since 1970-01-01T00:00:00Z.
const FEB_1_2026: i64 = 1_769_904_000;

/// Record `n` of the seed file, as a JSON line and as the item DynamoDB must hold, written
/// out here independently of the sink's mapping.
fn seed_record(n: u32) -> (String, Item) {
    let device = format!("device-{:03}", n % 1000);
    let (h, m, s) = (10 + n / 1000 / 60, n / 1000 % 60, n % 60);
    // Odd records give the instant with a +01:00 offset: the key is the UTC instant.
    let timestamp = if n.is_multiple_of(2) {
        format!("2026-02-01T{h:02}:{m:02}:{s:02}Z")
    } else {
        format!("2026-02-01T{:02}:{m:02}:{s:02}+01:00", h + 1)
    };
    let utc = format!("2026-02-01T{h:02}:{m:02}:{s:02}");
    let nanos = (FEB_1_2026 + i64::from(h * 3600 + m * 60 + s)) * 1_000_000_000;
    let value = if n.is_multiple_of(11) {
        None
    } else if n.is_multiple_of(13) {
        Some(format!("{}", n * 7 % 1000))
    } else {
        Some(format!("{}.{:02}", n * 7919 % 1000, n % 100))
    };
    let unit = ["kWh", "C", "%"][(n % 3) as usize];
    let battery = if n.is_multiple_of(7) {
        None
    } else if n.is_multiple_of(5) {
        Some(-i64::from(n % 101))
    } else {
        Some(i64::from(n % 101))
    };
    let ok = n.is_multiple_of(2);
    let received_at = format!("2026-02-01T12:{:02}:{:02}.5+02:00", n % 60, n / 60 % 60);
    let json = format!(
        r#"{{"device_id": "{device}", "timestamp": "{timestamp}", "value": {}, "unit": "{unit}", "battery": {}, "ok": {ok}, "received_at": "{received_at}"}}"#,
        value.as_deref().unwrap_or("null"),
        battery.map_or("null".to_owned(), |b| b.to_string()),
    );
    let item = HashMap::from([
        ("device_id".to_owned(), AttributeValue::S(device)),
        ("timestamp".to_owned(), AttributeValue::S(utc)),
        (
            "value".to_owned(),
            value.map_or(AttributeValue::Null(true), AttributeValue::N),
        ),
        ("unit".to_owned(), AttributeValue::S(unit.to_owned())),
        (
            "battery".to_owned(),
            battery.map_or(AttributeValue::Null(true), |b| {
                AttributeValue::N(b.to_string())
            }),
        ),
        ("ok".to_owned(), AttributeValue::Bool(ok)),
        ("received_at".to_owned(), AttributeValue::S(received_at)),
        (
            "_cipherflow_version".to_owned(),
            AttributeValue::N(nanos.to_string()),
        ),
    ]);
    (json, item)
}

/// Counts the calls a client makes, by operation.
#[derive(Debug, Default)]
struct Calls {
    put_item: AtomicU32,
    batch_write: AtomicU32,
    batch_get: AtomicU32,
}

impl Calls {
    fn writes(&self) -> u32 {
        self.put_item.load(Ordering::SeqCst) + self.batch_write.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone, Default)]
struct CountCalls(Arc<Calls>);

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "CountCalls"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input();
        if input.downcast_ref::<PutItemInput>().is_some() {
            self.0.put_item.fetch_add(1, Ordering::SeqCst);
        } else if input.downcast_ref::<BatchWriteItemInput>().is_some() {
            self.0.batch_write.fetch_add(1, Ordering::SeqCst);
        } else if input.downcast_ref::<BatchGetItemInput>().is_some() {
            self.0.batch_get.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// What a throttled call withheld, for its table.
type Stash<T> = Arc<Mutex<Option<(String, T)>>>;

/// Plays a throttled table: for the first `calls` `BatchWriteItem` (and `BatchGetItem`)
/// calls, it removes all but the first request from the call before it is sent, and returns
/// the removed ones as `UnprocessedItems` (`UnprocessedKeys`), as DynamoDB does when a call
/// exceeds the table's throughput. The sink's calls are sequential, so one stash suffices.
#[derive(Debug, Clone)]
struct Throttle {
    writes_left: Arc<AtomicU32>,
    gets_left: Arc<AtomicU32>,
    withheld_writes: Stash<Vec<WriteRequest>>,
    withheld_gets: Stash<KeysAndAttributes>,
    withheld_total: Arc<AtomicU32>,
}

impl Throttle {
    fn new(write_calls: u32, get_calls: u32) -> Throttle {
        Throttle {
            writes_left: Arc::new(AtomicU32::new(write_calls)),
            gets_left: Arc::new(AtomicU32::new(get_calls)),
            withheld_writes: Arc::default(),
            withheld_gets: Arc::default(),
            withheld_total: Arc::default(),
        }
    }

    fn take(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

impl Intercept for Throttle {
    fn name(&self) -> &'static str {
        "Throttle"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input_mut();
        if let Some(write) = input.downcast_mut::<BatchWriteItemInput>() {
            let items = write.request_items.as_mut().expect("request items");
            let (table, requests) = items.iter_mut().next().expect("one table");
            if requests.len() > 1 && Throttle::take(&self.writes_left) {
                let rest = requests.split_off(1);
                self.withheld_total
                    .fetch_add(rest.len() as u32, Ordering::SeqCst);
                *self.withheld_writes.lock().unwrap() = Some((table.clone(), rest));
            }
        } else if let Some(get) = input.downcast_mut::<BatchGetItemInput>() {
            let items = get.request_items.as_mut().expect("request items");
            let (table, keys) = items.iter_mut().next().expect("one table");
            if keys.keys.len() > 1 && Throttle::take(&self.gets_left) {
                let mut rest = keys.clone();
                rest.keys = keys.keys.split_off(1);
                self.withheld_total
                    .fetch_add(rest.keys.len() as u32, Ordering::SeqCst);
                *self.withheld_gets.lock().unwrap() = Some((table.clone(), rest));
            }
        }
        Ok(())
    }

    fn modify_before_completion(
        &self,
        context: &mut FinalizerInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Ok(output)) = context.output_or_error_mut() else {
            return Ok(());
        };
        if let Some(write) = output.downcast_mut::<BatchWriteItemOutput>()
            && let Some((table, rest)) = self.withheld_writes.lock().unwrap().take()
        {
            write
                .unprocessed_items
                .get_or_insert_with(HashMap::new)
                .entry(table)
                .or_default()
                .extend(rest);
        } else if let Some(get) = output.downcast_mut::<BatchGetItemOutput>()
            && let Some((table, rest)) = self.withheld_gets.lock().unwrap().take()
        {
            get.unprocessed_keys
                .get_or_insert_with(HashMap::new)
                .insert(table, rest);
        }
        Ok(())
    }
}

/// A DynamoDB client on the emulator, with `interceptors`.
async fn client(
    interceptors: Vec<Box<dyn FnOnce(ConfigBuilder) -> ConfigBuilder + Send>>,
) -> Client {
    let config = common::sdk_config().await;
    let mut builder = ConfigBuilder::from(&config);
    for add in interceptors {
        builder = add(builder);
    }
    Client::from_conf(builder.build())
}

type ConfigBuilder = cipherflow_aws::aws_sdk_dynamodb::config::Builder;

fn counting(calls: &CountCalls) -> Box<dyn FnOnce(ConfigBuilder) -> ConfigBuilder + Send> {
    let calls = calls.clone();
    Box::new(move |b| b.interceptor(calls))
}

fn throttling(throttle: &Throttle) -> Box<dyn FnOnce(ConfigBuilder) -> ConfigBuilder + Send> {
    let throttle = throttle.clone();
    Box::new(move |b| b.interceptor(throttle))
}

/// Creates an on-demand table with `key` (name, type; hash first) and returns its name.
/// A table keyed like the seed-001 schema: `device_id` (hash), `timestamp` (range).
async fn seed_table(client: &Client) -> String {
    create_table(
        client,
        &[
            ("device_id", ScalarAttributeType::S),
            ("timestamp", ScalarAttributeType::S),
        ],
    )
    .await
}

async fn create_table(client: &Client, key: &[(&str, ScalarAttributeType)]) -> String {
    let name = common::unique("records");
    let mut request = client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest);
    for (i, (attr, ty)) in key.iter().enumerate() {
        request = request
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(*attr)
                    .attribute_type(ty.clone())
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(*attr)
                    .key_type(if i == 0 {
                        KeyType::Hash
                    } else {
                        KeyType::Range
                    })
                    .build()
                    .unwrap(),
            );
    }
    request.send().await.expect("CreateTable");
    name
}

/// Every item of `table`, by its key attributes' text (`device|timestamp`).
async fn scan(client: &Client, table: &str, key: &[&str]) -> BTreeMap<String, Item> {
    let mut out = BTreeMap::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("Scan");
        for item in page.items() {
            let id = key
                .iter()
                .map(|k| match &item[*k] {
                    AttributeValue::S(s) | AttributeValue::N(s) => s.clone(),
                    other => panic!("key {k} is {other:?}"),
                })
                .collect::<Vec<_>>()
                .join("|");
            assert!(out.insert(id, item.clone()).is_none(), "one item per key");
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            return out;
        }
    }
}

async fn ingest(
    schema: &RecordSchema,
    sink: &dyn RecordSink,
    object: &str,
    bytes: &[u8],
) -> Result<IngestReport, IngestError> {
    Ingest {
        schema,
        sink,
        rejects: None,
        max_bytes: None,
        ledger: None,
    }
    .object(object, bytes, Format::JsonLines)
    .await
}

fn seed_schema() -> RecordSchema {
    RecordSchema::from_toml(SEED_SCHEMA).unwrap()
}

/// A new seed-001-keyed table, the default sink on it, and the sink's client's calls.
async fn seed_sink() -> (CountCalls, Client, String, DynamoSink) {
    let calls = CountCalls::default();
    let client = client(vec![counting(&calls)]).await;
    let table = seed_table(&client).await;
    let sink = DynamoSink::new(client.clone(), &table);
    (calls, client, table, sink)
}

/// Seed records `0..count` as one JSON-lines file, and the items the table must then hold,
/// by key text (`device|timestamp`).
fn seed_file(count: u32) -> (String, BTreeMap<String, Item>) {
    let (lines, expected): (Vec<String>, Vec<Item>) = (0..count).map(seed_record).unzip();
    let expected: BTreeMap<String, Item> = expected
        .into_iter()
        .map(|item| {
            let id = match (&item["device_id"], &item["timestamp"]) {
                (AttributeValue::S(d), AttributeValue::S(t)) => format!("{d}|{t}"),
                _ => unreachable!(),
            };
            (id, item)
        })
        .collect();
    assert_eq!(expected.len(), count as usize, "one item per record");
    (lines.join("\n"), expected)
}

/// 10,000 records of the seed-001 shape ingested through `Ingest`: the table holds exactly
/// those items, numbers as the exact text that arrived. A replay writes nothing: no write
/// call at all, every record skipped, the table unchanged. The sink is the table's only
/// writer here, so the newer records go out with `BatchWriteItem` (400 calls rather than
/// 10,000 `PutItem`: the emulator serves calls one at a time); the conditional path that
/// concurrent writers need is the next test's, on the same records.
#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_records_then_a_replay_that_writes_nothing() {
    let (calls, client, table, sink) = seed_sink().await;
    let sink = sink.single_writer(true);
    assert_eq!(sink.describe(), format!("dynamodb://{table}"));
    let schema = seed_schema();
    let (file, expected) = seed_file(10_000);
    assert!(
        expected
            .values()
            .any(|i| i["value"] == AttributeValue::N("900.00".into())),
        "the fixture has values with trailing zeros"
    );

    let started = Instant::now();
    let report = ingest(&schema, &sink, "upload-001.jsonl", file.as_bytes())
        .await
        .expect("ingest");
    eprintln!(
        "10,000 records into moto: {:.2} s, {} BatchWriteItem, {} BatchGetItem",
        started.elapsed().as_secs_f64(),
        calls.0.batch_write.load(Ordering::SeqCst),
        calls.0.batch_get.load(Ordering::SeqCst)
    );
    assert_eq!(report.read, 10_000);
    assert_eq!(report.written, (1..=10_000).collect::<Vec<u64>>());
    assert_eq!(report.skipped, 0);
    assert_eq!(calls.0.put_item.load(Ordering::SeqCst), 0);
    assert_eq!(calls.0.batch_write.load(Ordering::SeqCst), 400);
    assert_eq!(calls.0.batch_get.load(Ordering::SeqCst), 100);
    let stored = scan(&client, &table, &["device_id", "timestamp"]).await;
    assert_eq!(stored.len(), 10_000);
    assert!(stored == expected, "the table holds exactly the records");

    let writes_before = calls.0.writes();
    let started = Instant::now();
    let replay = ingest(&schema, &sink, "upload-001.jsonl", file.as_bytes())
        .await
        .expect("replay");
    eprintln!(
        "replay of 10,000 records: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert!(replay.written.is_empty());
    assert_eq!(replay.skipped, 10_000);
    assert_eq!(
        calls.0.writes(),
        writes_before,
        "a replay makes no write call"
    );
    assert!(scan(&client, &table, &["device_id", "timestamp"]).await == expected);
}

/// The default sink (any number of writers) writes each newer record with a conditional
/// `PutItem`: 500 seed-001 records give the same items as the batched path, and a replay
/// writes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn conditional_puts_store_the_same_items() {
    let (calls, client, table, sink) = seed_sink().await;
    let schema = seed_schema();
    let (file, expected) = seed_file(500);
    let report = ingest(&schema, &sink, "upload-002.jsonl", file.as_bytes())
        .await
        .expect("ingest");
    assert_eq!(report.written, (1..=500).collect::<Vec<u64>>());
    assert_eq!(calls.0.put_item.load(Ordering::SeqCst), 500);
    assert_eq!(calls.0.batch_write.load(Ordering::SeqCst), 0);
    assert!(scan(&client, &table, &["device_id", "timestamp"]).await == expected);
    let replay = ingest(&schema, &sink, "upload-002.jsonl", file.as_bytes())
        .await
        .expect("replay");
    assert_eq!((replay.written.len(), replay.skipped), (0, 500));
    assert_eq!(calls.0.writes(), 500, "a replay makes no write call");
}

const VERSIONED: &str = r#"
name = "devices"
key = ["device_id"]
version = "seq"
[columns.device_id]
type = "string"
[columns.seq]
type = "int64"
[columns.reading]
type = "decimal"
"#;

fn versioned_line(device: &str, seq: i64, reading: &str) -> String {
    format!(r#"{{"device_id": "{device}", "seq": {seq}, "reading": {reading}}}"#)
}

/// With an int64 version: v2 then v1 leaves v2 (v1 skipped), then v3 wins; also when the
/// versions are negative (the comparison is numeric, not textual).
#[tokio::test(flavor = "multi_thread")]
async fn an_older_version_never_overwrites_a_newer_one() {
    let client = client(vec![]).await;
    let table = create_table(&client, &[("device_id", ScalarAttributeType::S)]).await;
    let sink = DynamoSink::new(client.clone(), &table);
    let schema = RecordSchema::from_toml(VERSIONED).unwrap();
    let file = |seq: [i64; 3], reading: &str| {
        ["a", "b", "c"]
            .iter()
            .zip(seq)
            .map(|(d, s)| versioned_line(d, s, reading))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let state = || async { scan(&client, &table, &["device_id"]).await };
    let readings = |items: &BTreeMap<String, Item>| -> Vec<(String, String, String)> {
        items
            .values()
            .map(|i| match (&i["device_id"], &i["seq"], &i["reading"]) {
                (AttributeValue::S(d), AttributeValue::N(s), AttributeValue::N(r)) => {
                    (d.clone(), s.clone(), r.clone())
                }
                other => panic!("{other:?}"),
            })
            .collect()
    };
    let row = |d: &str, s: &str, r: &str| (d.to_owned(), s.to_owned(), r.to_owned());

    let v2 = ingest(
        &schema,
        &sink,
        "v2.jsonl",
        file([2, 2, -9], "2.0").as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(v2.written, [1, 2, 3]);
    let v1 = ingest(
        &schema,
        &sink,
        "v1.jsonl",
        file([1, 2, -10], "1.0").as_bytes(),
    )
    .await
    .unwrap();
    assert!(v1.written.is_empty(), "older or equal versions: {v1:?}");
    assert_eq!(v1.skipped, 3);
    assert_eq!(
        readings(&state().await),
        [
            row("a", "2", "2.0"),
            row("b", "2", "2.0"),
            row("c", "-9", "2.0")
        ]
    );
    let v3 = ingest(
        &schema,
        &sink,
        "v3.jsonl",
        file([3, 1, -8], "3.00").as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(v3.written, [1, 3]);
    assert_eq!(v3.skipped, 1);
    assert_eq!(
        readings(&state().await),
        [
            row("a", "3", "3.00"),
            row("b", "2", "2.0"),
            row("c", "-8", "3.00")
        ]
    );
}

const STAMPED: &str = r#"
name = "devices"
key = ["device_id"]
version = "updated_at"
[columns.device_id]
type = "string"
[columns.updated_at]
type = "timestamp"
[columns.on]
type = "bool"
"#;

/// With a timestamp version the condition compares instants (`_cipherflow_version`,
/// nanoseconds), not texts: `11:30+02:00` (09:30Z) is older than `10:00Z`, though its text
/// sorts after it; the stored text is the one that arrived.
#[tokio::test(flavor = "multi_thread")]
async fn timestamp_versions_compare_instants() {
    let client = client(vec![]).await;
    let table = create_table(&client, &[("device_id", ScalarAttributeType::S)]).await;
    let sink = DynamoSink::new(client.clone(), &table);
    let schema = RecordSchema::from_toml(STAMPED).unwrap();
    let line =
        |at: &str, on: bool| format!(r#"{{"device_id": "d", "updated_at": "{at}", "on": {on}}}"#);
    let newer = ingest(
        &schema,
        &sink,
        "a.jsonl",
        line("2026-02-01T10:00:00Z", true).as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(newer.written, [1]);
    let older = ingest(
        &schema,
        &sink,
        "b.jsonl",
        line("2026-02-01T11:30:00+02:00", false).as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!((older.written.len(), older.skipped), (0, 1));
    let later = ingest(
        &schema,
        &sink,
        "c.jsonl",
        line("2026-02-01T11:00:00.000000001+01:00", false).as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(later.written, [1]);
    let items = scan(&client, &table, &["device_id"]).await;
    let item = &items["d"];
    assert_eq!(
        item["updated_at"],
        AttributeValue::S("2026-02-01T11:00:00.000000001+01:00".into())
    );
    assert_eq!(item["on"], AttributeValue::Bool(false));
    assert_eq!(
        item["_cipherflow_version"],
        AttributeValue::N(((FEB_1_2026 + 10 * 3600) * 1_000_000_000 + 1).to_string())
    );
}

/// Two writers, each with its own client and sink, write the same 300 keys concurrently,
/// file after file, with interleaved versions (one writer the odd, the other the even
/// versions, in different orders): every key ends at its newest version, with that
/// version's values.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_end_at_the_newest_version() {
    let setup = client(vec![]).await;
    let table = create_table(&setup, &[("device_id", ScalarAttributeType::S)]).await;
    let schema = Arc::new(RecordSchema::from_toml(VERSIONED).unwrap());
    let keys = 300;
    // Writer 0 writes the even versions, writer 1 the odd ones, each in a mixed order, so
    // that both race on every key; key k's newest version is 8 for even k and 7 for odd k,
    // so the newest comes from either writer.
    let versions_of = |w: usize| -> Vec<i64> { [vec![4, 8, 2, 6], vec![3, 7, 1, 5]][w].clone() };
    let file = |seq: i64| -> String {
        (0..keys)
            .filter(|k: &u32| seq <= if k.is_multiple_of(2) { 8 } else { 7 })
            .map(|k| versioned_line(&format!("dev-{k:03}"), seq, &format!("{seq}.{k}")))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut tasks = Vec::new();
    for w in 0..2 {
        let table = table.clone();
        let schema = schema.clone();
        let files: Vec<(i64, String)> = versions_of(w).into_iter().map(|v| (v, file(v))).collect();
        tasks.push(tokio::spawn(async move {
            let calls = CountCalls::default();
            let sink = DynamoSink::new(client(vec![counting(&calls)]).await, table);
            let mut written = 0;
            for (v, body) in files {
                let report = ingest(&schema, &sink, &format!("v{v}.jsonl"), body.as_bytes())
                    .await
                    .expect("ingest");
                written += report.written.len() as u32;
            }
            (written, calls.0.put_item.load(Ordering::SeqCst))
        }));
    }
    for (w, task) in tasks.into_iter().enumerate() {
        let (written, puts) = task.await.unwrap();
        // A put that the pre-read let through but the condition refused: a race lost.
        eprintln!(
            "writer {w}: {puts} PutItem, {written} written, {} lost the condition",
            puts - written
        );
    }
    let items = scan(&setup, &table, &["device_id"]).await;
    assert_eq!(items.len(), keys as usize);
    for k in 0..keys {
        let newest = if k.is_multiple_of(2) { 8 } else { 7 };
        let item = &items[&format!("dev-{k:03}")];
        assert_eq!(
            item["seq"],
            AttributeValue::N(newest.to_string()),
            "key {k}"
        );
        assert_eq!(
            item["reading"],
            AttributeValue::N(format!("{newest}.{k}")),
            "key {k}"
        );
    }
}

const UNVERSIONED: &str = r#"
name = "tags"
key = ["id", "at"]
[columns.id]
type = "int64"
[columns.at]
type = "decimal"
[columns.label]
type = "string"
nullable = true
"#;

/// `UnprocessedItems` and `UnprocessedKeys` retried against moto: the throttling interceptor
/// withholds all but one request of the first 6 `BatchWriteItem` and 3 `BatchGetItem` calls,
/// and every record still ends up written exactly. Without a version the sink writes with
/// `BatchWriteItem`; a replay compares values and writes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn unprocessed_items_and_keys_are_retried() {
    let calls = CountCalls::default();
    let throttle = Throttle::new(6, 3);
    let client = client(vec![counting(&calls), throttling(&throttle)]).await;
    let table = create_table(
        &client,
        &[
            ("id", ScalarAttributeType::N),
            ("at", ScalarAttributeType::N),
        ],
    )
    .await;
    let sink = DynamoSink::new(client.clone(), &table).base_backoff(Duration::from_millis(1));
    let schema = RecordSchema::from_toml(UNVERSIONED).unwrap();
    let lines: Vec<String> = (0..120u32)
        .map(|i| {
            let label = if i.is_multiple_of(4) {
                "null".to_owned()
            } else {
                format!("\"tag {i}\"")
            };
            format!(
                r#"{{"id": {}, "at": {}.50, "label": {label}}}"#,
                i % 40,
                i / 40
            )
        })
        .collect();
    let report = ingest(&schema, &sink, "tags.jsonl", lines.join("\n").as_bytes())
        .await
        .expect("ingest");
    assert_eq!(report.written, (1..=120).collect::<Vec<u64>>());
    assert_eq!(
        throttle.writes_left.load(Ordering::SeqCst),
        0,
        "6 writes throttled"
    );
    assert_eq!(
        throttle.gets_left.load(Ordering::SeqCst),
        0,
        "3 gets throttled"
    );
    assert!(throttle.withheld_total.load(Ordering::SeqCst) > 100);
    assert_eq!(
        calls.0.put_item.load(Ordering::SeqCst),
        0,
        "no version: batches"
    );
    let batch_writes = calls.0.batch_write.load(Ordering::SeqCst);
    assert!(
        batch_writes > 120 / 25,
        "retries made more calls: {batch_writes}"
    );
    let items = scan(&client, &table, &["id", "at"]).await;
    assert_eq!(items.len(), 120);
    for i in 0..120u32 {
        let item = &items[&format!("{}|{}.50", i % 40, i / 40)];
        let label = if i.is_multiple_of(4) {
            AttributeValue::Null(true)
        } else {
            AttributeValue::S(format!("tag {i}"))
        };
        assert_eq!(item["label"], label);
        assert_eq!(item.len(), 3);
    }

    let writes = calls.0.writes();
    let replay = ingest(&schema, &sink, "tags.jsonl", lines.join("\n").as_bytes())
        .await
        .unwrap();
    assert!(replay.written.is_empty());
    assert_eq!(replay.skipped, 120);
    assert_eq!(calls.0.writes(), writes);
    // Changed values are written again (last writer wins without a version).
    let changed = lines[7].replace("tag 7", "tag seven");
    let again = ingest(&schema, &sink, "tags2.jsonl", changed.as_bytes())
        .await
        .unwrap();
    assert_eq!(again.written, [1]);
    let items = scan(&client, &table, &["id", "at"]).await;
    assert_eq!(
        items["7|0.50"]["label"],
        AttributeValue::S("tag seven".into())
    );
}

/// When the attempts run out the error says how many and which records were not written;
/// what was written stays, and running the object again (unthrottled) completes it.
#[tokio::test(flavor = "multi_thread")]
async fn bounded_attempts_name_the_records_not_written() {
    let throttle = Throttle::new(u32::MAX, 0);
    let client_throttled = client(vec![throttling(&throttle)]).await;
    let table = create_table(
        &client_throttled,
        &[
            ("id", ScalarAttributeType::N),
            ("at", ScalarAttributeType::N),
        ],
    )
    .await;
    let sink = DynamoSink::new(client_throttled, &table)
        .max_attempts(3)
        .base_backoff(Duration::from_millis(1));
    let schema = RecordSchema::from_toml(UNVERSIONED).unwrap();
    let lines: Vec<String> = (0..30)
        .map(|i| format!(r#"{{"id": {i}, "at": 1, "label": "x"}}"#))
        .collect();
    let body = lines.join("\n");
    let err = ingest(&schema, &sink, "t.jsonl", body.as_bytes())
        .await
        .expect_err("throttled for ever");
    let IngestError::Sink(err) = err else {
        panic!("{err}")
    };
    assert_eq!(err.sink, format!("dynamodb://{table}"));
    // Each of the 3 calls writes one request: 24 of the first 25 stay unprocessed after
    // 3 attempts minus the 2 written by the retries: 22; the last 5 were not sent.
    assert!(
        err.reason.starts_with(
            "BatchWriteItem left 22 records unprocessed after 3 attempts and 5 were not sent; \
             27 records not written (the sink is idempotent: run the object again): record "
        ),
        "{}",
        err.reason
    );
    for i in 26..=30 {
        assert!(
            err.reason.contains(&format!("record {i} ({}, 1)", i - 1)),
            "{i}"
        );
    }
    let plain = client(vec![]).await;
    assert_eq!(scan(&plain, &table, &["id", "at"]).await.len(), 3);
    let rerun = ingest(
        &schema,
        &DynamoSink::new(plain.clone(), &table),
        "t.jsonl",
        body.as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!((rerun.written.len(), rerun.skipped), (27, 3));
    assert_eq!(scan(&plain, &table, &["id", "at"]).await.len(), 30);
}

/// The opt-in single-writer mode with a version: the pre-read decides, and the newer records
/// go out with `BatchWriteItem` (no `PutItem`); throttled calls are retried.
#[tokio::test(flavor = "multi_thread")]
async fn single_writer_mode_batches_the_newer_records() {
    let calls = CountCalls::default();
    let throttle = Throttle::new(2, 1);
    let client = client(vec![counting(&calls), throttling(&throttle)]).await;
    let table = create_table(&client, &[("device_id", ScalarAttributeType::S)]).await;
    let sink = DynamoSink::new(client.clone(), &table)
        .single_writer(true)
        .base_backoff(Duration::from_millis(1));
    let schema = RecordSchema::from_toml(VERSIONED).unwrap();
    let file = |seq: i64| {
        (0..60)
            .map(|k| versioned_line(&format!("k{k}"), seq + k % 2, &format!("{seq}")))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let first = ingest(&schema, &sink, "a.jsonl", file(5).as_bytes())
        .await
        .unwrap();
    assert_eq!(first.written.len(), 60);
    // Versions 4/5 against stored 5/6: only... none newer; versions 6/7: all newer.
    let older = ingest(&schema, &sink, "b.jsonl", file(4).as_bytes())
        .await
        .unwrap();
    assert_eq!((older.written.len(), older.skipped), (0, 60));
    let mixed = ingest(&schema, &sink, "c.jsonl", file(5).as_bytes())
        .await
        .unwrap();
    assert_eq!((mixed.written.len(), mixed.skipped), (0, 60));
    let newer = ingest(&schema, &sink, "d.jsonl", file(6).as_bytes())
        .await
        .unwrap();
    assert_eq!((newer.written.len(), newer.skipped), (60, 0));
    assert_eq!(calls.0.put_item.load(Ordering::SeqCst), 0);
    assert_eq!(throttle.writes_left.load(Ordering::SeqCst), 0);
    let items = scan(&client, &table, &["device_id"]).await;
    for k in 0..60 {
        assert_eq!(
            items[&format!("k{k}")]["seq"],
            AttributeValue::N((6 + k % 2).to_string())
        );
    }
}

/// A file with bad records is refused whole through `Ingest`: the error carries every
/// record's reason, in order, with its message (the messages themselves are tested reason by
/// reason in cipherflow-core's tests/records.rs), and the table stays empty: not even a
/// read was made. The size limit refuses before reading. Values DynamoDB itself would refuse
/// (a number of 39 significant digits, an empty key) refuse the call before any write.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_file_writes_nothing() {
    let (calls, client, table, sink) = seed_sink().await;
    let schema = seed_schema();
    let (good, _) = seed_record(1);
    // Each bad record on its own key, so that only the good record repeats a key.
    let base = |i: u32| good.replace("device-001", &format!("device-{:03}", 100 + i));
    let bad = [
        good.replace("device-001", "device-1"),
        base(1).replace("\"value\": 919.01", "\"value\": 1000.01"),
        base(2).replace("\"value\": 919.01", "\"value\": 1e3"),
        base(3).replace("+01:00\"", "\""),
        base(4).replace("\"ok\": false", "\"ok\": \"no\""),
        base(5).replace(", \"ok\": false", ""),
        base(6).replace("\"unit\": \"C\"", "\"unit\": null"),
        base(7).replace("\"unit\": \"C\"", "\"unit\": \"F\""),
        base(8).replace("\"battery\": 1", "\"battery\": 1.5"),
        base(9).replace('}', ", \"colour\": \"red\"}"),
        base(10).replace('}', ", \"ok\": true}"),
        "[1]".to_owned(),
    ];
    assert!(
        bad.iter()
            .enumerate()
            .all(|(i, b)| i == 0 || *b != base(i as u32)),
        "every case changes its record"
    );
    let mut lines = vec![good.clone()];
    lines.extend(bad.iter().cloned());
    lines.push(good.clone());
    let err = ingest(&schema, &sink, "bad.jsonl", lines.join("\n").as_bytes())
        .await
        .expect_err("refused");
    let IngestError::Records(err @ RecordsError::Invalid { .. }) = err else {
        panic!("{err}")
    };
    let messages: Vec<String> = err.errors().iter().map(ToString::to_string).collect();
    let expected = [
        r#"bad.jsonl, record 2 (line 2), field "device_id": "device-1" does not match the pattern "^device-[0-9]{3}$""#,
        r#"bad.jsonl, record 3 (line 3), field "value": 1000.01 is greater than the maximum 1000"#,
        r#"bad.jsonl, record 4 (line 4), field "value": 1e3 is not a decimal number (digits, optional sign and point, no exponent)"#,
        r#"bad.jsonl, record 5 (line 5), field "timestamp": "2026-02-01T11:00:01" is not an RFC 3339 timestamp with offset (like 2026-02-01T10:00:00Z)"#,
        r#"bad.jsonl, record 6 (line 6), field "ok": expected type bool, found a string"#,
        r#"bad.jsonl, record 7 (line 7), field "ok": required field is missing"#,
        r#"bad.jsonl, record 8 (line 8), field "unit": null, but the column is not nullable"#,
        r#"bad.jsonl, record 9 (line 9), field "unit": "F" is not one of the allowed values ("kWh", "C", "%")"#,
        r#"bad.jsonl, record 10 (line 10), field "battery": 1.5 is not a 64-bit integer"#,
        r#"bad.jsonl, record 11 (line 11), field "colour": unknown field (the schema has extra = "error")"#,
        r#"bad.jsonl, record 12 (line 12), field "ok": appears twice"#,
        r#"bad.jsonl, record 13 (line 13): a record must be a JSON object, found an array"#,
        r#"bad.jsonl, record 1 (line 1), field "device_id,timestamp": same primary key as record 14"#,
        r#"bad.jsonl, record 14 (line 14), field "device_id,timestamp": same primary key as record 1"#,
    ];
    let mut sorted = messages.clone();
    sorted.sort();
    let mut want: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    assert_eq!(sorted, want, "{messages:#?}");

    let too_large = Ingest {
        schema: &schema,
        sink: &sink,
        rejects: None,
        max_bytes: Some(100),
        ledger: None,
    }
    .object("big.jsonl", good.repeat(2).as_bytes(), Format::JsonLines)
    .await
    .expect_err("too large");
    assert_eq!(
        too_large.to_string(),
        "big.jsonl: larger than the limit of 100 bytes"
    );

    let dynamo_refuses = [
        good.replace("919.01", "1.00000000000000000000000000000000000001"),
        seed_record(2).0.replace("device-002", "device-999"),
    ];
    let err = ingest(
        &schema,
        &sink,
        "limits.jsonl",
        dynamo_refuses.join("\n").as_bytes(),
    )
    .await
    .expect_err("beyond DynamoDB's numbers");
    assert_eq!(
        err.to_string(),
        format!(
            "dynamodb://{table}: 1 values DynamoDB would refuse, nothing written: limits.jsonl, \
             record 1 (line 1), field \"value\": 1.00000000000000000000000000000000000001 has \
             39 significant digits, more than DynamoDB's 38"
        )
    );
    assert_eq!(calls.0.writes(), 0);
    assert!(
        scan(&client, &table, &["device_id", "timestamp"])
            .await
            .is_empty()
    );
}

/// Reject mode with the rejects on S3: the reject object holds exactly the bad records,
/// verbatim, with their reasons; only the good records reach DynamoDB.
#[tokio::test(flavor = "multi_thread")]
async fn reject_mode_sends_only_the_good_records() {
    let config = common::sdk_config().await;
    let bucket = common::unique("rejects");
    let store = S3Store::new(
        &config,
        &bucket,
        "",
        S3Options::new().force_path_style(true),
    );
    store
        .client()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("CreateBucket");
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    let client = client(vec![]).await;
    let table = seed_table(&client).await;
    let sink = DynamoSink::new(client.clone(), &table);
    let schema = seed_schema();
    let mut lines = Vec::new();
    let mut good = BTreeMap::new();
    let mut bad = Vec::new();
    for n in 0..200 {
        let (line, item) = seed_record(n);
        if n % 17 == 3 {
            let broken = line.replace("\"device_id\": \"device-", "\"device_id\": \"dev-");
            bad.push((n + 1, broken.clone()));
            lines.push(broken);
        } else {
            let key = match (&item["device_id"], &item["timestamp"]) {
                (AttributeValue::S(d), AttributeValue::S(t)) => format!("{d}|{t}"),
                _ => unreachable!(),
            };
            good.insert(key, item);
            lines.push(line);
        }
    }
    let report = Ingest {
        schema: &schema,
        sink: &sink,
        rejects: Some(RejectTarget {
            store: store.clone(),
            prefix: "rejects/".into(),
        }),
        max_bytes: None,
        ledger: None,
    }
    .object(
        "mixed.jsonl",
        lines.join("\n").as_bytes(),
        Format::JsonLines,
    )
    .await
    .expect("ingest with rejects");
    assert_eq!(report.read, 200);
    assert_eq!(report.rejected, bad.len() as u64);
    assert_eq!(report.written.len(), good.len());
    assert_eq!(
        report.reject_object.as_deref(),
        Some("rejects/mixed.jsonl.rejects.jsonl")
    );
    let (body, _) = store
        .get(&ObjectKey::new("rejects/mixed.jsonl.rejects.jsonl").unwrap())
        .await
        .unwrap();
    let rejects: Vec<serde_json::Value> = std::str::from_utf8(&body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rejects.len(), bad.len());
    for (reject, (n, line)) in rejects.iter().zip(&bad) {
        assert_eq!(reject["record"], serde_json::json!(n));
        assert_eq!(reject["raw"], serde_json::json!(line));
        assert_eq!(reject["errors"][0]["field"], serde_json::json!("device_id"));
    }
    let stored = scan(&client, &table, &["device_id", "timestamp"]).await;
    assert!(stored == good, "only the good records are in the table");
}

/// A table whose key does not match the schema's, and a schema key of three columns, are
/// refused with a message before anything is written.
#[tokio::test(flavor = "multi_thread")]
async fn table_and_schema_keys_must_match() {
    let client = client(vec![]).await;
    let table = create_table(&client, &[("device_id", ScalarAttributeType::N)]).await;
    let sink = DynamoSink::new(client.clone(), &table);
    let schema = RecordSchema::from_toml(VERSIONED).unwrap();
    let err = ingest(
        &schema,
        &sink,
        "x.jsonl",
        versioned_line("a", 1, "1").as_bytes(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "dynamodb://{table}: the table's key is device_id (N), but schema \"devices\" needs \
             the key device_id (S) (string and timestamp columns are S, int64 and decimal \
             columns N)"
        )
    );
    let three = RecordSchema::from_toml(
        r#"
        name = "wide"
        key = ["a", "b", "c"]
        [columns.a]
        type = "string"
        [columns.b]
        type = "string"
        [columns.c]
        type = "string"
        "#,
    )
    .unwrap();
    let err = ingest(
        &three,
        &sink,
        "w.jsonl",
        br#"{"a": "1", "b": "2", "c": "3"}"#,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "dynamodb://{table}: schema \"wide\" has a key of 3 columns (a, b, c); a DynamoDB \
             table's key has at most two (hash and range)"
        )
    );
    assert!(scan(&client, &table, &["device_id"]).await.is_empty());
    let bad = DynamoSink::from_url(&common::sdk_config().await, "dynamodb://x").unwrap_err();
    assert_eq!(
        bad.to_string(),
        "dynamodb://x: \"x\" is not a DynamoDB table name (3 to 255 letters, digits, '_', '-', '.')"
    );
    let ok =
        DynamoSink::from_url(&common::sdk_config().await, &format!("dynamodb://{table}")).unwrap();
    assert_eq!(ok.table(), table);
}

/// An int64 version that is itself a key column (each version its own item): the pre-read
/// projects it once, and a replay writes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_in_the_key() {
    let calls = CountCalls::default();
    let client = client(vec![counting(&calls)]).await;
    let table = create_table(
        &client,
        &[
            ("device_id", ScalarAttributeType::S),
            ("seq", ScalarAttributeType::N),
        ],
    )
    .await;
    let sink = DynamoSink::new(client.clone(), &table);
    let schema = RecordSchema::from_toml(
        &VERSIONED.replace("key = [\"device_id\"]", "key = [\"device_id\", \"seq\"]"),
    )
    .unwrap();
    let body = (1..=5)
        .map(|s| versioned_line("a", s, &format!("{s}.5")))
        .collect::<Vec<_>>()
        .join("\n");
    let first = ingest(&schema, &sink, "k.jsonl", body.as_bytes())
        .await
        .unwrap();
    assert_eq!(first.written, [1, 2, 3, 4, 5]);
    let writes = calls.0.writes();
    let replay = ingest(&schema, &sink, "k.jsonl", body.as_bytes())
        .await
        .unwrap();
    assert_eq!((replay.written.len(), replay.skipped), (0, 5));
    assert_eq!(calls.0.writes(), writes);
    let items = scan(&client, &table, &["device_id", "seq"]).await;
    assert_eq!(items.len(), 5);
    assert_eq!(items["a|3"]["reading"], AttributeValue::N("3.5".into()));
}
