//! Provenance ledger costs (docs/LEDGER.md).
//!
//! - `ledger_append`: appending 20,000 records in batches of 1,000 and of 10,000
//!   (`Ledger::append_all`, one segment object per batch) with a signed (ECDSA P-256)
//!   checkpoint every 10,000 records, on a local folder (`LocalStore`: temporary file, fsync,
//!   link into place, folder fsync) and in memory (`MemoryStore`: the ledger's own cost); and
//!   the peer, the lower bound any ledger of these records pays: SHA-256 of each record's
//!   canonical bytes with plain `sha2`. Throughput in records.
//! - `ledger_inclusion_verify`: verifying one RFC 6962 inclusion proof in a tree of 1,000,000
//!   leaves (20 hashes); throughput in proofs.
//! - `ledger_tree_build`: hashing 1,000,000 leaf hashes into a tree (the in-memory part of
//!   `verify` and `open`).
//!
//! Run: `cargo bench -p cipherflow-benches --bench ledger`; smoke test: add `-- --test`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use cipherflow_core::SigningKey;
use cipherflow_core::ledger::merkle::leaf_hash;
use cipherflow_core::ledger::proof::verify_inclusion;
use cipherflow_core::ledger::{Actor, Kind, Ledger, ObjectRef, Record, Tree};
use cipherflow_core::store::{LocalStore, MemoryStore, ObjectStore, block_on};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sha2::{Digest, Sha256};

const APPENDS: u64 = 20_000;
const CHECKPOINT_EVERY: u64 = 10_000;
const TREE: u64 = 1_000_000;

fn record(i: u64) -> Record {
    Record {
        sequence: i,
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

/// The benchmark's records, in batches of `batch`.
fn batches(batch: u64) -> Vec<Vec<Record>> {
    (0..APPENDS / batch)
        .map(|b| (b * batch..(b + 1) * batch).map(record).collect())
        .collect()
}

/// Appends every batch to a new ledger in `store`, checkpointing every `CHECKPOINT_EVERY`.
fn run(store: Arc<dyn ObjectStore>, batches: Vec<Vec<Record>>, key: &SigningKey) -> Ledger {
    block_on(async {
        let mut ledger = Ledger::init(store, "", "bench/ledger").await.expect("init");
        for batch in batches {
            ledger.append_all(batch).await.expect("append_all");
            if ledger.len().is_multiple_of(CHECKPOINT_EVERY) {
                ledger
                    .checkpoint(key, 1_790_000_000 + ledger.len())
                    .await
                    .expect("checkpoint");
            }
        }
        assert_eq!(ledger.len(), APPENDS);
        ledger
    })
}

fn append(c: &mut Criterion) {
    let key = SigningKey::generate_p256().expect("P-256 key");
    let mut group = c.benchmark_group("ledger_append");
    group.throughput(Throughput::Elements(APPENDS));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for batch in [1_000, 10_000] {
        group.bench_function(
            format!("local_append_all_{batch}_checkpoint_every_10000"),
            |b| {
                b.iter_batched(
                    || {
                        let dir = tempfile::tempdir().expect("temporary folder");
                        let store = LocalStore::new(dir.path()).expect("local store");
                        (dir, Arc::new(store) as Arc<dyn ObjectStore>, batches(batch))
                    },
                    |(dir, store, batches)| (dir, run(store, batches, &key)),
                    BatchSize::PerIteration,
                );
            },
        );
        group.bench_function(
            format!("memory_append_all_{batch}_checkpoint_every_10000"),
            |b| {
                b.iter_batched(
                    || {
                        (
                            Arc::new(MemoryStore::new()) as Arc<dyn ObjectStore>,
                            batches(batch),
                        )
                    },
                    |(store, batches)| run(store, batches, &key),
                    BatchSize::PerIteration,
                );
            },
        );
    }
    // The peer: hashing the same records' canonical bytes, nothing else.
    let encoded: Vec<Vec<u8>> = (0..APPENDS)
        .map(|i| record(i).encode().expect("encodes"))
        .collect();
    group.bench_function("peer_sha256_of_each_record", |b| {
        b.iter(|| {
            let mut last = [0u8; 32];
            for bytes in black_box(&encoded) {
                let mut h = Sha256::new();
                h.update([0u8]);
                h.update(bytes);
                last = h.finalize().into();
            }
            last
        });
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
