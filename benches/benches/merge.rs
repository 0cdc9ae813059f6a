//! The stateless merge (`cipherflow merge`'s engine) beside a simple peer, in memory.
//!
//! `merge/cipherflow`: read the DMS change files packed (`read_dms_packed`), sort each by
//! key, and stream-merge the sorted base with them through `merge_sorted` into a reused
//! buffer: what the command does, minus the file system and the parsing threads. `merge/naive_csv_hashmap`: the obvious in-memory
//! program with the `csv` crate: parse every base row into fields, keep each key's change
//! with the greatest sequence in a `HashMap`, rebuild the table, sort it, encode every row.
//! The data is `cipherflow_benches::merge_data` (see `README.md`): 200,000 rows and a
//! 20,000-change batch in 8 files (the whole-process comparison with DuckDB and Polars on
//! 1,000,000 rows is `merge_vs_peers.sh`). Both outputs are checked equal before timing.
//!
//! Run: `cargo bench -p cipherflow-benches --bench merge`; smoke test: add `-- --test`.

use std::collections::HashMap;
use std::time::Duration;

use cipherflow_benches::merge_data::{COLUMNS, Spec, changes, write_base};
use cipherflow_core::cdc::{DmsOptions, KeySpec, TableSchema, read_dms_packed};
use cipherflow_core::merge::{PackedBatches, encode_record, merge_sorted};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SPEC: Spec = Spec {
    rows: 200_000,
    changes: 20_000,
    files: 8,
    seed: 1,
};

/// `cipherflow merge` in memory: parse and validate the batch, then the streaming merge.
fn cipherflow(base: &[u8], files: &[Vec<u8>], out: &mut Vec<u8>) {
    let schema = TableSchema::new(
        COLUMNS.map(String::from).to_vec(),
        &KeySpec::parse_list("id:int64").expect("key"),
    )
    .expect("schema");
    let options = DmsOptions::default();
    let mut batches = PackedBatches::new(schema);
    for (i, file) in files.iter().enumerate() {
        let name = format!("changes-{i:02}.csv");
        let mut batch =
            read_dms_packed(&name, &file[..], batches.schema(), &options).expect("batch");
        batch.sort_by_key();
        batches.push(batch);
    }
    out.clear();
    merge_sorted(&batches, "base.csv", base, &mut *out).expect("merge");
}

/// The peer: whole table in memory, last change per key by sequence, sort, encode.
fn naive(base: &[u8], files: &[Vec<u8>], out: &mut Vec<u8>) {
    let mut table: HashMap<i64, csv::ByteRecord> = HashMap::new();
    let mut rdr = csv::Reader::from_reader(base);
    for record in rdr.byte_records() {
        let record = record.expect("base row");
        let id = std::str::from_utf8(&record[0])
            .expect("utf8")
            .parse()
            .expect("id");
        table.insert(id, record);
    }
    let mut latest: HashMap<i64, (u128, csv::ByteRecord)> = HashMap::new();
    for file in files {
        let mut rdr = csv::Reader::from_reader(&file[..]);
        for record in rdr.byte_records() {
            let record = record.expect("change row");
            let seq: u128 = std::str::from_utf8(&record[1])
                .expect("utf8")
                .parse()
                .expect("seq");
            let id: i64 = std::str::from_utf8(&record[2])
                .expect("utf8")
                .parse()
                .expect("id");
            let newer = latest.get(&id).is_none_or(|(s, _)| seq > *s);
            if newer {
                latest.insert(id, (seq, record));
            }
        }
    }
    for (id, (_, record)) in latest {
        if &record[0] == b"D" {
            table.remove(&id);
        } else {
            table.insert(id, record.iter().skip(2).collect());
        }
    }
    let mut rows: Vec<(i64, csv::ByteRecord)> = table.into_iter().collect();
    rows.sort_unstable_by_key(|(id, _)| *id);
    out.clear();
    encode_record(COLUMNS.iter().map(|c| c.as_bytes()), out);
    for (_, record) in &rows {
        encode_record(record.iter(), out);
    }
}

fn merge(c: &mut Criterion) {
    let mut base = Vec::new();
    write_base(&SPEC, &mut base).expect("base");
    let files = changes(&SPEC);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    cipherflow(&base, &files, &mut ours);
    naive(&base, &files, &mut theirs);
    assert!(ours == theirs, "cipherflow and the naive peer disagree");

    let mut group = c.benchmark_group("merge");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(SPEC.rows));
    group.bench_function("cipherflow", |b| {
        b.iter(|| cipherflow(&base, &files, &mut ours));
    });
    group.bench_function("naive_csv_hashmap", |b| {
        b.iter(|| naive(&base, &files, &mut theirs));
    });
    group.finish();
}

criterion_group!(benches, merge);
criterion_main!(benches);
