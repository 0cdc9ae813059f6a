//! The S3 store against the moto server (real HTTP, real SDK). See README.md for what moto
//! does not check (checksum values, SSE-KMS encryption, IAM, `If-Match` on
//! `CompleteMultipartUpload`).

mod common;

use base64::Engine;
use bytes::Bytes;
use cipherflow_aws::aws_sdk_s3::types::{ChecksumMode, ServerSideEncryption};
use cipherflow_aws::s3::{S3Options, S3Store};
use cipherflow_core::store::{ObjectKey, ObjectStore, PutMode, StoreError, Version, conformance};
use sha2::{Digest, Sha256};

fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s).unwrap()
}

/// A store on a new bucket under `prefix`.
async fn store(prefix: &str, options: S3Options) -> S3Store {
    let config = common::sdk_config().await;
    let bucket = common::unique("cipherflow");
    let store = S3Store::new(&config, &bucket, prefix, options.force_path_style(true));
    store
        .client()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("CreateBucket");
    store
}

/// Deterministic, incompressible-looking bytes.
fn pattern(len: usize, seed: u8) -> Bytes {
    let mut out = Vec::with_capacity(len);
    let mut x = u32::from(seed) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// The core's conformance suite, check by check, on a bucket under a prefix with 3-key list
/// pages, except `overwrite_changes_version`: see `identical_bytes_keep_their_etag`. (Its
/// objects are below S3's 5 MiB part minimum; multipart has its own test below.)
#[tokio::test(flavor = "multi_thread")]
async fn conformance_suite_on_s3() {
    let options = S3Options::new()
        .multipart_threshold(5 << 20)
        .part_size(5 << 20)
        .list_page_size(3);
    let store = store("suite", options).await;
    let store: &dyn ObjectStore = &store;
    conformance::round_trip(store, "conformance/").await;
    conformance::head(store, "conformance/").await;
    conformance::create_only_if_absent(store, "conformance/").await;
    conformance::update_only_at_version(store, "conformance/").await;
    conformance::racing_writers(store, "conformance/").await;
    conformance::ranges(store, "conformance/").await;
    conformance::listing(store, "conformance/").await;
    conformance::deletion(store, "conformance/").await;
    conformance::unusual_keys(store, "conformance/").await;
}

/// S3's ETag of a single-part object is the MD5 of its bytes, so two puts of identical bytes
/// share a version: the one clause of the conformance contract S3 does not meet
/// (`overwrite_changes_version`). Compare-and-swap on S3 is therefore on content: an Update
/// at the version of identical bytes succeeds, which is what a manifest swap needs.
#[tokio::test(flavor = "multi_thread")]
async fn identical_bytes_keep_their_etag() {
    let store = store("", S3Options::new()).await;
    let k = key("same");
    let first = store
        .put(&k, Bytes::from_static(b"same"), PutMode::Overwrite)
        .await
        .unwrap();
    let second = store
        .put(&k, Bytes::from_static(b"same"), PutMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(first.version, second.version);
    let third = store
        .put(
            &k,
            Bytes::from_static(b"other"),
            PutMode::Update(first.version.clone()),
        )
        .await
        .unwrap();
    assert_ne!(third.version, first.version);
}

#[tokio::test(flavor = "multi_thread")]
async fn put_get_head_range_list_delete() {
    let store = store("tables/", S3Options::new()).await;
    assert_eq!(store.describe(), format!("s3://{}/tables/", store.bucket()));
    let k = key("orders/part-0001.csv");
    let body = Bytes::from_static(b"id,total\n1,10\n2,20\n");

    let put = store
        .put(&k, body.clone(), PutMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(put.size, body.len() as u64);
    assert!(!put.version.0.is_empty());

    let (got, meta) = store.get(&k).await.unwrap();
    assert_eq!(got, body);
    assert_eq!(meta, put);
    assert_eq!(store.head(&k).await.unwrap(), put);

    // The object sits under the store's prefix in the bucket.
    let raw = store
        .client()
        .head_object()
        .bucket(store.bucket())
        .key("tables/orders/part-0001.csv")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.content_length(), Some(body.len() as i64));

    assert_eq!(store.get_range(&k, 3..8).await.unwrap(), body.slice(3..8));
    assert_eq!(
        store.get_range(&k, 0..body.len() as u64).await.unwrap(),
        body
    );
    assert_eq!(store.get_range(&k, 4..4).await.unwrap(), Bytes::new());
    #[allow(clippy::reversed_empty_ranges)] // a reversed range is one of the cases
    let bad_ranges = [5..body.len() as u64 + 1, 100..120, 9..3];
    for bad in bad_ranges {
        match store.get_range(&k, bad.clone()).await {
            Err(StoreError::InvalidRange {
                start, end, size, ..
            }) => {
                assert_eq!((start, end, size), (bad.start, bad.end, body.len() as u64));
            }
            other => panic!("range {bad:?}: {other:?}"),
        }
    }

    let listed = store.list("orders/").await.unwrap();
    assert_eq!(listed, vec![put.clone()]);
    assert!(store.list("customers/").await.unwrap().is_empty());

    store.delete(&k).await.unwrap();
    store.delete(&k).await.unwrap(); // absent: not an error
    assert!(matches!(
        store.get(&k).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.head(&k).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.get_range(&k, 0..1).await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_puts_create_only_and_compare_and_swap() {
    let store = store("", S3Options::new()).await;
    let k = key("manifest.json");

    let v1 = store
        .put(&k, Bytes::from_static(b"v1"), PutMode::Create)
        .await
        .unwrap()
        .version;
    match store
        .put(&k, Bytes::from_static(b"v1'"), PutMode::Create)
        .await
    {
        Err(StoreError::AlreadyExists { key, .. }) => assert_eq!(key, k),
        other => panic!("second create: {other:?}"),
    }

    let v2 = store
        .put(&k, Bytes::from_static(b"v2"), PutMode::Update(v1.clone()))
        .await
        .unwrap()
        .version;
    assert_ne!(v1, v2);
    match store
        .put(&k, Bytes::from_static(b"v3"), PutMode::Update(v1.clone()))
        .await
    {
        Err(StoreError::Precondition { expected, .. }) => assert_eq!(expected, v1),
        other => panic!("stale update: {other:?}"),
    }
    assert_eq!(store.get(&k).await.unwrap().0, Bytes::from_static(b"v2"));

    // Deleted meanwhile: the compare-and-swap fails too.
    store.delete(&k).await.unwrap();
    assert!(matches!(
        store
            .put(&k, Bytes::from_static(b"v4"), PutMode::Update(v2))
            .await,
        Err(StoreError::Precondition { .. })
    ));
    assert!(matches!(
        store.get(&k).await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_put_carries_a_sha256_checksum() {
    let store = store("p", S3Options::new()).await;
    let k = key("snapshot.cfe");
    let body = pattern(4096, 3);
    store
        .put(&k, body.clone(), PutMode::Overwrite)
        .await
        .unwrap();
    let head = store
        .client()
        .head_object()
        .bucket(store.bucket())
        .key("p/snapshot.cfe")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    let expected = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&body));
    assert_eq!(head.checksum_sha256(), Some(expected.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_round_trip_of_20_mib_in_5_mib_parts() {
    let options = S3Options::new()
        .multipart_threshold(5 << 20)
        .part_size(5 << 20)
        .concurrency(3);
    let store = store("big", options).await;
    let k = key("table/base.cfe");
    let body = pattern(20 << 20, 9);

    let meta = store.put(&k, body.clone(), PutMode::Create).await.unwrap();
    assert_eq!(meta.size, 20 << 20);
    // A multipart ETag names its part count.
    assert!(
        meta.version.0.trim_matches('"').ends_with("-4"),
        "{}",
        meta.version
    );
    let (got, got_meta) = store.get(&k).await.unwrap();
    assert!(got == body, "multipart object differs");
    assert_eq!(got_meta, meta);
    let start = (5 << 20) - 10;
    assert_eq!(
        store.get_range(&k, start..start + 20).await.unwrap(),
        body.slice(start as usize..start as usize + 20)
    );

    // Conditional multipart puts.
    assert!(matches!(
        store.put(&k, body.clone(), PutMode::Create).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    let stale = Version("\"not-the-etag-4\"".into());
    assert!(matches!(
        store.put(&k, body.clone(), PutMode::Update(stale)).await,
        Err(StoreError::Precondition { .. })
    ));
    let body2 = pattern(11 << 20, 10);
    let meta2 = store
        .put(&k, body2.clone(), PutMode::Update(meta.version.clone()))
        .await
        .unwrap();
    assert!(
        meta2.version.0.trim_matches('"').ends_with("-3"),
        "{}",
        meta2.version
    );
    assert!(store.get(&k).await.unwrap().0 == body2);

    // No upload left behind.
    let uploads = store
        .client()
        .list_multipart_uploads()
        .bucket(store.bucket())
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
}

#[tokio::test(flavor = "multi_thread")]
async fn list_follows_continuation_tokens_and_strips_the_prefix() {
    let store = store("state/t1", S3Options::new().list_page_size(7)).await;
    let mut expected = Vec::new();
    for i in (0..30).rev() {
        let k = key(&format!("delta/{i:03}"));
        let meta = store
            .put(&k, Bytes::from(format!("row {i}")), PutMode::Create)
            .await
            .unwrap();
        expected.push(meta);
    }
    expected.sort_by(|a, b| a.key.cmp(&b.key));
    // Outside the store's prefix, and a console-style folder marker inside it: not listed.
    for raw in ["state/t2/delta/000", "state/t1/delta/"] {
        store
            .client()
            .put_object()
            .bucket(store.bucket())
            .key(raw)
            .body(Bytes::from_static(b"x").into())
            .send()
            .await
            .unwrap();
    }

    let listed = store.list("delta/").await.unwrap();
    assert_eq!(listed.len(), 30);
    assert_eq!(listed, expected);
    assert_eq!(store.list("").await.unwrap(), expected);
    assert_eq!(
        store.list("delta/01").await.unwrap(),
        expected[10..20].to_vec()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_kms_is_requested_on_single_and_multipart_puts() {
    let config = common::sdk_config().await;
    let kms = cipherflow_aws::aws_sdk_kms::Client::new(&config);
    let state_key = kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let options = S3Options::new()
        .sse_kms_key_id(&state_key)
        .multipart_threshold(5 << 20)
        .part_size(5 << 20);
    let store = store("private", options).await;
    for (name, len) in [("small", 100), ("large", (6 << 20) + 1)] {
        store
            .put(&key(name), pattern(len, 1), PutMode::Overwrite)
            .await
            .unwrap();
        let head = store
            .client()
            .head_object()
            .bucket(store.bucket())
            .key(format!("private/{name}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.server_side_encryption(),
            Some(&ServerSideEncryption::AwsKms),
            "{name}"
        );
        assert!(
            head.ssekms_key_id()
                .is_some_and(|id| id.contains(&state_key)),
            "{name}: {:?}",
            head.ssekms_key_id()
        );
        assert_eq!(store.get(&key(name)).await.unwrap().0.len(), len);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_errors_name_the_operation_and_key() {
    let config = common::sdk_config().await;
    let store = S3Store::new(
        &config,
        common::unique("cipherflow-missing"),
        "x",
        S3Options::new().force_path_style(true),
    );
    match store.get(&key("a/b")).await {
        Err(StoreError::Backend {
            operation,
            key,
            message,
            ..
        }) => {
            assert_eq!(operation, "get");
            assert_eq!(key, "x/a/b");
            assert!(message.contains("NoSuchBucket"), "{message}");
            assert!(message.contains("HTTP 404"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}
