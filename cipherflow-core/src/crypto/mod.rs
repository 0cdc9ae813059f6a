//! The crypto backend seam.
//!
//! Everything the envelope needs from a cryptographic library goes through [`Backend`]: the
//! AES-256-GCM chunk cipher, RSA-OAEP-SHA-256 key wrapping, and the two signature algorithms
//! AWS KMS signing keys offer. Two implementations produce identical bytes: [`AWS_LC`]
//! (aws-lc-rs, the default, about 4x faster for AES-GCM here) and [`RUST_CRYPTO`] (pure Rust,
//! RustCrypto crates). One test suite runs against both, and a cross test seals with one and
//! opens with the other. Hashing, HMAC and HKDF run over a few hundred header bytes only and
//! always use RustCrypto's `sha2`/`hmac`/`hkdf`.
//!
//! Keys cross the seam as DER: private keys as PKCS#8, public keys as SubjectPublicKeyInfo.

use zeroize::Zeroizing;

#[cfg(feature = "aws-lc")]
mod aws_lc;
mod rust_crypto;

#[cfg(test)]
mod tests;

#[cfg(feature = "aws-lc")]
pub use aws_lc::AWS_LC;
pub use rust_crypto::RUST_CRYPTO;

/// Length of an AES-256-GCM tag.
pub const TAG_LEN: usize = 16;
/// Length of an AES-256-GCM nonce.
pub const NONCE_LEN: usize = 12;

/// A failure inside a backend. Deliberately without detail: callers turn it into the error
/// kind that fits where it happened, and an attacker learns nothing about which check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cryptographic operation failed")]
pub struct CryptoError;

/// A producer signature algorithm (`docs/FORMAT.md` section 1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    /// ECDSA on P-256 over SHA-256; signatures are `r || s` (64 bytes, IEEE P1363).
    EcdsaP256Sha256,
    /// RSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt (KMS `RSASSA_PSS_SHA_256`).
    RsaPssSha256,
}

/// An AES-256-GCM key with its schedule expanded once, used for every chunk of an envelope.
pub trait Aes256GcmKey: Send + Sync {
    /// Encrypts `in_out` in place and returns the tag.
    fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> [u8; TAG_LEN];
    /// Verifies `tag` and decrypts `in_out` in place. On failure `in_out` holds no plaintext.
    fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError>;

    /// Verifies `tag` and decrypts `ciphertext` into `out` (same length). On failure `out`
    /// holds no plaintext. Backends that can decrypt out of place do it in one pass.
    fn open_to(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8; TAG_LEN],
        out: &mut [u8],
    ) -> Result<(), CryptoError> {
        out.copy_from_slice(ciphertext);
        self.open_in_place(nonce, aad, out, tag)
    }
}

/// A cryptographic library, as the envelope sees it.
pub trait Backend: Send + Sync + 'static {
    /// A short name for logs and benchmarks.
    fn name(&self) -> &'static str;
    /// Expands an AES-256 key.
    fn aes256gcm(&self, key: &[u8; 32]) -> Box<dyn Aes256GcmKey>;
    /// RSA-OAEP with SHA-256 and MGF1-SHA-256, empty label.
    fn rsa_oaep_encrypt(&self, spki_der: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError>;
    /// RSA-OAEP with SHA-256 and MGF1-SHA-256, empty label.
    fn rsa_oaep_decrypt(
        &self,
        pkcs8_der: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError>;
    /// Signs `message` (the algorithm hashes it).
    fn sign(
        &self,
        algorithm: SignatureAlgorithm,
        pkcs8_der: &[u8],
        message: &[u8],
    ) -> Result<Vec<u8>, CryptoError>;
    /// Verifies a signature over `message`.
    fn verify(
        &self,
        algorithm: SignatureAlgorithm,
        spki_der: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError>;
    /// A new RSA key (public exponent 65537) as PKCS#8 DER.
    fn generate_rsa(&self, bits: usize) -> Result<Zeroizing<Vec<u8>>, CryptoError>;
    /// A new P-256 key as PKCS#8 DER.
    fn generate_p256(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError>;
}

/// The backend used unless a caller picks one: aws-lc-rs when built with the `aws-lc`
/// feature (the default), else the pure-Rust one.
pub fn default_backend() -> &'static dyn Backend {
    #[cfg(feature = "aws-lc")]
    {
        &AWS_LC
    }
    #[cfg(not(feature = "aws-lc"))]
    {
        &RUST_CRYPTO
    }
}

/// Every backend compiled into this build, for tests and benchmarks.
pub fn all_backends() -> Vec<&'static dyn Backend> {
    vec![
        #[cfg(feature = "aws-lc")]
        &AWS_LC,
        &RUST_CRYPTO,
    ]
}

/// Fills `dest` from the operating system's CSPRNG.
pub fn fill_random(dest: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(dest).map_err(|_| CryptoError)
}
