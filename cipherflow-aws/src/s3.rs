//! Amazon S3 (or an S3-compatible store) as an [`ObjectStore`]: a bucket and a key prefix.
//!
//! - Every put carries `x-amz-checksum-sha256`, computed here, so S3 refuses bytes damaged on
//!   the way; objects above [`S3Options::multipart_threshold`] go up as a multipart upload
//!   whose parts are slices of the caller's [`Bytes`] (no copies), a bounded number in flight,
//!   each with its own SHA-256; a failed upload is aborted so no parts linger.
//! - [`PutMode::Create`] sends `If-None-Match: *` and [`PutMode::Update`] sends `If-Match` with
//!   the ETag, on `PutObject` and on `CompleteMultipartUpload`: S3 itself decides a race, so
//!   two pipeline runs cannot both win. A [`Version`] is the object's ETag as S3 quotes it.
//! - Optional SSE-KMS with a given key, for the pipeline's private state.
//! - Everything is awaited; nothing here blocks a runtime thread.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectOutput};
use aws_sdk_s3::operation::{RequestId, RequestIdExt};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ServerSideEncryption,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use cipherflow_core::store::{
    ObjectKey, ObjectMeta, ObjectStore, PutMode, StoreError, StoreName, Version,
};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

/// S3's smallest part (all but the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// S3's largest part.
pub const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
/// S3's most parts in one upload.
pub const MAX_PARTS: usize = 10_000;
const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
const DEFAULT_CONCURRENCY: usize = 4;

/// How an [`S3Store`] talks to S3. Start from [`S3Options::default`] and set what differs.
#[derive(Clone, Debug)]
pub struct S3Options {
    multipart_threshold: usize,
    part_size: usize,
    concurrency: usize,
    list_page_size: Option<i32>,
    sse_kms_key_id: Option<String>,
    endpoint_url: Option<String>,
    force_path_style: bool,
    retry: Option<RetryConfig>,
    timeout: Option<TimeoutConfig>,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            multipart_threshold: DEFAULT_PART_SIZE,
            part_size: DEFAULT_PART_SIZE,
            concurrency: DEFAULT_CONCURRENCY,
            list_page_size: None,
            sse_kms_key_id: None,
            endpoint_url: None,
            force_path_style: false,
            retry: None,
            timeout: None,
        }
    }
}

impl S3Options {
    /// The defaults: multipart above 8 MiB, 8 MiB parts, 4 parts in flight, no SSE-KMS, the
    /// endpoint, retry and timeout settings of the `SdkConfig` (or environment).
    pub fn new() -> Self {
        Self::default()
    }

    /// Objects larger than this go up as multipart uploads (default 8 MiB).
    pub fn multipart_threshold(mut self, bytes: usize) -> Self {
        self.multipart_threshold = bytes;
        self
    }

    /// Size of each part but the last (default 8 MiB). Raised automatically for an object
    /// that would need more than 10,000 parts.
    ///
    /// # Panics
    /// Outside S3's limits, 5 MiB to 5 GiB.
    pub fn part_size(mut self, bytes: usize) -> Self {
        assert!(
            (MIN_PART_SIZE..=MAX_PART_SIZE).contains(&bytes),
            "S3 part size must be 5 MiB to 5 GiB, got {bytes}"
        );
        self.part_size = bytes;
        self
    }

    /// Parts uploaded at once (default 4). Memory is not the bound (parts are slices of the
    /// caller's bytes); this bounds connections and request buffers.
    ///
    /// # Panics
    /// If zero.
    pub fn concurrency(mut self, parts: usize) -> Self {
        assert!(parts > 0, "S3 upload concurrency must be at least 1");
        self.concurrency = parts;
        self
    }

    /// Keys asked for per `ListObjectsV2` page (S3's default and maximum is 1000).
    ///
    /// # Panics
    /// Outside 1 to 1000.
    pub fn list_page_size(mut self, keys: i32) -> Self {
        assert!(
            (1..=1000).contains(&keys),
            "S3 list page size must be 1 to 1000, got {keys}"
        );
        self.list_page_size = Some(keys);
        self
    }

    /// Encrypt every object written with SSE-KMS under this key (id, ARN or alias).
    pub fn sse_kms_key_id(mut self, key: impl Into<String>) -> Self {
        self.sse_kms_key_id = Some(key.into());
        self
    }

    /// Talk to this endpoint instead of AWS's (an S3-compatible store, an emulator).
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Address buckets as `endpoint/bucket/key` instead of `bucket.endpoint/key` (most
    /// S3-compatible stores need this).
    pub fn force_path_style(mut self, yes: bool) -> Self {
        self.force_path_style = yes;
        self
    }

    /// The SDK's retry settings (attempts, backoff, adaptive mode).
    pub fn retry_config(mut self, retry: RetryConfig) -> Self {
        self.retry = Some(retry);
        self
    }

    /// The SDK's timeouts (connect, read, per attempt, per operation).
    pub fn timeout_config(mut self, timeout: TimeoutConfig) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Shorthand for a timeout per whole operation (retries included).
    pub fn operation_timeout(self, timeout: Duration) -> Self {
        self.timeout_config(TimeoutConfig::builder().operation_timeout(timeout).build())
    }
}

/// An [`ObjectStore`] on an S3 bucket, under a key prefix.
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    options: S3Options,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("options", &self.options)
            .finish()
    }
}

impl S3Store {
    /// A store on `bucket` under `prefix` (`""` for the whole bucket; a `/` is added when
    /// missing), with a client built from `config` and `options`.
    pub fn new(
        config: &SdkConfig,
        bucket: impl Into<String>,
        prefix: &str,
        options: S3Options,
    ) -> S3Store {
        let mut builder = aws_sdk_s3::config::Builder::from(config);
        if let Some(url) = &options.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        if options.force_path_style {
            builder = builder.force_path_style(true);
        }
        if let Some(retry) = &options.retry {
            builder = builder.retry_config(retry.clone());
        }
        if let Some(timeout) = &options.timeout {
            builder = builder.timeout_config(timeout.clone());
        }
        let prefix = prefix.trim_matches('/');
        S3Store {
            client: Client::from_conf(builder.build()),
            bucket: bucket.into(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            options,
        }
    }

    /// Credentials, region and endpoint from aws-config's standard chain (environment,
    /// profiles, SSO, web identity, container and instance metadata; `AWS_ENDPOINT_URL` and
    /// `AWS_ENDPOINT_URL_S3` honoured), default options.
    pub async fn from_env(bucket: impl Into<String>, prefix: &str) -> S3Store {
        Self::from_env_with(bucket, prefix, S3Options::default()).await
    }

    /// As [`S3Store::from_env`], with options (which win over the environment).
    pub async fn from_env_with(
        bucket: impl Into<String>,
        prefix: &str,
        options: S3Options,
    ) -> S3Store {
        let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
        Self::new(&config, bucket, prefix, options)
    }

    /// The S3 client, for what this store does not do (creating buckets, lifecycle rules).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix, `""` or ending in `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn s3_key(&self, key: &ObjectKey) -> String {
        format!("{}{}", self.prefix, key.as_str())
    }

    fn meta(key: &ObjectKey, size: u64, etag: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            key: key.clone(),
            size,
            version: Version(etag.unwrap_or_default().to_owned()),
        }
    }

    /// GetObject of `s3_key`, or of a byte range of it (`bytes=A-B`).
    async fn get_object(
        &self,
        s3_key: &str,
        range: Option<String>,
    ) -> Result<GetObjectOutput, SdkError<GetObjectError, HttpResponse>> {
        self.client
            .get_object()
            .bucket(&self.bucket)
            .key(s3_key)
            .set_range(range)
            .send()
            .await
    }

    /// Reads a GetObject body whole.
    async fn read_body(
        &self,
        operation: &'static str,
        s3_key: &str,
        body: ByteStream,
    ) -> Result<Bytes, StoreError> {
        match body.collect().await {
            Ok(data) => Ok(data.into_bytes()),
            Err(e) => Err(StoreError::Backend {
                store: self.describe(),
                operation,
                key: s3_key.to_owned(),
                message: format!("reading the body: {e}"),
                source: Some(Box::new(e)),
            }),
        }
    }

    fn backend<E>(
        &self,
        operation: &'static str,
        key: &str,
        err: SdkError<E, HttpResponse>,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut message = match (err.code(), err.message()) {
            (Some(code), Some(text)) => format!("{code}: {text}"),
            (Some(code), None) => code.to_owned(),
            _ => DisplayErrorContext(&err).to_string(),
        };
        if let Some(status) = err.raw_response().map(HttpStatus::status_code) {
            message.push_str(&format!(" (HTTP {status})"));
        }
        if let Some(id) = err.request_id() {
            message.push_str(&format!(" [request id {id}"));
            if let Some(ext) = err.extended_request_id() {
                message.push_str(&format!(", extended request id {ext}"));
            }
            message.push(']');
        }
        StoreError::Backend {
            store: self.describe(),
            operation,
            key: key.to_owned(),
            message,
            source: Some(Box::new(err)),
        }
    }

    fn not_found(&self, key: &ObjectKey) -> StoreError {
        StoreError::NotFound {
            store: self.describe(),
            key: key.clone(),
        }
    }

    /// A refused conditional write, by mode: S3 answers 412 (condition false), 409 (a
    /// concurrent conditional write won) or, for `If-Match` on a missing key, 404.
    fn condition_failed(&self, key: &ObjectKey, mode: &PutMode, status: u16) -> Option<StoreError> {
        match (mode, status) {
            (PutMode::Create, 409 | 412) => Some(StoreError::AlreadyExists {
                store: self.describe(),
                key: key.clone(),
            }),
            (PutMode::Update(expected), 404 | 409 | 412) => Some(StoreError::Precondition {
                store: self.describe(),
                key: key.clone(),
                expected: expected.clone(),
            }),
            _ => None,
        }
    }

    async fn put_single(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        mode: &PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        let s3_key = self.s3_key(key);
        let size = bytes.len() as u64;
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&s3_key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(sha256_base64(&bytes))
            .body(ByteStream::from(bytes));
        if let Some(kms_key) = &self.options.sse_kms_key_id {
            request = request
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(kms_key);
        }
        request = match mode {
            PutMode::Overwrite => request,
            PutMode::Create => request.if_none_match("*"),
            PutMode::Update(version) => request.if_match(&version.0),
        };
        match request.send().await {
            Ok(out) => Ok(Self::meta(key, size, out.e_tag())),
            Err(err) => Err(object_status(&err)
                .and_then(|s| self.condition_failed(key, mode, s))
                .unwrap_or_else(|| self.backend("put", &s3_key, err))),
        }
    }

    async fn put_multipart(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        mode: &PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        // Fail before uploading anything when the condition is already false; the
        // conditional CompleteMultipartUpload below is what decides a race.
        if *mode != PutMode::Overwrite {
            let current = match self.head(key).await {
                Ok(meta) => Some(meta.version),
                Err(StoreError::NotFound { .. }) => None,
                Err(err) => return Err(err),
            };
            let refused = match (mode, current) {
                (PutMode::Create, Some(_)) => Some(412),
                (PutMode::Update(expected), Some(version)) if &version != expected => Some(412),
                (PutMode::Update(_), None) => Some(404),
                _ => None,
            };
            if let Some(err) = refused.and_then(|s| self.condition_failed(key, mode, s)) {
                return Err(err);
            }
        }
        let s3_key = self.s3_key(key);
        let size = bytes.len() as u64;
        let mut create = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&s3_key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256);
        if let Some(kms_key) = &self.options.sse_kms_key_id {
            create = create
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(kms_key);
        }
        let upload_id = create
            .send()
            .await
            .map_err(|e| self.backend("put (create multipart upload)", &s3_key, e))?
            .upload_id
            .ok_or_else(|| StoreError::Backend {
                store: self.describe(),
                operation: "put (create multipart upload)",
                key: s3_key.clone(),
                message: "S3 returned no UploadId".into(),
                source: None,
            })?;
        let result = self
            .upload_parts_and_complete(key, &s3_key, &upload_id, bytes, mode)
            .await;
        if result.is_err() {
            // Best effort: the upload's parts would otherwise be billed until a lifecycle
            // rule removes them. The original error is the one worth reporting.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&s3_key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result.map(|etag| Self::meta(key, size, etag.as_deref()))
    }

    async fn upload_parts_and_complete(
        &self,
        key: &ObjectKey,
        s3_key: &str,
        upload_id: &str,
        bytes: Bytes,
        mode: &PutMode,
    ) -> Result<Option<String>, StoreError> {
        let part_size = part_size_for(bytes.len(), self.options.part_size);
        let count = bytes.len().div_ceil(part_size);
        let mut parts: Vec<Option<CompletedPart>> = vec![None; count];
        let mut in_flight = JoinSet::new();
        let mut next = 0;
        while next < count || !in_flight.is_empty() {
            while next < count && in_flight.len() < self.options.concurrency {
                let start = next * part_size;
                let body = bytes.slice(start..(start + part_size).min(bytes.len()));
                let number = i32::try_from(next + 1).expect("at most 10,000 parts");
                let request = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(s3_key)
                    .upload_id(upload_id)
                    .part_number(number);
                in_flight.spawn(async move {
                    let checksum = sha256_base64(&body);
                    let out = request
                        .checksum_algorithm(ChecksumAlgorithm::Sha256)
                        .checksum_sha256(&checksum)
                        .body(ByteStream::from(body))
                        .send()
                        .await;
                    (number, checksum, out)
                });
                next += 1;
            }
            let Some(done) = in_flight.join_next().await else {
                break;
            };
            let (number, checksum, out) = match done {
                Ok(done) => done,
                Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
                Err(join) => {
                    return Err(StoreError::Backend {
                        store: self.describe(),
                        operation: "put (upload part)",
                        key: s3_key.to_owned(),
                        message: format!("part upload task cancelled: {join}"),
                        source: None,
                    });
                }
            };
            // Dropping `in_flight` on error aborts the parts still uploading.
            let out = out.map_err(|e| self.backend("put (upload part)", s3_key, e))?;
            parts[(number - 1) as usize] = Some(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag)
                    .checksum_sha256(checksum)
                    .build(),
            );
        }
        let parts: Vec<CompletedPart> = parts
            .into_iter()
            .map(|p| p.expect("every part uploaded"))
            .collect();
        let mut complete = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(s3_key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        complete = match mode {
            PutMode::Overwrite => complete,
            PutMode::Create => complete.if_none_match("*"),
            PutMode::Update(version) => complete.if_match(&version.0),
        };
        match complete.send().await {
            Ok(out) => Ok(out.e_tag),
            Err(err) => Err(object_status(&err)
                .and_then(|s| self.condition_failed(key, mode, s))
                .unwrap_or_else(|| self.backend("put (complete multipart upload)", s3_key, err))),
        }
    }

    fn invalid_range(&self, key: &ObjectKey, range: &Range<u64>, size: u64) -> StoreError {
        StoreError::InvalidRange {
            store: self.describe(),
            key: key.clone(),
            start: range.start,
            end: range.end,
            size,
        }
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn name(&self) -> StoreName {
        StoreName {
            kind: "s3".into(),
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
        }
    }

    async fn put(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        mode: PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        if bytes.len() > self.options.multipart_threshold && bytes.len() > MIN_PART_SIZE {
            self.put_multipart(key, bytes, &mode).await
        } else {
            self.put_single(key, bytes, &mode).await
        }
    }

    async fn get(&self, key: &ObjectKey) -> Result<(Bytes, ObjectMeta), StoreError> {
        let s3_key = self.s3_key(key);
        let out = match self.get_object(&s3_key, None).await {
            Ok(out) => out,
            Err(err) if object_status(&err) == Some(404) => return Err(self.not_found(key)),
            Err(err) => return Err(self.backend("get", &s3_key, err)),
        };
        let etag = out.e_tag;
        let bytes = self.read_body("get", &s3_key, out.body).await?;
        let meta = Self::meta(key, bytes.len() as u64, etag.as_deref());
        Ok((bytes, meta))
    }

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes, StoreError> {
        // HTTP cannot ask for an empty range, and S3 silently shortens one that runs past the
        // end: both need the size.
        if range.start >= range.end {
            let size = self.head(key).await?.size;
            if range.start > range.end || range.end > size {
                return Err(self.invalid_range(key, &range, size));
            }
            return Ok(Bytes::new());
        }
        let s3_key = self.s3_key(key);
        let bytes_range = format!("bytes={}-{}", range.start, range.end - 1);
        let out = match self.get_object(&s3_key, Some(bytes_range)).await {
            Ok(out) => out,
            Err(err) if object_status(&err) == Some(404) => return Err(self.not_found(key)),
            Err(err) if object_status(&err) == Some(416) => {
                let size = self.head(key).await?.size;
                return Err(self.invalid_range(key, &range, size));
            }
            Err(err) => return Err(self.backend("get range", &s3_key, err)),
        };
        let total = out
            .content_range()
            .and_then(|r| r.rsplit_once('/'))
            .and_then(|(_, total)| total.parse::<u64>().ok());
        let bytes = self.read_body("get range", &s3_key, out.body).await?;
        match total {
            Some(size) if range.end > size => Err(self.invalid_range(key, &range, size)),
            _ if bytes.len() as u64 != range.end - range.start => {
                let size = self.head(key).await?.size;
                Err(self.invalid_range(key, &range, size))
            }
            _ => Ok(bytes),
        }
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        let s3_key = self.s3_key(key);
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&s3_key)
            .send()
            .await
        {
            Ok(out) => Ok(Self::meta(
                key,
                out.content_length().unwrap_or_default().max(0) as u64,
                out.e_tag(),
            )),
            Err(err) if object_status(&err) == Some(404) => Err(self.not_found(key)),
            Err(err) => Err(self.backend("head", &s3_key, err)),
        }
    }

    /// Keys under the store's prefix that are not valid [`ObjectKey`]s (a console's `dir/`
    /// marker, `a//b`) are left out: no method of this store can name them.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let full_prefix = format!("{}{prefix}", self.prefix);
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full_prefix)
                .set_max_keys(self.options.list_page_size)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.backend("list", &full_prefix, e))?;
            for object in out.contents() {
                let Some(relative) = object.key().and_then(|k| k.strip_prefix(&self.prefix)) else {
                    continue;
                };
                let Ok(key) = ObjectKey::new(relative) else {
                    continue;
                };
                let size = object.size().unwrap_or_default().max(0) as u64;
                found.push(Self::meta(&key, size, object.e_tag()));
            }
            match out.next_continuation_token() {
                Some(next) if out.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        let s3_key = self.s3_key(key);
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&s3_key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if object_status(&err) == Some(404) => Ok(()),
            Err(err) => Err(self.backend("delete", &s3_key, err)),
        }
    }
}

/// The HTTP status of a service error about the object (none for a transport failure, and
/// none for a missing bucket, whose 404 must not read as a missing object).
fn object_status<E, R>(err: &SdkError<E, R>) -> Option<u16>
where
    E: ProvideErrorMetadata,
    R: HttpStatus,
{
    if err.code() == Some("NoSuchBucket") {
        return None;
    }
    err.raw_response().map(HttpStatus::status_code)
}

/// The status code of an SDK raw response; a trait so `status` need not name the SDK's
/// response type.
trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

fn sha256_base64(bytes: &[u8]) -> String {
    BASE64.encode(Sha256::digest(bytes))
}

/// The configured part size, raised (in whole MiB) if the object would need more than
/// `MAX_PARTS` parts.
fn part_size_for(len: usize, configured: usize) -> usize {
    const MIB: usize = 1024 * 1024;
    let needed = len.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    configured.max(needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_stays_unless_too_many_parts() {
        assert_eq!(part_size_for(20 << 20, 5 << 20), 5 << 20);
        let huge = 100_000usize << 20; // 100,000 MiB needs 10 MiB parts.
        let size = part_size_for(huge, 5 << 20);
        assert_eq!(size, 10 << 20);
        assert!(huge.div_ceil(size) <= MAX_PARTS);
    }

    #[test]
    fn checksum_is_base64_sha256() {
        // SHA-256("abc"), as S3 expects it in x-amz-checksum-sha256.
        assert_eq!(
            sha256_base64(b"abc"),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }

    #[test]
    #[should_panic(expected = "5 MiB to 5 GiB")]
    fn part_size_below_s3_minimum_is_refused() {
        let _ = S3Options::new().part_size(1024);
    }
}
