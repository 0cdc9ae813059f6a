//! `open_stream`: verified plaintext read incrementally from a path, bytes or a Python file
//! object. The Python front (`cipherflow.PlaintextStream`) wraps [`NativeStream`] in an
//! `io.RawIOBase`.

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::sync::{Arc, Mutex, MutexGuard};

use cipherflow_core::{Error, OpenReader, Opener, VerifyingKey};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{io_to_py, to_py};
use crate::keys::{AnyUnwrapper, extract_verifier};
use crate::source::Source;

type DynRead = BufReader<Box<dyn Read + Send>>;

/// An open reader. It owns its copy of the verifier and borrows nothing, so it can live as
/// long as the Python object.
struct State {
    reader: OpenReader<DynRead>,
}

impl State {
    fn open(
        input: DynRead,
        key: Arc<AnyUnwrapper>,
        verifier: Option<Arc<VerifyingKey>>,
    ) -> Result<Self, Error> {
        let mut opener = Opener::new(key.as_ref());
        if let Some(v) = verifier.as_deref() {
            opener = opener.require_signer(v);
        }
        Ok(State {
            reader: opener.open_reader(input)?,
        })
    }
}

/// Verified plaintext, read incrementally. Each chunk is released only after its tag
/// verified; with `signer=`, the last batch is held back until the signature verified.
#[pyclass(frozen, module = "cipherflow._cipherflow")]
pub struct NativeStream {
    state: Mutex<Option<State>>,
    label: String,
}

impl NativeStream {
    fn lock(&self) -> MutexGuard<'_, Option<State>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn read_err(err: io::Error, label: &str) -> PyErr {
    match Error::from_io(err) {
        Error::Io(io) => io_to_py(io, &format!("reading {label}"), None),
        other => to_py(other, &format!("opening {label}")),
    }
}

#[pymethods]
impl NativeStream {
    /// Up to `size` bytes of plaintext (all the rest if `size` is negative); `b""` at the end.
    #[pyo3(signature = (size = -1))]
    fn read<'py>(&self, py: Python<'py>, size: i64) -> PyResult<Bound<'py, PyBytes>> {
        let result = py.detach(|| -> Result<Vec<u8>, io::Error> {
            let mut guard = self.lock();
            let state = guard
                .as_mut()
                .ok_or_else(|| io::Error::other("read from a closed stream"))?;
            if size < 0 {
                let mut out = Vec::new();
                state.reader.read_to_end(&mut out)?;
                Ok(out)
            } else {
                let mut out = vec![0u8; size as usize];
                let n = state.reader.read(&mut out)?;
                out.truncate(n);
                Ok(out)
            }
        });
        match result {
            Ok(data) => Ok(PyBytes::new(py, &data)),
            Err(e) if self.lock().is_none() => Err(PyValueError::new_err(e.to_string())),
            Err(e) => Err(read_err(e, &self.label)),
        }
    }

    /// Reads the rest without keeping it; returns how many plaintext bytes there were.
    fn verify_to_end(&self, py: Python<'_>) -> PyResult<u64> {
        py.detach(|| {
            let mut guard = self.lock();
            match guard.as_mut() {
                Some(state) => io::copy(&mut state.reader, &mut io::sink()),
                None => Err(io::Error::other("read from a closed stream")),
            }
        })
        .map_err(|e| read_err(e, &self.label))
    }

    /// Releases the source (closes the file if a path was given).
    fn close(&self, py: Python<'_>) {
        let state = self.lock().take();
        py.detach(|| drop(state));
    }

    #[getter]
    fn closed(&self) -> bool {
        self.lock().is_none()
    }

    #[getter]
    fn name(&self) -> String {
        self.label.clone()
    }
}

/// Authenticates the header of `src` and returns a [`NativeStream`] of its plaintext.
#[pyfunction]
#[pyo3(signature = (src, key, *, signer = None))]
pub fn open_stream_native(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    key: &Bound<'_, PyAny>,
    signer: Option<&Bound<'_, PyAny>>,
) -> PyResult<NativeStream> {
    let key = Arc::new(AnyUnwrapper::extract(key)?);
    let verifier = extract_verifier(signer)?;
    let source = Source::extract(src)?;
    let label = source.label();
    let (input, path): (Box<dyn Read + Send>, _) = match source {
        Source::Bytes(b) => (Box::new(Cursor::new(b.into_owned())), None),
        Source::Path(p) => {
            let file = py
                .detach(|| File::open(&p))
                .map_err(|e| io_to_py(e, &format!("opening {}", p.display()), Some(&p)))?;
            (Box::new(file), Some(p))
        }
        Source::File(reader) => (Box::new(reader), None),
    };
    let input = BufReader::with_capacity(1 << 20, input);
    let state = py
        .detach(|| State::open(input, key, verifier))
        .map_err(|e| match e {
            Error::Io(io) => io_to_py(io, &format!("reading {label}"), path.as_deref()),
            other => to_py(other, &format!("opening {label}")),
        })?;
    Ok(NativeStream {
        state: Mutex::new(Some(state)),
        label,
    })
}
