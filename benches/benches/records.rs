//! Record validation throughput (docs/RECORDS.md), one core, seed-001 record shape:
//! `{"device_id": "device-NNN", "timestamp": RFC 3339, "value": decimal}` against the
//! issue's schema (pattern, RFC 3339 timestamp, decimal with min/max, nullable).
//!
//! - `records_validate_100000/{json_array,json_lines,csv}`: `read_records` over 100,000
//!   records: parse, validate every field into typed values, check duplicate keys, SHA-256 of
//!   the input.
//! - `records_validate_100000/peer_serde_json_value_per_line`: the lower bound of "just
//!   parsing": `serde_json::from_slice::<serde_json::Value>` of each line of the JSON lines
//!   file, no validation.
//!
//! Throughput is in records: criterion prints records/s (Kelem/s, Melem/s).
//! Run: `cargo bench -p cipherflow-benches --bench records`; smoke test: add `-- --test`.

use std::hint::black_box;
use std::time::Duration;

use cipherflow_core::records::{Format, ReadOptions, RecordSchema, read_records};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const N: usize = 100_000;

const SCHEMA: &str = r#"
name = "ProcessedRecords"
key = ["device_id", "timestamp"]
version = "timestamp"
[columns.device_id]
type = "string"
pattern = "^device-[0-9]{3}$"
[columns.timestamp]
type = "timestamp"
[columns.value]
type = "decimal"
min = 0
max = 1000
nullable = true
"#;

/// Record `i`: 1,000 devices, one reading per device per second.
fn fields(i: usize) -> (String, String, String) {
    let secs = i / 1000;
    let ts = format!(
        "2026-02-{:02}T{:02}:{:02}:{:02}Z",
        1 + secs / 86_400,
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    );
    (
        format!("device-{:03}", i % 1000),
        ts,
        format!("{}.{:02}", i % 1000, i % 100),
    )
}

fn inputs() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut array = String::from("[\n");
    let mut lines = String::new();
    let mut csv = String::from("device_id,timestamp,value\n");
    for i in 0..N {
        let (d, t, v) = fields(i);
        let record = format!(r#"{{"device_id": "{d}", "timestamp": "{t}", "value": {v}}}"#);
        array.push_str(&record);
        array.push_str(if i + 1 < N { ",\n" } else { "\n]\n" });
        lines.push_str(&record);
        lines.push('\n');
        csv.push_str(&format!("{d},{t},{v}\n"));
    }
    (array.into_bytes(), lines.into_bytes(), csv.into_bytes())
}

fn validate(c: &mut Criterion) {
    let schema = RecordSchema::from_toml(SCHEMA).expect("schema");
    let (array, lines, csv) = inputs();
    let options = ReadOptions::default();
    let mut group = c.benchmark_group("records_validate_100000");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for (name, format, input) in [
        ("json_array", Format::Json, &array),
        ("json_lines", Format::JsonLines, &lines),
        ("csv", Format::Csv, &csv),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let got = read_records("bench", black_box(input), format, &schema, &options)
                    .expect("valid");
                assert_eq!(got.records.len(), N);
                got
            })
        });
    }
    group.bench_function("peer_serde_json_value_per_line", |b| {
        b.iter(|| {
            let mut n = 0;
            for line in black_box(&lines).split(|&b| b == b'\n') {
                if !line.is_empty() {
                    let v: serde_json::Value = serde_json::from_slice(line).expect("JSON");
                    n += usize::from(v.is_object());
                }
            }
            assert_eq!(n, N);
        })
    });
    group.finish();
}

criterion_group!(benches, validate);
criterion_main!(benches);
