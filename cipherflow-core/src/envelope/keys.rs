//! The key schedule (`docs/FORMAT.md` section 2): one data key and one file id give the
//! commitment, the payload key and the header-MAC key.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::format::SUITE_V1;
use crate::crypto::{CryptoError, fill_random};
use crate::error::IntegrityError;

const COMMITMENT_LABEL: &[u8] = b"cipherflow/v1 commitment";
const PAYLOAD_LABEL: &[u8] = b"cipherflow/v1 payload key";
const HEADER_MAC_LABEL: &[u8] = b"cipherflow/v1 header mac";

/// Length of the wrap plaintext: suite id, file id, data key.
pub(crate) const WRAP_PLAINTEXT_LEN: usize = 2 + 32 + 32;

/// The one-time secret of an envelope. Never leaves this module except wrapped.
pub(crate) struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    pub(crate) fn generate() -> Result<Self, CryptoError> {
        let mut key = Zeroizing::new([0u8; 32]);
        fill_random(key.as_mut())?;
        Ok(DataKey(key))
    }

    /// What goes inside every recipient's wrapped key.
    #[cfg(test)]
    pub(crate) fn from_bytes(key: [u8; 32]) -> Self {
        DataKey(Zeroizing::new(key))
    }

    pub(crate) fn wrap_plaintext(&self, file_id: &[u8; 32]) -> Zeroizing<Vec<u8>> {
        let mut pt = Zeroizing::new(Vec::with_capacity(WRAP_PLAINTEXT_LEN));
        pt.extend_from_slice(&SUITE_V1.to_be_bytes());
        pt.extend_from_slice(file_id);
        pt.extend_from_slice(self.0.as_ref());
        pt
    }

    /// Parses an unwrapped key, refusing one made for another file or suite.
    pub(crate) fn from_wrap_plaintext(
        pt: &[u8],
        file_id: &[u8; 32],
    ) -> Result<Self, IntegrityError> {
        if pt.len() != WRAP_PLAINTEXT_LEN {
            return Err(IntegrityError::Header);
        }
        let suite_ok = pt[..2].ct_eq(&SUITE_V1.to_be_bytes());
        let file_ok = pt[2..34].ct_eq(file_id);
        if !bool::from(suite_ok & file_ok) {
            return Err(IntegrityError::Header);
        }
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&pt[34..]);
        Ok(DataKey(key))
    }

    pub(crate) fn derive(&self, file_id: &[u8; 32]) -> FileKeys {
        let hk = Hkdf::<Sha256>::new(Some(file_id), self.0.as_ref());
        let expand = |label: &[u8]| {
            let mut out = Zeroizing::new([0u8; 32]);
            hk.expand(label, out.as_mut())
                .expect("32 bytes is a valid HKDF-SHA-256 length");
            out
        };
        FileKeys {
            commitment: *expand(COMMITMENT_LABEL),
            payload: expand(PAYLOAD_LABEL),
            mac: expand(HEADER_MAC_LABEL),
        }
    }
}

/// The keys derived for one envelope.
pub(crate) struct FileKeys {
    pub(crate) commitment: [u8; 32],
    pub(crate) payload: Zeroizing<[u8; 32]>,
    mac: Zeroizing<[u8; 32]>,
}

impl FileKeys {
    /// `HMAC-SHA-256(mac_key, preamble || recipients)`.
    pub(crate) fn header_mac(&self, header: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.mac.as_ref())
            .expect("HMAC takes any key length");
        mac.update(header);
        mac.finalize().into_bytes().into()
    }

    /// Checks the commitment and then the header MAC, both in constant time; the caller
    /// has decrypted nothing yet.
    pub(crate) fn authenticate_header(
        &self,
        commitment: &[u8; 32],
        header: &[u8],
        mac: &[u8; 32],
    ) -> Result<(), IntegrityError> {
        if !bool::from(self.commitment.ct_eq(commitment)) {
            return Err(IntegrityError::Header);
        }
        if !bool::from(self.header_mac(header).ct_eq(mac)) {
            return Err(IntegrityError::Header);
        }
        Ok(())
    }
}
