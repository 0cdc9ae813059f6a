//! API Gateway proxy requests for `POST /records`, in both payload formats: the request
//! read from the event, the body checked, validated once, stored and written, and every
//! outcome answered as an HTTP response.

use base64::Engine as _;
use cipherflow_core::ledger::Actor;
use cipherflow_core::records::{Format, Record, RecordSchema, RecordsError, Value};
use cipherflow_core::store::{PutMode, StoreError};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use super::{ErrorJson, Origin, RecordsHandler};

/// The only route.
pub const ROUTE: &str = "/records";

/// An API Gateway proxy request, read from either payload format.
#[derive(Debug)]
pub(super) struct HttpRequest {
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
    pub(super) fn parse(event: &Json) -> Option<HttpRequest> {
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

/// Lower-case hexadecimal, for the stored body's name.
pub(super) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl RecordsHandler {
    /// Answers one API Gateway request; every outcome is a response.
    pub(super) async fn on_http(&self, request: HttpRequest) -> Json {
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
        // Validated once, before it is stored, so a refused body is never kept; the same
        // validated records are then written.
        let validated = match self
            .ingestion(None, Some(limit))
            .read(&object, &bytes, Format::Json)
        {
            Ok(validated) => validated,
            Err(e) => return refused(&e),
        };
        // Stored before anything is written, so the ledger record names an object that
        // exists; create-only: the same body again is the same object.
        match requests
            .store
            .put(&key, bytes.into(), PutMode::Create)
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
        let origin = Origin {
            store: &name.kind,
            bucket: &name.bucket,
            actor,
        };
        let report = match self.write(origin, &validated, None).await {
            Ok(report) => report,
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
                let records = &validated.records().records;
                let at = records.binary_search_by_key(&index, |r| r.index).ok()?;
                Some(key_fields(schema, &records[at]))
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
