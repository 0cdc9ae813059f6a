//! KMS key wrapping, unwrapping and signing against the moto server (real HTTP, real SDK).
//! The launcher gives moto real RSA-OAEP and AWS's PSS salt length; see README.md for what
//! it cannot check.

mod common;

use std::sync::Mutex;

use cipherflow_aws::aws_sdk_kms::Client;
use cipherflow_aws::aws_sdk_kms::types::{KeySpec, KeyUsageType};
use cipherflow_aws::kms::{KmsDecrypt, KmsEncrypt, KmsErrorKind, KmsPublicKey, KmsSigner};
use cipherflow_core::{
    Error, IntegrityError, KeyError, KeyId, KeyUnwrapper, KeyWrapper, Opener, RsaPrivateKey,
    RsaPublicKey, Sealer, SignatureAlgorithm, SignatureError, Signer, Verifier, VerifyingKey,
    WrapAlgorithm,
};

const PLAINTEXT: &[u8] = b"id,name\n1,alice\n2,bob\n";

async fn client() -> Client {
    Client::new(&common::sdk_config().await)
}

/// Creates a key and an alias for it; returns (key id, alias).
async fn create_key(client: &Client, spec: KeySpec, usage: KeyUsageType) -> (String, String) {
    let key_id = client
        .create_key()
        .key_spec(spec)
        .key_usage(usage)
        .send()
        .await
        .expect("CreateKey")
        .key_metadata
        .expect("key metadata")
        .key_id;
    let alias = format!("alias/{}", common::unique("cipherflow"));
    client
        .create_alias()
        .alias_name(&alias)
        .target_key_id(&key_id)
        .send()
        .await
        .expect("CreateAlias");
    (key_id, alias)
}

async fn rsa_key(client: &Client) -> (String, String) {
    create_key(client, KeySpec::Rsa2048, KeyUsageType::EncryptDecrypt).await
}

async fn spki_of(client: &Client, key: &str) -> Vec<u8> {
    client
        .get_public_key()
        .key_id(key)
        .send()
        .await
        .expect("GetPublicKey")
        .public_key
        .expect("public key")
        .into_inner()
}

/// The plain-thread call site: set-up on a runtime, then the synchronous trait calls from this
/// test's own thread, outside any runtime.
#[test]
fn local_wrap_from_the_public_key_opens_with_kms_decrypt_outside_a_runtime() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (wrapper, unwrapper, spki, key_id) = rt.block_on(async {
        let client = client().await;
        let (key_id, alias) = rsa_key(&client).await;
        let wrapper = KmsPublicKey::fetch(&client, &alias).await.unwrap();
        // A consumer with only kms:Decrypt: the key id comes from the published public key.
        let spki = spki_of(&client, &alias).await;
        let unwrapper = KmsDecrypt::with_key_id(&client, &alias, KeyId::of_spki(&spki));
        (wrapper, unwrapper, spki, key_id)
    });
    drop(rt);

    // The key id is the one a local copy of the public key has.
    let local = RsaPublicKey::from_bytes(&spki).unwrap();
    assert_eq!(KeyWrapper::key_id(&wrapper), local.key_id());
    assert_eq!(KeyUnwrapper::key_id(&unwrapper), local.key_id());
    assert_eq!(wrapper.wrapped_len(), 256);
    // The alias was resolved once (moto answers the key id where AWS answers the ARN).
    assert!(
        wrapper.kms_key().ends_with(&key_id),
        "{}",
        wrapper.kms_key()
    );

    let envelope = Sealer::new(&[&wrapper]).seal_bytes(PLAINTEXT).unwrap();
    let opened = Opener::new(&unwrapper).open_bytes(&envelope).unwrap();
    assert_eq!(opened, PLAINTEXT);
}

/// The runtime call site: the synchronous trait methods called straight from async code on
/// a multi-thread runtime, and the async forms too.
#[tokio::test(flavor = "multi_thread")]
async fn kms_encrypt_and_local_wrap_both_open_with_kms_decrypt_inside_a_runtime() {
    let client = client().await;
    let (key_a, alias_a) = rsa_key(&client).await;
    let (_, alias_b) = rsa_key(&client).await;
    let via_encrypt = KmsEncrypt::new(&client, &key_a).await.unwrap();
    let via_public_key = KmsPublicKey::fetch(&client, &alias_b).await.unwrap();
    let open_a = KmsDecrypt::new(&client, &alias_a).await.unwrap();
    let open_b = KmsDecrypt::new(&client, &alias_b).await.unwrap();
    assert_eq!(
        KeyWrapper::key_id(&via_encrypt),
        KeyUnwrapper::key_id(&open_a)
    );
    assert_eq!(
        KeyWrapper::key_id(&via_public_key),
        KeyUnwrapper::key_id(&open_b)
    );
    assert_eq!(
        KeyWrapper::key_id(&via_encrypt),
        KeyId::of_spki(&spki_of(&client, &key_a).await)
    );

    // One envelope, one recipient wrapped by kms:Encrypt and one wrapped locally.
    let envelope = Sealer::new(&[&via_encrypt, &via_public_key])
        .seal_bytes(PLAINTEXT)
        .unwrap();
    assert_eq!(
        Opener::new(&open_a).open_bytes(&envelope).unwrap(),
        PLAINTEXT
    );
    assert_eq!(
        Opener::new(&open_b).open_bytes(&envelope).unwrap(),
        PLAINTEXT
    );

    // The async forms round-trip a wrap plaintext of the format's size.
    let data = [7u8; 66];
    let wrapped = via_encrypt.wrap_async(&data).await.unwrap();
    assert_eq!(wrapped.len(), 256);
    let unwrapped = open_a
        .unwrap_async(WrapAlgorithm::RsaOaepSha256, &wrapped)
        .await
        .unwrap();
    assert_eq!(unwrapped.as_slice(), data);
}

/// A current-thread runtime has no other worker: the sync call must not need this one.
#[tokio::test(flavor = "current_thread")]
async fn sync_kms_calls_on_a_current_thread_runtime_do_not_deadlock() {
    let client = client().await;
    let (key, _) = rsa_key(&client).await;
    let wrapper = KmsEncrypt::new(&client, &key).await.unwrap();
    let unwrapper = KmsDecrypt::new(&client, &key).await.unwrap();
    let envelope = Sealer::new(&[&wrapper]).seal_bytes(PLAINTEXT).unwrap();
    assert_eq!(
        Opener::new(&unwrapper).open_bytes(&envelope).unwrap(),
        PLAINTEXT
    );
}

/// Records what it wraps, so a test can find and alter the wrapped key in an envelope.
struct Recording<'a> {
    inner: &'a dyn KeyWrapper,
    wrapped: Mutex<Vec<u8>>,
}

impl KeyWrapper for Recording<'_> {
    fn key_id(&self) -> KeyId {
        self.inner.key_id()
    }
    fn algorithm(&self) -> WrapAlgorithm {
        self.inner.algorithm()
    }
    fn wrapped_len(&self) -> usize {
        self.inner.wrapped_len()
    }
    fn wrap(&self, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let wrapped = self.inner.wrap(plaintext)?;
        *self.wrapped.lock().unwrap() = wrapped.clone();
        Ok(wrapped)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_or_foreign_wrapped_key_fails_as_opaquely_as_a_local_key() {
    let client = client().await;
    let (key, alias) = rsa_key(&client).await;
    let (other_key, _) = rsa_key(&client).await;
    let public = KmsPublicKey::fetch(&client, &alias).await.unwrap();
    let unwrapper = KmsDecrypt::new(&client, &key).await.unwrap();

    // Flip one bit of the wrapped key inside the envelope.
    let recording = Recording {
        inner: &public,
        wrapped: Mutex::new(Vec::new()),
    };
    let mut envelope = Sealer::new(&[&recording]).seal_bytes(PLAINTEXT).unwrap();
    let wrapped = recording.wrapped.lock().unwrap().clone();
    let at = envelope
        .windows(wrapped.len())
        .position(|w| w == wrapped.as_slice())
        .expect("the wrapped key is in the header");
    envelope[at + 100] ^= 0x01;
    let err = Opener::new(&unwrapper).open_bytes(&envelope).unwrap_err();
    assert!(
        matches!(err, Error::Integrity(IntegrityError::Header)),
        "{err:?}"
    );

    // The trait itself: InvalidCiphertextException becomes the opaque header failure.
    let mut bad = public.wrap(&[1u8; 66]).unwrap();
    bad[0] ^= 0x80;
    let err = unwrapper
        .unwrap(WrapAlgorithm::RsaOaepSha256, &bad)
        .unwrap_err();
    assert!(
        matches!(err, Error::Integrity(IntegrityError::Header)),
        "{err:?}"
    );

    // A KMS key that is not the recipient, claiming the recipient's key id: KMS cannot
    // decrypt, and that too is the opaque failure.
    let envelope = Sealer::new(&[&public]).seal_bytes(PLAINTEXT).unwrap();
    let impostor = KmsDecrypt::with_key_id(&client, &other_key, KeyWrapper::key_id(&public));
    let err = Opener::new(&impostor).open_bytes(&envelope).unwrap_err();
    assert!(
        matches!(err, Error::Integrity(IntegrityError::Header)),
        "{err:?}"
    );

    // The right key id check happens before any KMS call.
    let other = KmsDecrypt::new(&client, &other_key).await.unwrap();
    let err = Opener::new(&other).open_bytes(&envelope).unwrap_err();
    assert!(matches!(err, Error::WrongKey { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kms_errors_keep_their_kind_code_and_request_id() {
    let client = client().await;

    let err = KmsPublicKey::fetch(&client, "alias/cipherflow-no-such-key")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), KmsErrorKind::NotFound, "{err}");
    assert_eq!(err.code(), Some("NotFoundException"));
    assert_eq!(err.operation(), "GetPublicKey");
    let request_id = err
        .request_id()
        .expect("moto sends a request id")
        .to_owned();
    let core: Error = err.into();
    assert!(matches!(core, Error::Key(KeyError::OperationFailed(_))));
    assert!(core.to_string().contains(&request_id), "{core}");

    // A signing key is not a wrapping key, and an encryption key is not a signing key.
    let (sign_key, _) = create_key(&client, KeySpec::EccNistP256, KeyUsageType::SignVerify).await;
    let err = KmsPublicKey::fetch(&client, &sign_key).await.unwrap_err();
    assert_eq!(err.kind(), KmsErrorKind::UnsuitableKey, "{err}");
    let (rsa, _) = rsa_key(&client).await;
    let err = KmsSigner::new(&client, &rsa).await.unwrap_err();
    assert_eq!(err.kind(), KmsErrorKind::UnsuitableKey, "{err}");
    assert!(matches!(
        Error::from(err),
        Error::Key(KeyError::Unsupported(_))
    ));

    // A disabled key: kms:Encrypt refuses, with the AWS error code in the core error.
    let wrapper = KmsEncrypt::new(&client, &rsa).await.unwrap();
    client.disable_key().key_id(&rsa).send().await.unwrap();
    let err = wrapper.wrap_async(&[0u8; 66]).await.unwrap_err();
    assert_eq!(err.kind(), KmsErrorKind::Disabled, "{err}");
    assert!(err.request_id().is_some());
    let err = Sealer::new(&[&wrapper]).seal_bytes(PLAINTEXT).unwrap_err();
    assert!(
        matches!(&err, Error::Key(KeyError::OperationFailed(m)) if m.contains("DisabledException")),
        "{err:?}"
    );
}

/// Signs with a KMS key of `spec` and checks it every way a consumer would.
async fn check_kms_signing(spec: KeySpec, algorithm: SignatureAlgorithm, signature_len: usize) {
    let client = client().await;
    let (key, alias) = create_key(&client, spec, KeyUsageType::SignVerify).await;
    let signer = KmsSigner::new(&client, &alias).await.unwrap();
    assert_eq!(signer.algorithm(), algorithm);
    assert_eq!(signer.signature_len(), signature_len);

    // The verifier an auditor builds from the public key alone.
    let verifying = VerifyingKey::from_bytes(&spki_of(&client, &key).await).unwrap();
    assert_eq!(verifying.key_id(), signer.key_id());

    let message = b"checkpoint 42";
    let signature = signer.sign(message).unwrap();
    assert_eq!(signature.len(), signature_len);
    verifying.verify(message, &signature).unwrap();
    assert!(matches!(
        verifying.verify(b"checkpoint 43", &signature),
        Err(Error::Signature(SignatureError::Invalid))
    ));
    let again = signer.sign_async(message).await.unwrap();
    verifying.verify(message, &again).unwrap();

    // As an envelope's producer signature, required by the consumer.
    let consumer = RsaPrivateKey::generate(2048).unwrap();
    let envelope = Sealer::new(&[consumer.public_key()])
        .signer(&signer)
        .seal_bytes(PLAINTEXT)
        .unwrap();
    let opened = Opener::new(&consumer)
        .require_signer(&verifying)
        .open_bytes(&envelope)
        .unwrap();
    assert_eq!(opened, PLAINTEXT);
}

#[tokio::test(flavor = "multi_thread")]
async fn kms_ecdsa_p256_signatures_verify_locally() {
    check_kms_signing(
        KeySpec::EccNistP256,
        SignatureAlgorithm::EcdsaP256Sha256,
        64,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kms_rsa_pss_signatures_verify_locally() {
    check_kms_signing(KeySpec::Rsa3072, SignatureAlgorithm::RsaPssSha256, 384).await;
}
