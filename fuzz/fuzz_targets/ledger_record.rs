//! The ledger record decoder on arbitrary bytes: errors are fine, panics are not, and
//! anything accepted re-encodes to exactly the same bytes (the encoding is canonical).
#![no_main]

use cipherflow_core::ledger::Record;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = Record::decode(data) {
        assert_eq!(record.encode().expect("a decoded record encodes"), data);
    }
});
