//! A pipeline step's cost follows the batch, not the table (docs/PIPELINE.md).
//!
//! `pipeline_step/<rows>`: one `Pipeline::run_once` applying the same 10,000-change DMS batch
//! (30% inserts, 60% updates, 10% deletes, 35-digit sequence numbers) to tables of 100,000
//! and 1,000,000 rows already published, on an in-memory store (so the disk is not what is
//! measured). Also printed once per size: the bytes the step wrote. If the step read or
//! rewrote the table, its time and bytes would grow tenfold between the two sizes.
//!
//! Run: `cargo bench -p cipherflow-benches --bench pipeline`; smoke test: add `-- --test`
//! (which uses a 10,000-row table).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use cipherflow_core::cdc::{DmsOptions, KeySpec, TableSchema};
use cipherflow_core::ledger::Actor;
use cipherflow_core::pipeline::{InputFormat, Keys, Location, Pipeline, Stores, Table};
use cipherflow_core::store::{MemoryStore, ObjectKey, ObjectStore, PutMode, block_on};
use cipherflow_core::{RsaPrivateKey, SigningKey};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const BATCH: u64 = 10_000;

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
fn published(rows: u64, keys: &Keys) -> (MemoryStore, Vec<u8>) {
    let store = Arc::new(MemoryStore::new());
    let mut rng = Rng(rows);
    let mut load = String::from("id,name,email,country,balance\n");
    for id in 1..=rows {
        let _ = writeln!(load, "{}", row(&mut rng, id));
    }
    let put = |name: &str, bytes: Vec<u8>| {
        let key = ObjectKey::new(format!("landing/{name}")).expect("key");
        block_on(store.put(&key, bytes.into(), PutMode::Overwrite)).expect("put");
    };
    put("LOAD00000001.csv", load.into_bytes());
    block_on(pipeline(store.clone(), keys).run_once()).expect("load step");
    let mut batch = String::from("Op,AR_H_CHANGE_SEQ,id,name,email,country,balance\n");
    for n in 0..BATCH {
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
fn copy(store: &MemoryStore) -> MemoryStore {
    let copy = MemoryStore::new();
    for meta in block_on(store.list("")).expect("list") {
        let (bytes, _) = block_on(store.get(&meta.key)).expect("get");
        block_on(copy.put(&meta.key, bytes, PutMode::Overwrite)).expect("put");
    }
    copy
}

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
    let smoke = std::env::args().any(|a| a == "--test");
    let sizes: &[u64] = if smoke {
        &[10_000]
    } else {
        &[100_000, 1_000_000]
    };
    let mut group = c.benchmark_group("pipeline_step");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for &rows in sizes {
        let (base, batch) = published(rows, &keys);
        let landed = ObjectKey::new("landing/20261127-0000000000.csv").expect("key");
        // Bytes written by one step, once, outside the timing.
        let probe = copy(&base);
        let before = total_bytes(&probe);
        block_on(probe.put(&landed, batch.clone().into(), PutMode::Create)).expect("land");
        let report = block_on(pipeline(Arc::new(copy(&probe)), &keys).run_once()).expect("step");
        let written = {
            let store = Arc::new(copy(&probe));
            block_on(pipeline(store.clone(), &keys).run_once()).expect("step");
            total_bytes(&store) - before - batch.len() as u64
        };
        eprintln!(
            "pipeline_step/{rows}: {} changes, {} partitions touched, {} bytes written",
            report.changes,
            report.partitions_touched.len(),
            written
        );
        group.bench_function(format!("{rows}"), |b| {
            b.iter_batched(
                || {
                    let store = copy(&base);
                    block_on(store.put(&landed, batch.clone().into(), PutMode::Create))
                        .expect("land");
                    pipeline(Arc::new(store), &keys)
                },
                |pipeline| {
                    let report = block_on(pipeline.run_once()).expect("step");
                    assert_eq!(report.changes, BATCH);
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, step);
criterion_main!(benches);
