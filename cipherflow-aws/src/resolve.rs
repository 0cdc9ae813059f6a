//! `s3://` stores and `kms:` keys named in a `pipeline.toml`: the [`Resolver`] the core's
//! configuration calls for names it cannot open itself (the core never links the AWS SDK).
//!
//! | name | opens | KMS calls |
//! | --- | --- | --- |
//! | `s3://bucket/prefix` in `[stores]` | an [`S3Store`] on the bucket, under the prefix | none |
//! | `kms:KEY` as a recipient or `state_public` | [`KmsPublicKey`]: wraps locally | one `GetPublicKey` |
//! | `kms:KEY` as `state_private` | [`KmsDecrypt`] | `GetPublicKey`, then `Decrypt` per state object opened |
//! | `kms:KEY` as `signer` | [`KmsSigner`], and its public key as the verifier | `GetPublicKey`, then `Sign` per object |
//!
//! `KEY` is a key id, key ARN, alias name (`alias/x`) or alias ARN. The state key may be one
//! KMS RSA key named twice (`state_public` and `state_private`), so the pipeline's own state
//! needs no key material outside KMS either.

use std::sync::Arc;

use aws_config::SdkConfig;
use aws_sdk_kms::Client as KmsClient;
use cipherflow_core::pipeline::{ResolvedSigner, Resolver};
use cipherflow_core::store::{ObjectKey, ObjectStore};
use cipherflow_core::{Error, KeyUnwrapper, KeyWrapper, Signer, Verifier};

use crate::kms::{KmsDecrypt, KmsPublicKey, KmsSigner};
use crate::runtime;
use crate::s3::{S3Options, S3Store};

/// Opens `s3://` and `kms:` names with one SDK configuration.
#[derive(Clone, Debug)]
pub struct AwsResolver {
    config: SdkConfig,
    kms: KmsClient,
    s3: S3Options,
}

impl AwsResolver {
    /// Clients from `config`. With a custom endpoint (an S3-compatible store or an emulator:
    /// `config.endpoint_url()`, `AWS_ENDPOINT_URL` or `AWS_ENDPOINT_URL_S3`), S3 is addressed
    /// path-style (`http://host/bucket/key`).
    pub fn new(config: &SdkConfig) -> AwsResolver {
        let custom_endpoint = config.endpoint_url().is_some()
            || std::env::var_os("AWS_ENDPOINT_URL").is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        AwsResolver {
            config: config.clone(),
            kms: KmsClient::new(config),
            s3: S3Options::default().force_path_style(custom_endpoint),
        }
    }

    /// KMS requests through `client` (e.g. one with interceptors, or another region).
    pub fn with_kms_client(mut self, client: KmsClient) -> AwsResolver {
        self.kms = client;
        self
    }

    /// The options of every store it opens (SSE-KMS, retries, timeouts, ...).
    pub fn with_s3_options(mut self, options: S3Options) -> AwsResolver {
        self.s3 = options;
        self
    }

    /// The store `s3://bucket/prefix` names (also for callers outside a configuration).
    pub fn s3_store(&self, url: &str) -> Result<Option<S3Store>, Error> {
        let Some((bucket, prefix)) = split_s3_url(url)? else {
            return Ok(None);
        };
        Ok(Some(S3Store::new(
            &self.config,
            bucket,
            prefix,
            self.s3.clone(),
        )))
    }
}

impl AwsResolver {
    /// The UTF-8 text of the object `s3://bucket/key` (a schema or a configuration named by
    /// URL); `None` for a name that is not an `s3://` URL.
    pub async fn s3_text(&self, url: &str) -> Result<Option<String>, Error> {
        let Some((bucket, key)) = split_s3_url(url)? else {
            return Ok(None);
        };
        let store = S3Store::new(&self.config, bucket, "", self.s3.clone());
        let (bytes, _) = store.get(&ObjectKey::new(key)?).await?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::misuse(format!("{url}: not UTF-8 text")))?;
        Ok(Some(text))
    }
}

/// `s3://bucket/rest` as (`bucket`, `rest`); `None` for a name that is not an `s3://` URL.
pub fn split_s3_url(url: &str) -> Result<Option<(&str, &str)>, Error> {
    let Some(rest) = url.strip_prefix("s3://") else {
        return Ok(None);
    };
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::misuse(format!("{url}: no bucket")));
    }
    Ok(Some((bucket, key)))
}

/// The key name after `kms:`, or `None`.
fn kms_name(name: &str) -> Result<Option<String>, Error> {
    match name.strip_prefix("kms:") {
        None => Ok(None),
        Some("") => Err(Error::misuse(format!("{name}: no key after kms:"))),
        Some(key) => Ok(Some(key.to_owned())),
    }
}

impl Resolver for AwsResolver {
    fn store(&self, name: &str) -> Result<Option<Arc<dyn ObjectStore>>, Error> {
        Ok(self
            .s3_store(name)?
            .map(|store| Arc::new(store) as Arc<dyn ObjectStore>))
    }

    fn text(&self, name: &str) -> Result<Option<String>, Error> {
        if !name.starts_with("s3://") {
            return Ok(None);
        }
        let resolver = self.clone();
        let name = name.to_owned();
        runtime::block_on(async move { resolver.s3_text(&name).await })
    }

    fn wrapper(&self, name: &str) -> Result<Option<Arc<dyn KeyWrapper>>, Error> {
        let Some(key) = kms_name(name)? else {
            return Ok(None);
        };
        let client = self.kms.clone();
        let public = runtime::block_on(async move { KmsPublicKey::fetch(&client, key).await })?;
        Ok(Some(Arc::new(public)))
    }

    fn unwrapper(&self, name: &str) -> Result<Option<Arc<dyn KeyUnwrapper>>, Error> {
        let Some(key) = kms_name(name)? else {
            return Ok(None);
        };
        let client = self.kms.clone();
        let decrypt = runtime::block_on(async move { KmsDecrypt::new(&client, key).await })?;
        Ok(Some(Arc::new(decrypt)))
    }

    fn signer(&self, name: &str) -> Result<Option<ResolvedSigner>, Error> {
        let Some(key) = kms_name(name)? else {
            return Ok(None);
        };
        let client = self.kms.clone();
        let signer = runtime::block_on(async move { KmsSigner::new(&client, key).await })?;
        let verifier = Arc::new(signer.verifying_key().clone()) as Arc<dyn Verifier>;
        Ok(Some((Arc::new(signer) as Arc<dyn Signer>, verifier)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_split_into_bucket_and_rest() {
        assert_eq!(split_s3_url("s3://b/p/q/").unwrap(), Some(("b", "p/q/")));
        assert_eq!(split_s3_url("s3://b").unwrap(), Some(("b", "")));
        assert_eq!(split_s3_url("landing").unwrap(), None);
        assert!(split_s3_url("s3:///key").is_err());
    }

    #[test]
    fn kms_names_need_a_key() {
        assert_eq!(kms_name("kms:alias/x").unwrap().as_deref(), Some("alias/x"));
        assert_eq!(kms_name("keys/a.pem").unwrap(), None);
        assert!(kms_name("kms:").is_err());
    }
}
