//! A pipeline step's cost follows the batch, not the table (docs/PIPELINE.md).
//!
//! `pipeline_step/<rows>`: one `Pipeline::run_once` applying the same 10,000-change DMS batch
//! (30% inserts, 60% updates, 10% deletes, 35-digit sequence numbers) to tables of 100,000
//! and 1,000,000 rows already published, on an in-memory store (so the disk is not what is
//! measured). Also printed once per size: the bytes the step wrote. If the step read or
//! rewrote the table, its time and bytes would grow tenfold between the two sizes.
//!
//! Run: `cargo bench -p cipherflow-benches --bench pipeline`; smoke test: add `-- --test`,
//! or `cargo test -p cipherflow-benches --bench pipeline`
//! (which uses a 10,000-row table).
//!
//! The scaling figures (a 100,000-change batch on 1,000,000 and 10,000,000 rows) use
//! the same code with sizes from the environment, outside CI:
//! `CIPHERFLOW_BENCH_ROWS=1000000,10000000 CIPHERFLOW_BENCH_BATCH=100000 cargo bench -p
//! cipherflow-benches --bench pipeline`. The table is landed as full-load files of at most
//! 500,000 rows, one step each, so building it never holds more than one such file's changes.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use cipherflow_core::cdc::{DmsOptions, KeySpec, TableSchema};
use cipherflow_core::ledger::Actor;
use cipherflow_core::pipeline::{InputFormat, Keys, Location, Pipeline, Stores, Table};
use cipherflow_core::store::{MemoryStore, ObjectKey, ObjectStore, PutMode, block_on};
use cipherflow_core::{RsaPrivateKey, SigningKey};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

/// Rows per landed full-load file while building the table.
const LOAD_CHUNK: u64 = 500_000;

/// A size list from the environment (`1000000,10000000`), or the default.
fn env_sizes(name: &str, default: &[u64]) -> Vec<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .split(',')
            .map(|n| n.trim().parse().expect("a number of rows"))
            .collect(),
        Err(_) => default.to_vec(),
    }
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn row(rng: &mut Rng, id: u64) -> String {
    format!(
        "{id},\"Customer {id}, Ltd\",c{id}@example.com,{},{}.{:02}",
        ["DE", "FR", "US"][rng.below(3) as usize],
        rng.below(100_000),
        rng.below(100)
    )
}

fn pipeline(store: Arc<dyn ObjectStore>, keys: &Keys) -> Pipeline {
    let schema = TableSchema::new(
        ["id", "name", "email", "country", "balance"]
            .map(String::from)
            .to_vec(),
        &KeySpec::parse_list("id:int64").expect("key"),
    )
    .expect("schema");
    Pipeline {
        table: Table {
            name: "customers".into(),
            schema,
            key: "id:int64".into(),
            partitions: 16,
        },
        stores: Stores {
            landing: Location::new(store.clone(), "landing/"),
            state: Location::new(store.clone(), "state"),
            share: Location::new(store.clone(), "share"),
            ledger: Location::new(store, "ledger"),
        },
        keys: keys.clone(),
        input: InputFormat::Dms(DmsOptions::default()),
        compact_after: 1_000,
        actor: Actor::default(),
    }
}

/// A store holding a published table of `rows` rows, and the batch to apply to it.
fn published(rows: u64, batch_size: u64, keys: &Keys) -> (MemoryStore, Vec<u8>) {
    let store = Arc::new(MemoryStore::new());
    let mut rng = Rng(rows);
    let put = |name: &str, bytes: Vec<u8>| {
        let key = ObjectKey::new(format!("landing/{name}")).expect("key");
        block_on(store.put(&key, bytes.into(), PutMode::Overwrite)).expect("put");
    };
    let mut first = 1;
    let mut file = 1;
    while first <= rows {
        let last = rows.min(first + LOAD_CHUNK - 1);
        let mut load = String::from("id,name,email,country,balance\n");
        for id in first..=last {
            let _ = writeln!(load, "{}", row(&mut rng, id));
        }
        put(&format!("LOAD{file:08}.csv"), load.into_bytes());
        block_on(pipeline(store.clone(), keys).run_once()).expect("load step");
        first = last + 1;
        file += 1;
    }
    let mut batch = String::from("Op,AR_H_CHANGE_SEQ,id,name,email,country,balance\n");
    for n in 0..batch_size {
        let seq = format!(
            "{:035}",
            20261127000000_u128 * 10u128.pow(21) + u128::from(n)
        );
        let (op, id) = match rng.below(10) {
            0..=2 => ("I", rows + 1 + n),
            3..=8 => ("U", 1 + rng.below(rows)),
            _ => ("D", 1 + rng.below(rows)),
        };
        let _ = writeln!(batch, "{op},{seq},{}", row(&mut rng, id));
    }
    let store = Arc::into_inner(store).expect("one owner");
    (store, batch.into_bytes())
}

/// A fresh store with the same objects (cheap: the bytes are shared).
fn total_bytes(store: &MemoryStore) -> u64 {
    block_on(store.list(""))
        .expect("list")
        .iter()
        .map(|m| m.size)
        .sum()
}

fn step(c: &mut Criterion) {
    let state = RsaPrivateKey::generate(2048).expect("key");
    let signer = Arc::new(SigningKey::generate_p256().expect("key"));
    let keys = Keys {
        recipients: vec![
            Arc::new(
                RsaPrivateKey::generate(2048)
                    .expect("key")
                    .public_key()
                    .clone(),
            ),
            Arc::new(
                RsaPrivateKey::generate(2048)
                    .expect("key")
                    .public_key()
                    .clone(),
            ),
        ],
        state_seal: Arc::new(state.public_key().clone()),
        state_open: Arc::new(state),
        state_verifier: Some(Arc::new(signer.verifying_key().clone())),
        signer: Some(signer),
    };
    let sizes = if cipherflow_benches::smoke_run() {
        vec![10_000]
    } else {
        env_sizes("CIPHERFLOW_BENCH_ROWS", &[100_000, 1_000_000])
    };
    let batch_size = env_sizes("CIPHERFLOW_BENCH_BATCH", &[10_000])[0];
    let mut group = c.benchmark_group("pipeline_step");
    group.throughput(Throughput::Elements(batch_size));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for rows in sizes {
        let (base, batch) = published(rows, batch_size, &keys);
        let landed = ObjectKey::new("landing/20261127-0000000000.csv").expect("key");
        // Bytes written by one step, once, outside the timing.
        let probe = base.snapshot();
        let before = total_bytes(&probe);
        block_on(probe.put(&landed, batch.clone().into(), PutMode::Create)).expect("land");
        let report =
            block_on(pipeline(Arc::new(probe.snapshot()), &keys).run_once()).expect("step");
        let written = {
            let store = Arc::new(probe.snapshot());
            block_on(pipeline(store.clone(), &keys).run_once()).expect("step");
            total_bytes(&store) - before - batch.len() as u64
        };
        eprintln!(
            "pipeline_step/{rows}: {} changes, {} partitions touched, {} bytes written, \
             {} bytes in the store before",
            report.changes,
            report.partitions_touched.len(),
            written,
            before
        );
        group.bench_function(format!("{rows}"), |b| {
            b.iter_batched(
                || {
                    let store = base.snapshot();
                    block_on(store.put(&landed, batch.clone().into(), PutMode::Create))
                        .expect("land");
                    pipeline(Arc::new(store), &keys)
                },
                // The pipeline (and the whole store copy it owns) is returned, so criterion
                // drops it after the timing: freeing a 10M-row store is not part of a step.
                |pipeline| {
                    let report = block_on(pipeline.run_once()).expect("step");
                    assert_eq!(report.changes, batch_size);
                    pipeline
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, step);
criterion_main!(benches);
