//! The exception hierarchy (`cipherflow.Error` and one subclass per kind a caller handles
//! differently) and the mapping from core errors, with the "where" added by the caller.

use std::io;
use std::path::Path;

use cipherflow_core::Error;
use cipherflow_core::pipeline::PipelineError as CorePipelineError;
use cipherflow_core::store::StoreError;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyOSError};
use pyo3::prelude::*;

create_exception!(
    cipherflow,
    CipherflowError,
    PyException,
    "Base class of every error cipherflow raises (I/O errors are the built-in OSError)."
);
create_exception!(
    cipherflow,
    FormatError,
    CipherflowError,
    "The bytes are not a well-formed envelope, or exceed a limit of the format."
);
create_exception!(
    cipherflow,
    UnsupportedError,
    FormatError,
    "The envelope uses a version, suite or algorithm this build does not implement."
);
create_exception!(
    cipherflow,
    IntegrityError,
    CipherflowError,
    "The envelope was altered or truncated (the message says where, never which check)."
);
create_exception!(
    cipherflow,
    WrongKeyError,
    CipherflowError,
    "The key given is not one of the envelope's recipients."
);
create_exception!(
    cipherflow,
    SignatureError,
    CipherflowError,
    "A required producer signature is missing, from another key, or invalid."
);
create_exception!(
    cipherflow,
    InvalidKeyError,
    CipherflowError,
    "A key could not be loaded or used (malformed, unsupported, or a remote key failed)."
);
create_exception!(
    cipherflow,
    RollbackError,
    IntegrityError,
    "The share went back to an older generation than the one already pulled, or forked."
);
create_exception!(
    cipherflow,
    HashMismatchError,
    IntegrityError,
    "A share object's plaintext does not hash to what the signed manifest names."
);
create_exception!(
    cipherflow,
    PipelineError,
    CipherflowError,
    "A share's pointer or manifest is malformed, or names another table or generation."
);
create_exception!(
    cipherflow,
    LedgerError,
    CipherflowError,
    "The provenance ledger or a proof bundle is malformed or fails verification."
);

/// Registers the exception classes on the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<CipherflowError>())?;
    m.add("FormatError", py.get_type::<FormatError>())?;
    m.add("UnsupportedError", py.get_type::<UnsupportedError>())?;
    m.add("IntegrityError", py.get_type::<IntegrityError>())?;
    m.add("WrongKeyError", py.get_type::<WrongKeyError>())?;
    m.add("SignatureError", py.get_type::<SignatureError>())?;
    m.add("InvalidKeyError", py.get_type::<InvalidKeyError>())?;
    m.add("RollbackError", py.get_type::<RollbackError>())?;
    m.add("HashMismatchError", py.get_type::<HashMismatchError>())?;
    m.add("PipelineError", py.get_type::<PipelineError>())?;
    m.add("LedgerError", py.get_type::<LedgerError>())?;
    Ok(())
}

/// A core error as a Python exception; `context` says what was being done and on what.
pub fn to_py(err: Error, context: &str) -> PyErr {
    let msg = |e: &dyn std::fmt::Display| {
        if context.is_empty() {
            e.to_string()
        } else {
            format!("{context}: {e}")
        }
    };
    match err {
        Error::Format(e) => FormatError::new_err(msg(&e)),
        e @ Error::Limit { .. } => FormatError::new_err(msg(&e)),
        e @ Error::Unsupported { .. } => UnsupportedError::new_err(msg(&e)),
        e @ Error::WrongKey { .. } => WrongKeyError::new_err(msg(&e)),
        Error::Integrity(e) => IntegrityError::new_err(msg(&e)),
        Error::Signature(e) => SignatureError::new_err(msg(&e)),
        Error::Key(e) => InvalidKeyError::new_err(msg(&e)),
        Error::Io(e) => io_to_py(e, context, None),
        Error::Pipeline(e @ CorePipelineError::Rollback { .. }) => RollbackError::new_err(msg(&e)),
        Error::Pipeline(e @ CorePipelineError::Mismatch { .. }) => {
            HashMismatchError::new_err(msg(&e))
        }
        Error::Pipeline(e) => PipelineError::new_err(msg(&e)),
        Error::Ledger(e) => LedgerError::new_err(msg(&e)),
        Error::Store(e) if matches!(*e, StoreError::NotFound { .. }) => {
            PyFileNotFoundError::new_err(msg(&e))
        }
        Error::Store(e) if matches!(*e, StoreError::Backend { .. }) => PyOSError::new_err(msg(&e)),
        other => CipherflowError::new_err(msg(&other)),
    }
}

/// An I/O error as the matching built-in `OSError` subclass (FileNotFoundError, ...), with
/// the file name set when known. A Python exception raised by a file object's `read()`
/// travels through `std::io` and comes back out unchanged.
pub fn io_to_py(err: io::Error, context: &str, path: Option<&Path>) -> PyErr {
    if err.get_ref().is_some_and(|e| e.is::<PyErr>()) {
        let inner = err.into_inner().expect("checked above");
        return *inner.downcast::<PyErr>().expect("checked above");
    }
    let what = if context.is_empty() {
        err.to_string()
    } else {
        format!("{context}: {err}")
    };
    let filename = path.map(|p| p.display().to_string());
    match err.raw_os_error() {
        // OSError(errno, strerror, filename) picks the subclass (FileNotFoundError, ...).
        Some(errno) => PyOSError::new_err((errno, what, filename)),
        None => PyOSError::new_err(what),
    }
}
