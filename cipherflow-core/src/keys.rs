//! Keys: stable key ids, key-file decoding, and the key-wrapping seam.
//!
//! [`KeyWrapper`] seals a data key for one recipient; [`KeyUnwrapper`] opens it. They are two
//! traits so that the type system carries the separation of duties: a pipeline built from
//! wrappers only cannot be handed something that opens. [`RsaPublicKey`] and
//! [`RsaPrivateKey`] are the local implementations (RSA-OAEP, SHA-256, MGF1-SHA-256: what AWS
//! KMS calls `RSAES_OAEP_SHA_256`); the `cipherflow-aws` crate adds KMS ones.

use std::fmt;
use std::str::FromStr;

use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::crypto::{Backend, default_backend};
use crate::error::{Error, KeyError};

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (the format's wrapped-key limit is 512 bytes).
pub const MAX_RSA_BITS: usize = 4096;

/// `SHA-256(SubjectPublicKeyInfo DER)`: the same for every encoding of a public key, and for
/// the AWS KMS key whose `GetPublicKey` returns it (`docs/FORMAT.md` section 4).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 32]);

impl KeyId {
    /// The key id of a public key given as SubjectPublicKeyInfo DER.
    pub fn of_spki(spki_der: &[u8]) -> KeyId {
        KeyId(Sha256::digest(spki_der).into())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut id = [0u8; 32];
        hex::decode_to_slice(s, &mut id)
            .map_err(|_| KeyError::Malformed(format!("key id {s:?} is not 64 hex digits")))?;
        Ok(KeyId(id))
    }
}

/// The wrap algorithm of a recipient stanza (`docs/FORMAT.md` section 1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WrapAlgorithm {
    /// RSA-OAEP with SHA-256 and MGF1-SHA-256, empty label.
    RsaOaepSha256,
}

impl WrapAlgorithm {
    pub(crate) fn code(self) -> u8 {
        match self {
            WrapAlgorithm::RsaOaepSha256 => 1,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(WrapAlgorithm::RsaOaepSha256),
            _ => None,
        }
    }
}

/// Seals a data key for one recipient. The pipeline holds only these.
pub trait KeyWrapper: Send + Sync {
    /// The recipient's key id.
    fn key_id(&self) -> KeyId;
    /// The wrap algorithm this recipient uses.
    fn algorithm(&self) -> WrapAlgorithm;
    /// Length of a wrapped key in bytes (the RSA modulus length).
    fn wrapped_len(&self) -> usize;
    /// Wraps `plaintext` (the format's 66-byte wrap plaintext).
    fn wrap(&self, plaintext: &[u8]) -> Result<Vec<u8>, Error>;
}

/// Opens a data key wrapped for one recipient. Only consumers hold these.
pub trait KeyUnwrapper: Send + Sync {
    /// The key id this unwrapper answers to.
    fn key_id(&self) -> KeyId;
    /// Unwraps a wrapped key. Failures are reported without detail.
    fn unwrap(&self, algorithm: WrapAlgorithm, wrapped: &[u8])
    -> Result<Zeroizing<Vec<u8>>, Error>;
}

/// A key file's contents, decoded from PEM or DER and normalised.
pub(crate) enum DecodedKey {
    /// PKCS#8 DER of an RSA private key.
    RsaPrivate(Zeroizing<Vec<u8>>),
    /// SubjectPublicKeyInfo DER of an RSA public key.
    RsaPublic(Vec<u8>),
    /// PKCS#8 DER of a P-256 private key.
    P256Private(Zeroizing<Vec<u8>>),
    /// SubjectPublicKeyInfo DER of a P-256 public key.
    P256Public(Vec<u8>),
}

impl DecodedKey {
    /// Accepts PEM (`PRIVATE KEY`, `RSA PRIVATE KEY`, `EC PRIVATE KEY`, `PUBLIC KEY`,
    /// `RSA PUBLIC KEY`) or raw DER in any of those encodings.
    pub(crate) fn decode(bytes: &[u8]) -> Result<DecodedKey, KeyError> {
        let trimmed = bytes.trim_ascii_start();
        if trimmed.starts_with(b"-----BEGIN") {
            let (label, der) = pem_rfc7468::decode_vec(trimmed)
                .map_err(|e| KeyError::Malformed(format!("bad PEM: {e}")))?;
            let der = Zeroizing::new(der);
            match label {
                "PRIVATE KEY" => Self::from_pkcs8(&der),
                "RSA PRIVATE KEY" => Self::from_pkcs1_private(&der),
                "EC PRIVATE KEY" => Self::from_sec1(&der),
                "PUBLIC KEY" => Self::from_spki(&der),
                "RSA PUBLIC KEY" => Self::from_pkcs1_public(&der),
                other => Err(KeyError::Unsupported(format!("PEM label {other:?}"))),
            }
        } else {
            Self::from_pkcs8(bytes)
                .or_else(|_| Self::from_spki(bytes))
                .or_else(|_| Self::from_pkcs1_private(bytes))
                .or_else(|_| Self::from_pkcs1_public(bytes))
                .or_else(|_| Self::from_sec1(bytes))
                .map_err(|_| {
                    KeyError::Malformed(
                        "not PEM, nor DER in PKCS#8, SPKI, PKCS#1 or SEC1 form".into(),
                    )
                })
        }
    }

    fn from_pkcs8(der: &[u8]) -> Result<DecodedKey, KeyError> {
        if let Ok(key) = rsa::PrivateKey::from_pkcs8_der(der) {
            return Self::rsa_private(&key);
        }
        if let Ok(key) = p256::SecretKey::from_pkcs8_der(der) {
            return Self::p256_private(&key);
        }
        Err(KeyError::Malformed(
            "PKCS#8 key is neither RSA nor P-256".into(),
        ))
    }

    fn from_pkcs1_private(der: &[u8]) -> Result<DecodedKey, KeyError> {
        let key = rsa::PrivateKey::from_pkcs1_der(der)
            .map_err(|e| KeyError::Malformed(format!("PKCS#1 RSA private key: {e}")))?;
        Self::rsa_private(&key)
    }

    fn from_sec1(der: &[u8]) -> Result<DecodedKey, KeyError> {
        let key = p256::SecretKey::from_sec1_der(der)
            .map_err(|e| KeyError::Malformed(format!("SEC1 EC private key (P-256 only): {e}")))?;
        Self::p256_private(&key)
    }

    fn from_spki(der: &[u8]) -> Result<DecodedKey, KeyError> {
        if let Ok(key) = rsa::PublicKey::from_public_key_der(der) {
            return Self::rsa_public(&key);
        }
        if let Ok(key) = p256::PublicKey::from_public_key_der(der) {
            let der = key
                .to_public_key_der()
                .map_err(|e| KeyError::Malformed(e.to_string()))?;
            return Ok(DecodedKey::P256Public(der.as_bytes().to_vec()));
        }
        Err(KeyError::Malformed(
            "public key is neither RSA nor P-256".into(),
        ))
    }

    fn from_pkcs1_public(der: &[u8]) -> Result<DecodedKey, KeyError> {
        let key = rsa::PublicKey::from_pkcs1_der(der)
            .map_err(|e| KeyError::Malformed(format!("PKCS#1 RSA public key: {e}")))?;
        Self::rsa_public(&key)
    }

    fn rsa_private(key: &rsa::PrivateKey) -> Result<DecodedKey, KeyError> {
        check_rsa_size(key.size())?;
        let der = key
            .to_pkcs8_der()
            .map_err(|e| KeyError::Malformed(e.to_string()))?;
        Ok(DecodedKey::RsaPrivate(Zeroizing::new(
            der.as_bytes().to_vec(),
        )))
    }

    fn rsa_public(key: &rsa::PublicKey) -> Result<DecodedKey, KeyError> {
        check_rsa_size(key.size())?;
        let der = key
            .to_public_key_der()
            .map_err(|e| KeyError::Malformed(e.to_string()))?;
        Ok(DecodedKey::RsaPublic(der.as_bytes().to_vec()))
    }

    fn p256_private(key: &p256::SecretKey) -> Result<DecodedKey, KeyError> {
        let der = key
            .to_pkcs8_der()
            .map_err(|e| KeyError::Malformed(e.to_string()))?;
        Ok(DecodedKey::P256Private(Zeroizing::new(
            der.as_bytes().to_vec(),
        )))
    }

    /// The public half's SPKI DER and, for RSA, the modulus length in bytes.
    pub(crate) fn public_spki(&self) -> Result<(Vec<u8>, usize), KeyError> {
        let malformed = |e: &dyn fmt::Display| KeyError::Malformed(e.to_string());
        match self {
            DecodedKey::RsaPrivate(der) => {
                let key = rsa::PrivateKey::from_pkcs8_der(der).map_err(|e| malformed(&e))?;
                let public = key.to_public_key();
                let spki = public.to_public_key_der().map_err(|e| malformed(&e))?;
                Ok((spki.as_bytes().to_vec(), public.size()))
            }
            DecodedKey::RsaPublic(spki) => {
                let key = rsa::PublicKey::from_public_key_der(spki).map_err(|e| malformed(&e))?;
                Ok((spki.clone(), key.size()))
            }
            DecodedKey::P256Private(der) => {
                let key = p256::SecretKey::from_pkcs8_der(der).map_err(|e| malformed(&e))?;
                let spki = key
                    .public_key()
                    .to_public_key_der()
                    .map_err(|e| malformed(&e))?;
                Ok((spki.as_bytes().to_vec(), 64))
            }
            DecodedKey::P256Public(spki) => Ok((spki.clone(), 64)),
        }
    }
}

fn check_rsa_size(bytes: usize) -> Result<(), KeyError> {
    let bits = bytes * 8;
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(KeyError::Unsupported(format!(
            "RSA key of {bits} bits (accepted: {MIN_RSA_BITS} to {MAX_RSA_BITS})"
        )));
    }
    Ok(())
}

pub(crate) fn pem(label: &str, der: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(
        pem_rfc7468::encode_string(label, pem_rfc7468::LineEnding::LF, der)
            .expect("PEM encoding of a DER document cannot fail"),
    )
}

/// A recipient's RSA public key: wraps data keys, cannot open anything.
#[derive(Clone)]
pub struct RsaPublicKey {
    spki: Vec<u8>,
    id: KeyId,
    modulus_len: usize,
    backend: &'static dyn Backend,
}

impl RsaPublicKey {
    /// Loads a public key from PEM or DER (SPKI or PKCS#1). A private key file is refused, so
    /// that a sealing step is never handed something that opens.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        match DecodedKey::decode(bytes)? {
            DecodedKey::RsaPublic(spki) => Ok(Self::from_spki_unchecked(spki)?),
            DecodedKey::RsaPrivate(_) => Err(KeyError::Unsupported(
                "a private key was given where a public key is expected".into(),
            )
            .into()),
            _ => Err(KeyError::Unsupported("not an RSA public key".into()).into()),
        }
    }

    fn from_spki_unchecked(spki: Vec<u8>) -> Result<Self, KeyError> {
        let (spki, modulus_len) = DecodedKey::RsaPublic(spki).public_spki()?;
        Ok(RsaPublicKey {
            id: KeyId::of_spki(&spki),
            spki,
            modulus_len,
            backend: default_backend(),
        })
    }

    /// Uses `backend` for wrapping instead of the default.
    pub fn with_backend(mut self, backend: &'static dyn Backend) -> Self {
        self.backend = backend;
        self
    }

    /// The SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// This key's id.
    pub fn key_id(&self) -> KeyId {
        self.id
    }

    /// PEM (`PUBLIC KEY`, SPKI).
    pub fn to_pem(&self) -> String {
        pem("PUBLIC KEY", &self.spki).to_string()
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.modulus_len * 8
    }
}

impl fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RsaPublicKey({} bits, {})", self.bits(), self.id)
    }
}

impl KeyWrapper for RsaPublicKey {
    fn key_id(&self) -> KeyId {
        self.id
    }

    fn algorithm(&self) -> WrapAlgorithm {
        WrapAlgorithm::RsaOaepSha256
    }

    fn wrapped_len(&self) -> usize {
        self.modulus_len
    }

    fn wrap(&self, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        self.backend
            .rsa_oaep_encrypt(&self.spki, plaintext)
            .map_err(|_| KeyError::OperationFailed("RSA-OAEP encryption failed".into()).into())
    }
}

/// A consumer's RSA private key. Zeroized on drop; its `Debug` shows only the key id.
pub struct RsaPrivateKey {
    pkcs8: Zeroizing<Vec<u8>>,
    public: RsaPublicKey,
}

impl RsaPrivateKey {
    /// Generates a key of `bits` (2048, 3072 or 4096) with the default backend.
    pub fn generate(bits: usize) -> Result<Self, Error> {
        Self::generate_with(default_backend(), bits)
    }

    /// Generates a key with a given backend.
    pub fn generate_with(backend: &'static dyn Backend, bits: usize) -> Result<Self, Error> {
        if !matches!(bits, 2048 | 3072 | 4096) {
            return Err(KeyError::Unsupported(format!(
                "RSA key size {bits} (choose 2048, 3072 or 4096)"
            ))
            .into());
        }
        let der = backend
            .generate_rsa(bits)
            .map_err(|_| KeyError::OperationFailed("RSA key generation failed".into()))?;
        Ok(Self::from_bytes(&der)?.with_backend(backend))
    }

    /// Loads a private key from PEM or DER (PKCS#8 or PKCS#1).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        match DecodedKey::decode(bytes)? {
            DecodedKey::RsaPrivate(pkcs8) => {
                let decoded = DecodedKey::RsaPrivate(pkcs8);
                let (spki, _) = decoded.public_spki()?;
                let DecodedKey::RsaPrivate(pkcs8) = decoded else {
                    unreachable!()
                };
                Ok(RsaPrivateKey {
                    pkcs8,
                    public: RsaPublicKey::from_spki_unchecked(spki)?,
                })
            }
            DecodedKey::RsaPublic(_) => Err(KeyError::Unsupported(
                "a public key was given where a private key is needed".into(),
            )
            .into()),
            _ => Err(KeyError::Unsupported("not an RSA private key".into()).into()),
        }
    }

    /// Uses `backend` for unwrapping (and its public half for wrapping).
    pub fn with_backend(mut self, backend: &'static dyn Backend) -> Self {
        self.public = self.public.with_backend(backend);
        self
    }

    /// This key's id (that of its public half).
    pub fn key_id(&self) -> KeyId {
        self.public.id
    }

    /// The public half.
    pub fn public_key(&self) -> &RsaPublicKey {
        &self.public
    }

    /// PEM (`PRIVATE KEY`, PKCS#8), zeroized on drop.
    pub fn to_pem(&self) -> Zeroizing<String> {
        pem("PRIVATE KEY", &self.pkcs8)
    }
}

impl fmt::Debug for RsaPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RsaPrivateKey({} bits, {})",
            self.public.bits(),
            self.public.id
        )
    }
}

impl KeyUnwrapper for RsaPrivateKey {
    fn key_id(&self) -> KeyId {
        self.public.id
    }

    fn unwrap(
        &self,
        algorithm: WrapAlgorithm,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        match algorithm {
            WrapAlgorithm::RsaOaepSha256 => self
                .public
                .backend
                .rsa_oaep_decrypt(&self.pkcs8, wrapped)
                .map_err(|_| crate::error::IntegrityError::Header.into()),
        }
    }
}
