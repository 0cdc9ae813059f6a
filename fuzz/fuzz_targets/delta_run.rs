//! The delta-run decoder (docs/MERGE.md section 8) on arbitrary bytes: errors are fine,
//! panics are not, and anything accepted re-encodes to a run that decodes to the same
//! changes (the encoding is canonical: sorted, deduplicated).
#![no_main]

use cipherflow_core::cdc::{KeySpec, TableSchema};
use cipherflow_core::merge::{decode_run, encode_run};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let schema = TableSchema::new(
        vec!["id".into(), "name".into(), "ts".into()],
        &KeySpec::parse_list("id:int64,ts:timestamp").expect("key"),
    )
    .expect("schema");
    if let Ok(changes) = decode_run("fuzz", &schema, data) {
        let encoded = encode_run(&schema, &changes);
        let again = decode_run("fuzz", &schema, &encoded).expect("an encoded run decodes");
        assert_eq!(encode_run(&schema, &again), encoded);
    }
});
