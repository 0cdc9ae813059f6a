//! S3 `ObjectCreated` notifications: each uploaded object is read, validated and written,
//! or reported as refused (bad input) or ignored (not an upload for this function).

use std::sync::Arc;

use cipherflow_core::Error;
use cipherflow_core::records::{Format, RecordsError};
use cipherflow_core::store::{ObjectKey, ObjectStore, StoreError};
use serde::Serialize;

use super::{ErrorJson, Ingested, Origin, RecordsHandler};
use crate::lambda::decode_key;

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

/// What an S3 invocation did: the JSON the function returns.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct S3Outcome {
    /// One per record of the event, in order.
    pub objects: Vec<ObjectOutcome>,
    /// The ledger checkpoint signed after the appends (its tree size), if a signer is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<u64>,
}

/// Why an uploaded object was refused, and its record errors.
type Refusal = (String, Vec<ErrorJson>);

impl RecordsHandler {
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

    pub(super) async fn on_s3_event(
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
}
