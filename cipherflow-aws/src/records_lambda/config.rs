//! The handler's configuration: what it needs ([`Config`]) and, in the binary, how the
//! environment describes it (`RecordsHandler::from_env`, the `*_VAR` constants).

use std::sync::Arc;

use cipherflow_core::Error;
use cipherflow_core::Signer;
use cipherflow_core::ledger::Actor;
use cipherflow_core::pipeline::Location;
use cipherflow_core::records::{RecordSchema, RecordSink, RejectTarget};
use cipherflow_core::store::ObjectStore;

#[cfg(feature = "dynamodb")]
use super::RecordsHandler;

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
