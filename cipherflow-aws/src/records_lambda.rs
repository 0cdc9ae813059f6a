//! The handler behind the `cipherflow-records` binary: validated records into a
//! [`RecordSink`] (DynamoDB in the binary) from two kinds of event, each object or request
//! recorded in the ledger (`docs/RECORDS.md`, section "Lambda handlers").
//!
//! - **S3 `ObjectCreated` notifications** (`{"Records": [...]}`, seed 001: a device uploads a
//!   file, the function validates it into the table). Each record's key is form-URL-decoded
//!   ([`crate::lambda::decode_key`]), the object read, its format taken from the extension
//!   (`.json`, `.jsonl`/`.ndjson`, `.csv`) and run through [`Ingest::object`]. A refused
//!   object (a bad record without a reject prefix, an unknown extension, over the size limit)
//!   is reported in the answer with every error, and is not a Lambda error: a retry cannot
//!   make bad input good. An S3, DynamoDB or ledger failure is an error, so Lambda retries the
//!   event; the sink is idempotent, so the retry writes only what the failed attempt did not.
//! - **API Gateway proxy events** for `POST /records` (seed 003), in both payload formats:
//!   REST APIs (payload 1.0, `httpMethod`) and HTTP APIs (payload 2.0, `requestContext.http`).
//!   The body is a JSON array of records or one record (base64 when `isBase64Encoded`). The
//!   answer is always an HTTP response, never a Lambda error: 200 with the keys written, 400
//!   with every field error, 413 over the size limit, 415 for a declared non-JSON content type,
//!   404/405 for other paths and methods, 503 when S3 or the sink failed (retrying the same
//!   body is safe). An accepted body is stored create-only under the requests prefix, named by
//!   its SHA-256, before anything is written, and its ledger record names that object.
//!
//! Configuration is read once per cold start from the environment variables named by the
//! `*_VAR` constants ([`RecordsHandler::from_env`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use cipherflow_core::ledger::{Actor, Ledger};
use cipherflow_core::pipeline::Location;
use cipherflow_core::records::{
    Format, Ingest, IngestError, IngestLedger, ReadOptions, Record, RecordError, RecordSchema,
    RecordSink, RecordsError, RejectTarget, Value, read_records,
};
use cipherflow_core::store::{ObjectKey, ObjectStore, PutMode, StoreError};
use cipherflow_core::{Error, Signer};
use serde::Serialize;
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use crate::lambda::decode_key;

/// The record schema (TOML): a path packaged with the function, or `s3://bucket/key`.
pub const SCHEMA_VAR: &str = "CIPHERFLOW_RECORDS_SCHEMA";
/// The sink: `dynamodb://TABLE`.
pub const TABLE_VAR: &str = "CIPHERFLOW_RECORDS_TABLE";
/// The ledger: `s3://bucket/prefix` (created on first use).
pub const LEDGER_VAR: &str = "CIPHERFLOW_RECORDS_LEDGER";
/// Optional reject prefix for uploaded objects, `s3://bucket/prefix/`: reject mode (bad
/// records go there, the rest is written). Unset, an object with a bad record is refused.
pub const REJECTS_VAR: &str = "CIPHERFLOW_RECORDS_REJECTS";
/// Where accepted request bodies are stored: `s3://bucket/prefix/`.
pub const REQUESTS_VAR: &str = "CIPHERFLOW_RECORDS_REQUESTS";
/// The largest request body, in bytes (default [`DEFAULT_MAX_BODY`]).
pub const MAX_BODY_VAR: &str = "CIPHERFLOW_RECORDS_MAX_BODY_BYTES";
/// The largest uploaded object, in bytes (default [`DEFAULT_MAX_OBJECT`]).
pub const MAX_OBJECT_VAR: &str = "CIPHERFLOW_RECORDS_MAX_OBJECT_BYTES";
/// Optional `kms:KEY` that signs a ledger checkpoint after each invocation that appended.
pub const SIGNER_VAR: &str = "CIPHERFLOW_RECORDS_SIGNER";

/// Default [`MAX_BODY_VAR`]: 1 MiB.
pub const DEFAULT_MAX_BODY: u64 = 1 << 20;
/// Default [`MAX_OBJECT_VAR`]: 64 MiB (the object is held in memory while it is validated).
pub const DEFAULT_MAX_OBJECT: u64 = 64 << 20;
/// The only route.
pub const ROUTE: &str = "/records";
/// The ledger records' step.
pub const STEP: &str = "lambda records";

/// Opens the store of an S3 bucket named by an event (the bucket's root).
pub type OpenBucket = dyn Fn(&str) -> Result<Arc<dyn ObjectStore>, Error> + Send + Sync;

/// Everything the handler needs; [`RecordsHandler::from_env`] builds it from the environment.
pub struct Config {
    /// The schema every record is validated against.
    pub schema: RecordSchema,
    /// Where valid records go.
    pub sink: Arc<dyn RecordSink>,
    /// Opens the bucket an S3 event names.
    pub buckets: Box<OpenBucket>,
    /// Reject mode for uploaded objects.
    pub rejects: Option<RejectTarget>,
    /// Where accepted request bodies are stored.
    pub requests: Location,
    /// The ledger's store and prefix (no trailing `/`; `""` for the store's root).
    pub ledger: (Arc<dyn ObjectStore>, String),
    /// Signs a ledger checkpoint after each invocation that appended, if set.
    pub signer: Option<Arc<dyn Signer>>,
    /// The largest request body.
    pub max_body: u64,
    /// The largest uploaded object.
    pub max_object: u64,
    /// Who writes the ledger records (the function's name).
    pub actor: Actor,
}

/// The configured handler, kept warm across invocations.
pub struct RecordsHandler {
    config: Config,
    /// One handle per instance; Lambda runs one invocation at a time per instance, and other
    /// instances append through their own handles (see [`open_ledger`]).
    ledger: tokio::sync::Mutex<Ledger>,
    /// Bucket stores opened so far.
    opened: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

/// One S3 record's result.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ObjectOutcome {
    /// The event name (`ObjectCreated:Put`, ...).
    pub event: String,
    /// The bucket.
    pub bucket: String,
    /// The key, decoded (as sent if it does not decode).
    pub key: String,
    /// `ingested`, `refused` (bad input, nothing written) or `ignored` (not an upload for
    /// this function: another event type, an undecodable key, the function's own output).
    pub status: &'static str,
    /// What the ingestion did (ingested objects).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportJson>,
    /// Why it was refused or ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Every record error of a refused object.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ErrorJson>,
}

/// [`cipherflow_core::records::IngestReport`] as JSON.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ReportJson {
    /// Records read.
    pub read: u64,
    /// Records written.
    pub written: u64,
    /// Records skipped as not newer.
    pub skipped: u64,
    /// Records rejected (reject mode).
    pub rejected: u64,
    /// The reject object, if one was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reject_object: Option<String>,
    /// The ledger index of the object's `landed` record.
    pub ledger_index: Option<u64>,
}

/// One [`RecordError`] as JSON.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ErrorJson {
    /// The object (for a request: the name its body would have been stored under).
    pub object: String,
    /// 1-based record index; 0 for the file as a whole.
    pub record: u64,
    /// 1-based line.
    pub line: u64,
    /// The field, if one is to blame.
    pub field: Option<String>,
    /// The reason.
    pub reason: String,
    /// The whole message, as the command line prints it.
    pub message: String,
}

impl From<&RecordError> for ErrorJson {
    fn from(e: &RecordError) -> ErrorJson {
        ErrorJson {
            object: e.object.to_string(),
            record: e.record,
            line: e.line,
            field: e.field.clone(),
            reason: e.reason.to_string(),
            message: e.to_string(),
        }
    }
}

/// What an S3 invocation did: the JSON the function returns.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct S3Outcome {
    /// One per record of the event, in order.
    pub objects: Vec<ObjectOutcome>,
    /// The ledger checkpoint signed after the appends (its tree size), if a signer is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<u64>,
}

/// An API Gateway proxy request, read from either payload format.
#[derive(Debug)]
struct HttpRequest {
    method: String,
    path: String,
    body: Option<String>,
    base64: bool,
    content_type: Option<String>,
    source_ip: Option<String>,
    user_agent: Option<String>,
}

impl HttpRequest {
    /// Payload 1.0 (REST API: `httpMethod`, `path`) or 2.0 (HTTP API: `version` "2.0",
    /// `requestContext.http.method`, `rawPath`, which includes a named stage); `None` if the
    /// event is neither.
    fn parse(event: &Json) -> Option<HttpRequest> {
        let text = |v: &Json| v.as_str().map(str::to_owned);
        let context = &event["requestContext"];
        let (method, path, source_ip) = if let Some(method) = event["httpMethod"].as_str() {
            (
                method.to_owned(),
                text(&event["path"]).unwrap_or_default(),
                text(&context["identity"]["sourceIp"]),
            )
        } else if let Some(method) = context["http"]["method"].as_str() {
            let mut path = text(&event["rawPath"])
                .or_else(|| text(&context["http"]["path"]))
                .unwrap_or_default();
            if let Some(stage) = context["stage"].as_str().filter(|s| *s != "$default")
                && let Some(rest) = path.strip_prefix(&format!("/{stage}"))
                && (rest.is_empty() || rest.starts_with('/'))
            {
                path = rest.to_owned();
            }
            (method.to_owned(), path, text(&context["http"]["sourceIp"]))
        } else {
            return None;
        };
        let header = |name: &str| {
            event["headers"].as_object().and_then(|h| {
                h.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .and_then(|(_, v)| text(v))
            })
        };
        Some(HttpRequest {
            method,
            path,
            body: text(&event["body"]),
            base64: event["isBase64Encoded"].as_bool().unwrap_or(false),
            content_type: header("content-type"),
            source_ip,
            user_agent: header("user-agent"),
        })
    }
}

/// An API Gateway proxy response (both payload formats accept this shape).
fn response(status: u16, body: &Json) -> Json {
    let mut headers = json!({"content-type": "application/json"});
    if status == 405 {
        headers["allow"] = json!("POST");
    }
    json!({
        "statusCode": status,
        "headers": headers,
        "isBase64Encoded": false,
        "body": body.to_string(),
    })
}

fn error_response(status: u16, error: &str, message: String) -> Json {
    response(status, &json!({"error": error, "message": message}))
}

/// A key field as JSON, as the sinks store it: an int64 as a number, a timestamp as its UTC
/// instant (`2026-02-01T10:00:00`, the key's identity in the table and in merge snapshots),
/// strings and decimals (exactly) as strings.
fn key_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Int64(v) => json!(v),
        Value::Bool(b) => json!(b),
        Value::Timestamp(t) => json!(t.utc_text()),
        other => json!(other.cell_text()),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Opens the ledger, creating it (origin `cipherflow/records/SCHEMA`) on first use. Two cold
/// starts may race to create it: the loser finds the origin and opens it. After that, every
/// instance appends through its own handle: [`Ledger::append`] writes each segment
/// create-only under the next index, and an appender that loses an index to another instance
/// reloads the new tail and retries at the new end, so concurrent invocations neither fail
/// nor fork the log.
pub async fn open_ledger(
    store: Arc<dyn ObjectStore>,
    prefix: &str,
    schema: &RecordSchema,
) -> Result<Ledger, Error> {
    let prefix = prefix.trim_matches('/');
    let origin_key = ObjectKey::new(if prefix.is_empty() {
        "origin".to_owned()
    } else {
        format!("{prefix}/origin")
    })?;
    if let Err(StoreError::NotFound { .. }) = store.head(&origin_key).await {
        let origin = format!("cipherflow/records/{}", schema.name());
        match Ledger::init(store.clone(), prefix, &origin).await {
            Ok(ledger) => return Ok(ledger),
            Err(_) if store.head(&origin_key).await.is_ok() => {}
            Err(e) => return Err(e),
        }
    }
    Ledger::open(store, prefix).await
}

/// Why an uploaded object was refused, and its record errors.
type Refusal = (String, Vec<ErrorJson>);

/// Where an ingested object came from, for its ledger record.
struct Origin<'a> {
    /// The store kind (`s3`).
    store: &'a str,
    /// The bucket.
    bucket: &'a str,
    /// Who.
    actor: Actor,
}

/// How one ingestion ended, for the callers' different answers.
enum Ingested {
    Done(cipherflow_core::records::IngestReport),
    Refused(RecordsError),
}

impl RecordsHandler {
    /// The handler on `config`, with its ledger opened (or created).
    pub async fn new(mut config: Config) -> Result<RecordsHandler, Error> {
        let (store, prefix) = &config.ledger;
        let ledger = open_ledger(store.clone(), prefix, &config.schema).await?;
        if let Ok(function) = std::env::var("AWS_LAMBDA_FUNCTION_NAME")
            && config.actor.principal.is_empty()
        {
            config.actor.principal = format!("aws-lambda:{function}");
        }
        Ok(RecordsHandler {
            config,
            ledger: tokio::sync::Mutex::new(ledger),
            opened: Mutex::new(HashMap::new()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Handles one event: an S3 notification (answer: [`S3Outcome`]; errors only for
    /// failures a retry may fix) or an API Gateway proxy request (answer: a proxy response,
    /// never an error).
    pub async fn handle(&self, event: Json) -> Result<Json, Error> {
        if event.get("Records").is_some() {
            let event: aws_lambda_events::event::s3::S3Event = serde_json::from_value(event)
                .map_err(|e| Error::misuse(format!("not an S3 event: {e}")))?;
            let outcome = self.on_s3_event(&event).await?;
            return Ok(serde_json::to_value(outcome).expect("an outcome serialises"));
        }
        if let Some(request) = HttpRequest::parse(&event) {
            return Ok(self.on_http(request).await);
        }
        Err(Error::misuse(
            "unrecognised event: neither S3 notification records nor an API Gateway proxy request",
        ))
    }

    fn bucket(&self, name: &str) -> Result<Arc<dyn ObjectStore>, Error> {
        let mut opened = self.opened.lock().expect("no panic while holding the lock");
        if let Some(store) = opened.get(name) {
            return Ok(store.clone());
        }
        let store = (self.config.buckets)(name)?;
        opened.insert(name.to_owned(), store.clone());
        Ok(store)
    }

    /// Whether `bucket`/`key` is something this function wrote (a reject or a stored
    /// request), which a notification on the same bucket would otherwise feed back in.
    fn own_output(&self, bucket: &str, key: &str) -> bool {
        let under = |store: &Arc<dyn ObjectStore>, prefix: &str| {
            let name = store.name();
            name.kind == "s3"
                && name.bucket == bucket
                && key.starts_with(&format!("{}{prefix}", name.prefix))
        };
        self.config
            .rejects
            .as_ref()
            .is_some_and(|r| under(&r.store, &r.prefix))
            || under(&self.config.requests.store, &self.config.requests.prefix)
    }

    /// Validates and writes one object; refusals are values, failures errors.
    async fn ingest(
        &self,
        origin: Origin<'_>,
        object: &str,
        bytes: &[u8],
        format: Format,
        rejects: Option<RejectTarget>,
        max_bytes: u64,
    ) -> Result<Ingested, Error> {
        let mut ledger = self.ledger.lock().await;
        let mut ingest = Ingest {
            schema: &self.config.schema,
            sink: &*self.config.sink,
            rejects,
            max_bytes: Some(max_bytes),
            ledger: Some(IngestLedger {
                ledger: &mut ledger,
                store: origin.store.to_owned(),
                bucket: origin.bucket.to_owned(),
                actor: origin.actor,
                step: STEP.to_owned(),
            }),
        };
        match ingest.object(object, bytes, format).await {
            Ok(report) => Ok(Ingested::Done(report)),
            Err(IngestError::Records(e)) => Ok(Ingested::Refused(e)),
            Err(IngestError::Sink(e)) => Err(Error::misuse(format!(
                "{object}: the sink failed (retry: writes are idempotent): {e}"
            ))),
            Err(IngestError::Store(e)) => Err(e),
            Err(e) => Err(Error::misuse(format!("{object}: {e}"))),
        }
    }

    /// Signs a checkpoint over everything appended so far, if a signer is configured. A
    /// concurrent invocation that signed one at this size or later covers these records.
    async fn checkpoint(&self) -> Result<Option<u64>, Error> {
        let Some(signer) = &self.config.signer else {
            return Ok(None);
        };
        let mut ledger = self.ledger.lock().await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match ledger.checkpoint(&**signer, now).await {
            Ok(_) => Ok(Some(ledger.len())),
            Err(_) if ledger.latest_size().await? >= ledger.len() => {
                Ok(Some(ledger.latest_size().await?))
            }
            Err(e) => Err(e),
        }
    }

    async fn on_s3_event(
        &self,
        event: &aws_lambda_events::event::s3::S3Event,
    ) -> Result<S3Outcome, Error> {
        let mut outcome = S3Outcome::default();
        let mut appended = false;
        for record in &event.records {
            let name = record.event_name.clone().unwrap_or_default();
            let bucket = record.s3.bucket.name.clone().unwrap_or_default();
            let raw = record.s3.object.key.as_deref().unwrap_or_default();
            let mut object = ObjectOutcome {
                event: name.clone(),
                bucket: bucket.clone(),
                key: raw.to_owned(),
                status: "ignored",
                report: None,
                problem: None,
                errors: Vec::new(),
            };
            let key = match decode_key(raw) {
                Ok(key) => key,
                Err(e) => {
                    object.problem = Some(e.to_string());
                    outcome.objects.push(object);
                    continue;
                }
            };
            object.key = key.clone();
            if !name.starts_with("ObjectCreated:") {
                object.problem = Some("not an ObjectCreated event".into());
            } else if self.own_output(&bucket, &key) {
                object.problem = Some("under this function's reject or request prefix".into());
            } else {
                object.status = "refused";
                match self.s3_object(&bucket, &key).await? {
                    Ok(report) => {
                        object.status = "ingested";
                        appended = true;
                        object.report = Some(report);
                    }
                    Err((problem, errors)) => {
                        object.problem = Some(problem);
                        object.errors = errors;
                    }
                }
            }
            outcome.objects.push(object);
        }
        if appended {
            outcome.checkpoint = self.checkpoint().await?;
        }
        Ok(outcome)
    }

    /// Reads and ingests one uploaded object: `Ok(Ok(report))`, `Ok(Err(refusal))`, or an
    /// error a retry may fix.
    async fn s3_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Result<ReportJson, Refusal>, Error> {
        let Some(format) = Format::from_name(key) else {
            return Ok(Err((
                format!("{key}: unknown extension (.json, .jsonl, .ndjson or .csv)"),
                Vec::new(),
            )));
        };
        let object_key = match ObjectKey::new(key) {
            Ok(k) => k,
            Err(e) => return Ok(Err((e.to_string(), Vec::new()))),
        };
        let store = self.bucket(bucket)?;
        let limit = self.config.max_object;
        // Head first: an object over the limit is refused without reading it into memory.
        let meta = match store.head(&object_key).await {
            Ok(meta) => meta,
            Err(e @ StoreError::NotFound { .. }) => {
                return Ok(Err((
                    format!("{e} (deleted since the notification)"),
                    Vec::new(),
                )));
            }
            Err(e) => return Err(e.into()),
        };
        if meta.size > limit {
            let e = RecordsError::TooLarge {
                object: key.to_owned(),
                limit,
            };
            return Ok(Err((e.to_string(), Vec::new())));
        }
        let bytes = match store.get(&object_key).await {
            Ok((bytes, _)) => bytes,
            Err(e @ StoreError::NotFound { .. }) => {
                return Ok(Err((
                    format!("{e} (deleted since the notification)"),
                    Vec::new(),
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let name = store.name();
        let ingested = self
            .ingest(
                Origin {
                    store: &name.kind,
                    bucket,
                    actor: self.config.actor.clone(),
                },
                key,
                &bytes,
                format,
                self.config.rejects.clone(),
                limit,
            )
            .await?;
        Ok(match ingested {
            Ingested::Done(report) => Ok(ReportJson {
                read: report.read,
                written: report.written.len() as u64,
                skipped: report.skipped,
                rejected: report.rejected,
                reject_object: report.reject_object,
                ledger_index: report.ledger_index,
            }),
            Ingested::Refused(e) => Err((
                e.to_string(),
                e.errors().iter().map(ErrorJson::from).collect(),
            )),
        })
    }

    /// Answers one API Gateway request; every outcome is a response.
    async fn on_http(&self, request: HttpRequest) -> Json {
        let path = request.path.trim_end_matches('/');
        if path != ROUTE {
            return error_response(404, "not found", format!("no route {:?}", request.path));
        }
        if !request.method.eq_ignore_ascii_case("POST") {
            return error_response(
                405,
                "method not allowed",
                format!("{ROUTE} takes POST, not {}", request.method),
            );
        }
        if let Some(ct) = &request.content_type {
            let mime = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if mime != "application/json" && !mime.ends_with("+json") {
                return error_response(
                    415,
                    "unsupported media type",
                    format!("the body must be application/json, not {ct:?}"),
                );
            }
        }
        let limit = self.config.max_body;
        let too_large = || {
            response(
                413,
                &json!({"error": "too large", "limit": limit,
                        "message": format!("the body is larger than the limit of {limit} bytes")}),
            )
        };
        let body = match request.body.as_deref() {
            None | Some("") => {
                return error_response(400, "empty body", "the request has no body".into());
            }
            Some(body) => body,
        };
        let bytes: Vec<u8> = if request.base64 {
            // Checked before decoding: the encoded text is 4/3 of the bytes (rounded up).
            if body.len() as u64 > limit.div_ceil(3) * 4 {
                return too_large();
            }
            match base64::engine::general_purpose::STANDARD.decode(body.trim()) {
                Ok(bytes) => bytes,
                Err(e) => {
                    return error_response(
                        400,
                        "bad base64",
                        format!("isBase64Encoded is true but the body is not base64: {e}"),
                    );
                }
            }
        } else {
            body.as_bytes().to_vec()
        };
        if bytes.len() as u64 > limit {
            return too_large();
        }
        let sha = hex(&Sha256::digest(&bytes));
        let requests = &self.config.requests;
        let key = match requests.key(&format!("{sha}.json")) {
            Ok(key) => key,
            Err(e) => return error_response(503, "misconfigured", e.to_string()),
        };
        let name = requests.store.name();
        let object = name.full_key(&key);
        // Validated before it is stored, so a refused body is never kept.
        let options = ReadOptions {
            reject: false,
            max_bytes: Some(limit),
        };
        let records =
            match read_records(&object, &bytes, Format::Json, &self.config.schema, &options) {
                Ok(records) => records,
                Err(e) => return refused(&e),
            };
        // Stored before anything is written, so the ledger record names an object that
        // exists; create-only: the same body again is the same object.
        match requests
            .store
            .put(&key, bytes.clone().into(), PutMode::Create)
            .await
        {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return unavailable(&e.to_string()),
        }
        let actor = Actor {
            source_ip: request.source_ip,
            user_agent: request.user_agent,
            ..self.config.actor.clone()
        };
        let ingested = self
            .ingest(
                Origin {
                    store: &name.kind,
                    bucket: &name.bucket,
                    actor,
                },
                &object,
                &bytes,
                Format::Json,
                None,
                limit,
            )
            .await;
        let report = match ingested {
            Ok(Ingested::Done(report)) => report,
            Ok(Ingested::Refused(e)) => return refused(&e),
            Err(e) => return unavailable(&e.to_string()),
        };
        let checkpoint = match self.checkpoint().await {
            Ok(c) => c,
            Err(e) => return unavailable(&e.to_string()),
        };
        let schema = &self.config.schema;
        let written: Vec<Json> = report
            .written
            .iter()
            .filter_map(|&index| {
                let at = records
                    .records
                    .binary_search_by_key(&index, |r| r.index)
                    .ok()?;
                Some(key_fields(schema, &records.records[at]))
            })
            .collect();
        response(
            200,
            &json!({
                "object": object,
                "read": report.read,
                "written": written,
                "skipped": report.skipped,
                "ledger_index": report.ledger_index,
                "checkpoint": checkpoint,
            }),
        )
    }
}

/// `{"device_id": "device-001", "timestamp": "..."}`: a record's key fields.
fn key_fields(schema: &RecordSchema, record: &Record) -> Json {
    let mut out = serde_json::Map::new();
    for &i in schema.key() {
        out.insert(
            schema.columns()[i].name().to_owned(),
            key_json(&record.values[i]),
        );
    }
    Json::Object(out)
}

/// 413 over the limit; 400 with every error otherwise.
fn refused(e: &RecordsError) -> Json {
    match e {
        RecordsError::TooLarge { limit, .. } => response(
            413,
            &json!({"error": "too large", "limit": limit, "message": e.to_string()}),
        ),
        _ => {
            let errors: Vec<ErrorJson> = e.errors().iter().map(ErrorJson::from).collect();
            response(
                400,
                &json!({"error": "invalid", "message": e.to_string(), "errors": errors}),
            )
        }
    }
}

/// 503: S3 or the sink failed; the client may retry the same body.
fn unavailable(reason: &str) -> Json {
    eprintln!("cipherflow-records: answering 503: {reason}");
    response(
        503,
        &json!({"error": "unavailable", "retry": true,
                "message": format!("storage failed, nothing is lost and the same body may be sent again: {reason}")}),
    )
}

/// `s3://bucket/prefix` as the bucket's store and the prefix (without `/` at either end).
#[cfg(feature = "dynamodb")]
fn s3_place(
    resolver: &crate::resolve::AwsResolver,
    var: &str,
    url: &str,
) -> Result<(Arc<dyn ObjectStore>, String), Error> {
    let Some((bucket, prefix)) = crate::resolve::split_s3_url(url)? else {
        return Err(Error::misuse(format!(
            "{var}={url:?}: expected s3://bucket/prefix"
        )));
    };
    let store = resolver
        .s3_store(&format!("s3://{bucket}"))?
        .expect("an s3:// URL");
    Ok((Arc::new(store), prefix.trim_matches('/').to_owned()))
}

/// The schema named by [`SCHEMA_VAR`]: a file packaged with the function or an S3 object.
#[cfg(feature = "dynamodb")]
async fn load_schema(
    resolver: &crate::resolve::AwsResolver,
    name: &str,
) -> Result<RecordSchema, Error> {
    match resolver.s3_text(name).await? {
        Some(text) => Ok(RecordSchema::from_toml(&text)?),
        None => Ok(RecordSchema::load(std::path::Path::new(name))?),
    }
}

#[cfg(feature = "dynamodb")]
impl RecordsHandler {
    /// The handler the environment describes (the `*_VAR` constants): schema, DynamoDB
    /// table, ledger and request prefix are required; rejects, limits and signer optional.
    pub async fn from_env(sdk: &aws_config::SdkConfig) -> Result<RecordsHandler, Error> {
        use cipherflow_core::pipeline::Resolver as _;
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let required = |name: &str, what: &str| {
            var(name).ok_or_else(|| Error::misuse(format!("{name} is not set: {what}")))
        };
        let size = |name: &str, default: u64| match var(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map_err(|_| Error::misuse(format!("{name}={v:?} is not a number of bytes"))),
        };
        let resolver = crate::resolve::AwsResolver::new(sdk);
        let schema = load_schema(
            &resolver,
            &required(SCHEMA_VAR, "the record schema (a path or s3://bucket/key)")?,
        )
        .await?;
        let table = required(TABLE_VAR, "the sink, dynamodb://TABLE")?;
        let sink = Arc::new(
            crate::dynamodb::DynamoSink::from_url(sdk, &table)
                .map_err(|e| Error::misuse(format!("{TABLE_VAR}: {e}")))?,
        );
        let ledger = s3_place(
            &resolver,
            LEDGER_VAR,
            &required(LEDGER_VAR, "the ledger, s3://bucket/prefix")?,
        )?;
        let (store, prefix) = s3_place(
            &resolver,
            REQUESTS_VAR,
            &required(REQUESTS_VAR, "where request bodies go, s3://bucket/prefix/")?,
        )?;
        let requests = Location::new(store, &prefix);
        let rejects = match var(REJECTS_VAR) {
            None => None,
            Some(url) => {
                let (store, prefix) = s3_place(&resolver, REJECTS_VAR, &url)?;
                let at = Location::new(store, &prefix);
                Some(RejectTarget {
                    store: at.store,
                    prefix: at.prefix,
                })
            }
        };
        let signer = match var(SIGNER_VAR) {
            None => None,
            Some(name) => match resolver.signer(&name)? {
                Some((signer, _)) => Some(signer),
                None => {
                    return Err(Error::misuse(format!(
                        "{SIGNER_VAR}={name:?}: expected kms:KEY"
                    )));
                }
            },
        };
        let config = Config {
            schema,
            sink,
            buckets: Box::new(move |bucket: &str| {
                let store = resolver
                    .s3_store(&format!("s3://{bucket}"))?
                    .ok_or_else(|| Error::misuse(format!("bad bucket name {bucket:?}")))?;
                Ok(Arc::new(store) as Arc<dyn ObjectStore>)
            }),
            rejects,
            requests,
            ledger,
            signer,
            max_body: size(MAX_BODY_VAR, DEFAULT_MAX_BODY)?,
            max_object: size(MAX_OBJECT_VAR, DEFAULT_MAX_OBJECT)?,
            actor: Actor::default(),
        };
        RecordsHandler::new(config).await
    }
}

/// The running function: reads the configuration, then serves invocations until the Lambda
/// runtime stops it.
#[cfg(feature = "dynamodb")]
pub async fn serve() -> Result<(), lambda_runtime::Error> {
    let config = crate::load_sdk_config().await;
    let handler = Arc::new(RecordsHandler::from_env(&config).await?);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<Json>| {
            let handler = handler.clone();
            async move { Ok::<_, lambda_runtime::Error>(handler.handle(event.payload).await?) }
        },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use cipherflow_core::SigningKey;
    use cipherflow_core::ledger::{Kind, TrustedKey, TrustedKeys};
    use cipherflow_core::records::{SinkError, SinkReport, version_seq};
    use cipherflow_core::store::{Bytes, MemoryStore, ObjectMeta, StoreName};
    use std::ops::Range;
    use std::sync::atomic::{AtomicBool, Ordering};

    const SCHEMA: &str = r#"
        name = "ProcessedRecords"
        key = ["device_id", "timestamp"]
        version = "timestamp"
        [columns.device_id]
        type = "string"
        pattern = "^device-[0-9]{3}$"
        [columns.timestamp]
        type = "timestamp"
        [columns.value]
        type = "decimal"
        min = 0
        max = 1000
        nullable = true
    "#;

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
            let trusted =
                TrustedKeys::new().with(TrustedKey::new(self.signer.verifying_key().clone()));
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

    fn s3_record(event: &str, bucket: &str, key: &str) -> Json {
        json!({
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-11-27T20:00:00.000Z", "eventName": event,
            "userIdentity": {"principalId": "AWS:X"},
            "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {},
            "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket},
                   "object": {"key": key, "size": 10}}
        })
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
        let errors: Vec<(u64, u64, &str, &str)> = objects[1]["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert_eq!(e["object"], "in/bad.jsonl");
                (
                    e["record"].as_u64().unwrap(),
                    e["line"].as_u64().unwrap(),
                    e["field"].as_str().unwrap(),
                    e["reason"].as_str().unwrap(),
                )
            })
            .collect();
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
            .handle(
                json!({"Records": [s3_record("ObjectCreated:Post", "uploads", "in/bad.jsonl")]}),
            )
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
        let errors: Vec<(u64, u64, &str, &str)> = answer["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert_eq!(e["object"], object.as_str());
                (
                    e["record"].as_u64().unwrap(),
                    e["line"].as_u64().unwrap(),
                    e["field"].as_str().unwrap(),
                    e["reason"].as_str().unwrap(),
                )
            })
            .collect();
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
}
