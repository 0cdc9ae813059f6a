//! The handler behind the `cipherflow-records` binary: validated records into a
//! [`RecordSink`] (DynamoDB in the binary) from two kinds of event, each object or request
//! recorded in the ledger (`docs/RECORDS.md`, section "Lambda handlers").
//!
//! - **S3 `ObjectCreated` notifications** (`{"Records": [...]}`, seed 001: a device uploads a
//!   file, the function validates it into the table). Each record's key is form-URL-decoded
//!   ([`crate::lambda::decode_key`]), the object read, its format taken from the extension
//!   (`.json`, `.jsonl`/`.ndjson`, `.csv`) and run through [`Ingest`] (read, then write). A
//!   refused object (a bad record without a reject prefix, an unknown extension, over the size
//!   limit) is reported in the answer with every error, and is not a Lambda error: a retry cannot
//!   make bad input good. An S3, DynamoDB or ledger failure is an error, so Lambda retries the
//!   event; the sink is idempotent, so the retry writes only what the failed attempt did not.
//! - **API Gateway proxy events** for `POST /records` (seed 003), in both payload formats:
//!   REST APIs (payload 1.0, `httpMethod`) and HTTP APIs (payload 2.0, `requestContext.http`).
//!   The body is a JSON array of records or one record (base64 when `isBase64Encoded`). The
//!   answer is always an HTTP response, never a Lambda error: 200 with the keys written, 400
//!   with every field error, 413 over the size limit, 415 for a declared non-JSON content type,
//!   404/405 for other paths and methods, 503 when S3 or the sink failed (retrying the same
//!   body is safe). The body is validated once ([`Ingest::read`]); an accepted body is stored
//!   create-only under the requests prefix, named by its SHA-256, before its records are
//!   written ([`Ingest::write`]), and its ledger record names that object.
//!
//! Configuration is read once per cold start from the environment variables named by the
//! `*_VAR` constants ([`RecordsHandler::from_env`]).
//!
//! Modules: `config` (the environment), `s3_event` (uploads), `http` (API Gateway).

mod config;
mod http;
mod s3_event;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cipherflow_core::Error;
use cipherflow_core::ledger::{Actor, Ledger};
use cipherflow_core::records::{
    Format, Ingest, IngestError, IngestLedger, IngestReport, RecordError, RecordSchema,
    RecordsError, RejectTarget, Validated,
};
use cipherflow_core::store::{ObjectKey, ObjectStore, StoreError};
use serde::Serialize;
use serde_json::Value as Json;

pub use config::{
    Config, DEFAULT_MAX_BODY, DEFAULT_MAX_OBJECT, LEDGER_VAR, MAX_BODY_VAR, MAX_OBJECT_VAR,
    OpenBucket, REJECTS_VAR, REQUESTS_VAR, SCHEMA_VAR, SIGNER_VAR, TABLE_VAR,
};
use http::HttpRequest;
pub use http::ROUTE;
pub use s3_event::{ObjectOutcome, ReportJson, S3Outcome};

/// The ledger records' step.
pub const STEP: &str = "lambda records";

/// The configured handler, kept warm across invocations.
pub struct RecordsHandler {
    config: Config,
    /// One handle per instance; Lambda runs one invocation at a time per instance, and other
    /// instances append through their own handles (see [`open_ledger`]).
    ledger: tokio::sync::Mutex<Ledger>,
    /// Bucket stores opened so far.
    opened: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
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
    Done(IngestReport),
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

    /// The ingestion of one object under the configured schema and sink, without the
    /// ledger: enough to validate ([`Ingest::read`]) without taking the ledger's lock.
    fn ingestion(&self, rejects: Option<RejectTarget>, max_bytes: Option<u64>) -> Ingest<'_> {
        Ingest {
            schema: &self.config.schema,
            sink: &*self.config.sink,
            rejects,
            max_bytes,
            ledger: None,
        }
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
        let validated = match self
            .ingestion(rejects.clone(), Some(max_bytes))
            .read(object, bytes, format)
        {
            Ok(validated) => validated,
            Err(e) => return Ok(Ingested::Refused(e)),
        };
        Ok(Ingested::Done(
            self.write(origin, &validated, rejects).await?,
        ))
    }

    /// Writes an object [`Ingest::read`] validated (its rejects to `rejects`) and records it
    /// in the ledger; every error is one a retry may fix.
    async fn write(
        &self,
        origin: Origin<'_>,
        validated: &Validated,
        rejects: Option<RejectTarget>,
    ) -> Result<IngestReport, Error> {
        let mut ledger = self.ledger.lock().await;
        let mut ingest = Ingest {
            ledger: Some(IngestLedger {
                ledger: &mut ledger,
                store: origin.store.to_owned(),
                bucket: origin.bucket.to_owned(),
                actor: origin.actor,
                step: STEP.to_owned(),
            }),
            ..self.ingestion(rejects, None)
        };
        let object = &validated.records().object;
        ingest.write(validated).await.map_err(|e| match e {
            IngestError::Sink(e) => Error::misuse(format!(
                "{object}: the sink failed (retry: writes are idempotent): {e}"
            )),
            IngestError::Store(e) => e,
            e => Error::misuse(format!("{object}: {e}")),
        })
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
