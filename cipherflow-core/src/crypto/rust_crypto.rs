//! The pure-Rust backend: RustCrypto's `aes-gcm`, `rsa` and `p256`.
//!
//! Known difference from aws-lc: `rsa` 0.10 skips the OAEP leading-zero-byte check (RFC 8017
//! 7.1.2 step 3g), so one Wycheproof "invalid" ciphertext per key size decrypts here to the
//! right message instead of failing. The OAEP hash check still binds ciphertext to message
//! (no padding oracle, no malleability), and the envelope checks the unwrapped suite and file
//! id anyway; ECDSA signing is deterministic (RFC 6979) where aws-lc randomises it. Both
//! verify each other's signatures.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
// The OS RNG; `rsa`'s `getrandom` feature (which the crate needs anyway) turns on its
// `rand_core` interface.
use getrandom::SysRng;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature as EcdsaSignature, SigningKey as EcdsaSigningKey, VerifyingKey};
use p256::elliptic_curve::Generate;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey, PublicKey};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{Aes256GcmKey, Backend, CryptoError, NONCE_LEN, SignatureAlgorithm, TAG_LEN};

/// RustCrypto: pure Rust, no C toolchain needed.
pub static RUST_CRYPTO: RustCrypto = RustCrypto;

/// See [`RUST_CRYPTO`].
#[derive(Debug)]
pub struct RustCrypto;

struct Key(Aes256Gcm);

impl Aes256GcmKey for Key {
    fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> [u8; TAG_LEN] {
        let tag = self
            .0
            .encrypt_inout_detached(&Nonce::from(*nonce), aad, in_out.into())
            .expect("AES-GCM sealing cannot fail for inputs under 64 GiB");
        tag.into()
    }

    fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        let tag = Tag::from(*tag);
        if self
            .0
            .decrypt_inout_detached(&Nonce::from(*nonce), aad, in_out.into(), &tag)
            .is_err()
        {
            // Mirror the aws-lc backend: a failed open leaves only zeros behind.
            in_out.fill(0);
            return Err(CryptoError);
        }
        Ok(())
    }
}

/// aws-lc accepts RSA moduli of 2048 to 8192 bits for every operation; so does this backend.
fn rsa_size_ok(key: &impl PublicKeyParts) -> Result<(), CryptoError> {
    if (2048..=8192).contains(&key.n().bit_width()) {
        Ok(())
    } else {
        Err(CryptoError)
    }
}

fn rsa_private(pkcs8_der: &[u8]) -> Result<PrivateKey, CryptoError> {
    let key = PrivateKey::from_pkcs8_der(pkcs8_der).map_err(|_| CryptoError)?;
    rsa_size_ok(&key)?;
    Ok(key)
}

fn rsa_public(spki_der: &[u8]) -> Result<PublicKey, CryptoError> {
    let key = PublicKey::from_public_key_der(spki_der).map_err(|_| CryptoError)?;
    rsa_size_ok(&key)?;
    Ok(key)
}

impl Backend for RustCrypto {
    fn name(&self) -> &'static str {
        "rust-crypto"
    }

    fn aes256gcm(&self, key: &[u8; 32]) -> Box<dyn Aes256GcmKey> {
        Box::new(Key(Aes256Gcm::new(&(*key).into())))
    }

    fn rsa_oaep_encrypt(&self, spki_der: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        rsa_public(spki_der)?
            .oaep_encrypt::<Sha256>(plaintext)
            .map_err(|_| CryptoError)
    }

    fn rsa_oaep_decrypt(
        &self,
        pkcs8_der: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        rsa_private(pkcs8_der)?
            .oaep_decrypt::<Sha256>(ciphertext)
            .map(Zeroizing::new)
            .map_err(|_| CryptoError)
    }

    fn sign(
        &self,
        algorithm: SignatureAlgorithm,
        pkcs8_der: &[u8],
        message: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        match algorithm {
            SignatureAlgorithm::EcdsaP256Sha256 => {
                let key = EcdsaSigningKey::from_pkcs8_der(pkcs8_der).map_err(|_| CryptoError)?;
                // RFC 6979 deterministic nonce; the r || s encoding is what aws-lc's FIXED uses.
                let sig: EcdsaSignature = key.try_sign(message).map_err(|_| CryptoError)?;
                Ok(sig.to_vec())
            }
            SignatureAlgorithm::RsaPssSha256 => {
                // Salt length = SHA-256 output (32), MGF1-SHA-256: KMS `RSASSA_PSS_SHA_256`.
                rsa_private(pkcs8_der)?
                    .pss_sign::<Sha256>(message)
                    .map_err(|_| CryptoError)
            }
        }
    }

    fn verify(
        &self,
        algorithm: SignatureAlgorithm,
        spki_der: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        match algorithm {
            SignatureAlgorithm::EcdsaP256Sha256 => {
                let key = VerifyingKey::from_public_key_der(spki_der).map_err(|_| CryptoError)?;
                let sig = EcdsaSignature::from_slice(signature).map_err(|_| CryptoError)?;
                key.verify(message, &sig).map_err(|_| CryptoError)
            }
            SignatureAlgorithm::RsaPssSha256 => rsa_public(spki_der)?
                .pss_verify::<Sha256>(message, signature)
                .map_err(|_| CryptoError),
        }
    }

    fn generate_rsa(&self, bits: usize) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if !matches!(bits, 2048 | 3072 | 4096) {
            return Err(CryptoError);
        }
        let key = PrivateKey::new(&mut SysRng, bits).map_err(|_| CryptoError)?;
        let der = key.to_pkcs8_der().map_err(|_| CryptoError)?;
        Ok(der.to_bytes())
    }

    fn generate_p256(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let key = EcdsaSigningKey::try_generate_from_rng(&mut SysRng).map_err(|_| CryptoError)?;
        let der = key.to_pkcs8_der().map_err(|_| CryptoError)?;
        Ok(der.to_bytes())
    }
}
