//! The pipeline step and the consumer pull, end to end on in-memory and local stores: results
//! against an independent merge, fault injection at every store operation, concurrent runs,
//! tampering, rollback, and bad input.

use std::path::Path;
use std::sync::Arc;

use cipherflow_core::cdc::{DmsOptions, KeySpec, TableSchema, read_dms};
use cipherflow_core::ledger::{Actor, Ledger, TrustedKey, TrustedKeys};
use cipherflow_core::merge::MergeState;
use cipherflow_core::pipeline::{
    Consumer, InputFormat, Keys, Location, Pipeline, PipelineError, Stores, Table,
};
use cipherflow_core::store::{
    FailingStore, LocalStore, MemoryStore, ObjectKey, ObjectStore, PutMode, block_on,
};
use cipherflow_core::{Error, RsaPrivateKey, RsaPublicKey, SigningKey, Verifier};

const COLUMNS: [&str; 3] = ["id", "name", "amount"];

fn data(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .unwrap()
}

fn schema() -> TableSchema {
    TableSchema::new(
        COLUMNS.map(String::from).to_vec(),
        &KeySpec::parse_list("id:int64").unwrap(),
    )
    .unwrap()
}

fn signer() -> SigningKey {
    SigningKey::from_bytes(&data("producer.pem")).unwrap()
}

fn pipeline(store: Arc<dyn ObjectStore>, compact_after: usize) -> Pipeline {
    let state = RsaPrivateKey::from_bytes(&data("producer-rsa.pem")).unwrap();
    let signer = signer();
    Pipeline {
        table: Table {
            name: "t".into(),
            schema: schema(),
            key: "id:int64".into(),
            partitions: 4,
        },
        stores: Stores {
            landing: Location::new(store.clone(), "landing/t/"),
            state: Location::new(store.clone(), "state"),
            share: Location::new(store.clone(), "share"),
            ledger: Location::new(store, "ledger"),
        },
        keys: Keys {
            recipients: vec![
                Arc::new(RsaPublicKey::from_bytes(&data("alice.pub.pem")).unwrap()),
                Arc::new(RsaPublicKey::from_bytes(&data("bob.pub.pem")).unwrap()),
            ],
            state_seal: Arc::new(state.public_key().clone()),
            state_open: Arc::new(state),
            state_verifier: Some(Arc::new(signer.verifying_key().clone())),
            signer: Some(Arc::new(signer)),
        },
        input: InputFormat::Dms(DmsOptions {
            seq_column: Some("seq".into()),
            ..DmsOptions::default()
        }),
        compact_after,
        actor: Actor {
            principal: "test".into(),
            ..Actor::default()
        },
    }
}

fn consumer(store: Arc<dyn ObjectStore>, who: &str) -> Consumer {
    Consumer {
        share: Location::new(store, "share"),
        key: Arc::new(RsaPrivateKey::from_bytes(&data(&format!("{who}.pem"))).unwrap()),
        signer: Some(Arc::new(signer().verifying_key().clone()) as Arc<dyn Verifier>),
    }
}

/// Batches: (object name, DMS CSV). Batch 3 is late: its changes are older than batch 2's.
fn batches() -> Vec<(&'static str, String)> {
    let mut load = String::from("id,name,amount\n");
    for id in 1..=60 {
        load.push_str(&format!("{id},\"name {id}, x\",{id}.00\n"));
    }
    let b1 =
        "Op,seq,id,name,amount\nI,100,61,new,1\nU,101,5,five,7308.00\nD,102,7,,\nU,103,8,eight,8\n";
    let b2 = "Op,seq,id,name,amount\nD,300,61,,\nU,301,9,nine,9\nU,302,5,five again,5\n";
    let b3 = "Op,seq,id,name,amount\nI,200,61,late,2\nU,201,9,older nine,0\nI,202,62,\"multi\nline\",3\n";
    vec![
        ("LOAD00000001.csv", load),
        ("20141029-1134010000.csv", b1.into()),
        ("20141030-1134010000.csv", b2.into()),
        ("20141028-0000000000.csv", b3.into()),
    ]
}

/// The table every correct run ends with: all batches merged directly.
fn expected(batches: &[(&str, String)]) -> Vec<u8> {
    let options = DmsOptions {
        seq_column: Some("seq".into()),
        ..DmsOptions::default()
    };
    let mut state = MergeState::new(schema());
    for (name, text) in batches {
        let object = format!("landing/t/{name}");
        state.apply(&read_dms(&object, text.as_bytes(), &schema(), &options).unwrap());
    }
    let mut out = Vec::new();
    state.write_snapshot(&mut out).unwrap();
    out
}

fn land(store: &dyn ObjectStore, name: &str, text: &str) {
    let key = ObjectKey::new(format!("landing/t/{name}")).unwrap();
    block_on(store.put(&key, text.as_bytes().to_vec().into(), PutMode::Overwrite)).unwrap();
}

fn pull(store: Arc<dyn ObjectStore>, who: &str, out: &Path) -> Result<Vec<u8>, Error> {
    block_on(consumer(store, who).pull("t", out))?;
    Ok(std::fs::read(out.join("t.csv")).unwrap())
}

fn verify_ledger(store: Arc<dyn ObjectStore>) -> u64 {
    let trusted = TrustedKeys::new().with(TrustedKey::new(signer().verifying_key().clone()));
    block_on(Ledger::verify(store, "ledger", &trusted))
        .unwrap()
        .records
}

#[test]
fn steps_and_pulls_match_an_independent_merge() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let p = pipeline(store.clone(), 2);
    let all = batches();
    let alice = tempfile::tempdir().unwrap();
    let bob = tempfile::tempdir().unwrap();
    for (i, (name, text)) in all.iter().enumerate() {
        land(&*store, name, text);
        let report = block_on(p.run_once()).unwrap();
        assert_eq!(report.generation, i as u64 + 1);
        assert_eq!(report.applied, vec![format!("landing/t/{name}")]);
        // Only alice pulls every time; bob pulls at the end (and gets compacted bases).
        assert_eq!(
            pull(store.clone(), "alice", alice.path()).unwrap(),
            expected(&all[..=i])
        );
    }
    assert_eq!(
        pull(store.clone(), "bob", bob.path()).unwrap(),
        expected(&all)
    );
    let table = String::from_utf8(expected(&all)).unwrap();
    assert!(
        table.contains("5,five again,5\n") && !table.contains("\n61,"),
        "{table}"
    );
    assert!(table.contains("9,nine,9\n") && table.contains("\"multi\nline\""));

    // A replayed batch (same key, same bytes, new version) changes nothing.
    land(&*store, all[1].0, &all[1].1);
    let report = block_on(p.run_once()).unwrap();
    assert_eq!((report.generation, report.applied.len()), (4, 0));
    // So does a run with nothing new; and a pull with nothing new fetches nothing.
    let report = block_on(p.run_once()).unwrap();
    assert_eq!(report.generation, 4);
    let again = block_on(consumer(store.clone(), "alice").pull("t", alice.path())).unwrap();
    assert_eq!(again.fetched, Vec::<String>::new());
    assert!(verify_ledger(store) > 0);
}

/// Runs the whole story; returns (final pointer bytes, table) — the pointer names the manifest
/// by its hash, so equal pointers mean byte-identical manifests.
fn full_run(store: Arc<dyn ObjectStore>) -> Result<(), Error> {
    full_run_compacting(store, 2)
}

fn full_run_compacting(store: Arc<dyn ObjectStore>, compact_after: usize) -> Result<(), Error> {
    let p = pipeline(store.clone(), compact_after);
    for (name, text) in batches() {
        let key = ObjectKey::new(format!("landing/t/{name}")).unwrap();
        if block_on(store.head(&key)).is_err() {
            block_on(store.put(&key, text.into_bytes().into(), PutMode::Create))?;
        }
        block_on(p.run_once())?;
    }
    Ok(())
}

fn pointer(store: &dyn ObjectStore) -> Vec<u8> {
    let key = ObjectKey::new("share/t/_latest").unwrap();
    block_on(store.get(&key)).unwrap().0.to_vec()
}

#[test]
fn a_crash_at_any_store_operation_then_a_rerun_ends_as_an_unfailed_run() {
    let clean = Arc::new(FailingStore::new(MemoryStore::new()));
    full_run(clean.clone()).unwrap();
    let operations = clean.operations();
    let clean_pointer = pointer(&*clean);
    let out = tempfile::tempdir().unwrap();
    let table = pull(clean.clone(), "alice", out.path()).unwrap();
    assert_eq!(table, expected(&batches()));
    // Every table state a reader may legitimately see: after each published step.
    let all = batches();
    let states: Vec<Vec<u8>> = (0..all.len()).map(|i| expected(&all[..=i])).collect();

    for k in 1..=operations {
        for lose_reply in [false, true] {
            let memory = Arc::new(MemoryStore::new());
            let failing = Arc::new(if lose_reply {
                FailingStore::lose_reply_at(memory.clone(), k)
            } else {
                FailingStore::crash_at(memory.clone(), k)
            });
            // Usually an error; not always: a failed landing-index read or write is only a
            // cache miss.
            let _ = full_run(failing);
            // A reader in between sees a published generation or nothing, never a part.
            let seen = tempfile::tempdir().unwrap();
            match pull(memory.clone(), "alice", seen.path()) {
                Ok(table) => assert!(states.contains(&table), "k={k}: partial table"),
                Err(Error::Store(_)) => {}
                Err(e) => panic!("k={k}: reader saw {e}"),
            }
            full_run(memory.clone()).unwrap();
            assert_eq!(
                pointer(&*memory),
                clean_pointer,
                "k={k} lose_reply={lose_reply}"
            );
            let out = tempfile::tempdir().unwrap();
            assert_eq!(
                pull(memory.clone(), "bob", out.path()).unwrap(),
                table,
                "k={k}"
            );
            verify_ledger(memory);
        }
    }
}

#[test]
fn concurrent_runs_end_as_a_sequential_run() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
    let all = batches();
    std::thread::scope(|scope| {
        for (name, text) in &all {
            land(&*store, name, text);
            for _ in 0..3 {
                let store = store.clone();
                scope.spawn(move || block_on(pipeline(store, 2).run_once()).unwrap());
            }
        }
    });
    block_on(pipeline(store.clone(), 2).run_once()).unwrap();
    let out = tempfile::tempdir().unwrap();
    assert_eq!(
        pull(store.clone(), "alice", out.path()).unwrap(),
        expected(&all)
    );
    verify_ledger(store);
}

#[test]
fn tampered_or_swapped_objects_are_refused_and_nothing_is_written() {
    let store = Arc::new(MemoryStore::new());
    // No compaction, so every run is in the latest manifest.
    full_run_compacting(store.clone(), 8).unwrap();
    let runs = block_on(store.list("share/t/runs/")).unwrap();
    let victim = runs[0].key.clone();
    let (good, _) = block_on(store.get(&victim)).unwrap();

    // A flipped byte: the envelope refuses it.
    let mut bad = good.to_vec();
    let at = bad.len() - 5;
    bad[at] ^= 1;
    block_on(store.put(&victim, bad.into(), PutMode::Overwrite)).unwrap();
    let out = tempfile::tempdir().unwrap();
    let err = pull(store.clone(), "alice", out.path()).unwrap_err();
    assert!(
        matches!(err, Error::Integrity(_) | Error::Signature(_)),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "nothing written"
    );

    // Another valid, signed object put in its place: the manifest's hash refuses it.
    let other = runs.iter().find(|m| m.key != victim).unwrap();
    let (swap, _) = block_on(store.get(&other.key)).unwrap();
    block_on(store.put(&victim, swap, PutMode::Overwrite)).unwrap();
    let err = pull(store.clone(), "alice", out.path()).unwrap_err();
    assert!(
        matches!(err, Error::Pipeline(PipelineError::Mismatch { .. })),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    block_on(store.put(&victim, good, PutMode::Overwrite)).unwrap();
    assert!(pull(store.clone(), "alice", out.path()).is_ok());
}

#[test]
fn a_share_rolled_back_to_an_older_generation_is_refused() {
    let store = Arc::new(MemoryStore::new());
    let p = pipeline(store.clone(), 8);
    let all = batches();
    land(&*store, all[0].0, &all[0].1);
    block_on(p.run_once()).unwrap();
    let old = pointer(&*store);
    land(&*store, all[1].0, &all[1].1);
    block_on(p.run_once()).unwrap();
    let out = tempfile::tempdir().unwrap();
    pull(store.clone(), "alice", out.path()).unwrap();
    let key = ObjectKey::new("share/t/_latest").unwrap();
    block_on(store.put(&key, old.into(), PutMode::Overwrite)).unwrap();
    let err = pull(store.clone(), "alice", out.path()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Pipeline(PipelineError::Rollback { seen: 2, found: 1 })
        ),
        "{err}"
    );
}

#[test]
fn a_bad_cdc_file_refuses_the_step_and_changes_nothing() {
    let store = Arc::new(MemoryStore::new());
    let p = pipeline(store.clone(), 8);
    let all = batches();
    land(&*store, all[0].0, &all[0].1);
    block_on(p.run_once()).unwrap();
    let before = block_on(store.list("")).unwrap();
    land(
        &*store,
        "20141029-1134010000.csv",
        "Op,seq,id,name,amount\nI,1,1,a,1\nX,2,2,b,2\n",
    );
    let err = block_on(p.run_once()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("20141029-1134010000.csv") && text.contains("line 3"),
        "{text}"
    );
    let after: Vec<_> = block_on(store.list(""))
        .unwrap()
        .into_iter()
        .filter(|m| !m.key.as_str().starts_with("landing/"))
        .collect();
    let before: Vec<_> = before
        .into_iter()
        .filter(|m| !m.key.as_str().starts_with("landing/"))
        .collect();
    assert_eq!(after, before, "no object written or changed");
}

#[test]
fn the_pipeline_cannot_read_the_share() {
    // The pipeline holds the consumers' public keys only: its state key opens nothing shared.
    let store = Arc::new(MemoryStore::new());
    full_run(store.clone()).unwrap();
    let state = RsaPrivateKey::from_bytes(&data("producer-rsa.pem")).unwrap();
    for meta in block_on(store.list("share/t/runs/")).unwrap() {
        let (sealed, _) = block_on(store.get(&meta.key)).unwrap();
        let err = cipherflow_core::Opener::new(&state)
            .open_bytes(&sealed)
            .unwrap_err();
        assert!(matches!(err, Error::WrongKey { .. }));
    }
}

/// Object keys under `prefix` in `store`.
fn keys_under(store: &dyn ObjectStore, prefix: &str) -> Vec<String> {
    block_on(store.list(prefix))
        .unwrap()
        .into_iter()
        .map(|m| m.key.to_string())
        .collect()
}

/// Ids (as int64 keys) that fall in partition `p` of 4.
fn ids_in_partition(p: u32, n: usize) -> Vec<i64> {
    use cipherflow_core::cdc::{Key, KeyValue};
    use cipherflow_core::merge::partition_of;
    (1..)
        .filter(|&id| partition_of(&Key(vec![KeyValue::Int64(id)].into()), 4) == p)
        .take(n)
        .collect()
}

#[test]
fn a_batch_writes_one_run_per_touched_partition_and_compaction_rewrites_one_partition() {
    let store = Arc::new(MemoryStore::new());
    let p = pipeline(store.clone(), 2);
    let mut load = String::from("id,name,amount\n");
    for id in 1..=40 {
        load.push_str(&format!("{id},n{id},{id}\n"));
    }
    land(&*store, "LOAD00000001.csv", &load);
    block_on(p.run_once()).unwrap();
    let alice = tempfile::tempdir().unwrap();
    pull(store.clone(), "alice", alice.path()).unwrap();
    let new_under = |prefix: &str, before: &[String]| -> Vec<String> {
        keys_under(&*store, prefix)
            .into_iter()
            .filter(|k| !before.contains(k))
            .collect()
    };

    // A batch touching partitions 1 and 3 only: two runs, no base.
    let (a, b) = (ids_in_partition(1, 3), ids_in_partition(3, 1));
    let batch = format!(
        "Op,seq,id,name,amount\nU,10,{},x,1\nU,11,{},y,2\nD,12,{},,\n",
        a[0], a[1], b[0]
    );
    let (runs, bases) = (
        keys_under(&*store, "share/t/runs/"),
        keys_under(&*store, "share/t/base/"),
    );
    land(&*store, "20141029-1134010000.csv", &batch);
    let report = block_on(p.run_once()).unwrap();
    assert_eq!(report.partitions_touched, vec![1, 3]);
    assert!(report.compacted.is_empty());
    let new_runs = new_under("share/t/runs/", &runs);
    assert_eq!(new_runs.len(), 2, "{new_runs:?}");
    assert!(
        new_runs
            .iter()
            .all(|k| k.starts_with("share/t/runs/1/") || k.starts_with("share/t/runs/3/"))
    );
    assert!(new_under("share/t/base/", &bases).is_empty());

    // Another batch on partition 1: its third run passes the limit (2), so partition 1, and
    // only it, is compacted into one new base; its run is folded in, never written.
    let (runs, bases) = (
        keys_under(&*store, "share/t/runs/"),
        keys_under(&*store, "share/t/base/"),
    );
    land(
        &*store,
        "20141030-1134010000.csv",
        &format!("Op,seq,id,name,amount\nU,20,{},z,3\n", a[2]),
    );
    let report = block_on(p.run_once()).unwrap();
    assert_eq!(
        (report.partitions_touched, report.compacted),
        (vec![1], vec![1])
    );
    assert!(new_under("share/t/runs/", &runs).is_empty());
    let new_bases = new_under("share/t/base/", &bases);
    assert_eq!(new_bases.len(), 1);
    assert!(new_bases[0].starts_with("share/t/base/1/"));

    // Base + runs (alice pulled runs one by one, then the base) equals the compacted
    // result (bob reads bases and runs once), partition by partition, byte for byte.
    pull(store.clone(), "alice", alice.path()).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    pull(store.clone(), "bob", fresh.path()).unwrap();
    for part in 0..4 {
        let name = format!("t/part-{part:04}.csv");
        assert_eq!(
            std::fs::read(alice.path().join(&name)).unwrap(),
            std::fs::read(fresh.path().join(&name)).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn keys_that_would_escape_a_store_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().join("share")).unwrap();
    for bad in ["../x", "t/../../x", "/etc/passwd", "t//_latest"] {
        assert!(ObjectKey::new(bad).is_err(), "{bad}");
    }
    // A manifest cannot name a run outside the share either: table names are one segment.
    let location = Location::new(Arc::new(store), "");
    assert!(location.key("../outside").is_err());
    assert!(!dir.path().join("outside").exists());
}

#[test]
fn a_debezium_pipeline_publishes_the_same_table_as_a_direct_merge() {
    use cipherflow_core::cdc::DebeziumOptions;
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let mut p = pipeline(store.clone(), 8);
    p.table.schema = TableSchema::new(
        ["id", "name", "balance", "city", "active"]
            .map(String::from)
            .to_vec(),
        &KeySpec::parse_list("id:int64").unwrap(),
    )
    .unwrap();
    p.input = InputFormat::Debezium(DebeziumOptions::default());
    // The two files of the Debezium fixtures, landed newest first: the order of arrival
    // does not matter.
    for name in ["envelope-customers.jsonl", "pg-customers.jsonl"] {
        let key = ObjectKey::new(format!("landing/t/{name}")).unwrap();
        block_on(store.put(
            &key,
            data(&format!("debezium/{name}")).into(),
            PutMode::Create,
        ))
        .unwrap();
        block_on(p.run_once()).unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let table = pull(store, "alice", out.path()).unwrap();
    assert_eq!(table, data("debezium/expected.csv"));
}

#[test]
fn compacting_one_partition_on_request_rewrites_only_it_and_keeps_the_table() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    // Never compacts by itself: every batch leaves runs.
    let p = pipeline(store.clone(), 100);
    let all = batches();
    for (name, text) in &all {
        land(&*store, name, text);
        block_on(p.run_once()).unwrap();
    }
    let alice = tempfile::tempdir().unwrap();
    assert_eq!(
        pull(store.clone(), "alice", alice.path()).unwrap(),
        expected(&all)
    );
    let target = (0..4)
        .find(|part| !keys_under(&*store, &format!("share/t/runs/{part}/")).is_empty())
        .expect("some partition has runs");
    let before_share = keys_under(&*store, "share/");
    let before_state = keys_under(&*store, "state/");

    let report = block_on(p.compact_partition(target)).unwrap();
    assert_eq!(report.compacted, vec![target]);
    assert_eq!(report.generation, all.len() as u64 + 1);
    assert!(report.applied.is_empty() && report.partitions_touched.is_empty());
    let new = |prefix: &str, before: &[String]| -> Vec<String> {
        keys_under(&*store, prefix)
            .into_iter()
            .filter(|k| !before.contains(k) && !k.ends_with("/_latest"))
            .collect()
    };
    // One base for that partition and one manifest, in the share and in the state.
    for (prefix, before) in [("share/", &before_share), ("state/", &before_state)] {
        let written = new(prefix, before);
        assert_eq!(written.len(), 2, "{written:?}");
        assert!(
            written[0].starts_with(&format!("{prefix}t/base/{target}/")),
            "{written:?}"
        );
        assert!(
            written[1].starts_with(&format!("{prefix}t/manifests/")),
            "{written:?}"
        );
    }
    // The table is unchanged for a consumer following along and for a fresh one.
    assert_eq!(
        pull(store.clone(), "alice", alice.path()).unwrap(),
        expected(&all)
    );
    let bob = tempfile::tempdir().unwrap();
    assert_eq!(
        pull(store.clone(), "bob", bob.path()).unwrap(),
        expected(&all)
    );

    // A repeated request (a duplicate delivery) finds no runs: nothing is written.
    let pointer_before = pointer(&*store);
    let everything = keys_under(&*store, "");
    let again = block_on(p.compact_partition(target)).unwrap();
    assert_eq!(
        (again.generation, again.compacted.len()),
        (report.generation, 0)
    );
    assert_eq!(pointer(&*store), pointer_before);
    assert_eq!(keys_under(&*store, ""), everything);

    match block_on(p.compact_partition(4)) {
        Err(Error::Pipeline(e)) => assert!(
            matches!(
                e,
                PipelineError::NoPartition {
                    partition: 4,
                    last: 3,
                    ..
                }
            ),
            "{e}"
        ),
        other => panic!("expected NoPartition, got {other:?}"),
    }
    assert!(verify_ledger(store) > 0);
}

/// Keys named `test:NAME` come from a resolver (as `kms:` names come from cipherflow-aws's),
/// mixed with a key file; a scheme nobody resolves is refused by name.
#[test]
fn configuration_keys_open_through_a_resolver() {
    use cipherflow_core::pipeline::{PipelineConfig, ResolvedSigner, Resolver};
    use cipherflow_core::{KeyUnwrapper, KeyWrapper, Signer};
    use std::sync::Mutex;

    #[derive(Default)]
    struct TestKeys {
        asked: Mutex<Vec<String>>,
    }
    impl TestKeys {
        fn file(&self, name: &str) -> Option<Vec<u8>> {
            let rest = name.strip_prefix("test:")?;
            self.asked.lock().unwrap().push(name.to_owned());
            Some(data(rest))
        }
    }
    impl Resolver for TestKeys {
        fn wrapper(&self, name: &str) -> Result<Option<Arc<dyn KeyWrapper>>, Error> {
            let Some(bytes) = self.file(name) else {
                return Ok(None);
            };
            let key = match RsaPublicKey::from_bytes(&bytes) {
                Ok(public) => public,
                Err(_) => RsaPrivateKey::from_bytes(&bytes)?.public_key().clone(),
            };
            Ok(Some(Arc::new(key)))
        }
        fn unwrapper(&self, name: &str) -> Result<Option<Arc<dyn KeyUnwrapper>>, Error> {
            let Some(bytes) = self.file(name) else {
                return Ok(None);
            };
            Ok(Some(Arc::new(RsaPrivateKey::from_bytes(&bytes)?)))
        }
        fn signer(&self, name: &str) -> Result<Option<ResolvedSigner>, Error> {
            let Some(bytes) = self.file(name) else {
                return Ok(None);
            };
            let key = SigningKey::from_bytes(&bytes)?;
            let verifier = Arc::new(key.verifying_key().clone()) as Arc<dyn Verifier>;
            Ok(Some((Arc::new(key) as Arc<dyn Signer>, verifier)))
        }
    }

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bob.pub.pem"), data("bob.pub.pem")).unwrap();
    let write_config = |keys: &str| {
        let text = format!(
            "[table]\nname = \"t\"\ncolumns = [\"id\", \"name\", \"amount\"]\nkey = \"id:int64\"\n\
             partitions = 4\n[input]\nprefix = \"t/\"\nsequence_column = \"seq\"\n\
             [stores]\nlanding = \"landing\"\nstate = \"state\"\nshare = \"share\"\nledger = \"ledger\"\n\
             [keys]\n{keys}"
        );
        let path = dir.path().join("pipeline.toml");
        std::fs::write(&path, text).unwrap();
        (PipelineConfig::load(&path).unwrap(), path)
    };
    let (config, path) = write_config(
        "recipients = [\"test:alice.pub.pem\", \"bob.pub.pem\"]\nstate_public = \"test:producer-rsa.pem\"\n\
         state_private = \"test:producer-rsa.pem\"\nsigner = \"test:producer.pem\"\n",
    );
    let resolver = TestKeys::default();
    let p = config.pipeline(&path, Some(&resolver)).unwrap();
    assert_eq!(
        *resolver.asked.lock().unwrap(),
        [
            "test:alice.pub.pem",
            "test:producer-rsa.pem",
            "test:producer-rsa.pem",
            "test:producer.pem"
        ]
    );
    let all = batches();
    let landing: Arc<dyn ObjectStore> =
        Arc::new(LocalStore::new(dir.path().join("landing")).unwrap());
    for (name, text) in &all {
        let key = ObjectKey::new(format!("t/{name}")).unwrap();
        block_on(landing.put(&key, text.clone().into_bytes().into(), PutMode::Create)).unwrap();
    }
    block_on(p.run_once()).unwrap();
    let share: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path().join("share")).unwrap());
    for who in ["alice", "bob"] {
        let out = tempfile::tempdir().unwrap();
        let consumer = Consumer {
            share: Location::new(share.clone(), ""),
            key: Arc::new(RsaPrivateKey::from_bytes(&data(&format!("{who}.pem"))).unwrap()),
            signer: Some(Arc::new(signer().verifying_key().clone()) as Arc<dyn Verifier>),
        };
        block_on(consumer.pull("t", out.path())).unwrap();
        // Each batch was read from its own object key: the merge orders by sequence, so the
        // table equals the direct merge whatever the object names.
        assert_eq!(
            std::fs::read(out.path().join("t.csv")).unwrap(),
            expected(&all),
            "{who}"
        );
    }

    // Without a resolver (or with one that does not claim it), a kms: name is refused as
    // such, never read as a file.
    let (config, path) = write_config(
        "recipients = [\"kms:alias/alice\"]\nstate_public = \"test:producer-rsa.pem\"\n\
         state_private = \"test:producer-rsa.pem\"\n",
    );
    for resolve in [None, Some(&resolver as &dyn Resolver)] {
        let err = config.pipeline(&path, resolve).unwrap_err().to_string();
        assert!(
            err.contains("\"kms:alias/alice\"") && err.contains("nothing here opens kms:"),
            "{err}"
        );
    }
    // A state public key that is not the private key's half is refused.
    let (config, path) = write_config(
        "recipients = [\"bob.pub.pem\"]\nstate_public = \"test:alice.pub.pem\"\n\
         state_private = \"test:producer-rsa.pem\"\n",
    );
    let err = config
        .pipeline(&path, Some(&resolver))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not the public half"), "{err}");
}

/// A column added mid-stream (DMS writes it in later files' headers): the pipeline widens the
/// table, older runs and bases are read with the column kept, and every landing order ends
/// with the table a direct merge of the files gives, for consumers that pulled all along and
/// for one that pulls once.
#[test]
fn a_column_added_mid_stream_widens_the_table_in_any_landing_order() {
    let options = DmsOptions {
        seq_column: Some("seq".into()),
        added_columns: true,
        ..DmsOptions::default()
    };
    let mut files = batches();
    files.push((
        "20141031-0000000000.csv",
        "Op,seq,id,name,amount,channel\nU,400,5,five,5,web\nI,401,63,sixty-three,63,shop\n\
         U,402,9,nine,9,\n"
            .into(),
    ));
    files.push((
        "20141101-0000000000.csv",
        "Op,seq,id,name,amount\nU,350,5,older five,4\nU,403,63,newer,64\nI,404,64,new,1\n".into(),
    ));
    let direct = |files: &[(&str, String)]| {
        let mut state = MergeState::new(schema());
        for (name, text) in files {
            let object = format!("landing/t/{name}");
            let batch = read_dms(&object, text.as_bytes(), state.schema(), &options).unwrap();
            state.apply(&batch);
        }
        let mut out = Vec::new();
        state.write_snapshot(&mut out).unwrap();
        out
    };
    let expected = direct(&files);
    let table = String::from_utf8(expected.clone()).unwrap();
    assert!(table.starts_with("id,name,amount,channel\n"), "{table}");
    assert!(table.contains("\n5,five,5,web\n") && table.contains("\n63,newer,64,shop\n"));
    assert!(table.contains("\n1,\"name 1, x\",1.00,\n") && table.contains("\n64,new,1,\n"));

    let mut orders = vec![files.clone()];
    let mut reversed = files.clone();
    reversed.reverse();
    orders.push(reversed);
    for order in orders {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let mut p = pipeline(store.clone(), 1);
        p.input = InputFormat::Dms(options.clone());
        let alice = tempfile::tempdir().unwrap();
        for (i, (name, text)) in order.iter().enumerate() {
            land(&*store, name, text);
            block_on(p.run_once()).unwrap();
            assert_eq!(
                pull(store.clone(), "alice", alice.path()).unwrap(),
                direct(&order[..=i]),
                "after {name}"
            );
        }
        let bob = tempfile::tempdir().unwrap();
        assert_eq!(pull(store.clone(), "bob", bob.path()).unwrap(), expected);
        // Compacting every partition (old narrow bases and runs with wide ones) keeps it.
        for part in 0..4 {
            block_on(p.compact_partition(part)).unwrap();
        }
        assert_eq!(
            pull(store.clone(), "alice", alice.path()).unwrap(),
            expected
        );
        assert!(verify_ledger(store) > 0);
    }
}
