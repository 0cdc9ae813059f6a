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
//! - `records_ingest/<files>x<records>`: `ingest` end to end into a local pipeline, as
//!   `cipherflow ingest --to DIR` does it: each file (a JSON array of the same shape) through
//!   `Ingest::object` with a `LandingSink` (validate, re-encode, one create-only put into the
//!   landing folder), then one `Pipeline::run_once` (read and validate the landed objects
//!   again, one delta run per touched partition sealed for one consumer and for the pipeline,
//!   signed, ledger records and checkpoint, pointer swap), all on a `LocalStore` in a fresh
//!   temporary folder per iteration (created outside the timing). 10 files of 10,000 records
//!   (smoke test: 2 of 500). `<files>x<records>_land_only`: the same without the step.
//!
//! Throughput is in records: criterion prints records/s (Kelem/s, Melem/s).
//! Run: `cargo bench -p cipherflow-benches --bench records`; smoke test: add `-- --test`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use cipherflow_core::ledger::Actor;
use cipherflow_core::pipeline::{
    InputFormat, Keys, LandingSink, Location, Pipeline, Stores, Table,
};
use cipherflow_core::records::{Format, Ingest, ReadOptions, RecordSchema, read_records};
use cipherflow_core::store::{LocalStore, ObjectStore, block_on};
use cipherflow_core::{RsaPrivateKey, SigningKey};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const N: usize = 100_000;

/// The issue's seed-001 schema, the fixture the tests use.
const SCHEMA: &str = include_str!("../../cipherflow-core/tests/data/records/readings.toml");

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

/// A records pipeline on local folders under `dir`.
fn local_pipeline(dir: &std::path::Path, schema: &Arc<RecordSchema>, keys: &Keys) -> Pipeline {
    let store = |name: &str| -> Arc<dyn ObjectStore> {
        Arc::new(LocalStore::new(dir.join(name)).expect("store"))
    };
    Pipeline {
        table: Table {
            name: "ProcessedRecords".into(),
            schema: schema.table_schema(),
            key: "device_id:string,timestamp:timestamp".into(),
            partitions: 8,
        },
        stores: Stores {
            landing: Location::new(store("landing"), "uploads/"),
            state: Location::new(store("state"), ""),
            share: Location::new(store("share"), ""),
            ledger: Location::new(store("ledger"), ""),
        },
        keys: keys.clone(),
        input: InputFormat::Records(schema.clone()),
        compact_after: 8,
        actor: Actor::default(),
    }
}

fn ingest(c: &mut Criterion) {
    let (files, per_file) = if cipherflow_benches::smoke_run() {
        (2, 500)
    } else {
        (10, 10_000)
    };
    let schema = Arc::new(RecordSchema::from_toml(SCHEMA).expect("schema"));
    let inputs: Vec<(String, Vec<u8>)> = (0..files)
        .map(|f| {
            let mut array = String::from("[\n");
            for j in 0..per_file {
                let (d, t, v) = fields(f * per_file + j);
                array.push_str(&format!(
                    r#"{{"device_id": "{d}", "timestamp": "{t}", "value": {v}}}"#
                ));
                array.push_str(if j + 1 < per_file { ",\n" } else { "\n]\n" });
            }
            (format!("upload-{f:04}.json"), array.into_bytes())
        })
        .collect();
    let state = RsaPrivateKey::generate(2048).expect("key");
    let signer = Arc::new(SigningKey::generate_p256().expect("key"));
    let keys = Keys {
        recipients: vec![Arc::new(
            RsaPrivateKey::generate(2048)
                .expect("key")
                .public_key()
                .clone(),
        )],
        state_seal: Arc::new(state.public_key().clone()),
        state_open: Arc::new(state),
        state_verifier: Some(Arc::new(signer.verifying_key().clone())),
        signer: Some(signer),
    };
    let total = (files * per_file) as u64;
    let mut group = c.benchmark_group("records_ingest");
    group.throughput(Throughput::Elements(total));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    // `land_only`: the same without the step (validation, re-encoding, the landing puts),
    // to show how the time splits between landing and the step.
    for step in [true, false] {
        let name = if step {
            format!("{files}x{per_file}")
        } else {
            format!("{files}x{per_file}_land_only")
        };
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir().expect("temp dir");
                    let pipeline = local_pipeline(dir.path(), &schema, &keys);
                    (dir, pipeline)
                },
                |(dir, pipeline)| {
                    let sink = LandingSink::of(&pipeline);
                    let mut ingest = Ingest {
                        schema: &schema,
                        sink: &sink,
                        rejects: None,
                        max_bytes: None,
                        ledger: None,
                    };
                    for (name, bytes) in &inputs {
                        let report =
                            block_on(ingest.object(name, bytes, Format::Json)).expect("ingest");
                        assert_eq!(report.written.len(), per_file);
                    }
                    if step {
                        let report = block_on(pipeline.run_once()).expect("step");
                        assert_eq!(report.changes, total);
                    }
                    // The folder is removed after the timing.
                    dir
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, validate, ingest);
criterion_main!(benches);
