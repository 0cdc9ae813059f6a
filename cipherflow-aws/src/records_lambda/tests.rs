//! The handler against memory stores and a recording sink.

use super::http::hex;
use super::*;
use crate::lambda::s3_record;
use async_trait::async_trait;
use base64::Engine as _;
use cipherflow_core::Signer;
use cipherflow_core::SigningKey;
use cipherflow_core::ledger::{Kind, TrustedKey, TrustedKeys};
use cipherflow_core::pipeline::Location;
use cipherflow_core::records::{Record, RecordSink, SinkError, SinkReport, Value, version_seq};
use cipherflow_core::store::{Bytes, MemoryStore, ObjectMeta, PutMode, StoreName};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

/// Seed 001's schema, the fixture the core tests read.
const SCHEMA: &str = include_str!("../../../cipherflow-core/tests/data/records/readings.toml");

/// A memory store that names itself as the root of S3 bucket `bucket`.
#[derive(Debug)]
struct Bucket {
    bucket: String,
    inner: MemoryStore,
}

fn bucket(name: &str) -> Arc<Bucket> {
    Arc::new(Bucket {
        bucket: name.into(),
        inner: MemoryStore::new(),
    })
}

#[async_trait]
impl ObjectStore for Bucket {
    fn describe(&self) -> String {
        format!("s3://{}/", self.bucket)
    }
    fn name(&self) -> StoreName {
        StoreName {
            kind: "s3".into(),
            bucket: self.bucket.clone(),
            prefix: String::new(),
        }
    }
    async fn put(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        mode: PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        self.inner.put(key, bytes, mode).await
    }
    async fn get(&self, key: &ObjectKey) -> Result<(Bytes, ObjectMeta), StoreError> {
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.inner.get_range(key, range).await
    }
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
}

/// A table in memory with the DynamoDB sink's rule: an item is written if absent or if
/// the record's version is newer. `fail` makes every write fail.
#[derive(Default)]
struct TestSink {
    items: Mutex<HashMap<Vec<String>, Vec<Value>>>,
    fail: AtomicBool,
}

#[async_trait]
impl RecordSink for TestSink {
    fn describe(&self) -> String {
        "test://table".into()
    }
    async fn write(
        &self,
        object: &str,
        schema: &RecordSchema,
        records: &[Record],
    ) -> Result<SinkReport, SinkError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(SinkError {
                sink: self.describe(),
                reason: format!("{object}: throttled"),
            });
        }
        let mut items = self.items.lock().unwrap();
        let mut report = SinkReport::default();
        let version = schema.version().unwrap();
        for record in records {
            let key: Vec<String> = schema
                .key()
                .iter()
                .map(|&i| record.values[i].cell_text().into_owned())
                .collect();
            let newer = items.get(&key).is_none_or(|old| {
                version_seq(&record.values[version]) > version_seq(&old[version])
            });
            if newer {
                items.insert(key, record.values.clone());
                report.written.push(record.index);
            } else {
                report.skipped += 1;
            }
        }
        Ok(report)
    }
}

struct World {
    uploads: Arc<Bucket>,
    out: Arc<Bucket>,
    ledger: Arc<MemoryStore>,
    sink: Arc<TestSink>,
    signer: Arc<SigningKey>,
}

impl World {
    fn new() -> World {
        World {
            uploads: bucket("uploads"),
            out: bucket("out"),
            ledger: Arc::new(MemoryStore::new()),
            sink: Arc::new(TestSink::default()),
            signer: Arc::new(SigningKey::generate_p256().unwrap()),
        }
    }

    async fn handler(&self, reject: bool, max_body: u64) -> RecordsHandler {
        let uploads = self.uploads.clone();
        let out: Arc<dyn ObjectStore> = self.out.clone();
        let config = Config {
            schema: RecordSchema::from_toml(SCHEMA).unwrap(),
            sink: self.sink.clone(),
            buckets: Box::new(move |name: &str| {
                if name == "uploads" {
                    Ok(uploads.clone() as Arc<dyn ObjectStore>)
                } else {
                    Err(Error::misuse(format!("no bucket {name}")))
                }
            }),
            rejects: reject.then(|| RejectTarget {
                store: out.clone(),
                prefix: "rejects/".into(),
            }),
            requests: Location::new(out, "requests"),
            ledger: (self.ledger.clone() as Arc<dyn ObjectStore>, "ledger".into()),
            signer: Some(self.signer.clone() as Arc<dyn Signer>),
            max_body,
            max_object: 1 << 20,
            actor: Actor {
                principal: "aws-lambda:test".into(),
                ..Actor::default()
            },
        };
        RecordsHandler::new(config).await.unwrap()
    }

    async fn upload(&self, key: &str, body: &str) {
        self.uploads
            .put(
                &ObjectKey::new(key).unwrap(),
                body.as_bytes().to_vec().into(),
                PutMode::Overwrite,
            )
            .await
            .unwrap();
    }

    /// Every ledger record, after verifying the ledger with the signer's key.
    async fn ledger_records(&self) -> Vec<cipherflow_core::ledger::Record> {
        let trusted = TrustedKeys::new().with(TrustedKey::new(self.signer.verifying_key().clone()));
        let report = Ledger::verify(self.ledger.clone(), "ledger", &trusted)
            .await
            .unwrap();
        assert_eq!(report.signed_size, report.records, "every record is signed");
        let ledger = Ledger::open(self.ledger.clone(), "ledger").await.unwrap();
        ledger
            .records(0..ledger.len())
            .await
            .unwrap()
            .into_iter()
            .map(|(r, _)| r)
            .collect()
    }
}

/// Each error of a refusal's JSON as (record, line, field, reason), each naming `object`.
fn error_rows<'a>(errors: &'a Json, object: &str) -> Vec<(u64, u64, &'a str, &'a str)> {
    errors
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["object"], object);
            (
                e["record"].as_u64().unwrap(),
                e["line"].as_u64().unwrap(),
                e["field"].as_str().unwrap(),
                e["reason"].as_str().unwrap(),
            )
        })
        .collect()
}

/// A REST API (payload 1.0) proxy request.
fn rest(method: &str, path: &str, body: Option<&str>, base64: bool) -> Json {
    json!({
        "resource": path, "path": path, "httpMethod": method,
        "headers": {"Content-Type": "application/json", "User-Agent": "curl/8"},
        "requestContext": {"stage": "prod", "identity": {"sourceIp": "192.0.2.7"}},
        "body": body, "isBase64Encoded": base64,
    })
}

/// (status, parsed body) of a proxy response.
fn status(response: &Json) -> (u64, Json) {
    let body: Json = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    (response["statusCode"].as_u64().unwrap(), body)
}

const GOOD: &str = r#"[
        {"device_id": "device-001", "timestamp": "2026-02-01T10:00:00Z", "value": 42},
        {"device_id": "device-002", "timestamp": "2026-02-01T10:00:00Z", "value": 1000.00},
        {"device_id": "device-003", "timestamp": "2026-02-01T10:00:00Z", "value": null}
    ]"#;
const BAD_LINES: &str = concat!(
    r#"{"device_id": "device-004", "timestamp": "2026-02-01T10:00:00Z", "value": 1}"#,
    "\n",
    r#"{"device_id": "dev-5", "timestamp": "2026-02-01T10:00:00Z", "value": 1}"#,
    "\n",
    r#"{"device_id": "device-006", "timestamp": "yesterday", "value": 1001}"#,
    "\n",
);

#[tokio::test]
async fn s3_uploads_are_ingested_refused_or_ignored_and_recorded() {
    let world = World::new();
    let handler = world.handler(false, 1 << 20).await;
    world.upload("in/day 1/good+set.json", GOOD).await;
    world.upload("in/bad.jsonl", BAD_LINES).await;
    world.upload("in/notes.txt", "hello").await;
    let event = json!({"Records": [
        s3_record("ObjectCreated:Put", "uploads", "in/day+1/good%2Bset.json"),
        s3_record("ObjectCreated:Put", "uploads", "in/bad.jsonl"),
        s3_record("ObjectCreated:Put", "uploads", "in/notes.txt"),
        s3_record("ObjectCreated:Put", "uploads", "in/gone.json"),
        s3_record("ObjectRemoved:Delete", "uploads", "in/bad.jsonl"),
        s3_record("ObjectCreated:Put", "uploads", "in/%FF.json"),
        s3_record("ObjectCreated:Put", "out", "requests/abc.json"),
    ]});
    let out = handler.handle(event.clone()).await.unwrap();
    let objects = out["objects"].as_array().unwrap();
    let summary: Vec<(&str, &str)> = objects
        .iter()
        .map(|o| (o["key"].as_str().unwrap(), o["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("in/day 1/good+set.json", "ingested"),
            ("in/bad.jsonl", "refused"),
            ("in/notes.txt", "refused"),
            ("in/gone.json", "refused"),
            ("in/bad.jsonl", "ignored"),
            ("in/%FF.json", "ignored"),
            ("requests/abc.json", "ignored"),
        ]
    );
    assert_eq!(
        objects[0]["report"],
        json!({"read": 3, "written": 3, "skipped": 0, "rejected": 0, "ledger_index": 0})
    );
    // Every error of the refused file, each naming object, record, line, field, reason.
    let errors = error_rows(&objects[1]["errors"], "in/bad.jsonl");
    assert_eq!(
        errors,
        [
            (
                2,
                2,
                "device_id",
                r#""dev-5" does not match the pattern "^device-[0-9]{3}$""#
            ),
            (
                3,
                3,
                "timestamp",
                r#""yesterday" is not an RFC 3339 timestamp with offset (like 2026-02-01T10:00:00Z)"#
            ),
            (3, 3, "value", "1001 is greater than the maximum 1000"),
        ]
    );
    assert!(
        objects[2]["problem"]
            .as_str()
            .unwrap()
            .contains("unknown extension")
    );
    assert!(
        objects[3]["problem"]
            .as_str()
            .unwrap()
            .contains("deleted since")
    );
    assert!(
        objects[5]["problem"]
            .as_str()
            .unwrap()
            .contains("not UTF-8")
    );
    assert_eq!(out["checkpoint"], 1);
    // The refused file wrote nothing: only the good file's three items.
    assert_eq!(world.sink.items.lock().unwrap().len(), 3);

    // Delivered again: nothing new is written; the object gets a second ledger record.
    let again = handler.handle(event).await.unwrap();
    assert_eq!(
        again["objects"][0]["report"],
        json!({"read": 3, "written": 0, "skipped": 3, "rejected": 0, "ledger_index": 1})
    );
    let records = world.ledger_records().await;
    assert_eq!(records.len(), 2);
    for record in &records {
        assert_eq!(record.kind, Kind::Landed);
        assert_eq!(
            (
                &*record.object.store,
                &*record.object.bucket,
                &*record.object.key
            ),
            ("s3", "uploads", "in/day 1/good+set.json")
        );
        assert_eq!(record.object.sha256, <[u8; 32]>::from(Sha256::digest(GOOD)));
        assert_eq!(record.object.size, GOOD.len() as u64);
        assert_eq!(record.step, STEP);
        assert_eq!(record.actor.principal, "aws-lambda:test");
    }
}

#[tokio::test]
async fn reject_mode_writes_the_good_records_and_stores_the_bad_ones() {
    let world = World::new();
    let handler = world.handler(true, 1 << 20).await;
    world.upload("in/bad.jsonl", BAD_LINES).await;
    let out = handler
        .handle(json!({"Records": [s3_record("ObjectCreated:Post", "uploads", "in/bad.jsonl")]}))
        .await
        .unwrap();
    assert_eq!(
        out["objects"][0]["report"],
        json!({"read": 3, "written": 1, "skipped": 0, "rejected": 2,
               "reject_object": "rejects/in/bad.jsonl.rejects.jsonl", "ledger_index": 0})
    );
    let (rejects, _) = world
        .out
        .get(&ObjectKey::new("rejects/in/bad.jsonl.rejects.jsonl").unwrap())
        .await
        .unwrap();
    let lines: Vec<Json> = std::str::from_utf8(&rejects)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["record"], 2);
    assert_eq!(lines[1]["record"], 3);
    {
        let items = world.sink.items.lock().unwrap();
        assert_eq!(items.len(), 1);
        assert!(items.keys().all(|k| k[0] == "device-004"));
    }
    // A notification for the reject object itself is the function's own output.
    let out = handler
        .handle(json!({"Records": [s3_record("ObjectCreated:Put", "out",
            "rejects/in/bad.jsonl.rejects.jsonl")]}))
        .await
        .unwrap();
    assert_eq!(out["objects"][0]["status"], "ignored");
}

#[tokio::test]
async fn post_records_writes_stores_the_body_and_records_it() {
    let world = World::new();
    let handler = world.handler(false, 1 << 20).await;
    let response = handler
        .handle(rest("POST", "/records", Some(GOOD), false))
        .await
        .unwrap();
    let (code, body) = status(&response);
    assert_eq!(code, 200, "{body}");
    let sha = hex(&Sha256::digest(GOOD));
    let object = format!("requests/{sha}.json");
    assert_eq!(
        body,
        json!({
            "object": object,
            "read": 3,
            "written": [
                {"device_id": "device-001", "timestamp": "2026-02-01T10:00:00"},
                {"device_id": "device-002", "timestamp": "2026-02-01T10:00:00"},
                {"device_id": "device-003", "timestamp": "2026-02-01T10:00:00"},
            ],
            "skipped": 0,
            "ledger_index": 0,
            "checkpoint": 1,
        })
    );
    let (stored, _) = world
        .out
        .get(&ObjectKey::new(object.as_str()).unwrap())
        .await
        .unwrap();
    assert_eq!(&stored[..], GOOD.as_bytes());

    // The same body again (base64 this time): stored once, nothing new written.
    let encoded = base64::engine::general_purpose::STANDARD.encode(GOOD);
    let again = handler
        .handle(rest("POST", "/records/", Some(&encoded), true))
        .await
        .unwrap();
    let (code, body) = status(&again);
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (&body["written"], &body["skipped"], &body["ledger_index"]),
        (&json!([]), &json!(3), &json!(1))
    );

    // A newer version of one record: written; an older one: skipped.
    let one = r#"{"device_id": "device-001", "timestamp": "2026-02-01T11:00:00Z", "value": 7}"#;
    let (code, body) = status(
        &handler
            .handle(rest("POST", "/records", Some(one), false))
            .await
            .unwrap(),
    );
    assert_eq!((code, body["written"].as_array().unwrap().len()), (200, 1));

    let records = world.ledger_records().await;
    assert_eq!(records.len(), 3);
    assert_eq!(
        (&*records[0].object.bucket, &*records[0].object.key),
        ("out", object.as_str())
    );
    assert_eq!(records[0].actor.source_ip.as_deref(), Some("192.0.2.7"));
    assert_eq!(records[0].actor.user_agent.as_deref(), Some("curl/8"));
    assert_eq!(records[1].object.sha256, records[0].object.sha256);
}

#[tokio::test]
async fn a_bad_body_gets_400_with_every_error_and_is_not_stored() {
    let world = World::new();
    let handler = world.handler(false, 1 << 20).await;
    let body = r#"[
            {"device_id": "device-001", "timestamp": "2026-02-01T10:00:00Z", "value": -1},
            {"device_id": "device-002", "timestamp": "2026-02-01T10:00:00Z", "value": 1, "extra": 1},
            {"timestamp": "2026-02-01T10:00:00Z", "value": "x"}
        ]"#;
    let (code, answer) = status(
        &handler
            .handle(rest("POST", "/records", Some(body), false))
            .await
            .unwrap(),
    );
    assert_eq!(code, 400);
    let object = format!("requests/{}.json", hex(&Sha256::digest(body)));
    let errors = error_rows(&answer["errors"], &object);
    assert_eq!(
        errors,
        [
            (1, 2, "value", "-1 is less than the minimum 0"),
            (
                2,
                3,
                "extra",
                "unknown field (the schema has extra = \"error\")"
            ),
            (3, 4, "device_id", "required field is missing"),
            (
                3,
                4,
                "value",
                r#""x" is not a decimal number (digits, optional sign and point, no exponent)"#
            ),
        ]
    );
    assert!(world.out.inner.list("").await.unwrap().is_empty());
    assert!(world.sink.items.lock().unwrap().is_empty());
    let ledger = Ledger::open(world.ledger.clone(), "ledger").await.unwrap();
    assert_eq!(ledger.len(), 0);
}

#[tokio::test]
async fn bad_input_is_never_a_500() {
    let world = World::new();
    let limit = 200;
    let handler = world.handler(false, limit).await;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let over = format!("[{}]", " ".repeat(limit as usize));
    let one = r#"{"device_id": "device-009", "timestamp": "2026-02-01T10:00:00Z"}"#;
    let with_type = |ct: &str| {
        let mut e = rest("POST", "/records", Some(one), false);
        e["headers"]["Content-Type"] = json!(ct);
        e
    };
    let cases: Vec<(&str, Json, u64)> = vec![
        (
            "one record",
            rest("POST", "/records", Some(one), false),
            200,
        ),
        (
            "json; charset",
            with_type("application/json; charset=utf-8"),
            200,
        ),
        ("no body", rest("POST", "/records", None, false), 400),
        ("empty body", rest("POST", "/records", Some(""), false), 400),
        (
            "malformed JSON",
            rest("POST", "/records", Some("[{"), false),
            400,
        ),
        (
            "not JSON",
            rest("POST", "/records", Some("device-1,now"), false),
            400,
        ),
        ("a number", rest("POST", "/records", Some("42"), false), 400),
        ("null", rest("POST", "/records", Some("null"), false), 400),
        (
            "array of strings",
            rest("POST", "/records", Some(r#"["a"]"#), false),
            400,
        ),
        (
            "bad base64",
            rest("POST", "/records", Some("%%%"), true),
            400,
        ),
        (
            "base64 of garbage",
            rest("POST", "/records", Some(&b64("\u{0}\u{1}")), true),
            400,
        ),
        (
            "base64 not UTF-8",
            rest("POST", "/records", Some("/w=="), true),
            400,
        ),
        (
            "over the limit",
            rest("POST", "/records", Some(&over), false),
            413,
        ),
        (
            "over, base64",
            rest("POST", "/records", Some(&b64(&over)), true),
            413,
        ),
        ("text/csv", with_type("text/csv"), 415),
        ("GET", rest("GET", "/records", None, false), 405),
        ("PUT", rest("PUT", "/records", Some(one), false), 405),
        ("other path", rest("POST", "/other", Some(one), false), 404),
        ("root", rest("POST", "/", Some(one), false), 404),
    ];
    for (name, event, expected) in cases {
        let response = handler.handle(event).await.unwrap();
        let (code, body) = status(&response);
        assert_eq!(code, expected, "{name}: {body}");
        assert!(body["error"].is_string() || code == 200, "{name}: {body}");
        if code == 405 {
            assert_eq!(response["headers"]["allow"], "POST");
        }
    }
    // Exactly at the limit is accepted as to size (refused here as malformed JSON).
    let at = format!("[{}", " ".repeat(limit as usize - 1));
    let (code, _) = status(
        &handler
            .handle(rest("POST", "/records", Some(&at), false))
            .await
            .unwrap(),
    );
    assert_eq!(code, 400);
}

#[tokio::test]
async fn http_api_payload_2_is_routed_with_its_stage() {
    let world = World::new();
    let handler = world.handler(false, 1 << 20).await;
    let event = |path: &str, stage: &str, method: &str| {
        json!({
            "version": "2.0", "routeKey": "POST /records", "rawPath": path,
            "rawQueryString": "", "headers": {"content-type": "application/json"},
            "requestContext": {"stage": stage,
                "http": {"method": method, "path": path, "sourceIp": "198.51.100.1",
                         "userAgent": "device"}},
            "body": GOOD, "isBase64Encoded": false,
        })
    };
    for (path, stage, method, expected) in [
        ("/records", "$default", "POST", 200),
        ("/prod/records", "prod", "POST", 200),
        ("/prod/records", "$default", "POST", 404),
        ("/records", "$default", "DELETE", 405),
    ] {
        let (code, body) = status(&handler.handle(event(path, stage, method)).await.unwrap());
        assert_eq!(code, expected, "{path} {stage} {method}: {body}");
    }
    assert!(handler.handle(json!({"hello": 1})).await.is_err());
}

#[tokio::test]
async fn a_failing_sink_is_an_error_for_s3_and_a_503_for_http() {
    let world = World::new();
    let handler = world.handler(false, 1 << 20).await;
    world.sink.fail.store(true, Ordering::SeqCst);
    world.upload("in/good.json", GOOD).await;
    let err = handler
        .handle(json!({"Records": [s3_record("ObjectCreated:Put", "uploads", "in/good.json")]}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("throttled"), "{err}");
    let (code, body) = status(
        &handler
            .handle(rest("POST", "/records", Some(GOOD), false))
            .await
            .unwrap(),
    );
    assert_eq!((code, &body["retry"]), (503, &json!(true)));
    // Nothing was recorded; once the sink works, the retry succeeds.
    world.sink.fail.store(false, Ordering::SeqCst);
    let (code, _) = status(
        &handler
            .handle(rest("POST", "/records", Some(GOOD), false))
            .await
            .unwrap(),
    );
    assert_eq!(code, 200);
    assert_eq!(world.ledger_records().await.len(), 1);
}

#[tokio::test]
async fn concurrent_instances_append_to_one_ledger_without_loss_or_fork() {
    let world = World::new();
    // Two instances, each with its own ledger handle (and racing to create the ledger).
    let (a, b) = tokio::join!(world.handler(false, 1 << 20), world.handler(false, 1 << 20));
    async fn post(h: &RecordsHandler, i: usize) -> u64 {
        let body =
            format!(r#"{{"device_id": "device-{i:03}", "timestamp": "2026-02-01T10:00:00Z"}}"#);
        status(
            &h.handle(rest("POST", "/records", Some(&body), false))
                .await
                .unwrap(),
        )
        .0
    }
    let runs_a = async {
        let mut codes = Vec::new();
        for i in 0..10 {
            codes.push(post(&a, i).await);
        }
        codes
    };
    let runs_b = async {
        let mut codes = Vec::new();
        for i in 10..20 {
            codes.push(post(&b, i).await);
        }
        codes
    };
    let (ca, cb) = tokio::join!(runs_a, runs_b);
    assert!(ca.iter().chain(&cb).all(|&c| c == 200), "{ca:?} {cb:?}");
    let records = world.ledger_records().await;
    assert_eq!(records.len(), 20);
    let mut keys: Vec<&str> = records.iter().map(|r| &*r.object.key).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 20, "each request recorded once");
}
