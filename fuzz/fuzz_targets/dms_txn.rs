//! The DMS transaction-file reader (`CDC_TXN-*.csv`) on arbitrary bytes (plain or gzip), in
//! both modes: errors are fine, panics are not, and rows land in the right table's batch.
#![no_main]

use cipherflow_core::cdc::{KeySpec, Op, TableSchema, TxnOptions, TxnTable, read_dms_txn};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let a = TableSchema::new(
        vec!["id".into(), "v".into()],
        &KeySpec::parse_list("id:int64").unwrap(),
    )
    .unwrap();
    let b = TableSchema::new(
        vec!["k".into(), "x".into(), "y".into()],
        &KeySpec::parse_list("k,x:decimal").unwrap(),
    )
    .unwrap();
    let tables = [
        TxnTable {
            schema_name: "s",
            table_name: "a",
            schema: &a,
        },
        TxnTable {
            schema_name: "s",
            table_name: "b",
            schema: &b,
        },
    ];
    let lenient = TxnOptions {
        no_sup_value: Some(b"N".to_vec()),
        reject: true,
        skip_unknown_tables: true,
        ..TxnOptions::default()
    };
    for options in [TxnOptions::default(), lenient] {
        if let Ok(got) = read_dms_txn("CDC_TXN-fuzz.csv", data, &tables, &options) {
            assert_eq!(got.batches.len(), 2);
            for (batch, width) in got.batches.iter().zip([2, 3]) {
                for change in &batch.changes {
                    let width = if change.op == Op::Delete { 0 } else { width };
                    assert_eq!(change.cells.len(), width);
                }
            }
        }
    }
});
