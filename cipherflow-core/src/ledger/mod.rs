//! The provenance ledger: an append-only, signed record of what every object's bytes were,
//! who put them there, from where, when and from which inputs (`docs/LEDGER.md`).
//!
//! - [`record`]: records and their canonical, hashed encoding.
//! - [`merkle`]: RFC 6962/9162 Merkle tree hashing and proof generation.
//! - [`checkpoint`]: signed checkpoints (C2SP signed-note style) and the trusted-key set.
//! - [`proof`]: inclusion/consistency proof verification and the offline bundle.
//! - [`segment`]: the framing of a segment, one write-once object holding a run of records.
//! - [`log`]: the log stored through an [`ObjectStore`](crate::store::ObjectStore) in
//!   write-once objects (segments, leaf-hash pieces, checkpoints), and full verification.
//! - [`cloudtrail`], [`custody`]: AWS's record of S3 events, joined with the ledger into a
//!   chain-of-custody report.
//!
//! Every object is created once and never rewritten (create-only puts, `If-None-Match: *` on
//! S3), so the ledger runs on a local folder and on S3 alike, and concurrent appenders
//! cannot both claim an index. The storage methods are async; synchronous callers drive a
//! local store with [`crate::store::block_on`].

pub mod checkpoint;
pub mod cloudtrail;
pub mod custody;
mod error;
pub mod log;
pub mod merkle;
pub mod proof;
pub mod record;
pub mod segment;
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
