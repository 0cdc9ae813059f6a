//! Producer signatures: the [`Signer`]/[`Verifier`] seam and its local keys.
//!
//! Anyone holding a consumer's public key can seal for that consumer, so a consumer that
//! needs to know *who* sealed requires a producer signature. Local keys here; the
//! `cipherflow-aws` crate adds a KMS `Sign` implementation. Signing keys are ECDSA P-256 or
//! RSA (used with PSS), the two kinds AWS KMS signing keys offer.

use std::fmt;

use zeroize::Zeroizing;

use crate::crypto::{Backend, SignatureAlgorithm, default_backend};
use crate::error::{Error, KeyError, SignatureError};
use crate::keys::{DecodedKey, KeyId, pem};

impl SignatureAlgorithm {
    pub(crate) fn code(self) -> u8 {
        match self {
            SignatureAlgorithm::EcdsaP256Sha256 => 1,
            SignatureAlgorithm::RsaPssSha256 => 2,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(SignatureAlgorithm::EcdsaP256Sha256),
            2 => Some(SignatureAlgorithm::RsaPssSha256),
            _ => None,
        }
    }

    /// A stable lowercase name (`ecdsa-p256-sha256`, `rsa-pss-sha256`) for JSON and logs.
    pub fn name(self) -> &'static str {
        match self {
            SignatureAlgorithm::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            SignatureAlgorithm::RsaPssSha256 => "rsa-pss-sha256",
        }
    }

    /// The name AWS KMS gives this algorithm.
    pub fn kms_name(self) -> &'static str {
        match self {
            SignatureAlgorithm::EcdsaP256Sha256 => "ECDSA_SHA_256",
            SignatureAlgorithm::RsaPssSha256 => "RSASSA_PSS_SHA_256",
        }
    }
}

/// Signs envelopes (and ledger checkpoints) for a producer.
pub trait Signer: Send + Sync {
    /// The signing key's id (`SHA-256` of its public key's SPKI DER).
    fn key_id(&self) -> KeyId;
    /// The algorithm.
    fn algorithm(&self) -> SignatureAlgorithm;
    /// Exact length of every signature this signer makes.
    fn signature_len(&self) -> usize;
    /// Signs `message`; the algorithm hashes it.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error>;
}

/// Checks producer signatures.
pub trait Verifier: Send + Sync + VerifierClone {
    /// The key id this verifier trusts.
    fn key_id(&self) -> KeyId;
    /// The algorithm.
    fn algorithm(&self) -> SignatureAlgorithm;
    /// Verifies a signature over `message`.
    fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), Error>;
}

/// Lets a streaming opener keep its own copy of the verifier it was given, so the reader it
/// returns borrows nothing. Implemented for every `Verifier + Clone`.
pub trait VerifierClone {
    /// A boxed copy of this verifier.
    fn clone_verifier(&self) -> Box<dyn Verifier>;
}

impl<T: Verifier + Clone + 'static> VerifierClone for T {
    fn clone_verifier(&self) -> Box<dyn Verifier> {
        Box::new(self.clone())
    }
}

/// A public signing key, for verification.
#[derive(Clone)]
pub struct VerifyingKey {
    algorithm: SignatureAlgorithm,
    spki: Vec<u8>,
    id: KeyId,
    signature_len: usize,
    backend: &'static dyn Backend,
}

impl VerifyingKey {
    /// Loads a P-256 or RSA public key from PEM or DER.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let decoded = DecodedKey::decode(bytes)?;
        let algorithm = match decoded {
            DecodedKey::P256Public(_) => SignatureAlgorithm::EcdsaP256Sha256,
            DecodedKey::RsaPublic(_) => SignatureAlgorithm::RsaPssSha256,
            DecodedKey::P256Private(_) | DecodedKey::RsaPrivate(_) => {
                return Err(KeyError::Unsupported(
                    "a private key was given where a public verifying key is expected".into(),
                )
                .into());
            }
        };
        let (spki, signature_len) = decoded.public_spki()?;
        Ok(VerifyingKey {
            algorithm,
            id: KeyId::of_spki(&spki),
            spki,
            signature_len,
            backend: default_backend(),
        })
    }

    /// Uses `backend` for verification.
    pub fn with_backend(mut self, backend: &'static dyn Backend) -> Self {
        self.backend = backend;
        self
    }

    /// The SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// PEM (`PUBLIC KEY`).
    pub fn to_pem(&self) -> String {
        pem("PUBLIC KEY", &self.spki).to_string()
    }

    /// This key's id.
    pub fn key_id(&self) -> KeyId {
        self.id
    }

    /// Length of this key's signatures.
    pub fn signature_len(&self) -> usize {
        self.signature_len
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({:?}, {})", self.algorithm, self.id)
    }
}

impl Verifier for VerifyingKey {
    fn key_id(&self) -> KeyId {
        self.id
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), Error> {
        if signature.len() != self.signature_len {
            return Err(SignatureError::Invalid.into());
        }
        self.backend
            .verify(self.algorithm, &self.spki, message, signature)
            .map_err(|_| SignatureError::Invalid.into())
    }
}

/// A local signing key. Zeroized on drop; `Debug` shows only its id.
pub struct SigningKey {
    pkcs8: Zeroizing<Vec<u8>>,
    public: VerifyingKey,
}

impl SigningKey {
    /// Generates an ECDSA P-256 key.
    pub fn generate_p256() -> Result<Self, Error> {
        let der = default_backend()
            .generate_p256()
            .map_err(|_| KeyError::OperationFailed("P-256 key generation failed".into()))?;
        Self::from_bytes(&der)
    }

    /// Loads a P-256 (ECDSA) or RSA (PSS) private key from PEM or DER.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let decoded = DecodedKey::decode(bytes)?;
        let algorithm = match decoded {
            DecodedKey::P256Private(_) => SignatureAlgorithm::EcdsaP256Sha256,
            DecodedKey::RsaPrivate(_) => SignatureAlgorithm::RsaPssSha256,
            DecodedKey::P256Public(_) | DecodedKey::RsaPublic(_) => {
                return Err(KeyError::Unsupported(
                    "a public key was given where a private signing key is needed".into(),
                )
                .into());
            }
        };
        let (spki, signature_len) = decoded.public_spki()?;
        let (DecodedKey::P256Private(pkcs8) | DecodedKey::RsaPrivate(pkcs8)) = decoded else {
            unreachable!("matched above")
        };
        Ok(SigningKey {
            pkcs8,
            public: VerifyingKey {
                algorithm,
                id: KeyId::of_spki(&spki),
                spki,
                signature_len,
                backend: default_backend(),
            },
        })
    }

    /// Uses `backend` for signing and verification.
    pub fn with_backend(mut self, backend: &'static dyn Backend) -> Self {
        self.public.backend = backend;
        self
    }

    /// This key's id (that of its public half).
    pub fn key_id(&self) -> KeyId {
        self.public.id
    }

    /// The public half.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    /// PEM (`PRIVATE KEY`, PKCS#8), zeroized on drop.
    pub fn to_pem(&self) -> Zeroizing<String> {
        pem("PRIVATE KEY", &self.pkcs8)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKey({:?}, {})",
            self.public.algorithm, self.public.id
        )
    }
}

impl Signer for SigningKey {
    fn key_id(&self) -> KeyId {
        self.public.id
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.public.algorithm
    }

    fn signature_len(&self) -> usize {
        self.public.signature_len
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let signature = self
            .public
            .backend
            .sign(self.public.algorithm, &self.pkcs8, message)
            .map_err(|_| SignatureError::SigningFailed("local signing failed".into()))?;
        if signature.len() != self.public.signature_len {
            return Err(
                SignatureError::SigningFailed("signature of unexpected length".into()).into(),
            );
        }
        Ok(signature)
    }
}
