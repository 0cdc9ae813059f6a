//! The Lambda handler behind the `cipherflow-lambda` binary: runs a pipeline step when CDC
//! files land, and compacts one partition on request.
//!
//! Two kinds of event:
//! - **S3 `ObjectCreated` notifications** (`{"Records": [...]}`). Each record's key is
//!   form-URL-decoded (`+` is a space, `%2B` a plus, `%XX` any byte; the bytes must be UTF-8)
//!   and routed to every configured table whose landing store and prefix hold it; each such
//!   table runs [`Pipeline::run_once`] once per invocation, however many of its files the event
//!   names. The step lists the landing prefix itself, so the event only says *which* tables
//!   to step: a duplicate delivery finds nothing new and writes nothing, and concurrent
//!   invocations race on the pointer's compare-and-swap, where the loser re-reads and retries.
//!   Records of other event types or for keys no table lands are reported, not errors.
//! - **A compaction request** `{"table": "T", "partition": P}`: [`Pipeline::compact_partition`]
//!   for one partition, so compacting a wide table can fan out over many invocations (one per
//!   partition) instead of one long one. A partition with no runs is left alone.
//!
//! The configuration is one or more `pipeline.toml` files named by the environment variable
//! [`CONFIG_VAR`] (comma-separated): local paths (packaged with the function) or `s3://bucket/
//! key` objects. A configuration read from S3 has no folder of its own, so every store in it
//! must be `s3://` and every key `kms:`.

use std::path::Path;
use std::sync::Arc;

use aws_config::SdkConfig;
use aws_lambda_events::event::s3::S3Event;
use cipherflow_core::Error;
use cipherflow_core::pipeline::{Pipeline, PipelineConfig, PipelineError, StepReport};
use cipherflow_core::store::{ObjectKey, ObjectStore};
use serde::Serialize;
use serde_json::Value;

use crate::resolve::{AwsResolver, split_s3_url};

/// The environment variable naming the configuration file(s).
pub const CONFIG_VAR: &str = "CIPHERFLOW_PIPELINE";

/// The configured tables.
#[derive(Debug)]
pub struct Handler {
    pipelines: Vec<Pipeline>,
}

/// What one invocation did: the JSON the function returns.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Outcome {
    /// Each S3 record, decoded, with the table it was routed to (none: ignored).
    pub objects: Vec<RoutedObject>,
    /// One per table stepped or partition compacted.
    pub steps: Vec<StepOutcome>,
}

/// One record of an S3 event.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct RoutedObject {
    /// The event name (`ObjectCreated:Put`, ...).
    pub event: String,
    /// The bucket.
    pub bucket: String,
    /// The key, decoded.
    pub key: String,
    /// The table whose landing holds it; `None` if no table does or the event is not a
    /// creation.
    pub table: Option<String>,
}

/// One pipeline step (or compaction) and its result.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct StepOutcome {
    /// The table.
    pub table: String,
    /// The partition compacted, for a compaction request.
    pub partition: Option<u32>,
    /// Generation after the step.
    pub generation: u64,
    /// Landed objects applied.
    pub applied: Vec<String>,
    /// Landed objects already applied.
    pub skipped: usize,
    /// Changes applied.
    pub changes: u64,
    /// Partitions compacted.
    pub compacted: Vec<u32>,
    /// Attempts (above 1 when a concurrent step published first).
    pub attempts: u32,
}

impl StepOutcome {
    fn new(table: &str, partition: Option<u32>, report: StepReport) -> StepOutcome {
        StepOutcome {
            table: table.to_owned(),
            partition,
            generation: report.generation,
            applied: report.applied,
            skipped: report.skipped,
            changes: report.changes,
            compacted: report.compacted,
            attempts: report.attempts,
        }
    }
}

/// `{"table": T, "partition": P}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CompactRequest {
    table: String,
    partition: u32,
}

impl Handler {
    /// The tables of the configuration(s) named by [`CONFIG_VAR`].
    pub async fn from_env(config: &SdkConfig) -> Result<Handler, Error> {
        let names = std::env::var(CONFIG_VAR).map_err(|_| {
            Error::misuse(format!(
                "{CONFIG_VAR} is not set: name the pipeline.toml (a path or s3://bucket/key)"
            ))
        })?;
        let resolver = AwsResolver::new(config);
        let mut pipelines = Vec::new();
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            pipelines.push(load(&resolver, name).await?);
        }
        Handler::new(pipelines)
    }

    /// These pipelines, one per table (names must differ).
    pub fn new(mut pipelines: Vec<Pipeline>) -> Result<Handler, Error> {
        if pipelines.is_empty() {
            return Err(Error::misuse(format!(
                "{CONFIG_VAR} names no configuration"
            )));
        }
        let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok();
        if let Some(function) = &function {
            for pipeline in &mut pipelines {
                pipeline.actor.principal = format!("aws-lambda:{function}");
            }
        }
        let mut names: Vec<&str> = pipelines.iter().map(|p| &*p.table.name).collect();
        names.sort_unstable();
        if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::misuse(format!(
                "table {} is configured twice",
                twice[0]
            )));
        }
        Ok(Handler { pipelines })
    }

    /// The configured pipelines.
    pub fn pipelines(&self) -> &[Pipeline] {
        &self.pipelines
    }

    /// Handles one event (see the module documentation).
    pub async fn handle(&self, event: Value) -> Result<Outcome, Error> {
        if event.get("Records").is_some() {
            let event: S3Event = serde_json::from_value(event)
                .map_err(|e| Error::misuse(format!("not an S3 event: {e}")))?;
            return self.on_s3_event(&event).await;
        }
        if event.get("table").is_some() {
            let request: CompactRequest = serde_json::from_value(event).map_err(|e| {
                Error::misuse(format!(
                    "a compaction request is {{\"table\": T, \"partition\": P}}: {e}"
                ))
            })?;
            let pipeline = self.table(&request.table)?;
            let report = pipeline.compact_partition(request.partition).await?;
            return Ok(Outcome {
                objects: Vec::new(),
                steps: vec![StepOutcome::new(
                    &request.table,
                    Some(request.partition),
                    report,
                )],
            });
        }
        Err(Error::misuse(
            "unrecognised event: neither S3 notification records nor {\"table\", \"partition\"}",
        ))
    }

    fn table(&self, name: &str) -> Result<&Pipeline, Error> {
        self.pipelines
            .iter()
            .find(|p| p.table.name == name)
            .ok_or_else(|| Error::misuse(format!("no table {name:?} is configured")))
    }

    async fn on_s3_event(&self, event: &S3Event) -> Result<Outcome, Error> {
        let mut outcome = Outcome::default();
        let mut tables: Vec<usize> = Vec::new();
        for record in &event.records {
            let name = record.event_name.clone().unwrap_or_default();
            let bucket = record.s3.bucket.name.clone().unwrap_or_default();
            let raw = record.s3.object.key.as_deref().unwrap_or_default();
            let key = decode_key(raw)?;
            let table = if name.starts_with("ObjectCreated:") {
                self.pipelines.iter().position(|p| lands(p, &bucket, &key))
            } else {
                None
            };
            if let Some(i) = table
                && !tables.contains(&i)
            {
                tables.push(i);
            }
            outcome.objects.push(RoutedObject {
                event: name,
                bucket,
                key,
                table: table.map(|i| self.pipelines[i].table.name.clone()),
            });
        }
        for i in tables {
            let pipeline = &self.pipelines[i];
            let report = pipeline.run_once().await?;
            outcome
                .steps
                .push(StepOutcome::new(&pipeline.table.name, None, report));
        }
        Ok(outcome)
    }
}

/// Whether `key` in `bucket` is under the pipeline's landing store and prefix.
fn lands(pipeline: &Pipeline, bucket: &str, key: &str) -> bool {
    let landing = &pipeline.stores.landing;
    let name = landing.store.name();
    name.kind == "s3"
        && name.bucket == bucket
        && key
            .strip_prefix(&name.prefix)
            .is_some_and(|rest| rest.starts_with(&landing.prefix) && ObjectKey::new(rest).is_ok())
}

/// Decodes an S3 notification's object key: form-URL encoding, where `+` is a space and
/// `%XX` a byte. The decoded bytes must be UTF-8 (every `ObjectKey` is).
pub fn decode_key(raw: &str) -> Result<String, Error> {
    let bad = |reason: &str| Error::misuse(format!("S3 event key {raw:?}: {reason}"));
    let mut bytes = Vec::with_capacity(raw.len());
    let mut input = raw.bytes();
    while let Some(b) = input.next() {
        match b {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = [input.next(), input.next()];
                let digit = |d: Option<u8>| d.and_then(|d| (d as char).to_digit(16));
                match (digit(hex[0]), digit(hex[1])) {
                    (Some(hi), Some(lo)) => bytes.push((hi * 16 + lo) as u8),
                    _ => return Err(bad("a % is not followed by two hex digits")),
                }
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).map_err(|_| bad("decodes to bytes that are not UTF-8"))
}

/// Loads one configuration: a local file, or an `s3://` object whose names must all be
/// `s3://` stores and `kms:` keys.
async fn load(resolver: &AwsResolver, name: &str) -> Result<Pipeline, Error> {
    let Some((bucket, key)) = split_s3_url(name)? else {
        let path = Path::new(name);
        let config = PipelineConfig::load(path)?;
        return config.pipeline(path, Some(resolver));
    };
    let store = resolver
        .s3_store(&format!("s3://{bucket}"))?
        .expect("an s3:// URL");
    let key = ObjectKey::new(key).map_err(Error::from)?;
    let (bytes, _) = store.get(&key).await?;
    let source = Path::new(name);
    let text = std::str::from_utf8(&bytes).map_err(|_| config_error(name, "not UTF-8"))?;
    let config = PipelineConfig::parse(text, source)?;
    if let Some(local) = config
        .names()
        .into_iter()
        .find(|n| !n.starts_with("s3://") && !n.starts_with("kms:"))
    {
        return Err(config_error(
            name,
            &format!(
                "{local:?} is a local name, but a configuration read from S3 has no folder: \
                 use s3:// stores and kms: keys"
            ),
        ));
    }
    config.pipeline(source, Some(resolver))
}

fn config_error(source: &str, reason: &str) -> Error {
    PipelineError::Config {
        source_name: source.to_owned(),
        reason: reason.to_owned(),
    }
    .into()
}

/// The running function: loads the configuration, then serves invocations until the Lambda
/// runtime stops it.
pub async fn serve() -> Result<(), lambda_runtime::Error> {
    let config = crate::load_sdk_config().await;
    let handler = Arc::new(Handler::from_env(&config).await?);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<Value>| {
            let handler = handler.clone();
            async move {
                let outcome = handler.handle(event.payload).await?;
                Ok::<_, lambda_runtime::Error>(
                    serde_json::to_value(outcome).expect("an outcome serialises"),
                )
            }
        },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_as_form_url_encoding() {
        assert_eq!(
            decode_key("cdc/a+b%2Bc%20d.csv").unwrap(),
            "cdc/a b+c d.csv"
        );
        assert_eq!(decode_key("%C3%A9t%C3%A9").unwrap(), "été");
        assert_eq!(decode_key("plain/key.csv").unwrap(), "plain/key.csv");
        assert!(decode_key("bad%2").is_err());
        assert!(decode_key("bad%zz").is_err());
        assert!(decode_key("%FF").is_err());
    }
}
