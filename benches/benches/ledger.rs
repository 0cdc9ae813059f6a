//! Provenance ledger costs (docs/LEDGER.md).
//!
//! - `ledger_append`: appending records to a ledger folder with a signed (ECDSA P-256)
//!   checkpoint every 10,000 records; throughput in records.
//! - `ledger_inclusion_verify`: verifying one RFC 6962 inclusion proof in a tree of 1,000,000
//!   leaves (20 hashes); throughput in proofs.
//! - `ledger_tree_build`: hashing 1,000,000 leaf hashes into a tree (the in-memory part of
//!   `verify` and `open`).
//!
//! Run: `cargo bench -p cipherflow-benches --bench ledger`; smoke test: add `-- --test`.

use std::hint::black_box;
use std::time::Duration;

use cipherflow_core::SigningKey;
use cipherflow_core::ledger::merkle::leaf_hash;
use cipherflow_core::ledger::proof::verify_inclusion;
use cipherflow_core::ledger::{Actor, Kind, Ledger, ObjectRef, Record, Tree};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const APPENDS: u64 = 20_000;
const CHECKPOINT_EVERY: u64 = 10_000;
const TREE: u64 = 1_000_000;

fn record(i: u64) -> Record {
    Record {
        sequence: 0,
        kind: Kind::Landed,
        time_ms: 1_790_000_000_000 + i,
        object: ObjectRef::of_bytes("s3", "landing", &format!("in/part-{i:08}.csv"), b"x"),
        actor: Actor {
            principal: "arn:aws:sts::123456789012:assumed-role/ingest/run-1".into(),
            ..Actor::default()
        },
        step: "ingest".into(),
        tool_version: "cipherflow 0.1.0".into(),
        inputs: Vec::new(),
    }
}

fn append(c: &mut Criterion) {
    let key = SigningKey::generate_p256().expect("P-256 key");
    let mut group = c.benchmark_group("ledger_append");
    group.throughput(Throughput::Elements(APPENDS));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("append_20000_checkpoint_every_10000", |b| {
        b.iter_batched(
            || tempfile::tempdir().expect("temporary folder"),
            |dir| {
                let mut ledger = Ledger::init(dir.path(), "bench/ledger").expect("init");
                for i in 0..APPENDS {
                    ledger.append(record(i)).expect("append");
                    if (i + 1).is_multiple_of(CHECKPOINT_EVERY) {
                        ledger
                            .checkpoint(&key, 1_790_000_000 + i)
                            .expect("checkpoint");
                    }
                }
                dir
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

fn proofs(c: &mut Criterion) {
    let leaves: Vec<_> = (0..TREE).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let tree = Tree::from_leaves(leaves.iter().copied());
    let root = tree.root();
    let index = 123_457;
    let proof = tree.inclusion_proof(index, TREE).expect("proof");

    let mut group = c.benchmark_group("ledger_inclusion_verify");
    group.throughput(Throughput::Elements(1));
    group.bench_function("tree_1000000", |b| {
        b.iter(|| {
            verify_inclusion(
                black_box(index),
                TREE,
                &leaves[index as usize],
                black_box(&proof),
                &root,
            )
            .expect("verifies")
        });
    });
    group.finish();

    let mut group = c.benchmark_group("ledger_tree_build");
    group.throughput(Throughput::Elements(TREE));
    group.sample_size(10);
    group.bench_function("leaves_1000000", |b| {
        b.iter(|| Tree::from_leaves(black_box(&leaves).iter().copied()).root());
    });
    group.finish();
}

criterion_group!(benches, append, proofs);
criterion_main!(benches);
