//! Builds a large ledger on a local folder, so that `cipherflow ledger verify` (and `open`,
//! through `ledger show`) can be timed and their peak memory read in a process of their own
//! (`/usr/bin/time -v`), apart from the cost of building it (benches/README.md, ledger).
//!
//! Usage: `cargo run --release -p cipherflow-benches --example ledger_million -- DIR SIGNER.pem [N]`
//! (N defaults to 1,000,000; records are appended in `append_all` batches of 10,000 with a
//! signed checkpoint after each, and record i > 0 links to record i - 1 every 1,000 records,
//! so `verify` checks links too).

use std::sync::Arc;
use std::time::Instant;

use cipherflow_core::SigningKey;
use cipherflow_core::ledger::{Actor, Kind, Ledger, Link, ObjectRef, Record};
use cipherflow_core::store::{LocalStore, ObjectStore, block_on};

const BATCH: u64 = 10_000;

fn record(i: u64, inputs: Vec<Link>) -> Record {
    Record {
        sequence: i,
        kind: if inputs.is_empty() {
            Kind::Landed
        } else {
            Kind::BatchApplied
        },
        time_ms: 1_790_000_000_000 + i,
        object: ObjectRef::of_bytes("s3", "landing", &format!("in/part-{i:08}.csv"), b"x"),
        actor: Actor {
            principal: "arn:aws:sts::123456789012:assumed-role/ingest/run-1".into(),
            ..Actor::default()
        },
        step: "ingest".into(),
        tool_version: "cipherflow 0.1.0".into(),
        inputs,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, key, rest @ ..] = &args[..] else {
        return Err("usage: ledger_million DIR SIGNER.pem [N]".into());
    };
    let n: u64 = match rest.first() {
        Some(n) => n.parse()?,
        None => 1_000_000,
    };
    let signer = SigningKey::from_bytes(&std::fs::read(key)?)?;
    std::fs::create_dir_all(dir)?;
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir)?);
    let started = Instant::now();
    block_on(async {
        let mut ledger = Ledger::init(store, "", "bench/ledger-million").await?;
        let mut first = 0;
        while first < n {
            let end = (first + BATCH).min(n);
            let mut batch = Vec::with_capacity((end - first) as usize);
            for i in first..end {
                let inputs = if i > 0 && i % 1_000 == 0 {
                    let (previous, hash) = if i - 1 < first {
                        (i - 1, ledger.tree().leaf(i - 1).expect("appended"))
                    } else {
                        let mut r: Record = batch.last().cloned().expect("earlier in batch");
                        r.sequence = i - 1;
                        (i - 1, r.leaf_hash()?)
                    };
                    vec![Link {
                        index: previous,
                        leaf_hash: hash,
                    }]
                } else {
                    Vec::new()
                };
                batch.push(record(i, inputs));
            }
            ledger.append_all(batch).await?;
            ledger.checkpoint(&signer, 1_790_000_000 + end).await?;
            first = end;
        }
        Ok::<_, cipherflow_core::Error>(())
    })?;
    println!(
        "built {n} records in {dir} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
