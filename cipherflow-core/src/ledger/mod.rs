//! The provenance ledger: an append-only, signed record of what every object's bytes were,
//! who put them there, from where, when and from which inputs (`docs/LEDGER.md`).
//!
//! - [`record`]: records and their canonical, hashed encoding.
//! - [`merkle`]: RFC 6962/9162 Merkle tree hashing and proof generation.
//! - [`checkpoint`]: signed checkpoints (C2SP signed-note style) and the trusted-key set.
//! - [`proof`]: inclusion/consistency proof verification and the offline bundle.
//! - [`log`]: the log stored as write-once files in a local folder, and full verification.
//! - [`cloudtrail`], [`custody`]: AWS's record of S3 events, joined with the ledger into a
//!   chain-of-custody report.
//!
//! There is no `ObjectStore` trait in the workspace yet, so [`Ledger`] writes to a local
//! folder; every piece is created once and never rewritten, which maps onto an object store
//! with conditional (`If-None-Match: *`) puts.

pub mod checkpoint;
pub mod cloudtrail;
pub mod custody;
mod error;
pub mod log;
pub mod merkle;
pub mod proof;
pub mod record;
mod time;

pub use checkpoint::{Checkpoint, TrustedKey, TrustedKeys};
pub use error::LedgerError;
pub use log::{Ledger, VerifyReport};
pub use merkle::{Hash, Tree};
pub use proof::Bundle;
pub use record::{Actor, Kind, Link, ObjectRef, Record};
pub use time::{format_rfc3339, parse_rfc3339};

#[cfg(test)]
mod tests;
