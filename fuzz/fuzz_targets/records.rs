//! The record readers (JSON array, JSON lines, CSV) on arbitrary bytes against a schema with
//! every column type and rule, strict and in reject mode: errors are fine, panics are not;
//! every record has one value per column; an input the strict reader accepts gives the same
//! records in reject mode, with no rejects.
#![no_main]

use std::sync::OnceLock;

use cipherflow_core::records::{Format, ReadOptions, RecordSchema, read_records};
use libfuzzer_sys::fuzz_target;

/// The seed-001 fixture, plus a column of every other type and rule.
const SCHEMA: &str = concat!(
    include_str!("../../cipherflow-core/tests/data/records/readings.toml"),
    r#"
[columns.count]
type = "int64"
nullable = true
[columns.ok]
type = "bool"
nullable = true
[columns.state]
type = "string"
values = ["on", "off"]
max_length = 3
nullable = true
"#
);

fn schema() -> &'static RecordSchema {
    static SCHEMA_ONCE: OnceLock<RecordSchema> = OnceLock::new();
    SCHEMA_ONCE.get_or_init(|| RecordSchema::from_toml(SCHEMA).expect("the fuzz schema"))
}

fuzz_target!(|data: &[u8]| {
    let schema = schema();
    let width = schema.columns().len();
    for format in [Format::Json, Format::JsonLines, Format::Csv] {
        let strict = ReadOptions { reject: false, max_bytes: None };
        let lenient = ReadOptions { reject: true, max_bytes: None };
        let strict = read_records("fuzz", data, format, schema, &strict);
        let lenient = read_records("fuzz", data, format, schema, &lenient);
        for records in strict.iter().chain(lenient.iter()) {
            assert!(records.records.iter().all(|r| r.values.len() == width));
        }
        if let Ok(strict) = &strict {
            let lenient = lenient.as_ref().expect("accepted strictly, so in reject mode too");
            assert!(strict.rejects.is_empty() && lenient.rejects.is_empty());
            assert_eq!(strict.records, lenient.records);
        }
    }
});
