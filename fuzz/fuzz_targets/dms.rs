//! The DMS change-file reader on arbitrary bytes (plain or gzip): errors are fine, panics
//! are not, and the packed reader (`read_dms_packed`, what `cipherflow merge` uses) agrees
//! with `read_dms` change for change, cell for cell, and on every error and reject, in the
//! strict mode and in reject mode with a sentinel and added columns.
#![no_main]

use cipherflow_core::cdc::{Cell, DmsOptions, KeySpec, TableSchema, read_dms, read_dms_packed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let schema = TableSchema::new(
        vec!["id".into(), "v".into(), "w".into()],
        &KeySpec::parse_list("id:int64,w").unwrap(),
    )
    .unwrap();
    let lenient = DmsOptions {
        no_sup_value: Some(b"N".to_vec()),
        reject: true,
        added_columns: true,
        ..DmsOptions::default()
    };
    for options in [DmsOptions::default(), lenient] {
        let read = read_dms("20141029-1134010000.csv", data, &schema, &options);
        let packed = read_dms_packed("20141029-1134010000.csv", data, &schema, &options);
        let (read, packed) = match (read, packed) {
            (Ok(read), Ok(packed)) => (read, packed),
            (Err(a), Err(b)) => {
                assert_eq!(a.to_string(), b.to_string());
                continue;
            }
            (a, b) => panic!("the readers disagree: {a:?} / {b:?}"),
        };
        assert_eq!(read.sha256, packed.sha256);
        assert_eq!(read.rejects, packed.rejects);
        assert_eq!(read.added_columns, packed.added_columns);
        assert_eq!(read.changes.len(), packed.changes().len());
        for (change, p) in read.changes.iter().zip(packed.changes()) {
            assert_eq!((change.op, &change.key, &change.order), (p.op(), p.key(), p.order()));
            let cells: Vec<Cell> = packed
                .cells(p)
                .map(|c| c.map_or(Cell::Keep, |b| Cell::Value(b.into())))
                .collect();
            assert_eq!(change.cells, cells);
        }
    }
});
