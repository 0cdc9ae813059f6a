//! Where an envelope comes from: bytes, a path, or a Python binary file object. A file
//! object is read through [`PyReader`], a `std::io::Read` that takes the GIL only for the
//! duration of each `read()` call.

use std::borrow::Cow;
use std::io::{self, Read};
use std::path::PathBuf;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView, PyString};

/// An envelope source given from Python.
pub enum Source<'py> {
    /// `bytes`, `bytearray` or `memoryview` (contents borrowed when they are `bytes`).
    Bytes(Cow<'py, [u8]>),
    /// A `str` or `os.PathLike`.
    Path(PathBuf),
    /// Anything with a `read(n)` method returning bytes.
    File(PyReader),
}

impl<'py> Source<'py> {
    pub fn extract(obj: &'py Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(b) = obj.cast::<PyBytes>() {
            return Ok(Source::Bytes(Cow::Borrowed(b.as_bytes())));
        }
        if let Ok(b) = obj.cast::<PyByteArray>() {
            return Ok(Source::Bytes(Cow::Owned(b.to_vec())));
        }
        if obj.is_instance_of::<PyString>() || obj.hasattr("__fspath__")? {
            return Ok(Source::Path(obj.extract()?));
        }
        if obj.hasattr("read")? {
            return Ok(Source::File(PyReader::new(obj.clone().unbind())));
        }
        if obj.is_instance_of::<PyMemoryView>()
            && let Ok(b) = obj.call_method0("tobytes")?.cast::<PyBytes>()
        {
            return Ok(Source::Bytes(Cow::Owned(b.as_bytes().to_vec())));
        }
        Err(PyTypeError::new_err(format!(
            "expected bytes, a path, or a binary file object with read(), not {}",
            obj.get_type().name()?
        )))
    }

    /// How errors name this source.
    pub fn label(&self) -> String {
        match self {
            Source::Bytes(b) => format!("envelope of {} bytes", b.len()),
            Source::Path(p) => p.display().to_string(),
            Source::File(_) => "file object".to_string(),
        }
    }
}

/// A Python binary file object as a `std::io::Read`. Python exceptions raised by `read()`
/// travel inside the `io::Error` and are re-raised unchanged (see `errors::io_to_py`).
pub struct PyReader {
    obj: Py<PyAny>,
}

impl PyReader {
    pub fn new(obj: Py<PyAny>) -> Self {
        PyReader { obj }
    }
}

impl Read for PyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        Python::attach(|py| {
            let chunk = self
                .obj
                .call_method1(py, "read", (buf.len(),))
                .map_err(io::Error::other)?;
            let chunk = chunk.bind(py);
            if chunk.is_none() {
                // A non-blocking stream with nothing yet: treat as "try again".
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "file object's read() returned None",
                ));
            }
            let bytes: Cow<'_, [u8]> = if let Ok(b) = chunk.cast::<PyBytes>() {
                Cow::Borrowed(b.as_bytes())
            } else {
                Cow::Owned(chunk.extract::<Vec<u8>>().map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        "file object's read() must return bytes",
                    )
                })?)
            };
            if bytes.len() > buf.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "file object's read(n) returned more than n bytes",
                ));
            }
            buf[..bytes.len()].copy_from_slice(&bytes);
            Ok(bytes.len())
        })
    }
}
