//! Shared set-up for the tests against the moto server (see `run-moto-tests.sh`).
#![allow(dead_code)] // each test binary uses its own part of this module

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use cipherflow_aws::aws_config::{self, BehaviorVersion, Region, SdkConfig};
use cipherflow_aws::aws_sdk_kms::config::Credentials;

/// The emulator's endpoint. Unset is a failure, not a skip: a CI run that forgot to start the
/// server must not pass by testing nothing.
pub fn endpoint() -> String {
    std::env::var("CIPHERFLOW_MOTO_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "CIPHERFLOW_MOTO_ENDPOINT is not set: these tests need the moto server; \
             run cipherflow-aws/tests/run-moto-tests.sh"
        )
    })
}

/// SDK configuration for the emulator: its endpoint, static test credentials, us-east-1.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "moto-tests",
        ))
        .load()
        .await
}

/// A name no other test (or earlier run against the same server) uses.
pub fn unique(stem: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{stem}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
