//! The CloudTrail / S3 notification reader on arbitrary bytes (plain or gzip): errors are
//! fine, panics are not.
#![no_main]

use cipherflow_core::ledger::cloudtrail::{dedupe_and_sort, read_events};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(events) = read_events(data) {
        let n = events.len();
        assert!(dedupe_and_sort(events).len() <= n);
    }
});
