//! The ledger's errors, folded into [`crate::Error::Ledger`].
//!
//! Verification failures name the first bad record index, so an auditor knows where to look.

/// Why a ledger operation or verification failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// Record bytes that do not decode under `docs/LEDGER.md`.
    #[error("malformed ledger record at byte {offset}: {reason}")]
    Record {
        /// Offset into the record's bytes.
        offset: usize,
        /// What was wrong there.
        reason: String,
    },
    /// A record that cannot be encoded or appended (a field too long, a bad input link).
    #[error("invalid ledger record: {0}")]
    InvalidRecord(String),
    /// Checkpoint text that is not a well-formed signed note.
    #[error("malformed checkpoint: {0}")]
    Checkpoint(String),
    /// No signature on the checkpoint is from a trusted key.
    #[error("checkpoint is not signed by any trusted key (signatures by: {0})")]
    UntrustedKey(String),
    /// The checkpoint is signed by a trusted key outside its validity window.
    #[error("checkpoint key {key} is not valid at the checkpoint's time {time}")]
    KeyNotValid {
        /// The key's name (its key id).
        key: String,
        /// The time the checkpoint states.
        time: String,
    },
    /// A trusted key's signature on the checkpoint does not verify.
    #[error("checkpoint signature by trusted key {0} does not verify")]
    BadSignature(String),
    /// Verification (or reading) failed at a record: the first bad index, and the segment
    /// object that holds it (or should hold it), so an auditor knows where to look.
    #[error("ledger fails verification at record {index}: {reason}{}", in_object(.object))]
    BadRecord {
        /// The first index that failed.
        index: u64,
        /// The segment object's key, where one is concerned.
        object: Option<String>,
        /// What failed there.
        reason: String,
    },
    /// Verification failed outside any one record (a checkpoint, a leaf-hash piece).
    #[error("ledger fails verification: {0}")]
    Verify(String),
    /// An inclusion or consistency proof did not verify.
    #[error("proof does not verify: {0}")]
    Proof(String),
    /// An offline proof bundle that is not well formed.
    #[error("malformed proof bundle: {0}")]
    Bundle(String),
    /// A CloudTrail log file or S3 notification that cannot be read.
    #[error("CloudTrail: {0}")]
    CloudTrail(String),
    /// The ledger's objects are not in the expected shape, or a write-once piece already
    /// exists.
    #[error("ledger storage: {0}")]
    Storage(String),
}

fn in_object(object: &Option<String>) -> String {
    object
        .as_ref()
        .map_or_else(String::new, |key| format!(" (segment {key})"))
}
