//! `cipherflow._cipherflow`: the native half of the `cipherflow` Python package. The Python
//! front (`python/cipherflow/__init__.py`) re-exports it and adds the pure-Python helpers.
//!
//! One module per concept: [`keys`], [`envelope`] (whole envelopes), [`stream`]
//! (`open_stream`), [`source`] (bytes, paths and file objects), [`pipeline`] (the
//! consumer's pull), [`ledger`] (ledger and proof verification), [`errors`].

mod envelope;
mod errors;
mod keys;
mod ledger;
mod pipeline;
mod source;
mod stream;

use pyo3::prelude::*;

#[pymodule]
fn _cipherflow(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    m.add_class::<keys::PrivateKey>()?;
    m.add_class::<keys::PublicKey>()?;
    m.add_class::<keys::SigningKey>()?;
    m.add_class::<keys::VerifyingKey>()?;
    m.add_class::<keys::KmsKey>()?;
    m.add_class::<stream::NativeStream>()?;
    m.add_function(wrap_pyfunction!(keys::generate_key, m)?)?;
    m.add_function(wrap_pyfunction!(keys::generate_signing_key, m)?)?;
    m.add_function(wrap_pyfunction!(envelope::seal_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(envelope::open_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(envelope::open_file, m)?)?;
    m.add_function(wrap_pyfunction!(envelope::inspect, m)?)?;
    m.add_function(wrap_pyfunction!(stream::open_stream_native, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline::pull, m)?)?;
    m.add_function(wrap_pyfunction!(ledger::verify_ledger, m)?)?;
    m.add_function(wrap_pyfunction!(ledger::verify_bundle, m)?)?;
    Ok(())
}
