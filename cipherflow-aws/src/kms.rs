//! AWS KMS as a key wrapper, key unwrapper and signer.
//!
//! Four types, one per duty, so that a role is handed only what it may do:
//!
//! - [`KmsPublicKey`]: a [`KeyWrapper`] that wraps *locally* with the key's `GetPublicKey`
//!   result, fetched once. No KMS call per snapshot; the pipeline role needs only
//!   `kms:GetPublicKey`.
//! - [`KmsEncrypt`]: a [`KeyWrapper`] that wraps through `kms:Encrypt` (`RSAES_OAEP_SHA_256`),
//!   for a pipeline that must not hold even the public key.
//! - [`KmsDecrypt`]: a [`KeyUnwrapper`] through `kms:Decrypt`; the consumer's private key never
//!   leaves KMS.
//! - [`KmsSigner`]: a [`Signer`] through `kms:Sign` (ECDSA_SHA_256 on `ECC_NIST_P256`,
//!   RSASSA_PSS_SHA_256 on RSA keys), whose signatures the core's [`VerifyingKey`] checks
//!   offline from the public key.
//!
//! Keys may be named by key id, key ARN or alias (`alias/name` or its ARN). The constructors
//! resolve the name once through `GetPublicKey` and use the key ARN from then on, so that an
//! alias moved to another key mid-run cannot make a stanza's key id lie.
//!
//! # Sync and async
//!
//! The core traits are synchronous, the SDK async. Every KMS request runs on one dedicated,
//! process-wide tokio runtime (2 worker threads, started on first use), and a synchronous
//! call (`wrap`, `unwrap`, `sign`) waits on a plain channel for its answer. So the trait
//! methods are safe on a plain thread and on any tokio runtime, multi- or current-thread: no
//! `block_on` on a runtime worker, no deadlock. They do block the calling thread for one
//! round trip; async code should prefer the `*_async` methods (`wrap_async`,
//! `unwrap_async`, `sign_async`), which run the request on the same runtime and await it.

use std::fmt;

use aws_sdk_kms::Client;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::operation::RequestId;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    EncryptionAlgorithmSpec, KeySpec, KeyUsageType, MessageType, SigningAlgorithmSpec,
};
use cipherflow_core::{
    Error, IntegrityError, KeyError, KeyId, KeyUnwrapper, KeyWrapper, RsaPublicKey,
    SignatureAlgorithm, SignatureError, Signer, Verifier, VerifyingKey, WrapAlgorithm,
};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::runtime;

/// The largest message `kms:Sign` accepts with `MessageType=RAW`; longer messages are hashed
/// locally and sent as `DIGEST`.
pub const MAX_RAW_SIGN_MESSAGE: usize = 4096;

/// What kind of failure a KMS call met, for callers that react differently to each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KmsErrorKind {
    /// The caller's credentials or the key policy refuse the operation
    /// (`AccessDeniedException`, unrecognised or expired credentials).
    AccessDenied,
    /// No such key or alias (`NotFoundException`).
    NotFound,
    /// The key exists but cannot be used now: disabled, pending deletion or import
    /// (`DisabledException`, `KMSInvalidStateException`).
    Disabled,
    /// KMS rate-limited the caller after the SDK's retries (`ThrottlingException`).
    Throttled,
    /// The ciphertext is not one this key made (`InvalidCiphertextException`,
    /// `IncorrectKeyException`).
    InvalidCiphertext,
    /// The key is of the wrong spec or usage, or does not offer the needed algorithm.
    UnsuitableKey,
    /// KMS or the network is unavailable or timed out (after retries).
    Unavailable,
    /// Anything else, including a response this crate did not expect.
    Other,
}

impl fmt::Display for KmsErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KmsErrorKind::AccessDenied => "access denied",
            KmsErrorKind::NotFound => "key not found",
            KmsErrorKind::Disabled => "key disabled or not usable in its current state",
            KmsErrorKind::Throttled => "throttled",
            KmsErrorKind::InvalidCiphertext => "invalid ciphertext",
            KmsErrorKind::UnsuitableKey => "unsuitable key",
            KmsErrorKind::Unavailable => "KMS unavailable",
            KmsErrorKind::Other => "failed",
        })
    }
}

/// A failed KMS call: which operation on which key, the kind, AWS's error code and message,
/// and the request id to quote to AWS support or find in CloudTrail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsError {
    kind: KmsErrorKind,
    operation: &'static str,
    key: String,
    code: Option<String>,
    message: String,
    request_id: Option<String>,
}

impl KmsError {
    /// The kind of failure.
    pub fn kind(&self) -> KmsErrorKind {
        self.kind
    }

    /// The KMS operation (`GetPublicKey`, `Encrypt`, `Decrypt`, `Sign`).
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// The key as named by the caller (or its ARN once resolved).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// AWS's error code (`AccessDeniedException`, ...), when KMS answered.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The AWS request id, when KMS answered.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    fn unsuitable(operation: &'static str, key: &str, message: String) -> KmsError {
        KmsError {
            kind: KmsErrorKind::UnsuitableKey,
            operation,
            key: key.to_owned(),
            code: None,
            message,
            request_id: None,
        }
    }

    fn from_sdk<E, R>(operation: &'static str, key: &str, err: SdkError<E, R>) -> KmsError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: fmt::Debug,
        SdkError<E, R>: RequestId,
    {
        let request_id = err.request_id().map(str::to_owned);
        let code = err.code().map(str::to_owned);
        let kind = match &err {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => KmsErrorKind::Unavailable,
            _ => classify(code.as_deref()),
        };
        let message = match err.message() {
            Some(m) => m.to_owned(),
            None => aws_sdk_kms::error::DisplayErrorContext(&err).to_string(),
        };
        KmsError {
            kind,
            operation,
            key: key.to_owned(),
            code,
            message,
            request_id,
        }
    }
}

fn classify(code: Option<&str>) -> KmsErrorKind {
    match code.unwrap_or_default() {
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "IncompleteSignature"
        | "MissingAuthenticationToken" => KmsErrorKind::AccessDenied,
        "NotFoundException" => KmsErrorKind::NotFound,
        "DisabledException" | "KMSInvalidStateException" => KmsErrorKind::Disabled,
        "ThrottlingException" | "LimitExceededException" => KmsErrorKind::Throttled,
        "InvalidCiphertextException" | "IncorrectKeyException" => KmsErrorKind::InvalidCiphertext,
        "InvalidKeyUsageException" | "UnsupportedOperationException" => KmsErrorKind::UnsuitableKey,
        "KMSInternalException" | "DependencyTimeoutException" | "KeyUnavailableException" => {
            KmsErrorKind::Unavailable
        }
        _ => KmsErrorKind::Other,
    }
}

impl fmt::Display for KmsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kms:{} {}: {}", self.operation, self.key, self.kind)?;
        match &self.code {
            Some(code) => write!(f, " ({code}: {})", self.message)?,
            None => write!(f, " ({})", self.message)?,
        }
        if let Some(id) = &self.request_id {
            write!(f, " [request id {id}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for KmsError {}

/// A KMS failure as a core error: `Error::Key(KeyError::OperationFailed)` whose text keeps the
/// kind, AWS's code and the request id (the core's key errors carry text, not AWS types).
impl From<KmsError> for Error {
    fn from(err: KmsError) -> Error {
        match err.kind {
            KmsErrorKind::UnsuitableKey => KeyError::Unsupported(err.to_string()).into(),
            _ => KeyError::OperationFailed(err.to_string()).into(),
        }
    }
}

/// The parts of a `GetPublicKey` answer this module uses.
struct PublicKeyInfo {
    arn: String,
    spki: Vec<u8>,
    key_spec: KeySpec,
    key_usage: KeyUsageType,
    encryption_algorithms: Vec<EncryptionAlgorithmSpec>,
    signing_algorithms: Vec<SigningAlgorithmSpec>,
}

async fn get_public_key(client: &Client, key: &str) -> Result<PublicKeyInfo, KmsError> {
    let client = client.clone();
    let name = key.to_owned();
    let out = runtime::run(async move { client.get_public_key().key_id(name).send().await })
        .await
        .map_err(|e| KmsError::from_sdk("GetPublicKey", key, e))?;
    let missing =
        |what: &str| KmsError::unsuitable("GetPublicKey", key, format!("the answer has no {what}"));
    // `CustomerMasterKeySpec` is the deprecated name of `KeySpec`; some emulators (moto 5)
    // send only that one.
    #[allow(deprecated)]
    let legacy_spec = out
        .customer_master_key_spec()
        .map(|cmk| KeySpec::from(cmk.as_str()));
    Ok(PublicKeyInfo {
        arn: out.key_id().ok_or_else(|| missing("KeyId"))?.to_owned(),
        spki: out
            .public_key()
            .ok_or_else(|| missing("PublicKey"))?
            .as_ref()
            .to_vec(),
        key_spec: out
            .key_spec()
            .cloned()
            .or(legacy_spec)
            .ok_or_else(|| missing("KeySpec"))?,
        key_usage: out.key_usage().ok_or_else(|| missing("KeyUsage"))?.clone(),
        encryption_algorithms: out.encryption_algorithms().to_vec(),
        signing_algorithms: out.signing_algorithms().to_vec(),
    })
}

/// Fetches and checks an RSA `ENCRYPT_DECRYPT` key offering `RSAES_OAEP_SHA_256`.
async fn rsa_encryption_key(
    client: &Client,
    key: &str,
) -> Result<(String, RsaPublicKey), KmsError> {
    let info = get_public_key(client, key).await?;
    if !matches!(
        info.key_spec,
        KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096
    ) {
        return Err(KmsError::unsuitable(
            "GetPublicKey",
            key,
            format!(
                "key spec {} (need RSA_2048, RSA_3072 or RSA_4096)",
                info.key_spec.as_str()
            ),
        ));
    }
    if info.key_usage != KeyUsageType::EncryptDecrypt {
        return Err(KmsError::unsuitable(
            "GetPublicKey",
            key,
            format!(
                "key usage {} (need ENCRYPT_DECRYPT)",
                info.key_usage.as_str()
            ),
        ));
    }
    if !info
        .encryption_algorithms
        .contains(&EncryptionAlgorithmSpec::RsaesOaepSha256)
    {
        return Err(KmsError::unsuitable(
            "GetPublicKey",
            key,
            "the key does not offer RSAES_OAEP_SHA_256".into(),
        ));
    }
    let public = RsaPublicKey::from_bytes(&info.spki).map_err(|e| {
        KmsError::unsuitable("GetPublicKey", key, format!("public key unusable: {e}"))
    })?;
    Ok((info.arn, public))
}

/// Wraps locally with a KMS key's public key, fetched once by [`KmsPublicKey::fetch`].
///
/// Its key id is `SHA-256` of the SPKI KMS returned: the same id a local copy of that public
/// key has, so envelopes sealed either way name the same recipient, and both `kms:Decrypt`
/// ([`KmsDecrypt`]) and a local private key (were one to exist) open them.
#[derive(Clone)]
pub struct KmsPublicKey {
    arn: String,
    public: RsaPublicKey,
}

impl KmsPublicKey {
    /// Calls `kms:GetPublicKey` once and checks the key: `RSA_2048/3072/4096`,
    /// `ENCRYPT_DECRYPT`, offering `RSAES_OAEP_SHA_256`.
    pub async fn fetch(client: &Client, key: impl AsRef<str>) -> Result<KmsPublicKey, KmsError> {
        let (arn, public) = rsa_encryption_key(client, key.as_ref()).await?;
        Ok(KmsPublicKey { arn, public })
    }

    /// The key as KMS resolved the name given (`GetPublicKey`'s `KeyId`: the key ARN on AWS).
    pub fn kms_key(&self) -> &str {
        &self.arn
    }

    /// The public key, e.g. to save it for an auditor or for offline sealing.
    pub fn public_key(&self) -> &RsaPublicKey {
        &self.public
    }
}

impl fmt::Debug for KmsPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KmsPublicKey({}, {:?})", self.arn, self.public)
    }
}

impl KeyWrapper for KmsPublicKey {
    fn key_id(&self) -> KeyId {
        self.public.key_id()
    }

    fn algorithm(&self) -> WrapAlgorithm {
        WrapAlgorithm::RsaOaepSha256
    }

    fn wrapped_len(&self) -> usize {
        self.public.bits() / 8
    }

    fn wrap(&self, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        KeyWrapper::wrap(&self.public, plaintext)
    }
}

/// Wraps through `kms:Encrypt` with `RSAES_OAEP_SHA_256`: one KMS call per recipient per
/// envelope. The public key is fetched once, at construction, for the key id and the wrapped
/// length the envelope header needs before the call.
#[derive(Clone)]
pub struct KmsEncrypt {
    client: Client,
    arn: String,
    id: KeyId,
    wrapped_len: usize,
}

impl KmsEncrypt {
    /// Calls `kms:GetPublicKey` once and checks the key as [`KmsPublicKey::fetch`] does.
    /// The role needs `kms:GetPublicKey` and `kms:Encrypt`.
    pub async fn new(client: &Client, key: impl AsRef<str>) -> Result<KmsEncrypt, KmsError> {
        let (arn, public) = rsa_encryption_key(client, key.as_ref()).await?;
        Ok(KmsEncrypt {
            client: client.clone(),
            arn,
            id: public.key_id(),
            wrapped_len: public.bits() / 8,
        })
    }

    /// The key as KMS resolved the name given (`GetPublicKey`'s `KeyId`: the key ARN on AWS).
    pub fn kms_key(&self) -> &str {
        &self.arn
    }

    /// Wraps `plaintext` through `kms:Encrypt` (the async form of [`KeyWrapper::wrap`]).
    pub async fn wrap_async(&self, plaintext: &[u8]) -> Result<Vec<u8>, KmsError> {
        runtime::run(self.encrypt_future(plaintext)).await
    }

    fn encrypt_future(
        &self,
        plaintext: &[u8],
    ) -> impl Future<Output = Result<Vec<u8>, KmsError>> + Send + 'static {
        let request = self
            .client
            .encrypt()
            .key_id(&self.arn)
            .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
            .plaintext(Blob::new(plaintext));
        let arn = self.arn.clone();
        let wrapped_len = self.wrapped_len;
        async move {
            let out = request
                .send()
                .await
                .map_err(|e| KmsError::from_sdk("Encrypt", &arn, e))?;
            let blob = out.ciphertext_blob().map(|b| b.as_ref().to_vec());
            match blob {
                Some(wrapped) if wrapped.len() == wrapped_len => Ok(wrapped),
                Some(wrapped) => Err(KmsError {
                    kind: KmsErrorKind::Other,
                    operation: "Encrypt",
                    key: arn,
                    code: None,
                    message: format!(
                        "ciphertext of {} bytes, expected {wrapped_len}",
                        wrapped.len()
                    ),
                    request_id: out.request_id().map(str::to_owned),
                }),
                None => Err(KmsError {
                    kind: KmsErrorKind::Other,
                    operation: "Encrypt",
                    key: arn,
                    code: None,
                    message: "the answer has no CiphertextBlob".into(),
                    request_id: out.request_id().map(str::to_owned),
                }),
            }
        }
    }
}

impl fmt::Debug for KmsEncrypt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KmsEncrypt({}, {})", self.arn, self.id)
    }
}

impl KeyWrapper for KmsEncrypt {
    fn key_id(&self) -> KeyId {
        self.id
    }

    fn algorithm(&self) -> WrapAlgorithm {
        WrapAlgorithm::RsaOaepSha256
    }

    fn wrapped_len(&self) -> usize {
        self.wrapped_len
    }

    /// Blocks the calling thread for one `kms:Encrypt` round trip (see "Sync and async" in the
    /// module documentation).
    fn wrap(&self, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(runtime::block_on(self.encrypt_future(plaintext))?)
    }
}

/// Unwraps through `kms:Decrypt`: the consumer's private key never leaves KMS.
///
/// A wrapped key KMS cannot decrypt (tampered, or for another key) fails as opaquely as a
/// local private key does ([`IntegrityError::Header`] once the opener sees it); every other
/// failure (access denied, disabled key, throttling, network) is a [`KeyError::OperationFailed`]
/// naming the AWS error code and request id, since those are worth telling an operator.
#[derive(Clone)]
pub struct KmsDecrypt {
    client: Client,
    key: String,
    id: KeyId,
}

impl KmsDecrypt {
    /// Looks the key up with `kms:GetPublicKey` (for its key id) and checks it as
    /// [`KmsPublicKey::fetch`] does. The role needs `kms:GetPublicKey` and `kms:Decrypt`.
    pub async fn new(client: &Client, key: impl AsRef<str>) -> Result<KmsDecrypt, KmsError> {
        let (arn, public) = rsa_encryption_key(client, key.as_ref()).await?;
        Ok(KmsDecrypt {
            client: client.clone(),
            key: arn,
            id: public.key_id(),
        })
    }

    /// No KMS call: for a consumer role that holds only `kms:Decrypt`, with the key id known
    /// from elsewhere (the SHA-256 of the public key it published). Sync, since it does no I/O.
    pub fn with_key_id(client: &Client, key: impl Into<String>, key_id: KeyId) -> KmsDecrypt {
        KmsDecrypt {
            client: client.clone(),
            key: key.into(),
            id: key_id,
        }
    }

    /// The key as it is sent to KMS (as KMS resolved it, after [`KmsDecrypt::new`]).
    pub fn kms_key(&self) -> &str {
        &self.key
    }

    /// Unwraps through `kms:Decrypt` (the async form of [`KeyUnwrapper::unwrap`]).
    pub async fn unwrap_async(
        &self,
        algorithm: WrapAlgorithm,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        runtime::run(self.decrypt_future(algorithm, wrapped)).await
    }

    fn decrypt_future(
        &self,
        algorithm: WrapAlgorithm,
        wrapped: &[u8],
    ) -> impl Future<Output = Result<Zeroizing<Vec<u8>>, KmsError>> + Send + 'static {
        let spec = match algorithm {
            WrapAlgorithm::RsaOaepSha256 => Some(EncryptionAlgorithmSpec::RsaesOaepSha256),
            _ => None,
        };
        let request = self
            .client
            .decrypt()
            .key_id(&self.key)
            .set_encryption_algorithm(spec.clone())
            .ciphertext_blob(Blob::new(wrapped));
        let key = self.key.clone();
        async move {
            if spec.is_none() {
                return Err(KmsError::unsuitable(
                    "Decrypt",
                    &key,
                    format!("wrap algorithm {algorithm:?} has no KMS equivalent"),
                ));
            }
            let out = request
                .send()
                .await
                .map_err(|e| KmsError::from_sdk("Decrypt", &key, e))?;
            let request_id = out.request_id().map(str::to_owned);
            let plaintext = out.plaintext.map(Blob::into_inner);
            plaintext.map(Zeroizing::new).ok_or(KmsError {
                kind: KmsErrorKind::Other,
                operation: "Decrypt",
                key,
                code: None,
                message: "the answer has no Plaintext".into(),
                request_id,
            })
        }
    }
}

impl fmt::Debug for KmsDecrypt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KmsDecrypt({}, {})", self.key, self.id)
    }
}

impl KeyUnwrapper for KmsDecrypt {
    fn key_id(&self) -> KeyId {
        self.id
    }

    /// Blocks the calling thread for one `kms:Decrypt` round trip (see "Sync and async" in the
    /// module documentation).
    fn unwrap(
        &self,
        algorithm: WrapAlgorithm,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        match runtime::block_on(self.decrypt_future(algorithm, wrapped)) {
            Ok(plaintext) => Ok(plaintext),
            Err(e) if e.kind == KmsErrorKind::InvalidCiphertext => {
                Err(IntegrityError::Header.into())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Signs through `kms:Sign`; signatures verify locally with [`KmsSigner::verifying_key`].
///
/// `ECC_NIST_P256` keys sign with `ECDSA_SHA_256` (KMS returns DER; this converts it to the
/// fixed 64-byte `r || s` form the envelope format and the core's verifier use), RSA keys with
/// `RSASSA_PSS_SHA_256`. Messages up to [`MAX_RAW_SIGN_MESSAGE`] bytes are sent whole
/// (`RAW`), longer ones as their SHA-256 (`DIGEST`); the signature is the same either way.
/// Every signature is verified locally before it is returned, so a signer that does not
/// match its public key fails here rather than in a consumer.
#[derive(Clone)]
pub struct KmsSigner {
    client: Client,
    arn: String,
    verifying: VerifyingKey,
}

impl KmsSigner {
    /// Calls `kms:GetPublicKey` once and checks the key: `SIGN_VERIFY`, `ECC_NIST_P256` offering
    /// `ECDSA_SHA_256` or `RSA_*` offering `RSASSA_PSS_SHA_256`. The role needs
    /// `kms:GetPublicKey` and `kms:Sign`.
    pub async fn new(client: &Client, key: impl AsRef<str>) -> Result<KmsSigner, KmsError> {
        let key = key.as_ref();
        let info = get_public_key(client, key).await?;
        if info.key_usage != KeyUsageType::SignVerify {
            return Err(KmsError::unsuitable(
                "GetPublicKey",
                key,
                format!("key usage {} (need SIGN_VERIFY)", info.key_usage.as_str()),
            ));
        }
        let needed = match info.key_spec {
            KeySpec::EccNistP256 => SigningAlgorithmSpec::EcdsaSha256,
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => {
                SigningAlgorithmSpec::RsassaPssSha256
            }
            ref other => {
                return Err(KmsError::unsuitable(
                    "GetPublicKey",
                    key,
                    format!(
                        "key spec {} (need ECC_NIST_P256 or RSA_2048/3072/4096)",
                        other.as_str()
                    ),
                ));
            }
        };
        if !info.signing_algorithms.contains(&needed) {
            return Err(KmsError::unsuitable(
                "GetPublicKey",
                key,
                format!("the key does not offer {}", needed.as_str()),
            ));
        }
        let verifying = VerifyingKey::from_bytes(&info.spki).map_err(|e| {
            KmsError::unsuitable("GetPublicKey", key, format!("public key unusable: {e}"))
        })?;
        Ok(KmsSigner {
            client: client.clone(),
            arn: info.arn,
            verifying,
        })
    }

    /// The key as KMS resolved the name given (`GetPublicKey`'s `KeyId`: the key ARN on AWS).
    pub fn kms_key(&self) -> &str {
        &self.arn
    }

    /// The public key, for verifiers (consumers, auditors).
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }

    /// Signs through `kms:Sign` (the async form of [`Signer::sign`]).
    pub async fn sign_async(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        runtime::run(self.sign_future(message)).await
    }

    fn sign_future(
        &self,
        message: &[u8],
    ) -> impl Future<Output = Result<Vec<u8>, Error>> + Send + 'static {
        let algorithm = self.verifying.algorithm();
        let spec = match algorithm {
            SignatureAlgorithm::EcdsaP256Sha256 => SigningAlgorithmSpec::EcdsaSha256,
            SignatureAlgorithm::RsaPssSha256 => SigningAlgorithmSpec::RsassaPssSha256,
        };
        // KMS refuses an empty RAW message and RAW messages over 4096 bytes.
        let (kind, payload) = if (1..=MAX_RAW_SIGN_MESSAGE).contains(&message.len()) {
            (MessageType::Raw, message.to_vec())
        } else {
            (MessageType::Digest, Sha256::digest(message).to_vec())
        };
        let request = self
            .client
            .sign()
            .key_id(&self.arn)
            .signing_algorithm(spec)
            .message_type(kind)
            .message(Blob::new(payload));
        let arn = self.arn.clone();
        let verifying = self.verifying.clone();
        let message = message.to_vec();
        async move {
            let out = request.send().await.map_err(|e| {
                SignatureError::SigningFailed(KmsError::from_sdk("Sign", &arn, e).to_string())
            })?;
            let raw = out
                .signature()
                .ok_or_else(|| {
                    SignatureError::SigningFailed(format!(
                        "kms:Sign {arn}: the answer has no Signature"
                    ))
                })?
                .as_ref();
            let signature = match algorithm {
                SignatureAlgorithm::EcdsaP256Sha256 => {
                    ecdsa_der_to_fixed(raw).ok_or_else(|| {
                        SignatureError::SigningFailed(format!(
                            "kms:Sign {arn}: ECDSA signature is not DER of two 32-byte integers"
                        ))
                    })?
                }
                SignatureAlgorithm::RsaPssSha256 => raw.to_vec(),
            };
            verifying.verify(&message, &signature).map_err(|_| {
                SignatureError::SigningFailed(format!(
                    "kms:Sign {arn}: the signature does not verify with the key's public key"
                ))
            })?;
            Ok(signature)
        }
    }
}

impl fmt::Debug for KmsSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KmsSigner({}, {:?})", self.arn, self.verifying)
    }
}

impl Signer for KmsSigner {
    fn key_id(&self) -> KeyId {
        self.verifying.key_id()
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.verifying.algorithm()
    }

    fn signature_len(&self) -> usize {
        self.verifying.signature_len()
    }

    /// Blocks the calling thread for one `kms:Sign` round trip (see "Sync and async" in the
    /// module documentation).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        runtime::block_on(self.sign_future(message))
    }
}

/// `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` (DER, as KMS returns it) to the
/// fixed `r || s` form, 32 bytes each, big-endian. `None` if it is not strict DER of two
/// positive integers below 2^256.
fn ecdsa_der_to_fixed(der: &[u8]) -> Option<Vec<u8>> {
    fn length(input: &[u8]) -> Option<(usize, &[u8])> {
        match *input.first()? {
            n @ 0..=0x7f => Some((n as usize, &input[1..])),
            0x81 => {
                let n = *input.get(1)? as usize;
                (n >= 0x80).then_some((n, &input[2..]))
            }
            _ => None,
        }
    }
    fn integer(input: &[u8]) -> Option<([u8; 32], &[u8])> {
        let input = input.strip_prefix(&[0x02])?;
        let (len, rest) = length(input)?;
        let (mut value, rest) = (rest.get(..len)?, &rest[len..]);
        // Positive and minimal: a leading zero only before a byte with its top bit set.
        if value.is_empty() || value[0] & 0x80 != 0 {
            return None;
        }
        if value[0] == 0 {
            if value.len() == 1 || value[1] & 0x80 == 0 {
                return None;
            }
            value = &value[1..];
        }
        if value.len() > 32 {
            return None;
        }
        let mut out = [0u8; 32];
        out[32 - value.len()..].copy_from_slice(value);
        Some((out, rest))
    }
    let body = der.strip_prefix(&[0x30])?;
    let (len, body) = length(body)?;
    if body.len() != len {
        return None;
    }
    let (r, rest) = integer(body)?;
    let (s, rest) = integer(rest)?;
    if !rest.is_empty() {
        return None;
    }
    let mut fixed = Vec::with_capacity(64);
    fixed.extend_from_slice(&r);
    fixed.extend_from_slice(&s);
    Some(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_signature_to_fixed() {
        // r = 1 (short), s = 0x80 followed by 31 bytes (needs a leading zero in DER).
        let mut s = vec![0x80];
        s.extend(1..=31u8);
        let mut der = vec![0x30, 0, 0x02, 0x01, 0x01, 0x02, 0x21, 0x00];
        der.extend(&s);
        der[1] = (der.len() - 2) as u8;
        let fixed = ecdsa_der_to_fixed(&der).unwrap();
        let mut expected = [0u8; 64];
        expected[31] = 1;
        expected[32..].copy_from_slice(&s);
        assert_eq!(fixed, expected);
    }

    #[test]
    fn der_signature_rejects_non_minimal_and_trailing_bytes() {
        // Leading zero before a byte without its top bit set: not minimal.
        assert!(
            ecdsa_der_to_fixed(&[0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01]).is_none()
        );
        // Negative integer.
        assert!(ecdsa_der_to_fixed(&[0x30, 0x06, 0x02, 0x01, 0x81, 0x02, 0x01, 0x01]).is_none());
        // Trailing byte after the sequence.
        assert!(
            ecdsa_der_to_fixed(&[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00]).is_none()
        );
        // Integer longer than 32 bytes.
        let mut der = vec![0x30, 0x25, 0x02, 0x21];
        der.extend([0x01; 33]);
        der.extend([0x02, 0x01, 0x01]);
        assert!(ecdsa_der_to_fixed(&der).is_none());
    }

    #[test]
    fn aws_error_codes_map_to_kinds() {
        assert_eq!(
            classify(Some("AccessDeniedException")),
            KmsErrorKind::AccessDenied
        );
        assert_eq!(classify(Some("NotFoundException")), KmsErrorKind::NotFound);
        assert_eq!(classify(Some("DisabledException")), KmsErrorKind::Disabled);
        assert_eq!(
            classify(Some("KMSInvalidStateException")),
            KmsErrorKind::Disabled
        );
        assert_eq!(
            classify(Some("ThrottlingException")),
            KmsErrorKind::Throttled
        );
        assert_eq!(
            classify(Some("InvalidCiphertextException")),
            KmsErrorKind::InvalidCiphertext
        );
        assert_eq!(classify(Some("SomethingNew")), KmsErrorKind::Other);
        assert_eq!(classify(None), KmsErrorKind::Other);
    }

    #[test]
    fn error_text_keeps_code_and_request_id() {
        let err = KmsError {
            kind: KmsErrorKind::AccessDenied,
            operation: "Decrypt",
            key: "alias/consumer".into(),
            code: Some("AccessDeniedException".into()),
            message: "not allowed".into(),
            request_id: Some("req-123".into()),
        };
        let core: Error = err.into();
        let text = core.to_string();
        assert!(matches!(core, Error::Key(KeyError::OperationFailed(_))));
        assert_eq!(
            text,
            "key operation failed: kms:Decrypt alias/consumer: access denied \
             (AccessDeniedException: not allowed) [request id req-123]"
        );
    }
}
