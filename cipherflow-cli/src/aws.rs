//! `kms:KEY` key arguments, `s3://bucket/key` file arguments and `dynamodb://TABLE` ingest
//! targets (cargo feature `aws`).
//!
//! Credentials, region and endpoint come from the standard AWS environment and profiles
//! (`AWS_PROFILE`, `AWS_REGION`, `AWS_ENDPOINT_URL`, ...). With a custom endpoint, S3 is
//! addressed path-style (`http://host/bucket/key`), as S3-compatible stores and emulators
//! need. A `kms:` recipient wraps locally with the key's public key, fetched once with
//! `kms:GetPublicKey`; a `kms:` private key unwraps through `kms:Decrypt`; a `kms:` signing
//! key signs through `kms:Sign`; a `kms:` verifying key is the key's public key.

use std::sync::{Arc, OnceLock};

use cipherflow_aws::aws_config::{self, BehaviorVersion, SdkConfig};
use cipherflow_aws::aws_sdk_kms::Client as KmsClient;
use cipherflow_aws::dynamodb::DynamoSink;
use cipherflow_aws::kms::{KmsDecrypt, KmsPublicKey, KmsSigner};
use cipherflow_core::records::RecordSink;
use cipherflow_core::store::{ObjectKey, ObjectStore, PutMode};
use cipherflow_core::{Error as CoreError, KeyUnwrapper, KeyWrapper, Signer, VerifyingKey};

use crate::error::{Context, Error};

/// One runtime and one SDK configuration for the process.
struct Aws {
    runtime: tokio::runtime::Runtime,
    config: SdkConfig,
}

fn aws() -> Result<&'static Aws, Error> {
    static AWS: OnceLock<Aws> = OnceLock::new();
    if let Some(aws) = AWS.get() {
        return Ok(aws);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the AWS client runtime", e))?;
    let config = runtime.block_on(aws_config::defaults(BehaviorVersion::latest()).load());
    Ok(AWS.get_or_init(|| Aws { runtime, config }))
}

fn kms() -> Result<(&'static Aws, KmsClient), Error> {
    let aws = aws()?;
    Ok((aws, KmsClient::new(&aws.config)))
}

fn kms_error(what: &str, key: &str) -> impl FnOnce() -> String {
    let text = format!("{what} kms:{key}");
    move || text
}

/// A `kms:` recipient: wraps locally with the public key (`kms:GetPublicKey`, once).
pub fn recipient(key: &str) -> Result<Box<dyn KeyWrapper>, Error> {
    let (aws, client) = kms()?;
    let public = aws
        .runtime
        .block_on(KmsPublicKey::fetch(&client, key))
        .map_err(CoreError::from)
        .context(kms_error("fetching the public key of", key))?;
    Ok(Box::new(public))
}

/// A `kms:` private key: unwraps through `kms:Decrypt`.
pub fn unwrapper(key: &str) -> Result<Box<dyn KeyUnwrapper>, Error> {
    let (aws, client) = kms()?;
    let decrypt = aws
        .runtime
        .block_on(KmsDecrypt::new(&client, key))
        .map_err(CoreError::from)
        .context(kms_error("preparing to decrypt with", key))?;
    Ok(Box::new(decrypt))
}

/// A `kms:` signing key: signs through `kms:Sign`.
pub fn signer(key: &str) -> Result<Box<dyn Signer>, Error> {
    let (aws, client) = kms()?;
    let signer = aws
        .runtime
        .block_on(KmsSigner::new(&client, key))
        .map_err(CoreError::from)
        .context(kms_error("preparing to sign with", key))?;
    Ok(Box::new(signer))
}

/// A `kms:` signing key's public key.
pub fn verifier(key: &str) -> Result<VerifyingKey, Error> {
    let (aws, client) = kms()?;
    let signer = aws
        .runtime
        .block_on(KmsSigner::new(&client, key))
        .map_err(CoreError::from)
        .context(kms_error("fetching the public key of", key))?;
    Ok(signer.verifying_key().clone())
}

/// Opens the `s3://` stores and `kms:` keys of a `pipeline.toml`.
pub fn resolver() -> Result<cipherflow_aws::resolve::AwsResolver, Error> {
    Ok(cipherflow_aws::resolve::AwsResolver::new(&aws()?.config))
}

/// An `s3://bucket/prefix` store (the prefix may be empty).
pub fn store(url: &str) -> Result<Arc<dyn ObjectStore>, Error> {
    let store = resolver()?
        .s3_store(url)
        .context(|| format!("opening {url}"))?
        .ok_or_else(|| Error::Usage(format!("{url} is not an s3:// URL")))?;
    Ok(Arc::new(store))
}

/// The `dynamodb://TABLE` record sink (`cipherflow ingest --to`).
pub fn dynamo_sink(url: &str) -> Result<Box<dyn RecordSink>, Error> {
    let sink = DynamoSink::from_url(&aws()?.config, url)
        .map_err(|e| Error::Usage(format!("--to {url}: {}", e.reason)))?;
    Ok(Box::new(sink))
}

/// Reads the object `s3://bucket/key` whole.
pub fn get(url: &str) -> Result<Vec<u8>, Error> {
    let (store, key) = object(url)?;
    let aws = aws()?;
    let (bytes, _) = aws
        .runtime
        .block_on(store.get(&key))
        .map_err(CoreError::from)
        .context(|| format!("reading {url}"))?;
    Ok(bytes.to_vec())
}

/// Writes the object `s3://bucket/key` (replacing it).
pub fn put(url: &str, bytes: Vec<u8>) -> Result<(), Error> {
    let (store, key) = object(url)?;
    let aws = aws()?;
    aws.runtime
        .block_on(store.put(&key, bytes.into(), PutMode::Overwrite))
        .map_err(CoreError::from)
        .context(|| format!("writing {url}"))?;
    Ok(())
}

/// Drives a store future (S3 needs the runtime; local stores do not mind it).
pub fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, Error> {
    Ok(aws()?.runtime.block_on(future))
}

fn object(url: &str) -> Result<(Arc<dyn ObjectStore>, ObjectKey), Error> {
    let (bucket, key) = split(url)?;
    let key = ObjectKey::new(key)
        .map_err(CoreError::from)
        .context(|| format!("object {url}"))?;
    Ok((store(&format!("s3://{bucket}"))?, key))
}

fn split(url: &str) -> Result<(&str, &str), Error> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| Error::Usage(format!("{url} is not an s3:// URL")))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::Usage(format!("{url}: no bucket")));
    }
    Ok((bucket, key))
}
