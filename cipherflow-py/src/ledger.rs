//! `verify_ledger` and `verify_bundle`: the auditor's checks of `cipherflow ledger verify`
//! and `cipherflow ledger check-proof`, with the GIL released.

use std::path::PathBuf;

use cipherflow_core::ledger::{
    Bundle, Checkpoint, Ledger, LedgerError, TrustedKey, TrustedKeys, format_rfc3339,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};

use crate::errors::to_py;
use crate::keys::VerifyingKey;
use crate::pipeline::open_folder;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A validity bound: `None`, Unix seconds, or a timezone-aware `datetime`.
fn bound(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Option<u64>> {
    if value.is_none() {
        return Ok(None);
    }
    if let Ok(seconds) = value.extract::<u64>() {
        return Ok(Some(seconds));
    }
    if value.hasattr("tzinfo")? && value.hasattr("timestamp")? {
        if value.getattr("tzinfo")?.is_none() {
            return Err(PyValueError::new_err(format!(
                "{what} is a naive datetime; give it a timezone (e.g. datetime.timezone.utc)"
            )));
        }
        let seconds: f64 = value.call_method0("timestamp")?.extract()?;
        if seconds < 0.0 {
            return Err(PyValueError::new_err(format!("{what} is before 1970")));
        }
        return Ok(Some(seconds.floor() as u64));
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be None, Unix seconds (int >= 0) or an aware datetime, not {}",
        value.get_type().name()?
    )))
}

/// `trusted_keys`: VerifyingKey objects, or `(VerifyingKey, not_before, not_after)` tuples.
fn trusted(keys: &Bound<'_, PyAny>) -> PyResult<TrustedKeys> {
    let mut trusted = TrustedKeys::new();
    let mut count = 0;
    for (i, item) in keys.try_iter()?.enumerate() {
        let item = item?;
        let key = if let Ok(k) = item.cast::<VerifyingKey>() {
            TrustedKey::new((*k.get().inner).clone())
        } else if let Ok(t) = item.cast::<PyTuple>() {
            if t.len() != 3 {
                return Err(PyValueError::new_err(format!(
                    "trusted_keys[{i}]: a tuple must be (VerifyingKey, not_before, not_after)"
                )));
            }
            let k = t.get_item(0)?;
            let k = k.cast::<VerifyingKey>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "trusted_keys[{i}][0] must be a cipherflow.VerifyingKey"
                ))
            })?;
            let mut key = TrustedKey::new((*k.get().inner).clone());
            if let Some(s) = bound(&t.get_item(1)?, &format!("trusted_keys[{i}] not_before"))? {
                key = key.not_before(s);
            }
            if let Some(s) = bound(&t.get_item(2)?, &format!("trusted_keys[{i}] not_after"))? {
                key = key.not_after(s);
            }
            key
        } else {
            return Err(PyTypeError::new_err(format!(
                "trusted_keys[{i}] must be a cipherflow.VerifyingKey or a \
                 (VerifyingKey, not_before, not_after) tuple, not {}",
                item.get_type().name()?
            )));
        };
        trusted = trusted.with(key);
        count += 1;
    }
    if count == 0 {
        return Err(PyValueError::new_err(
            "trusted_keys is empty: give the public key that signs the ledger's checkpoints",
        ));
    }
    Ok(trusted)
}

fn checkpoint_time(checkpoint: &Checkpoint) -> String {
    format_rfc3339(checkpoint.time.saturating_mul(1000))
}

/// Verifies the ledger folder `ledger` against `trusted_keys`; returns what
/// `cipherflow ledger verify` prints.
#[pyfunction]
#[pyo3(signature = (ledger, trusted_keys, *, allow_unsigned_tail = false))]
pub fn verify_ledger<'py>(
    py: Python<'py>,
    ledger: PathBuf,
    trusted_keys: &Bound<'py, PyAny>,
    allow_unsigned_tail: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let keys = trusted(trusted_keys)?;
    let store = open_folder(py, &ledger, "ledger")?;
    let context = format!("verifying ledger {}", ledger.display());
    let report = py
        .detach(|| cipherflow_core::store::block_on(Ledger::verify(store, "", &keys)))
        .map_err(|e| to_py(e, &context))?;
    if report.records > report.signed_size && !allow_unsigned_tail {
        let e = LedgerError::BadRecord {
            index: report.signed_size,
            object: None,
            reason: "not covered by any signed checkpoint (sign one, or pass \
                     allow_unsigned_tail=True)"
                .into(),
        };
        return Err(to_py(e.into(), &context));
    }
    let d = PyDict::new(py);
    d.set_item("origin", &report.origin)?;
    d.set_item("records", report.records)?;
    d.set_item("checkpoints", report.checkpoints)?;
    d.set_item("signed_size", report.signed_size)?;
    d.set_item("root_hash", report.latest.as_ref().map(|c| hex(&c.root)))?;
    d.set_item(
        "checkpoint_time",
        report.latest.as_ref().map(checkpoint_time),
    )?;
    Ok(d)
}

/// Verifies an offline proof bundle (`cipherflow ledger prove` output) against
/// `trusted_keys`; returns what `cipherflow ledger check-proof` prints.
#[pyfunction]
pub fn verify_bundle<'py>(
    py: Python<'py>,
    bundle: &Bound<'py, PyAny>,
    trusted_keys: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let text = if let Ok(text) = bundle.cast::<PyString>() {
        text.to_cow()?.into_owned()
    } else if let Ok(bytes) = bundle.cast::<PyBytes>() {
        String::from_utf8(bytes.as_bytes().to_vec()).map_err(|_| {
            to_py(
                LedgerError::Bundle("the JSON is not UTF-8".into()).into(),
                "checking proof bundle",
            )
        })?
    } else {
        return Err(PyTypeError::new_err(format!(
            "bundle must be the bundle's JSON as str or bytes, not {}",
            bundle.get_type().name()?
        )));
    };
    let keys = trusted(trusted_keys)?;
    let context = "checking proof bundle";
    let (checkpoint, record) = py
        .detach(|| Bundle::from_json(&text).and_then(|b| b.verify(&keys)))
        .map_err(|e| to_py(e, context))?;
    let json = py.import("json")?;
    let record = json.call_method1("loads", (record.to_json().to_string(),))?;
    let d = PyDict::new(py);
    d.set_item("verified", true)?;
    d.set_item("origin", &checkpoint.origin)?;
    d.set_item("tree_size", checkpoint.size)?;
    d.set_item("root_hash", hex(&checkpoint.root))?;
    d.set_item("checkpoint_time", checkpoint_time(&checkpoint))?;
    d.set_item("record", record)?;
    Ok(d)
}
