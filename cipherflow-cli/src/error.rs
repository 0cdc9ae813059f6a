//! The CLI's error type: a `cipherflow_core::Error` or an I/O error, with what we were doing
//! when it happened, printed as one line and mapped to an exit status.

use std::fmt;
use std::io;
use std::process::ExitCode;

use cipherflow_core::Error as CoreError;
use cipherflow_core::ledger::LedgerError;
use cipherflow_core::pipeline::PipelineError;

/// Exit status for a general failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status for a usage error (also what clap uses).
pub const EXIT_USAGE: u8 = 2;
/// Exit status when the envelope has no recipient for the given key.
pub const EXIT_WRONG_KEY: u8 = 3;
/// Exit status for a malformed, truncated or tampered envelope.
pub const EXIT_INTEGRITY: u8 = 4;
/// Exit status for a missing, untrusted or invalid producer signature.
pub const EXIT_SIGNATURE: u8 = 5;

/// Everything that can make a command fail.
#[derive(Debug)]
pub enum Error {
    /// A library error, with context (`"opening x.cfe"`).
    Core {
        /// What we were doing.
        context: String,
        /// The library's error.
        source: CoreError,
    },
    /// An I/O error outside the library, with context (`"creating out.pem"`).
    Io {
        /// What we were doing.
        context: String,
        /// The I/O error.
        source: io::Error,
    },
    /// Arguments that parse but make no sense together.
    Usage(String),
    /// A general failure that is not a library or I/O error (`ingest` refused a file, its
    /// sink failed), with its message.
    Failed(String),
}

impl Error {
    /// A library error, with context.
    pub fn core(context: impl Into<String>, source: CoreError) -> Self {
        Error::Core {
            context: context.into(),
            source,
        }
    }

    /// An I/O error, with context. A library error that travelled through `std::io` (from a
    /// sealing writer or an opening reader) is recovered as such.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        let context = context.into();
        if source
            .get_ref()
            .is_some_and(|inner| inner.is::<CoreError>())
        {
            Error::Core {
                context,
                source: CoreError::from_io(source),
            }
        } else {
            Error::Io { context, source }
        }
    }

    /// The process exit status for this error.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Error::Usage(_) => EXIT_USAGE,
            Error::Io { .. } | Error::Failed(_) => EXIT_FAILURE,
            Error::Core { source, .. } => match source {
                CoreError::WrongKey { .. } => EXIT_WRONG_KEY,
                CoreError::Integrity(_) | CoreError::Format(_) => EXIT_INTEGRITY,
                CoreError::Signature(_) => EXIT_SIGNATURE,
                CoreError::Pipeline(
                    PipelineError::Mismatch { .. } | PipelineError::Rollback { .. },
                ) => EXIT_INTEGRITY,
                // A ledger, checkpoint or proof that fails verification is an integrity
                // failure; one no trusted key (valid at its time) signed, a signature failure.
                CoreError::Ledger(
                    LedgerError::BadRecord { .. }
                    | LedgerError::Verify(_)
                    | LedgerError::Proof(_)
                    | LedgerError::Record { .. }
                    | LedgerError::Checkpoint(_)
                    | LedgerError::Bundle(_),
                ) => EXIT_INTEGRITY,
                CoreError::Ledger(
                    LedgerError::UntrustedKey(_)
                    | LedgerError::KeyNotValid { .. }
                    | LedgerError::BadSignature(_),
                ) => EXIT_SIGNATURE,
                _ => EXIT_FAILURE,
            },
        })
    }

    /// The message as printed: `error: ...`, on one line.
    pub fn one_line(&self) -> String {
        let text = format!("error: {self}");
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Core { context, source } => write!(f, "{context}: {source}"),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Usage(msg) | Error::Failed(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Core { source, .. } => Some(source),
            Error::Io { source, .. } => Some(source),
            Error::Usage(_) | Error::Failed(_) => None,
        }
    }
}

/// Adds context to a result.
pub trait Context<T> {
    /// Wraps the error with `context`, computed only on failure.
    fn context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T, Error>;
}

impl<T> Context<T> for Result<T, CoreError> {
    fn context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T, Error> {
        self.map_err(|e| Error::core(context(), e))
    }
}

impl<T> Context<T> for Result<T, io::Error> {
    fn context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T, Error> {
        self.map_err(|e| Error::io(context(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cipherflow_core::{IntegrityError, SignatureError};

    #[test]
    fn exit_codes_by_kind() {
        let code = |e: CoreError| Error::core("x", e).exit_code();
        assert_eq!(
            code(IntegrityError::Chunk(3).into()),
            ExitCode::from(EXIT_INTEGRITY)
        );
        assert_eq!(
            code(SignatureError::Missing.into()),
            ExitCode::from(EXIT_SIGNATURE)
        );
        assert_eq!(code(CoreError::misuse("m")), ExitCode::from(EXIT_FAILURE));
        assert_eq!(
            code(
                LedgerError::BadRecord {
                    index: 1,
                    object: None,
                    reason: "r".into()
                }
                .into()
            ),
            ExitCode::from(EXIT_INTEGRITY)
        );
        assert_eq!(
            code(LedgerError::UntrustedKey("k".into()).into()),
            ExitCode::from(EXIT_SIGNATURE)
        );
        assert_eq!(
            code(LedgerError::Storage("s".into()).into()),
            ExitCode::from(EXIT_FAILURE)
        );
        assert_eq!(
            Error::Usage("u".into()).exit_code(),
            ExitCode::from(EXIT_USAGE)
        );
    }

    #[test]
    fn io_recovers_core_errors() {
        let wrapped = CoreError::from(IntegrityError::Length).into_io();
        let e = Error::io("opening", wrapped);
        assert!(matches!(
            e,
            Error::Core {
                source: CoreError::Integrity(_),
                ..
            }
        ));
        assert_eq!(e.exit_code(), ExitCode::from(EXIT_INTEGRITY));
    }

    #[test]
    fn message_is_one_line() {
        let e = Error::Io {
            context: "a\nb".into(),
            source: io::Error::other("c\r\nd"),
        };
        assert_eq!(e.one_line(), "error: a b: c d");
    }
}
