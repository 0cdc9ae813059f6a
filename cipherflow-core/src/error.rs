//! One error type for the whole library, built from one enum per concept.
//!
//! Decryption failures are deliberately coarse ([`IntegrityError`] says where, never which
//! check failed); format errors carry the byte offset, since the header is public.

use std::fmt;
use std::io;

use crate::keys::KeyId;

/// Every error `cipherflow-core` returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a well-formed envelope (or not one at all).
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The envelope uses a version, suite or algorithm this build does not implement.
    #[error("unsupported {what} {value:#x}")]
    Unsupported {
        /// Which field.
        what: &'static str,
        /// The value found.
        value: u64,
    },
    /// A hard limit of the format was exceeded (when writing or reading).
    #[error("{what} is {value}, over the limit of {limit}")]
    Limit {
        /// What was counted.
        what: &'static str,
        /// The count found.
        value: u64,
        /// The most the format allows.
        limit: u64,
    },
    /// None of the envelope's recipients is the key we were given.
    #[error(
        "wrong key: the envelope has no recipient with key id {key_id} (recipients: {recipients})"
    )]
    WrongKey {
        /// The key we tried.
        key_id: KeyId,
        /// The envelope's recipients, comma-separated.
        recipients: String,
    },
    /// The envelope was altered, truncated, or its key does not match its commitment.
    #[error(transparent)]
    Integrity(#[from] IntegrityError),
    /// A producer signature is missing, from an untrusted key, or invalid.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// A key file could not be used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The provenance ledger is malformed, failed verification, or a proof did not verify.
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    /// A CDC input or base snapshot is malformed; says which object, line and column.
    #[error(transparent)]
    Cdc(#[from] crate::cdc::CdcError),
    /// An object store operation failed; says which store, operation and key. Boxed: a
    /// store error carries several strings, and every `Result<_, Error>` would pay for them.
    #[error(transparent)]
    Store(Box<crate::store::StoreError>),
    /// A pipeline step or consumer pull failed (manifest, configuration, rollback).
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
    /// Records were refused (schema, size limit, or every field error of a file).
    #[error(transparent)]
    Records(#[from] crate::records::RecordsError),
    /// The caller asked for something the API does not allow.
    #[error("misuse: {0}")]
    Misuse(std::borrow::Cow<'static, str>),
    /// Reading or writing failed.
    #[error("I/O error: {0}")]
    Io(#[source] io::Error),
}

impl Error {
    /// An API misuse, with a fixed or a built message.
    pub fn misuse(message: impl Into<std::borrow::Cow<'static, str>>) -> Error {
        Error::Misuse(message.into())
    }

    /// Recovers a library error that travelled through `std::io::Read`/`Write` as an
    /// `io::Error`; any other I/O error stays `Error::Io`.
    pub fn from_io(err: io::Error) -> Error {
        if err.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            let inner = err.into_inner().expect("checked above");
            *inner.downcast::<Error>().expect("checked above")
        } else {
            Error::Io(err)
        }
    }

    /// Wraps this error for return through `std::io` traits (see [`Error::from_io`]).
    pub fn into_io(self) -> io::Error {
        match self {
            Error::Io(err) => err,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        Error::from_io(err)
    }
}

/// A malformed header, with the byte offset where parsing stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed envelope at byte {offset}: {reason}")]
pub struct FormatError {
    /// Offset from the start of the envelope.
    pub offset: u64,
    /// What was wrong there.
    pub reason: String,
}

/// Where authentication failed. Which check failed is not said, on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrityError {
    /// The header (a wrapped key, the commitment or the header MAC) did not authenticate.
    Header,
    /// A chunk did not authenticate: altered, reordered, duplicated, or truncated there.
    Chunk(u64),
    /// The body ended before its last chunk, or continued after it.
    Length,
}

impl std::error::Error for IntegrityError {}

impl fmt::Display for IntegrityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntegrityError::Header => write!(f, "envelope failed authentication in its header"),
            IntegrityError::Chunk(i) => write!(f, "envelope failed authentication at chunk {i}"),
            IntegrityError::Length => {
                write!(
                    f,
                    "envelope failed authentication: truncated or extended body"
                )
            }
        }
    }
}

/// Why a producer signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A signer is required but the envelope is unsigned.
    #[error("signature required, but the envelope is unsigned")]
    Missing,
    /// The envelope is signed by a key the opener does not trust.
    #[error("envelope is signed by key {found}, not by the trusted key {expected}")]
    UnknownSigner {
        /// The trusted key.
        expected: KeyId,
        /// The key named in the envelope.
        found: KeyId,
    },
    /// The signature bytes do not verify.
    #[error("producer signature does not verify")]
    Invalid,
    /// The signing operation itself failed (e.g. a remote signer refused).
    #[error("signing failed: {0}")]
    SigningFailed(String),
}

/// A key that could not be loaded or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The bytes are not a key in any accepted encoding.
    #[error("not a recognised key: {0}")]
    Malformed(String),
    /// A key of a kind that cannot be used here.
    #[error("unsupported key: {0}")]
    Unsupported(String),
    /// Wrapping or unwrapping with a (possibly remote) key failed.
    #[error("key operation failed: {0}")]
    OperationFailed(String),
}

impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Error {
        Error::Store(Box::new(e))
    }
}
