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
//!   Records of other event types, for keys no table lands, or whose keys do not decode are
//!   reported, not errors.
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
    /// The key, decoded (as sent if it does not decode).
    pub key: String,
    /// The table whose landing holds it; `None` if no table does, the event is not a
    /// creation, or the key does not decode.
    pub table: Option<String>,
    /// Why the key could not be decoded, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
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
            // A key that does not decode cannot be a landed object any table reads (object
            // keys are UTF-8): it is reported, not retried.
            let (key, problem) = match decode_key(raw) {
                Ok(key) => (key, None),
                Err(e) => (raw.to_owned(), Some(e.to_string())),
            };
            let table = if name.starts_with("ObjectCreated:") && problem.is_none() {
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
                problem,
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

/// One S3 notification record as AWS sends it (`key` form-URL-encoded already), for both
/// handlers' unit tests.
#[cfg(test)]
pub(crate) fn s3_record(event: &str, bucket: &str, key: &str) -> serde_json::Value {
    serde_json::json!({
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-27T20:00:00.000Z", "eventName": event,
        "userIdentity": {"principalId": "AWS:X"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {},
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket},
               "object": {"key": key, "size": 10}}
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cipherflow_core::cdc::{DmsOptions, KeySpec, TableSchema};
    use cipherflow_core::ledger::Actor;
    use cipherflow_core::pipeline::{InputFormat, Keys, Location, Stores, Table};
    use cipherflow_core::store::{Bytes, MemoryStore, ObjectMeta, PutMode, StoreError, StoreName};
    use cipherflow_core::{RsaPrivateKey, RsaPublicKey};
    use std::ops::Range;

    /// A memory store that names itself as the S3 bucket `landing`, prefix `raw/`, as the
    /// handler's routing reads it.
    #[derive(Debug, Default)]
    struct FakeBucket(MemoryStore);

    #[async_trait::async_trait]
    impl ObjectStore for FakeBucket {
        fn describe(&self) -> String {
            "s3://landing/raw/".into()
        }
        fn name(&self) -> StoreName {
            StoreName {
                kind: "s3".into(),
                bucket: "landing".into(),
                prefix: "raw/".into(),
            }
        }
        async fn put(
            &self,
            key: &ObjectKey,
            bytes: Bytes,
            mode: PutMode,
        ) -> Result<ObjectMeta, StoreError> {
            self.0.put(key, bytes, mode).await
        }
        async fn get(&self, key: &ObjectKey) -> Result<(Bytes, ObjectMeta), StoreError> {
            self.0.get(key).await
        }
        async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes, StoreError> {
            self.0.get_range(key, range).await
        }
        async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
            self.0.head(key).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
            self.0.list(prefix).await
        }
        async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
            self.0.delete(key).await
        }
    }

    fn key_file(name: &str) -> Vec<u8> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cipherflow-core/tests/data");
        std::fs::read(dir.join(name)).unwrap()
    }

    fn handler(landing: Arc<FakeBucket>) -> Handler {
        let other: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let state = RsaPrivateKey::from_bytes(&key_file("producer-rsa.pem")).unwrap();
        let pipeline = Pipeline {
            table: Table {
                name: "t".into(),
                schema: TableSchema::new(
                    vec!["id".into(), "name".into()],
                    &KeySpec::parse_list("id:int64").unwrap(),
                )
                .unwrap(),
                key: "id:int64".into(),
                partitions: 2,
            },
            stores: Stores {
                landing: Location::new(landing, "cdc t/"),
                state: Location::new(other.clone(), "state"),
                share: Location::new(other.clone(), "share"),
                ledger: Location::new(other, "ledger"),
            },
            keys: Keys {
                recipients: vec![Arc::new(
                    RsaPublicKey::from_bytes(&key_file("alice.pub.pem")).unwrap(),
                )],
                state_seal: Arc::new(state.public_key().clone()),
                state_open: Arc::new(state),
                signer: None,
                state_verifier: None,
            },
            input: InputFormat::Dms(DmsOptions::default()),
            compact_after: 8,
            actor: Actor::default(),
        };
        Handler::new(vec![pipeline]).unwrap()
    }

    #[tokio::test]
    async fn events_route_by_bucket_and_decoded_prefix_and_step_each_table_once() {
        let landing = Arc::new(FakeBucket::default());
        for name in ["a+1.csv", "b 2.csv"] {
            let key = ObjectKey::new(format!("cdc t/{name}")).unwrap();
            // Ids 1 to 8: both partitions get changes.
            let rows: String = (1..=8).map(|id| format!("{id},{name}\n")).collect();
            let csv = format!("id,name\n{rows}");
            landing
                .put(&key, csv.into_bytes().into(), PutMode::Create)
                .await
                .unwrap();
        }
        let handler = handler(landing);
        let event = serde_json::json!({"Records": [
            s3_record("ObjectCreated:Put", "landing", "raw/cdc+t/a%2B1.csv"),
            s3_record("ObjectCreated:Put", "landing", "raw/cdc+t/b+2.csv"),
            s3_record("ObjectCreated:Put", "elsewhere", "raw/cdc+t/a%2B1.csv"),
            s3_record("ObjectCreated:Put", "landing", "cdc+t/a%2B1.csv"),
            s3_record("ObjectRemoved:Delete", "landing", "raw/cdc+t/a%2B1.csv"),
            s3_record("ObjectCreated:Put", "landing", "raw/cdc+t/%FF.csv"),
        ]});
        let outcome = handler.handle(event.clone()).await.unwrap();
        let routed: Vec<(&str, Option<&str>)> = outcome
            .objects
            .iter()
            .map(|o| (o.key.as_str(), o.table.as_deref()))
            .collect();
        assert_eq!(
            routed,
            [
                ("raw/cdc t/a+1.csv", Some("t")),
                ("raw/cdc t/b 2.csv", Some("t")),
                ("raw/cdc t/a+1.csv", None),
                ("cdc t/a+1.csv", None),
                ("raw/cdc t/a+1.csv", None),
                ("raw/cdc+t/%FF.csv", None),
            ]
        );
        assert!(
            outcome.objects[5]
                .problem
                .as_deref()
                .unwrap()
                .contains("not UTF-8")
        );
        // Two records of one table: one step, applying both files.
        assert_eq!(outcome.steps.len(), 1);
        let step = &outcome.steps[0];
        assert_eq!((step.generation, step.applied.len()), (1, 2));

        // Delivered again: the step finds both applied.
        let again = handler.handle(event).await.unwrap();
        assert_eq!((again.steps[0].generation, again.steps[0].skipped), (1, 2));

        // Compaction on request, then again (nothing left to compact).
        let request = serde_json::json!({"table": "t", "partition": 1});
        let first = handler.handle(request.clone()).await.unwrap();
        assert_eq!(first.steps[0].compacted, [1]);
        let second = handler.handle(request).await.unwrap();
        assert!(second.steps[0].compacted.is_empty());
        assert_eq!(second.steps[0].generation, first.steps[0].generation);

        for bad in [
            serde_json::json!({"table": "nope", "partition": 0}),
            serde_json::json!({"table": "t", "partition": 9}),
            serde_json::json!({"something": "else"}),
        ] {
            assert!(handler.handle(bad.clone()).await.is_err(), "{bad}");
        }
    }

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
