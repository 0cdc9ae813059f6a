//! CipherFlow on AWS: each AWS piece behind its own cargo feature, so a build pulls in only
//! the SDK crates it uses, and `cipherflow-core` never depends on the SDK.
//!
//! - `kms`: [`kms::KmsPublicKey`] and [`kms::KmsEncrypt`] (key wrappers),
//!   [`kms::KmsDecrypt`] (key unwrapper) and [`kms::KmsSigner`] (signer) on AWS KMS keys.
//! - `s3`: [`s3::S3Store`], the core's `ObjectStore` on an S3 bucket.
//! - `dynamodb`: [`dynamodb::DynamoSink`], the records `RecordSink` on a DynamoDB table,
//!   idempotent by the schema's version field.
//! - `kms` and `s3` together: [`resolve::AwsResolver`], which opens the `s3://` stores and
//!   `kms:` keys a `pipeline.toml` names.
//! - `lambda`: [`lambda::Handler`], the `cipherflow-lambda` function: pipeline steps on S3
//!   `ObjectCreated` events, and one partition's compaction on request; and
//!   [`records_lambda::RecordsHandler`], validated records from S3 uploads and
//!   `POST /records` (the `cipherflow-records` function, which also needs `dynamodb`).
//!
//! See the crate README for the IAM permissions each mode needs and what the emulator-based
//! tests can and cannot show.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use cipherflow_core as core;

#[cfg(feature = "dynamodb")]
pub mod dynamodb;
#[cfg(feature = "kms")]
pub mod kms;
#[cfg(feature = "lambda")]
pub mod lambda;
#[cfg(feature = "lambda")]
pub mod records_lambda;
#[cfg(all(feature = "kms", feature = "s3"))]
pub mod resolve;
#[cfg(feature = "kms")]
mod runtime;
#[cfg(feature = "s3")]
pub mod s3;

/// The SDK configuration from aws-config's standard chain (environment, profiles, SSO, web
/// identity, container and instance metadata; `AWS_ENDPOINT_URL` honoured), for building a
/// KMS client with `aws_sdk_kms::Client::new(&config)` or an [`s3::S3Store`].
#[cfg(any(feature = "kms", feature = "s3", feature = "dynamodb"))]
pub async fn load_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

#[cfg(any(feature = "kms", feature = "s3", feature = "dynamodb"))]
pub use aws_config;
#[cfg(feature = "dynamodb")]
pub use aws_sdk_dynamodb;
#[cfg(feature = "kms")]
pub use aws_sdk_kms;
#[cfg(feature = "s3")]
pub use aws_sdk_s3;
