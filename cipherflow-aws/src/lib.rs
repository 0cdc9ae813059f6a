//! CipherFlow on AWS. This crate will hold the KMS key wrapper and signer, the S3 object
//! store and the Lambda handler, each behind its own cargo feature (issue: cipherflow-aws);
//! none has landed yet, so it only re-exports the core for now.
#![forbid(unsafe_code)]

pub use cipherflow_core as core;
