//! `pull`: the consumer's pull of a share folder (`cipherflow pull`), with the GIL released.
//! A `KmsKey` takes the GIL back only for each `Decrypt` call, as in [`crate::envelope`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cipherflow_core::pipeline::{Consumer, Location, published_tables};
use cipherflow_core::store::{LocalStore, ObjectStore, block_on};
use cipherflow_core::{Error, Verifier};
use pyo3::exceptions::{PyNotADirectoryError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{io_to_py, to_py};
use crate::keys::{AnyUnwrapper, extract_verifier};

/// An existing folder opened as a store. `LocalStore::new` would create a missing folder; a
/// reader must not turn a mistyped path into an empty share or ledger.
pub fn open_folder(py: Python<'_>, path: &Path, what: &str) -> PyResult<Arc<dyn ObjectStore>> {
    let meta = py
        .detach(|| std::fs::metadata(path))
        .map_err(|e| io_to_py(e, &format!("opening {what} {}", path.display()), Some(path)))?;
    if !meta.is_dir() {
        return Err(PyNotADirectoryError::new_err(format!(
            "{what} {} is not a folder",
            path.display()
        )));
    }
    let store = LocalStore::new(path)
        .map_err(|e| to_py(e.into(), &format!("opening {what} {}", path.display())))?;
    Ok(Arc::new(store))
}

/// The one table a share publishes (`TABLE/_latest`), as `cipherflow pull` picks it.
fn only_table(share: &Location, label: &str) -> PyResult<String> {
    let tables = block_on(published_tables(share))
        .map_err(|e| to_py(e, &format!("listing share {label}")))?;
    match tables.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(PyValueError::new_err(format!(
            "share {label} publishes no table (no TABLE/_latest)"
        ))),
        many => Err(PyValueError::new_err(format!(
            "share {label} publishes several tables ({}); name one with table=",
            many.join(", ")
        ))),
    }
}

/// Pulls a table from the share folder `share` into the folder `out`; returns what the
/// command line's `cipherflow pull` prints (plus `fetched_objects`).
#[pyfunction]
#[pyo3(signature = (share, key, out, *, signer = None, table = None))]
pub fn pull<'py>(
    py: Python<'py>,
    share: PathBuf,
    key: &Bound<'py, PyAny>,
    out: PathBuf,
    signer: Option<&Bound<'py, PyAny>>,
    table: Option<String>,
) -> PyResult<Bound<'py, PyDict>> {
    let key = AnyUnwrapper::extract(key)?;
    let verifier = extract_verifier(signer)?;
    let label = share.display().to_string();
    let location = Location::new(open_folder(py, &share, "share")?, "");
    let table = match table {
        Some(table) => table,
        None => py.detach(|| only_table(&location, &label))?,
    };
    let consumer = Consumer {
        share: location,
        key: Arc::new(key),
        signer: verifier.map(|v| v as Arc<dyn Verifier>),
    };
    let context = format!("pulling {table} from {label} into {}", out.display());
    let report = py
        .detach(|| block_on(consumer.pull(&table, &out)))
        .map_err(|e| match e {
            Error::Io(io) => io_to_py(io, &context, None),
            other => to_py(other, &context),
        })?;
    let d = PyDict::new(py);
    d.set_item("table", &table)?;
    d.set_item("generation", report.generation)?;
    d.set_item("previous", report.previous)?;
    d.set_item("fetched", report.fetched.len())?;
    d.set_item("bytes_fetched", report.bytes_fetched)?;
    d.set_item("partitions_changed", &report.partitions_changed)?;
    d.set_item("rows", report.rows)?;
    d.set_item("table_csv", report.table_csv.display().to_string())?;
    d.set_item("fetched_objects", &report.fetched)?;
    Ok(d)
}
