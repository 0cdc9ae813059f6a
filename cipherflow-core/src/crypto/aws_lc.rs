//! The aws-lc-rs backend (the default).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey,
};
use aws_lc_rs::signature::{self, EcdsaKeyPair, RsaKeyPair};
use zeroize::Zeroizing;

use super::{Aes256GcmKey, Backend, CryptoError, NONCE_LEN, SignatureAlgorithm, TAG_LEN};

/// aws-lc-rs: AES-256-GCM with AES-NI/VAES and CLMUL, RSA and ECDSA from AWS-LC.
pub static AWS_LC: AwsLc = AwsLc;

/// See [`AWS_LC`].
#[derive(Debug)]
pub struct AwsLc;

struct Key(LessSafeKey);

impl Aes256GcmKey for Key {
    fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> [u8; TAG_LEN] {
        let tag = self
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                in_out,
            )
            .expect("AES-GCM sealing cannot fail for inputs under 64 GiB");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        let result = self.0.open_in_place_separate_tag(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(aad),
            tag,
            in_out,
        );
        if result.is_err() {
            // aws-lc may leave unauthenticated bytes behind on failure; release none.
            in_out.fill(0);
            return Err(CryptoError);
        }
        Ok(())
    }

    fn open_to(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8; TAG_LEN],
        out: &mut [u8],
    ) -> Result<(), CryptoError> {
        let result = self.0.open_separate_gather(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(aad),
            ciphertext,
            tag,
            out,
        );
        if result.is_err() {
            out.fill(0);
            return Err(CryptoError);
        }
        Ok(())
    }
}

impl Backend for AwsLc {
    fn name(&self) -> &'static str {
        "aws-lc-rs"
    }

    fn aes256gcm(&self, key: &[u8; 32]) -> Box<dyn Aes256GcmKey> {
        let key = UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte key is valid for AES-256");
        Box::new(Key(LessSafeKey::new(key)))
    }

    fn rsa_oaep_encrypt(&self, spki_der: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key = PublicEncryptingKey::from_der(spki_der).map_err(|_| CryptoError)?;
        let key = OaepPublicEncryptingKey::new(key).map_err(|_| CryptoError)?;
        let mut out = vec![0u8; key.ciphertext_size()];
        let n = key
            .encrypt(&OAEP_SHA256_MGF1SHA256, plaintext, &mut out, None)
            .map_err(|_| CryptoError)?
            .len();
        out.truncate(n);
        Ok(out)
    }

    fn rsa_oaep_decrypt(
        &self,
        pkcs8_der: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let key = PrivateDecryptingKey::from_pkcs8(pkcs8_der).map_err(|_| CryptoError)?;
        let key = OaepPrivateDecryptingKey::new(key).map_err(|_| CryptoError)?;
        let mut out = Zeroizing::new(vec![0u8; key.key_size_bytes()]);
        let n = key
            .decrypt(&OAEP_SHA256_MGF1SHA256, ciphertext, &mut out, None)
            .map_err(|_| CryptoError)?
            .len();
        out.truncate(n);
        Ok(out)
    }

    fn sign(
        &self,
        algorithm: SignatureAlgorithm,
        pkcs8_der: &[u8],
        message: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let rng = SystemRandom::new();
        match algorithm {
            SignatureAlgorithm::EcdsaP256Sha256 => {
                let key = EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    pkcs8_der,
                )
                .map_err(|_| CryptoError)?;
                let sig = key.sign(&rng, message).map_err(|_| CryptoError)?;
                Ok(sig.as_ref().to_vec())
            }
            SignatureAlgorithm::RsaPssSha256 => {
                let key = RsaKeyPair::from_pkcs8(pkcs8_der).map_err(|_| CryptoError)?;
                let mut sig = vec![0u8; key.public_modulus_len()];
                key.sign(&signature::RSA_PSS_SHA256, &rng, message, &mut sig)
                    .map_err(|_| CryptoError)?;
                Ok(sig)
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
        let alg: &'static dyn signature::VerificationAlgorithm = match algorithm {
            SignatureAlgorithm::EcdsaP256Sha256 => &signature::ECDSA_P256_SHA256_FIXED,
            SignatureAlgorithm::RsaPssSha256 => &signature::RSA_PSS_2048_8192_SHA256,
        };
        // aws-lc-rs parses a SubjectPublicKeyInfo for both algorithms.
        let key = signature::ParsedPublicKey::new(alg, spki_der).map_err(|_| CryptoError)?;
        key.verify_sig(message, signature).map_err(|_| CryptoError)
    }

    fn generate_rsa(&self, bits: usize) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            _ => return Err(CryptoError),
        };
        let key = PrivateDecryptingKey::generate(size).map_err(|_| CryptoError)?;
        let der = key.as_der().map_err(|_| CryptoError)?;
        Ok(Zeroizing::new(der.as_ref().to_vec()))
    }

    fn generate_p256(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let key = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| CryptoError)?;
        let der = key.to_pkcs8v1().map_err(|_| CryptoError)?;
        Ok(Zeroizing::new(der.as_ref().to_vec()))
    }
}
