//! The Debezium JSON-lines reader on arbitrary bytes (plain or gzip), with and without the
//! lenient options: errors are fine, panics are not, and every change is well formed.
#![no_main]

use cipherflow_core::cdc::{DebeziumOptions, KeySpec, Op, TableSchema, read_debezium};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let schema = TableSchema::new(
        vec!["id".into(), "name".into(), "amount".into()],
        &KeySpec::parse_list("id:int64").unwrap(),
    )
    .unwrap();
    let lenient = DebeziumOptions {
        missing_as_keep: true,
        ignore_unknown: true,
        reject: true,
        ..DebeziumOptions::default()
    };
    for options in [DebeziumOptions::default(), lenient] {
        if let Ok(batch) = read_debezium("fuzz.jsonl", data, &schema, &options) {
            for change in &batch.changes {
                let width = if change.op == Op::Delete { 0 } else { 3 };
                assert_eq!(change.cells.len(), width);
            }
        }
    }
});
