//! Ledger tests: RFC 6962 vectors, cross-checks against the independent `ct-merkle` crate,
//! checkpoints and key windows, and tamper tests on a stored log.

use std::sync::Arc;

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof};
use sha2::Sha256;

use super::checkpoint::{Checkpoint, TrustedKey, TrustedKeys};
use super::merkle::{Hash, Tree, empty_root, leaf_hash};
use super::proof::{Bundle, verify_consistency, verify_inclusion};
use super::record::{Actor, Kind, Link, ObjectRef, Record};
use super::segment;
use super::{Ledger, LedgerError, VerifyReport};
use crate::store::{Bytes, LocalStore, MemoryStore, ObjectKey, ObjectStore, PutMode, block_on};
use crate::{Error, Signer, SigningKey};

// -------------------------------------------------------------------------------------------
// Merkle tree: RFC 6962 reference vectors and an independent implementation

/// The certificate-transparency-go / transparency-dev reference leaves and roots (sizes 0..8).
const CT_LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];
const CT_ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn hashes(hex_list: &str) -> Vec<Hash> {
    hex::decode(hex_list.replace(char::is_whitespace, ""))
        .unwrap()
        .chunks(32)
        .map(|c| c.try_into().unwrap())
        .collect()
}

#[test]
fn rfc6962_reference_roots() {
    let leaves: Vec<Hash> = CT_LEAVES
        .iter()
        .map(|l| leaf_hash(&hex::decode(l).unwrap()))
        .collect();
    let tree = Tree::from_leaves(leaves);
    assert_eq!(hex::encode(empty_root()), CT_ROOTS[0]);
    for (size, root) in CT_ROOTS.iter().enumerate() {
        assert_eq!(hex::encode(tree.root_at(size as u64).unwrap()), *root);
    }
    // transparency-dev/merkle reference proofs (as in ct-merkle's known-answer tests).
    assert_eq!(
        tree.inclusion_proof(5, 8).unwrap(),
        hashes(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b
             ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0
             d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"
        )
    );
    assert_eq!(
        tree.consistency_proof(6, 8).unwrap(),
        hashes(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a
             ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0
             d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"
        )
    );
    assert_eq!(
        tree.consistency_proof(2, 5).unwrap(),
        hashes(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e
             bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"
        )
    );
}

fn flat(proof: &[Hash]) -> Vec<u8> {
    proof.concat()
}

fn unflat(bytes: &[u8]) -> Vec<Hash> {
    bytes.chunks(32).map(|c| c.try_into().unwrap()).collect()
}

/// Checks roots, inclusion and consistency proofs at one size against `ct-merkle`, both
/// ways: our proofs must equal theirs byte for byte, and each verifier accepts the other's.
fn cross_check(ours: &Tree, theirs: &MemoryBackedTree<Sha256, Vec<u8>>, values: &[Vec<u8>]) {
    let n = ours.len();
    let their_root = theirs.root();
    let root = ours.root();
    assert_eq!(their_root.as_bytes().as_slice(), root, "root at size {n}");
    let mut indexes = vec![0, n / 2, n - 1, (n * 7 + 3) % n];
    indexes.dedup();
    for i in indexes {
        let proof = ours.inclusion_proof(i, n).unwrap();
        let theirs_proof = theirs.prove_inclusion(i as usize);
        assert_eq!(
            theirs_proof.as_bytes(),
            flat(&proof),
            "inclusion {i} of {n}"
        );
        verify_inclusion(
            i,
            n,
            &leaf_hash(&values[i as usize]),
            &unflat(theirs_proof.as_bytes()),
            &root,
        )
        .unwrap();
        their_root
            .verify_inclusion(
                &values[i as usize],
                i,
                &InclusionProof::<Sha256>::from_bytes(flat(&proof)),
            )
            .unwrap();
    }
    let mut olds = vec![1, n / 2, n - 1, (n * 5 + 1) % n];
    olds.retain(|&m| m >= 1 && m < n);
    olds.dedup();
    for m in olds {
        let proof = ours.consistency_proof(m, n).unwrap();
        let theirs_proof = theirs.prove_consistency((n - m) as usize);
        assert_eq!(
            theirs_proof.as_bytes(),
            flat(&proof),
            "consistency {m} -> {n}"
        );
        let old_root = ours.root_at(m).unwrap();
        verify_consistency(m, n, &old_root, &root, &unflat(theirs_proof.as_bytes())).unwrap();
        let their_old = ct_merkle::RootHash::<Sha256>::new(old_root.into(), m);
        their_root
            .verify_consistency(
                &their_old,
                &ConsistencyProof::<Sha256>::try_from_bytes(flat(&proof)).unwrap(),
            )
            .unwrap();
    }
}

#[test]
fn agrees_with_ct_merkle_sizes_1_to_1000() {
    let mut ours = Tree::new();
    let mut theirs = MemoryBackedTree::<Sha256, Vec<u8>>::new();
    let mut values = Vec::new();
    for i in 0u32..1000 {
        let value = format!("record {i}").into_bytes();
        ours.push(leaf_hash(&value));
        theirs.push(value.clone());
        values.push(value);
        cross_check(&ours, &theirs, &values);
    }
}

#[test]
fn agrees_with_ct_merkle_large_sizes() {
    let mut ours = Tree::new();
    let mut theirs = MemoryBackedTree::<Sha256, Vec<u8>>::new();
    let mut values = Vec::new();
    let checkpoints = [4095, 4096, 4097, 65_535, 65_536, 65_537, 100_003];
    for i in 0u32..100_003 {
        let value = i.to_be_bytes().to_vec();
        ours.push(leaf_hash(&value));
        theirs.push(value.clone());
        values.push(value);
        if checkpoints.contains(&(i + 1)) {
            cross_check(&ours, &theirs, &values);
        }
    }
}

#[test]
fn every_proof_in_small_trees_verifies_and_altered_ones_fail() {
    let leaves: Vec<Hash> = (0u8..40).map(|i| leaf_hash(&[i])).collect();
    let tree = Tree::from_leaves(leaves.iter().copied());
    for n in 1..=40u64 {
        let root = tree.root_at(n).unwrap();
        for i in 0..n {
            let proof = tree.inclusion_proof(i, n).unwrap();
            verify_inclusion(i, n, &leaves[i as usize], &proof, &root).unwrap();
            assert!(verify_inclusion(i, n, &leaves[(i as usize + 1) % 40], &proof, &root).is_err());
            if n > 1 {
                assert!(
                    verify_inclusion((i + 1) % n, n, &leaves[i as usize], &proof, &root).is_err()
                );
            }
            for k in 0..proof.len() {
                let mut bad = proof.clone();
                bad[k][0] ^= 1;
                assert!(verify_inclusion(i, n, &leaves[i as usize], &bad, &root).is_err());
            }
        }
        for m in 1..n {
            let proof = tree.consistency_proof(m, n).unwrap();
            let old = tree.root_at(m).unwrap();
            verify_consistency(m, n, &old, &root, &proof).unwrap();
            let mut wrong_old = old;
            wrong_old[31] ^= 1;
            assert!(verify_consistency(m, n, &wrong_old, &root, &proof).is_err());
            if !proof.is_empty() {
                assert!(verify_consistency(m, n, &old, &root, &proof[1..]).is_err());
            }
        }
    }
}

#[test]
fn forked_log_fails_consistency() {
    let common: Vec<Hash> = (0u8..10).map(|i| leaf_hash(&[i])).collect();
    let mut honest = Tree::from_leaves(common.iter().copied());
    let mut fork = Tree::from_leaves(common[..7].iter().copied());
    for i in 10u8..20 {
        honest.push(leaf_hash(&[i]));
    }
    for i in 100u8..113 {
        fork.push(leaf_hash(&[i]));
    }
    // The fork agrees up to 7 leaves, then diverges: a proof from the honest size-10 head to
    // the fork's size-20 head cannot exist; the fork's own proof (from its size 10) fails.
    let honest_10 = honest.root_at(10).unwrap();
    let fork_20 = fork.root_at(20).unwrap();
    let fork_proof = fork.consistency_proof(10, 20).unwrap();
    assert!(matches!(
        verify_consistency(10, 20, &honest_10, &fork_20, &fork_proof),
        Err(LedgerError::Proof(_))
    ));
    let honest_proof = honest.consistency_proof(10, 20).unwrap();
    assert!(verify_consistency(10, 20, &honest_10, &fork_20, &honest_proof).is_err());
    // Before the fork point they are consistent.
    verify_consistency(
        7,
        20,
        &honest.root_at(7).unwrap(),
        &fork_20,
        &fork.consistency_proof(7, 20).unwrap(),
    )
    .unwrap();
}

// -------------------------------------------------------------------------------------------
// Checkpoints

const T0: u64 = 1_790_000_000;

fn signer() -> SigningKey {
    SigningKey::generate_p256().unwrap()
}

fn trust(key: &SigningKey) -> TrustedKeys {
    TrustedKeys::new().with(TrustedKey::new(key.verifying_key().clone()))
}

fn checkpoint(size: u64) -> Checkpoint {
    Checkpoint {
        origin: "example.com/ledger/test".into(),
        size,
        root: [7; 32],
        time: T0,
    }
}

#[test]
fn checkpoint_note_shape_and_roundtrip() {
    let key = signer();
    let note = checkpoint(42).sign(&key).unwrap();
    let lines: Vec<&str> = note.lines().collect();
    assert_eq!(lines[0], "example.com/ledger/test");
    assert_eq!(lines[1], "42");
    assert_eq!(lines[2], "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=");
    assert_eq!(lines[3], format!("time {T0}"));
    assert_eq!(lines[4], "");
    assert!(lines[5].starts_with(&format!("\u{2014} {} ", Signer::key_id(&key))));
    assert_eq!(lines.len(), 6);
    assert_eq!(trust(&key).verify(&note).unwrap(), checkpoint(42));
}

fn ledger_err(e: Error) -> LedgerError {
    match e {
        Error::Ledger(l) => l,
        other => panic!("not a ledger error: {other}"),
    }
}

#[test]
fn checkpoint_refused_when_altered_or_from_unknown_key() {
    let key = signer();
    let note = checkpoint(42).sign(&key).unwrap();
    // Any altered body byte: either malformed or a bad signature, never accepted.
    for i in 0..note.find("\n\n").unwrap() {
        let mut bytes = note.clone().into_bytes();
        bytes[i] ^= 0x01;
        if let Ok(text) = String::from_utf8(bytes) {
            assert!(trust(&key).verify(&text).is_err(), "byte {i}");
        }
    }
    let other = signer();
    assert!(matches!(
        ledger_err(trust(&other).verify(&note).unwrap_err()),
        LedgerError::UntrustedKey(_)
    ));
    assert!(matches!(
        ledger_err(TrustedKeys::new().verify(&note).unwrap_err()),
        LedgerError::UntrustedKey(_)
    ));
    // A note with a second, unknown signature still verifies under the known key.
    let extra = checkpoint(42).sign(&other).unwrap();
    let sig_line = extra.split("\n\n").nth(1).unwrap();
    let cosigned = format!("{note}{sig_line}");
    assert_eq!(trust(&key).verify(&cosigned).unwrap().size, 42);
    assert_eq!(trust(&other).verify(&cosigned).unwrap().size, 42);
}

#[test]
fn key_validity_windows_follow_the_checkpoint_time() {
    let old = signer();
    let new = signer();
    let rotation = T0 + 1000;
    let trusted = TrustedKeys::new()
        .with(TrustedKey::new(old.verifying_key().clone()).not_after(rotation))
        .with(TrustedKey::new(new.verifying_key().clone()).not_before(rotation));
    let at = |time: u64, key: &SigningKey| {
        Checkpoint {
            time,
            ..checkpoint(1)
        }
        .sign(key)
        .unwrap()
    };
    trusted.verify(&at(T0, &old)).unwrap();
    trusted.verify(&at(rotation, &new)).unwrap();
    // The old key after its window (expired), the new key before its window.
    assert!(matches!(
        ledger_err(trusted.verify(&at(rotation, &old)).unwrap_err()),
        LedgerError::KeyNotValid { .. }
    ));
    assert!(matches!(
        ledger_err(trusted.verify(&at(rotation - 1, &new)).unwrap_err()),
        LedgerError::KeyNotValid { .. }
    ));
}

#[test]
fn checkpoint_parser_is_strict() {
    let key = signer();
    let note = checkpoint(3).sign(&key).unwrap();
    let bad = [
        note.replacen("\n3\n", "\n03\n", 1),
        note.replacen("\n3\n", "\n+3\n", 1),
        note.replacen("time ", "time  ", 1),
        note.replacen("\n\n", "\nextra\n\n", 1),
        note.trim_end().to_owned(),
        note.replacen('\u{2014}', "-", 1),
        format!("{}\n", note.split("\n\n").next().unwrap()),
    ];
    for text in bad {
        assert!(
            matches!(
                ledger_err(trust(&key).verify(&text).unwrap_err()),
                LedgerError::Checkpoint(_)
            ),
            "{text:?}"
        );
    }
}

// -------------------------------------------------------------------------------------------
// The stored log

fn record(i: u64, inputs: Vec<Link>) -> Record {
    let data = format!("file {i}\n");
    Record {
        sequence: 0,
        kind: if inputs.is_empty() {
            Kind::Landed
        } else {
            Kind::BatchApplied
        },
        time_ms: T0 * 1000 + i,
        object: ObjectRef {
            version_id: Some(format!("v{i}")),
            ..ObjectRef::of_bytes(
                "s3",
                "landing",
                &format!("in/part {i}+x=é.csv"),
                data.as_bytes(),
            )
        },
        actor: Actor {
            principal: "arn:aws:sts::123456789012:assumed-role/ingest/run-1".into(),
            issuer: Some("arn:aws:iam::123456789012:role/ingest".into()),
            source_ip: Some("192.0.2.10".into()),
            user_agent: None,
        },
        step: "ingest".into(),
        tool_version: "cipherflow 0.1.0".into(),
        inputs,
    }
}

/// Where the tests keep their ledger inside a store.
const PREFIX: &str = "ledgers/test";

fn memory() -> Arc<dyn ObjectStore> {
    Arc::new(MemoryStore::new())
}

fn seg_key(first: u64) -> ObjectKey {
    ObjectKey::new(format!("{PREFIX}/segments/{first:012}.seg")).unwrap()
}

fn get(store: &Arc<dyn ObjectStore>, key: &ObjectKey) -> Vec<u8> {
    block_on(store.get(key)).unwrap().0.to_vec()
}

fn put(store: &Arc<dyn ObjectStore>, key: &ObjectKey, bytes: &[u8]) {
    block_on(store.put(key, Bytes::copy_from_slice(bytes), PutMode::Overwrite)).unwrap();
}

fn del(store: &Arc<dyn ObjectStore>, key: &ObjectKey) {
    block_on(store.delete(key)).unwrap();
}

/// Record `i` as the log stores it (for computing link hashes before appending).
fn stored(i: u64) -> Record {
    let mut r = record(i, Vec::new());
    r.sequence = i;
    r
}

/// A log of `n` records (record 3, if any, made from records 0 and 2) appended in segments
/// of at most `batch` records that also end at each size in `checkpoint_at`, where a
/// checkpoint is signed.
fn build(
    store: &Arc<dyn ObjectStore>,
    key: &SigningKey,
    n: u64,
    batch: u64,
    checkpoint_at: &[u64],
) -> Ledger {
    let mut ledger = block_on(Ledger::init(
        store.clone(),
        PREFIX,
        "example.com/ledger/test",
    ))
    .unwrap();
    let mut pending = Vec::new();
    for i in 0..n {
        let inputs = if i == 3 {
            [0, 2]
                .into_iter()
                .map(|j| Link {
                    index: j,
                    leaf_hash: stored(j).leaf_hash().unwrap(),
                })
                .collect()
        } else {
            Vec::new()
        };
        pending.push(record(i, inputs));
        let end = i + 1;
        if pending.len() as u64 == batch || checkpoint_at.contains(&end) || end == n {
            let first = end - pending.len() as u64;
            let got = block_on(ledger.append_all(std::mem::take(&mut pending))).unwrap();
            let indices: Vec<u64> = got.iter().map(|(i, _)| *i).collect();
            assert_eq!(indices, (first..end).collect::<Vec<_>>());
        }
        if checkpoint_at.contains(&end) {
            block_on(ledger.checkpoint(key, T0 + i)).unwrap();
        }
    }
    ledger
}

fn verify(store: &Arc<dyn ObjectStore>, trusted: &TrustedKeys) -> Result<VerifyReport, Error> {
    block_on(Ledger::verify(store.clone(), PREFIX, trusted))
}

/// The first bad index and the object `verify` names.
fn bad_index(store: &Arc<dyn ObjectStore>, trusted: &TrustedKeys) -> (u64, Option<String>) {
    match verify(store, trusted).map(|_| ()).map_err(ledger_err) {
        Err(LedgerError::BadRecord { index, object, .. }) => (index, object),
        other => panic!("expected a bad record, got {other:?}"),
    }
}

#[test]
fn append_checkpoint_reopen_verify() {
    let store = memory();
    let key = signer();
    let ledger = build(&store, &key, 6, 2, &[2, 6]);
    let report = verify(&store, &trust(&key)).unwrap();
    assert_eq!(report.records, 6);
    assert_eq!(report.checkpoints, 2);
    assert_eq!(report.signed_size, 6);
    // Three segments of two records each, not one object per record.
    let segments = block_on(store.list(&format!("{PREFIX}/segments/"))).unwrap();
    let names: Vec<&str> = segments.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(
        names,
        [0, 2, 4]
            .map(|i| seg_key(i).to_string())
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    let mut reopened = block_on(Ledger::open(store.clone(), PREFIX)).unwrap();
    assert_eq!(reopened.len(), 6);
    assert_eq!(reopened.tree().root(), ledger.tree().root());
    let (r3, _) = block_on(reopened.record(3)).unwrap();
    assert_eq!(r3.sequence, 3);
    assert_eq!(r3.inputs.len(), 2);
    let all = block_on(reopened.records(1..5)).unwrap();
    assert_eq!(
        all.iter().map(|(r, _)| r.sequence).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(all[0].1, ledger.tree().leaf(1).unwrap());
    // A second checkpoint at the same size is refused (write-once).
    assert!(block_on(reopened.checkpoint(&key, T0)).is_err());
    // An input link with the wrong hash is refused at append, and nothing is written.
    let wrong = record(
        9,
        vec![Link {
            index: 1,
            leaf_hash: [0; 32],
        }],
    );
    assert!(matches!(
        ledger_err(block_on(reopened.append(wrong)).unwrap_err()),
        LedgerError::InvalidRecord(_)
    ));
    assert!(
        block_on(reopened.append_all(Vec::new()))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        block_on(store.list(&format!("{PREFIX}/segments/")))
            .unwrap()
            .len(),
        3
    );
    // Init refuses a prefix that holds objects; another prefix in the same store is free.
    assert!(block_on(Ledger::init(store.clone(), PREFIX, "again")).is_err());
    let other = block_on(Ledger::init(store.clone(), "ledgers/other", "other")).unwrap();
    assert!(other.is_empty());
    assert!(matches!(
        ledger_err(block_on(Ledger::open(store.clone(), "ledgers/none")).unwrap_err()),
        LedgerError::Storage(_)
    ));
}

#[test]
fn two_handles_interleaving_appends_lose_and_duplicate_nothing() {
    let store = memory();
    let mut a = block_on(Ledger::init(store.clone(), PREFIX, "o")).unwrap();
    let mut b = block_on(Ledger::open(store.clone(), PREFIX)).unwrap();
    // A claims [0, 3); B, still at 0, loses index 0, reloads and lands at 3.
    let got_a = block_on(a.append_all((0..3).map(|i| record(i, Vec::new())).collect())).unwrap();
    let got_b = block_on(b.append_all((10..12).map(|i| record(i, Vec::new())).collect())).unwrap();
    assert_eq!(got_a.iter().map(|x| x.0).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(got_b.iter().map(|x| x.0).collect::<Vec<_>>(), [3, 4]);
    // A is now behind: its next record goes to 5, linking to B's record 4 by hash.
    let link = Link {
        index: 4,
        leaf_hash: got_b[1].1,
    };
    let (index, _) = block_on(a.append(record(20, vec![])))
        .and_then(|_| block_on(a.append(record(21, vec![link]))))
        .unwrap();
    assert_eq!(index, 6);
    assert_eq!(a.len(), 7);
    let report = verify(&store, &TrustedKeys::new()).unwrap();
    assert_eq!(report.records, 7);
    let opened = block_on(Ledger::open(store.clone(), PREFIX)).unwrap();
    assert_eq!(opened.tree().root(), a.tree().root());
    let keys: Vec<String> = block_on(opened.records(0..7))
        .unwrap()
        .into_iter()
        .map(|(r, _)| r.object.key)
        .collect();
    assert_eq!(
        keys,
        [0, 1, 2, 10, 11, 20, 21].map(|i| record(i, vec![]).object.key)
    );
}

#[test]
fn two_threads_appending_at_once_both_succeed() {
    let store = memory();
    block_on(Ledger::init(store.clone(), PREFIX, "o")).unwrap();
    let workers: Vec<_> = (0..2u64)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut ledger = block_on(Ledger::open(store, PREFIX)).unwrap();
                let mut mine = Vec::new();
                for batch in 0..40u64 {
                    let records = (0..3)
                        .map(|k| record(w * 1000 + batch * 3 + k, Vec::new()))
                        .collect();
                    mine.extend(block_on(ledger.append_all(records)).unwrap());
                }
                mine
            })
        })
        .collect();
    let mut indices: Vec<u64> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .map(|(i, _)| i)
        .collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..240).collect::<Vec<_>>());
    let key = signer();
    let mut ledger = block_on(Ledger::open(store.clone(), PREFIX)).unwrap();
    block_on(ledger.checkpoint(&key, T0)).unwrap();
    assert_eq!(verify(&store, &trust(&key)).unwrap().signed_size, 240);
}

#[test]
fn a_local_folder_holds_the_same_ledger_and_two_handles_share_it() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
    let key = signer();
    let ledger = build(&store, &key, 6, 4, &[6]);
    // One plain file per segment, under the prefix, as the layout says.
    let segments = dir.path().join(PREFIX).join("segments");
    let mut names: Vec<String> = std::fs::read_dir(&segments)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["000000000000.seg", "000000000004.seg"]);
    // A second handle (as another process would) appends; the first catches up.
    let mut other = block_on(Ledger::open(store.clone(), PREFIX)).unwrap();
    assert_eq!(other.tree().root(), ledger.tree().root());
    let mut first = ledger;
    block_on(other.append_all(vec![record(6, vec![]), record(7, vec![])])).unwrap();
    let (index, _) = block_on(first.append(record(8, vec![]))).unwrap();
    assert_eq!(index, 8);
    block_on(first.checkpoint(&key, T0 + 9)).unwrap();
    let report = verify(&store, &trust(&key)).unwrap();
    assert_eq!(
        (report.records, report.signed_size, report.checkpoints),
        (9, 9, 2)
    );
}

#[test]
fn tamper_any_byte_of_any_record_names_its_index_and_segment() {
    let store = memory();
    let key = signer();
    build(&store, &key, 5, 3, &[5]);
    let trusted = trust(&key);
    for (first, end) in [(0u64, 3u64), (3, 5)] {
        let object = seg_key(first);
        let original = get(&store, &object);
        // Where each record's frame (length prefix and bytes) starts.
        let mut starts = Vec::new();
        let mut offset = segment::HEADER_LEN;
        for (_, bytes) in segment::frames(&original, first)
            .unwrap()
            .1
            .map(Result::unwrap)
        {
            starts.push(offset);
            offset += 4 + bytes.len();
        }
        for pos in 0..original.len() {
            let mut bytes = original.clone();
            bytes[pos] ^= 0x20;
            put(&store, &object, &bytes);
            let (index, named) = bad_index(&store, &trusted);
            assert_eq!(named.as_deref(), Some(object.as_str()), "byte {pos}");
            match starts.iter().rposition(|&s| s <= pos) {
                Some(k) => assert_eq!(index, first + k as u64, "{object} byte {pos}"),
                // A header byte: the segment's first record, or (a count that no longer
                // matches the frames) the record after its last.
                None => assert!(
                    index == first || index == end,
                    "{object} byte {pos}: {index}"
                ),
            }
        }
        put(&store, &object, &original);
    }
    verify(&store, &trusted).unwrap();
}

#[test]
fn tamper_remove_reorder_truncate() {
    let store = memory();
    let key = signer();
    build(&store, &key, 8, 4, &[8]);
    let trusted = trust(&key);
    let (s0, s4) = (seg_key(0), seg_key(4));
    let (b0, b4) = (get(&store, &s0), get(&store, &s4));
    let frames = |bytes: &[u8], first| -> Vec<Vec<u8>> {
        segment::frames(bytes, first)
            .unwrap()
            .1
            .map(|f| f.unwrap().1.to_vec())
            .collect()
    };
    let rebuild =
        |first, records: &[Vec<u8>]| segment::encode(first, records.iter().map(Vec::as_slice));
    let records4 = frames(&b4, 4);

    // Removing a record from inside a segment: the next one moves up into its index.
    let mut fewer = records4.clone();
    fewer.remove(1);
    put(&store, &s4, &rebuild(4, &fewer));
    assert_eq!(bad_index(&store, &trusted), (5, Some(s4.to_string())));
    // Reordering two.
    let mut swapped = records4.clone();
    swapped.swap(2, 3);
    put(&store, &s4, &rebuild(4, &swapped));
    assert_eq!(bad_index(&store, &trusted), (6, Some(s4.to_string())));
    put(&store, &s4, &b4);
    // Removing a whole segment: a gap, named by the segment after it.
    del(&store, &s0);
    assert_eq!(bad_index(&store, &trusted), (0, Some(s4.to_string())));
    assert!(block_on(Ledger::open(store.clone(), PREFIX)).is_err());
    put(&store, &s0, &b0);
    // Truncating the log: the last segment gone.
    del(&store, &s4);
    assert_eq!(bad_index(&store, &trusted), (4, None));
    put(&store, &s4, &b4);
    verify(&store, &trusted).unwrap();
}

/// A store that records which objects were read whole, to show what `open` reads.
#[derive(Debug)]
struct ReadLog {
    inner: Arc<dyn ObjectStore>,
    gets: std::sync::Mutex<Vec<String>>,
}

impl ReadLog {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.gets.lock().unwrap())
    }
}

#[async_trait::async_trait]
impl ObjectStore for ReadLog {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn put(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        mode: PutMode,
    ) -> Result<crate::store::ObjectMeta, crate::store::StoreError> {
        self.inner.put(key, bytes, mode).await
    }
    async fn get(
        &self,
        key: &ObjectKey,
    ) -> Result<(Bytes, crate::store::ObjectMeta), crate::store::StoreError> {
        self.gets.lock().unwrap().push(key.to_string());
        self.inner.get(key).await
    }
    async fn get_range(
        &self,
        key: &ObjectKey,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, crate::store::StoreError> {
        self.gets.lock().unwrap().push(format!("{key} {range:?}"));
        self.inner.get_range(key, range).await
    }
    async fn head(
        &self,
        key: &ObjectKey,
    ) -> Result<crate::store::ObjectMeta, crate::store::StoreError> {
        self.inner.head(key).await
    }
    async fn list(
        &self,
        prefix: &str,
    ) -> Result<Vec<crate::store::ObjectMeta>, crate::store::StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<(), crate::store::StoreError> {
        self.inner.delete(key).await
    }
}

#[test]
fn open_reads_the_committed_leaf_hashes_and_only_the_new_segments() {
    let log = Arc::new(ReadLog {
        inner: memory(),
        gets: Default::default(),
    });
    let store: Arc<dyn ObjectStore> = log.clone();
    let key = signer();
    // Segments at 0, 4, 8 and 12; checkpoints at 8 and 12; 14 and 16 unsigned.
    let ledger = build(&store, &key, 18, 4, &[8, 12]);
    log.take();
    let opened = block_on(Ledger::open(store.clone(), PREFIX)).unwrap();
    assert_eq!(opened.len(), 18);
    assert_eq!(opened.tree().root(), ledger.tree().root());
    let piece = |a: u64, b: u64| format!("{PREFIX}/leaves/{a:012}-{b:012}.bin");
    let read = log.take();
    assert_eq!(
        read,
        vec![
            format!("{PREFIX}/origin"),
            piece(0, 8),
            piece(8, 12),
            // Only the segments after the committed prefix.
            seg_key(12).to_string(),
            seg_key(16).to_string(),
            format!("{PREFIX}/checkpoints/{:012}.note", 12),
        ]
    );
    // Records in the committed prefix are read from their segment and checked against the
    // committed leaf hash.
    let (first, hash) = block_on(opened.record(1)).unwrap();
    assert_eq!(first.sequence, 1);
    assert_eq!(hash, ledger.tree().leaf(1).unwrap());
    let mut altered = get(&store, &seg_key(0));
    let last = altered.len() - 1;
    altered[last] ^= 1;
    put(&store, &seg_key(0), &altered);
    let reopened = block_on(Ledger::open(store.clone(), PREFIX)).unwrap();
    match block_on(reopened.record(3)).map_err(ledger_err) {
        Err(LedgerError::BadRecord { index, object, .. }) => {
            assert_eq!((index, object), (3, Some(seg_key(0).to_string())));
        }
        other => panic!("expected record 3 refused, got {other:?}"),
    }
    // A leaf-hash piece that no longer gives the signed root is refused at open.
    let mut piece0 = get(&store, &ObjectKey::new(piece(0, 8)).unwrap());
    piece0[0] ^= 1;
    put(&store, &ObjectKey::new(piece(0, 8)).unwrap(), &piece0);
    match block_on(Ledger::open(store.clone(), PREFIX)).map_err(ledger_err) {
        Err(LedgerError::Verify(reason)) => assert!(reason.contains("size 12"), "{reason}"),
        other => panic!("expected the altered piece refused, got {other:?}"),
    }
}

#[test]
fn segment_cut_at_every_byte_is_a_typed_error() {
    let store = memory();
    let key = signer();
    build(&store, &key, 4, 4, &[4]);
    let trusted = trust(&key);
    let object = seg_key(0);
    let original = get(&store, &object);
    for cut in 0..original.len() {
        put(&store, &object, &original[..cut]);
        let named = Some(object.to_string());
        let (index, at) = bad_index(&store, &trusted);
        assert_eq!(at, named, "cut at {cut}");
        assert!(index < 4, "cut at {cut}: index {index}");
        match block_on(Ledger::open(store.clone(), PREFIX)).map_err(ledger_err) {
            Err(LedgerError::BadRecord { object, .. }) => assert_eq!(object, named),
            other => panic!("cut at {cut}: open gave {other:?}"),
        }
    }
    put(&store, &object, &original);
    verify(&store, &trusted).unwrap();
}

#[test]
fn empty_segments_are_ignored_and_overlaps_refused() {
    let store = memory();
    let key = signer();
    let ledger = build(&store, &key, 4, 4, &[4]);
    let trusted = trust(&key);
    // An empty segment whose range overlaps nothing: tolerated by open and verify.
    put(&store, &seg_key(2), &segment::encode(2, std::iter::empty()));
    verify(&store, &trusted).unwrap();
    let mut reopened = block_on(Ledger::open(store.clone(), PREFIX)).unwrap();
    assert_eq!(reopened.tree().root(), ledger.tree().root());
    block_on(reopened.append(record(4, vec![]))).unwrap();
    assert_eq!(reopened.len(), 5);
    // A segment starting inside another one's range: refused, naming it.
    let dup = get(&store, &seg_key(4));
    let inner = segment::frames(&dup, 4)
        .unwrap()
        .1
        .next()
        .unwrap()
        .unwrap()
        .1
        .to_vec();
    put(
        &store,
        &seg_key(2),
        &segment::encode(2, [inner.as_slice()].into_iter()),
    );
    assert_eq!(
        bad_index(&store, &trusted),
        (2, Some(seg_key(2).to_string()))
    );
    // `open` takes the committed prefix's layout from the names without reading those
    // segments, so it does not see the overlap; reading a record through the handle does
    // (the segment holds 2..3, not the 2..4 its name implies).
    let opened = block_on(Ledger::open(store.clone(), PREFIX)).unwrap();
    match block_on(opened.record(2)).map_err(ledger_err) {
        Err(LedgerError::BadRecord {
            index: 3, object, ..
        }) => {
            assert_eq!(object, Some(seg_key(2).to_string()))
        }
        other => panic!("record 2 gave {other:?}"),
    }
    // An empty segment at the end blocks that index: appends fail with a typed error.
    del(&store, &seg_key(2));
    put(&store, &seg_key(5), &segment::encode(5, std::iter::empty()));
    assert!(matches!(
        ledger_err(block_on(reopened.append(record(5, vec![]))).unwrap_err()),
        LedgerError::Storage(_)
    ));
}

#[test]
fn tampered_leaf_pieces_or_checkpoints_are_refused() {
    let store = memory();
    let key = signer();
    build(&store, &key, 4, 4, &[2, 4]);
    let trusted = trust(&key);
    let piece = ObjectKey::new(format!("{PREFIX}/leaves/000000000002-000000000004.bin")).unwrap();
    let original = get(&store, &piece);
    let mut bytes = original.clone();
    bytes[40] ^= 1;
    put(&store, &piece, &bytes);
    assert!(matches!(
        ledger_err(verify(&store, &trusted).unwrap_err()),
        LedgerError::Verify(_)
    ));
    put(&store, &piece, &original);
    // A checkpoint by an unknown key, and by an expired one.
    let stranger = signer();
    assert!(matches!(
        ledger_err(verify(&store, &trust(&stranger)).unwrap_err()),
        LedgerError::UntrustedKey(_)
    ));
    let expired =
        TrustedKeys::new().with(TrustedKey::new(key.verifying_key().clone()).not_after(T0));
    assert!(matches!(
        ledger_err(verify(&store, &expired).unwrap_err()),
        LedgerError::KeyNotValid { .. }
    ));
    // A broken input link is caught (re-sign nothing: the link check does not need keys).
    let store2 = memory();
    let mut ledger = build(&store2, &key, 3, 3, &[]);
    let mut forged = record(3, Vec::new());
    forged.sequence = 3;
    forged.inputs = vec![Link {
        index: 1,
        leaf_hash: [9; 32],
    }];
    let forged = forged.encode().unwrap();
    put(
        &store2,
        &seg_key(3),
        &segment::encode(3, [forged.as_slice()].into_iter()),
    );
    assert_eq!(
        bad_index(&store2, &trusted),
        (3, Some(seg_key(3).to_string()))
    );
    del(&store2, &seg_key(3));
    block_on(ledger.append(record(3, Vec::new()))).unwrap();
    verify(&store2, &trusted).unwrap();
}

#[test]
fn offline_bundle_verifies_with_the_public_key_alone() {
    let store = memory();
    let key = signer();
    let ledger = build(&store, &key, 7, 3, &[7]);
    let trusted = trust(&key);
    let prove = |i| block_on(ledger.prove(i));
    for i in 0..7 {
        let json = prove(i).unwrap().to_json();
        let (checkpoint, record) = Bundle::from_json(&json).unwrap().verify(&trusted).unwrap();
        assert_eq!(checkpoint.size, 7);
        assert_eq!(record.sequence, i);
    }
    let bundle = prove(4).unwrap();
    // Another record's bytes, a wrong index, an altered proof, an untrusted key: all refused.
    let mut swapped = bundle.clone();
    swapped.record = prove(5).unwrap().record;
    assert!(swapped.verify(&trusted).is_err());
    let mut moved = bundle.clone();
    moved.index = 5;
    assert!(moved.verify(&trusted).is_err());
    let mut altered = bundle.clone();
    altered.inclusion_proof[0].replace_range(0..1, "f");
    if altered != bundle {
        assert!(altered.verify(&trusted).is_err());
    }
    assert!(bundle.verify(&trust(&signer())).is_err());
    assert!(Bundle::from_json("{\"format\": 1}").is_err());
    assert!(prove(7).is_err());
}

// -------------------------------------------------------------------------------------------
// CloudTrail and the custody report

mod custody_tests {
    use std::io::Write;

    use super::super::cloudtrail::{
        Action, S3Event, Source, dedupe_and_sort, form_url_decode, read_events,
    };
    use super::super::custody::{Anomaly, custody_report};
    use super::*;

    const CLOUDTRAIL: &str = include_str!("../../tests/data/ledger/cloudtrail.json");
    const NOTIFICATION: &str = include_str!("../../tests/data/ledger/notification.json");
    const COPY_DELETE: &str = include_str!("../../tests/data/ledger/cloudtrail-copy-delete.json");
    const KEY: &str = "in/a b+c:d=é.csv";
    const INGEST_ROLE: &str = "arn:aws:iam::123456789012:role/ingest";
    const CONSUMER_ROLE: &str = "arn:aws:iam::123456789012:role/consumer";

    fn gzip(text: &str) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap()
    }

    fn events() -> Vec<S3Event> {
        let mut all = read_events(&gzip(CLOUDTRAIL)).unwrap();
        all.extend(read_events(NOTIFICATION.as_bytes()).unwrap());
        // The notification again: delivered twice.
        all.extend(read_events(NOTIFICATION.as_bytes()).unwrap());
        dedupe_and_sort(all)
    }

    #[test]
    fn form_url_decoding() {
        assert_eq!(
            form_url_decode("in/a+b%2Bc%3Ad%3D%C3%A9.csv").as_deref(),
            Some(KEY)
        );
        assert_eq!(form_url_decode("%2").as_deref(), None);
        assert_eq!(form_url_decode("%ff").as_deref(), None);
    }

    #[test]
    fn reads_cloudtrail_and_notifications_field_by_field() {
        let plain = read_events(CLOUDTRAIL.as_bytes()).unwrap();
        assert_eq!(plain, read_events(&gzip(CLOUDTRAIL)).unwrap());
        assert_eq!(plain.len(), 5, "the IAM management event is skipped");
        let events = events();
        assert_eq!(events.len(), 5, "duplicates dropped");
        let times: Vec<u64> = events.iter().map(|e| e.time_ms).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));

        let put = &events[0];
        assert_eq!(
            put,
            &S3Event {
                event_id: "00000000-0000-0000-0000-000000000001".into(),
                source: Source::CloudTrail,
                time_ms: 1_549_053_768_000,
                name: "PutObject".into(),
                action: Action::Write,
                bucket: "landing-bucket".into(),
                key: KEY.into(),
                version_id: Some("v1".into()),
                size: Some(5),
                principal: Some("arn:aws:sts::123456789012:assumed-role/ingest/run-1".into()),
                issuer: Some(INGEST_ROLE.into()),
                source_ip: Some("192.0.2.10".into()),
                user_agent: Some("aws-sdk-rust/1.0".into()),
            }
        );
        let note = &events[1];
        assert_eq!(note.source, Source::Notification);
        assert_eq!(note.key, KEY);
        assert_eq!(note.time_ms, 1_549_053_768_123);
        assert_eq!(note.size, Some(5));
        assert_eq!(
            note.event_id,
            "notification:REQ00000000001:0A1B2C3D4E5F678901"
        );
        let get = events.iter().find(|e| e.name == "GetObject").unwrap();
        assert_eq!(get.action, Action::Read);
        assert_eq!(get.version_id.as_deref(), Some("v1"));
        assert_eq!(get.size, Some(5));
        assert_eq!(get.issuer.as_deref(), Some(CONSUMER_ROLE));

        assert!(read_events(b"{\"NotRecords\": []}").is_err());
        assert!(read_events(&gzip(CLOUDTRAIL)[..40]).is_err());
    }

    fn landed(key: &str, version: &str, size: usize) -> Record {
        let mut r = record(0, Vec::new());
        r.object = ObjectRef {
            version_id: Some(version.into()),
            ..ObjectRef::of_bytes("s3", "landing-bucket", key, &vec![b'x'; size])
        };
        r
    }

    #[test]
    fn custody_report_joins_and_flags() {
        let records = vec![
            (0, landed(KEY, "v1", 5)),
            (1, landed("in/big.csv", "v2", 10)),
            (2, landed("in/never.csv", "v1", 3)),
        ];
        let allowed = vec![INGEST_ROLE.to_owned(), CONSUMER_ROLE.to_owned()];
        let report = custody_report(&records, &events(), &allowed);
        let keys: Vec<&str> = report.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "in/a b+c:d=é.csv",
                "in/big.csv",
                "in/never.csv",
                "in/unknown.csv"
            ]
        );

        let a = &report.objects[0];
        assert_eq!(a.ledger.len(), 1);
        assert_eq!(a.ledger[0].size, 5);
        assert_eq!(a.events.len(), 3, "put, its notification, and a read");
        // The notification's principal id is not an ARN on the list.
        assert_eq!(
            a.anomalies,
            vec![Anomaly::PrincipalNotAllowed {
                event_id: "notification:REQ00000000001:0A1B2C3D4E5F678901".into(),
                principal: Some("AWS:AROAINGESTID:run-1".into()),
            }]
        );
        assert_eq!(
            report.objects[1].anomalies,
            vec![Anomaly::SizeMismatch {
                index: 1,
                event_id: "00000000-0000-0000-0000-000000000005".into(),
                ledger_size: 10,
                event_size: 999,
            }]
        );
        assert_eq!(
            report.objects[2].anomalies,
            vec![Anomaly::NotSeenByCloudTrail { index: 2 }]
        );
        assert_eq!(
            report.objects[3].anomalies,
            vec![
                Anomaly::UnknownToLedger {
                    event_id: "00000000-0000-0000-0000-000000000003".into()
                },
                Anomaly::PrincipalNotAllowed {
                    event_id: "00000000-0000-0000-0000-000000000003".into(),
                    principal: Some("arn:aws:iam::123456789012:user/mallory".into()),
                },
            ]
        );
        assert_eq!(report.anomaly_count, 5);

        // JSON and text views.
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json["objects"][3]["anomalies"][0]["anomaly"],
            "unknown-to-ledger"
        );
        let text = report.to_text();
        assert!(text.contains("s3://landing-bucket/in/a b+c:d=é.csv"));
        assert!(text.contains("4 objects, 5 anomalies"));

        // Without an allowed list, only the join anomalies remain.
        assert_eq!(custody_report(&records, &events(), &[]).anomaly_count, 3);
    }

    #[test]
    fn copy_multipart_and_delete_events_field_by_field() {
        // Out of order in the file, one CopyObject delivered twice, a notification of the
        // delete whose key is form-URL-encoded (`%2B` a plus, `+` a space).
        let read = read_events(COPY_DELETE.as_bytes()).unwrap();
        assert_eq!(read.len(), 5);
        let events = dedupe_and_sort(read);
        let publish = Some("arn:aws:sts::123456789012:assumed-role/publish/run-7".to_owned());
        let publish_role = Some("arn:aws:iam::123456789012:role/publish".to_owned());
        let cli = Some("[aws-cli/2.15.0 Python/3.11.6]".to_owned());
        let copied = "out/x+y z=ü:1.csv";
        let version = Some("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY".to_owned());
        assert_eq!(
            events,
            vec![
                S3Event {
                    event_id: "00000000-0000-0000-0000-000000000011".into(),
                    source: Source::CloudTrail,
                    time_ms: 1_549_098_000_000,
                    name: "CopyObject".into(),
                    action: Action::Write,
                    bucket: "share-bucket".into(),
                    key: copied.into(),
                    version_id: version.clone(),
                    size: Some(5),
                    principal: publish.clone(),
                    issuer: publish_role.clone(),
                    source_ip: Some("198.51.100.7".into()),
                    user_agent: cli.clone(),
                },
                S3Event {
                    event_id: "00000000-0000-0000-0000-000000000012".into(),
                    source: Source::CloudTrail,
                    time_ms: 1_549_098_330_250,
                    name: "CompleteMultipartUpload".into(),
                    action: Action::Write,
                    bucket: "landing-bucket".into(),
                    key: "in/big+file 日本.parquet".into(),
                    version_id: Some("mpu-v1".into()),
                    // CloudTrail reports 0 bytes for the completion itself: unknown, not 0.
                    size: None,
                    principal: Some("arn:aws:iam::123456789012:user/uploader".into()),
                    issuer: None,
                    source_ip: Some("203.0.113.99".into()),
                    user_agent: Some("aws-sdk-java/2.20.0".into()),
                },
                S3Event {
                    event_id: "00000000-0000-0000-0000-000000000013".into(),
                    source: Source::CloudTrail,
                    time_ms: 1_549_098_900_000,
                    name: "DeleteObject".into(),
                    action: Action::Delete,
                    bucket: "share-bucket".into(),
                    key: copied.into(),
                    version_id: version.clone(),
                    size: None,
                    principal: publish.clone(),
                    issuer: publish_role.clone(),
                    source_ip: Some("198.51.100.7".into()),
                    user_agent: cli.clone(),
                },
                S3Event {
                    event_id: "notification:DELETE0000000001:0055AED6DCD90281E6".into(),
                    source: Source::Notification,
                    time_ms: 1_549_098_900_042,
                    name: "ObjectRemoved:Delete".into(),
                    action: Action::Delete,
                    bucket: "share-bucket".into(),
                    key: copied.into(),
                    version_id: version.clone(),
                    size: None,
                    principal: Some("AWS:AROAPUBLISHID:run-7".into()),
                    issuer: None,
                    source_ip: Some("198.51.100.7".into()),
                    user_agent: None,
                },
            ]
        );

        // Joined with a ledger that knows the copy as a share of 5 bytes and the upload as
        // landed with the wrong size: the copy's write matches, the upload has no size to
        // compare, the deletes are events on a known object; only the principal list flags.
        let mut shared = landed(copied, "v0", 5);
        shared.object.bucket = "share-bucket".into();
        shared.object.version_id = version.clone();
        shared.kind = Kind::Rewrapped;
        let upload = ObjectRef {
            version_id: Some("mpu-v1".into()),
            ..ObjectRef::of_bytes("s3", "landing-bucket", "in/big+file 日本.parquet", b"12")
        };
        let mut uploaded = landed("x", "v", 1);
        uploaded.object = upload;
        let records = vec![(7, shared), (8, uploaded)];
        let allowed = vec![publish_role.clone().unwrap()];
        let report = custody_report(&records, &events, &allowed);
        let keys: Vec<(&str, &str)> = report
            .objects
            .iter()
            .map(|o| (o.bucket.as_str(), o.key.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("landing-bucket", "in/big+file 日本.parquet"),
                ("share-bucket", copied)
            ]
        );
        assert_eq!(
            report.objects[0].anomalies,
            vec![Anomaly::PrincipalNotAllowed {
                event_id: "00000000-0000-0000-0000-000000000012".into(),
                principal: Some("arn:aws:iam::123456789012:user/uploader".into()),
            }]
        );
        assert_eq!(report.objects[1].events.len(), 3);
        assert_eq!(
            report.objects[1].anomalies,
            vec![Anomaly::PrincipalNotAllowed {
                event_id: "notification:DELETE0000000001:0055AED6DCD90281E6".into(),
                principal: Some("AWS:AROAPUBLISHID:run-7".into()),
            }]
        );
        assert_eq!(report.anomaly_count, 2);
    }

    #[test]
    fn recheck_hashes_the_stored_objects_against_the_newest_write() {
        let records = vec![
            (0, landed(KEY, "v1", 5)),
            (1, landed("in/big.csv", "v2", 10)),
            (4, landed("in/big.csv", "v3", 12)),
            (2, landed("in/never.csv", "v1", 3)),
        ];
        let store = MemoryStore::new();
        let object = |key: &str| ObjectKey::new(format!("landing-bucket/{key}")).unwrap();
        // The first object as written; the second's newest version altered (same length);
        // the third absent.
        block_on(store.put(&object(KEY), Bytes::from(vec![b'x'; 5]), PutMode::Create)).unwrap();
        let mut altered = vec![b'x'; 12];
        altered[11] = b'y';
        block_on(store.put(
            &object("in/big.csv"),
            Bytes::from(altered.clone()),
            PutMode::Create,
        ))
        .unwrap();
        let mut report = custody_report(&records, &events(), &[]);
        let before = report.anomaly_count;
        block_on(report.recheck(&store)).unwrap();
        assert_eq!(report.anomaly_count, before + 2);
        let last = |i: usize| report.objects[i].anomalies.last().cloned();
        // The intact object gains nothing.
        assert!(!report.objects[0].anomalies.iter().any(|a| matches!(
            a,
            Anomaly::HashMismatch { .. } | Anomaly::MissingOnRecheck { .. }
        )));
        assert_eq!(
            last(1),
            Some(Anomaly::HashMismatch {
                index: 4,
                ledger_size: 12,
                stored_size: 12,
                ledger_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(vec![b'x'; 12])),
                stored_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&altered)),
            })
        );
        match last(2) {
            Some(Anomaly::MissingOnRecheck { index: 2, reason }) => {
                assert!(reason.contains("in/never.csv"), "{reason}");
            }
            other => panic!("expected the absent object flagged, got {other:?}"),
        }
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json["objects"][1]["anomalies"]
                .as_array()
                .unwrap()
                .last()
                .unwrap()["anomaly"],
            "hash-mismatch"
        );
    }
}
