//! Sealing and opening whole envelopes: `seal_bytes`, `open_bytes`, `open_file`, `inspect`.
//! The GIL is released around all crypto and file I/O.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;

use cipherflow_core::{
    Error, Info, IntegrityError, KeyWrapper, Opener, RsaPublicKey, Sealer, Signer, Verifier,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::errors::{io_to_py, to_py};
use crate::keys::{AnyUnwrapper, KmsKey, PublicKey, SigningKey, extract_verifier};
use crate::source::Source;

fn recipient(obj: &Bound<'_, PyAny>) -> PyResult<Arc<RsaPublicKey>> {
    if let Ok(k) = obj.cast::<PublicKey>() {
        return Ok(k.get().inner.clone());
    }
    if let Ok(k) = obj.cast::<KmsKey>() {
        return Ok(k.get().public_key().inner);
    }
    Err(PyTypeError::new_err(format!(
        "recipients must be cipherflow.PublicKey (or KmsKey) objects, not {}",
        obj.get_type().name()?
    )))
}

/// Seals `data` for `recipients`; returns the envelope.
#[pyfunction]
#[pyo3(signature = (data, recipients, *, meta = None, signer = None, chunk_size = None))]
pub fn seal_bytes<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    recipients: &Bound<'py, PyAny>,
    meta: Option<BTreeMap<String, String>>,
    signer: Option<PyRef<'py, SigningKey>>,
    chunk_size: Option<usize>,
) -> PyResult<Bound<'py, PyBytes>> {
    let Source::Bytes(plaintext) = Source::extract(data)? else {
        return Err(PyTypeError::new_err(
            "data must be bytes, bytearray or memoryview",
        ));
    };
    let keys = if let Ok(one) = recipient(recipients) {
        vec![one]
    } else {
        recipients
            .try_iter()?
            .map(|r| recipient(&r?))
            .collect::<PyResult<Vec<_>>>()?
    };
    let signer = signer.map(|s| s.inner.clone());
    let sealed = py
        .detach(|| {
            let wrappers: Vec<&dyn KeyWrapper> =
                keys.iter().map(|k| k.as_ref() as &dyn KeyWrapper).collect();
            let mut sealer = Sealer::new(&wrappers);
            for (k, v) in meta.unwrap_or_default() {
                sealer = sealer.metadata(k, v);
            }
            if let Some(s) = &signer {
                sealer = sealer.signer(s.as_ref() as &dyn Signer);
            }
            if let Some(size) = chunk_size {
                sealer = sealer.chunk_size(size);
            }
            sealer.seal_bytes(&plaintext)
        })
        .map_err(|e| to_py(e, "sealing"))?;
    Ok(PyBytes::new(py, &sealed))
}

fn opener<'a>(key: &'a AnyUnwrapper, verifier: Option<&'a dyn Verifier>) -> Opener<'a> {
    let opener = Opener::new(key);
    match verifier {
        Some(v) => opener.require_signer(v),
        None => opener,
    }
}

/// Opens an envelope held in memory; returns the plaintext only if everything verified.
#[pyfunction]
#[pyo3(signature = (data, key, *, signer = None))]
pub fn open_bytes<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    key: &Bound<'py, PyAny>,
    signer: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let Source::Bytes(envelope) = Source::extract(data)? else {
        return Err(PyTypeError::new_err(
            "data must be bytes (use open_file or open_stream for paths and file objects)",
        ));
    };
    let key = AnyUnwrapper::extract(key)?;
    let verifier = extract_verifier(signer)?;
    let context = format!("opening an envelope of {} bytes", envelope.len());
    // The plaintext is decrypted straight into the new `bytes` object (one copy fewer than
    // `Opener::open_bytes`), which Python sees only if everything verified.
    let len = py
        .detach(|| cipherflow_core::inspect(&envelope[..]))
        .map_err(|e| to_py(e, &context))?
        .plaintext_len;
    let len = usize::try_from(len).map_err(|_| PyValueError::new_err("envelope too large"))?;
    PyBytes::new_with(py, len, |buf| {
        py.detach(|| -> Result<(), Error> {
            let verifier = verifier.as_deref().map(|v| v as &dyn Verifier);
            let mut reader = opener(&key, verifier).open_reader(&envelope[..])?;
            reader.read_exact(buf).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => IntegrityError::Length.into(),
                _ => Error::from_io(e),
            })?;
            if reader.verify_to_end()? != 0 {
                return Err(IntegrityError::Length.into());
            }
            Ok(())
        })
        .map_err(|e| to_py(e, &context))
    })
}

/// Opens the envelope at `src` into the file `dst`, in constant memory. The plaintext is
/// written beside `dst` and moved into place only after everything verified; on failure
/// nothing is left behind and an existing `dst` is untouched. Returns the plaintext length.
#[pyfunction]
#[pyo3(signature = (src, dst, key, *, signer = None))]
pub fn open_file(
    py: Python<'_>,
    src: PathBuf,
    dst: PathBuf,
    key: &Bound<'_, PyAny>,
    signer: Option<&Bound<'_, PyAny>>,
) -> PyResult<u64> {
    let key = AnyUnwrapper::extract(key)?;
    let verifier = extract_verifier(signer)?;
    let context = format!("opening {} into {}", src.display(), dst.display());
    // Checked first so that an I/O error names the right file (core's error does not say).
    if let Err(e) = py.detach(|| std::fs::File::open(&src)) {
        return Err(io_to_py(
            e,
            &format!("opening {}", src.display()),
            Some(&src),
        ));
    }
    py.detach(|| {
        opener(&key, verifier.as_deref().map(|v| v as &dyn Verifier)).open_file(&src, &dst)
    })
    .map_err(|e| match e {
        cipherflow_core::Error::Io(io) => io_to_py(io, &context, Some(&dst)),
        other => to_py(other, &context),
    })
}

fn info_dict<'py>(py: Python<'py>, info: &Info) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("format_version", info.version)?;
    d.set_item("suite", info.suite)?;
    d.set_item("chunk_size", info.chunk_size)?;
    d.set_item("chunk_count", info.chunk_count)?;
    d.set_item("plaintext_len", info.plaintext_len)?;
    d.set_item("envelope_len", info.envelope_len)?;
    d.set_item("header_len", info.header_len)?;
    let recipients: Vec<String> = info.recipients.iter().map(|k| k.to_string()).collect();
    d.set_item("recipients", recipients)?;
    match &info.signer {
        Some((algorithm, id)) => {
            let s = PyDict::new(py);
            s.set_item("algorithm", algorithm.name())?;
            s.set_item("key_id", id.to_string())?;
            d.set_item("signer", s)?;
        }
        None => d.set_item("signer", py.None())?,
    }
    d.set_item("metadata", info.metadata.clone())?;
    Ok(d)
}

/// What an envelope says about itself, without a key (nothing here is authenticated until
/// the envelope is opened). `src`: bytes, a path, or a binary file object.
#[pyfunction]
pub fn inspect<'py>(py: Python<'py>, src: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
    let source = Source::extract(src)?;
    let context = format!("inspecting {}", source.label());
    let info = match source {
        Source::Bytes(b) => py.detach(|| cipherflow_core::inspect(&b[..])),
        Source::Path(p) => {
            return match py.detach(|| cipherflow_core::inspect_file(&p)) {
                Ok(info) => info_dict(py, &info),
                Err(cipherflow_core::Error::Io(e)) => Err(io_to_py(e, &context, Some(&p))),
                Err(e) => Err(to_py(e, &context)),
            };
        }
        Source::File(reader) => {
            py.detach(|| cipherflow_core::inspect(BufReader::with_capacity(1 << 20, reader)))
        }
    }
    .map_err(|e| to_py(e, &context))?;
    info_dict(py, &info)
}
