//! Proof verification (RFC 9162 sections 2.1.3.2 and 2.1.4.2) and the offline bundle: a
//! signed checkpoint, one record and its inclusion proof, checkable with a public key alone.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::LedgerError;
use super::checkpoint::{Checkpoint, TrustedKeys};
use super::merkle::{Hash, leaf_hash, node_hash};
use super::record::Record;
use crate::Error;

fn fail(reason: &str) -> LedgerError {
    LedgerError::Proof(reason.into())
}

/// Checks that `leaf` is at `index` in the tree of `size` leaves with root `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), LedgerError> {
    if index >= size {
        return Err(fail("leaf index is not below the tree size"));
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(fail("inclusion proof is too long"));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(fail("inclusion proof is too short"));
    }
    if r != *root {
        return Err(fail("inclusion proof does not lead to the root"));
    }
    Ok(())
}

/// Checks that the tree of `new_size` leaves with root `new_root` extends the tree of
/// `old_size` leaves with root `old_root`.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), LedgerError> {
    if old_size > new_size {
        return Err(fail("the old tree is larger than the new one"));
    }
    if old_size == new_size {
        return if proof.is_empty() && old_root == new_root {
            Ok(())
        } else {
            Err(fail("trees of equal size have different roots"))
        };
    }
    if old_size == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(fail("a proof from the empty tree must be empty"))
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(fail("consistency proof is empty"));
    };
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return Err(fail("consistency proof is too long"));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(fail("consistency proof is too short"));
    }
    if fr != *old_root || sr != *new_root {
        return Err(fail("the new tree does not extend the old one"));
    }
    Ok(())
}

/// The `format` value of a version-1 bundle.
pub const BUNDLE_FORMAT: &str = "cipherflow-ledger-bundle/v1";

/// An offline proof that one record is in a signed log: verify it with [`Bundle::verify`]
/// and the log's public key. JSON (`serde`); the record is its canonical bytes in base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: String,
    /// The record's index.
    pub index: u64,
    /// The record's canonical bytes, base64.
    pub record: String,
    /// The inclusion proof: hex hashes, nearest sibling first.
    pub inclusion_proof: Vec<String>,
}

impl Bundle {
    /// Builds a bundle.
    pub fn new(checkpoint: String, index: u64, record_bytes: &[u8], proof: &[Hash]) -> Bundle {
        Bundle {
            format: BUNDLE_FORMAT.into(),
            checkpoint,
            index,
            record: BASE64.encode(record_bytes),
            inclusion_proof: proof.iter().map(hex::encode).collect(),
        }
    }

    /// Parses bundle JSON.
    pub fn from_json(text: &str) -> Result<Bundle, Error> {
        serde_json::from_str(text).map_err(|e| LedgerError::Bundle(e.to_string()).into())
    }

    /// Bundle JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain struct serializes")
    }

    /// Checks the checkpoint's signature against `trusted`, decodes the record, and checks
    /// that it is in the checkpoint's tree at `index`. Returns both.
    pub fn verify(&self, trusted: &TrustedKeys) -> Result<(Checkpoint, Record), Error> {
        if self.format != BUNDLE_FORMAT {
            return Err(LedgerError::Bundle(format!("unknown format {:?}", self.format)).into());
        }
        let checkpoint = trusted.verify(&self.checkpoint)?;
        let bytes = BASE64
            .decode(&self.record)
            .map_err(|_| LedgerError::Bundle("record is not base64".into()))?;
        let record = Record::decode(&bytes)?;
        if record.sequence != self.index {
            return Err(LedgerError::Proof(format!(
                "the record says it is number {}, the bundle says {}",
                record.sequence, self.index
            ))
            .into());
        }
        let proof = self
            .inclusion_proof
            .iter()
            .map(|h| {
                hex::decode(h)
                    .ok()
                    .and_then(|v| Hash::try_from(v).ok())
                    .ok_or_else(|| LedgerError::Bundle("a proof hash is not 64 hex digits".into()))
            })
            .collect::<Result<Vec<Hash>, _>>()?;
        verify_inclusion(
            self.index,
            checkpoint.size,
            &leaf_hash(&bytes),
            &proof,
            &checkpoint.root,
        )?;
        Ok((checkpoint, record))
    }
}
