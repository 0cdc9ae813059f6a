//! Ledger tests: RFC 6962 vectors, cross-checks against the independent `ct-merkle` crate,
//! checkpoints and key windows, and tamper tests on a stored log.

use std::fs;
use std::path::{Path, PathBuf};

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof};
use sha2::Sha256;

use super::checkpoint::{Checkpoint, TrustedKey, TrustedKeys};
use super::merkle::{Hash, Tree, empty_root, leaf_hash};
use super::proof::{Bundle, verify_consistency, verify_inclusion};
use super::record::{Actor, Kind, Link, ObjectRef, Record};
use super::{Ledger, LedgerError};
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

/// A log of `n` records (record 3, if any, made from records 0 and 2), checkpointed at
/// `checkpoint_at` sizes.
fn build(dir: &Path, key: &SigningKey, n: u64, checkpoint_at: &[u64]) -> Ledger {
    let mut ledger = Ledger::init(dir, "example.com/ledger/test").unwrap();
    for i in 0..n {
        let inputs = if i == 3 {
            [0, 2]
                .into_iter()
                .map(|j| Link {
                    index: j,
                    leaf_hash: ledger.tree().leaf(j).unwrap(),
                })
                .collect()
        } else {
            Vec::new()
        };
        let (index, _) = ledger.append(record(i, inputs)).unwrap();
        assert_eq!(index, i);
        if checkpoint_at.contains(&(i + 1)) {
            ledger.checkpoint(key, T0 + i).unwrap();
        }
    }
    ledger
}

fn record_file(dir: &Path, i: u64) -> PathBuf {
    dir.join(format!("records/{:09}/{i:012}.rec", i / 1000))
}

fn bad_index(dir: &Path, trusted: &TrustedKeys) -> u64 {
    match Ledger::verify(dir, trusted).map(|_| ()).map_err(ledger_err) {
        Err(LedgerError::BadRecord { index, .. }) => index,
        other => panic!("expected a bad record, got {other:?}"),
    }
}

#[test]
fn append_checkpoint_reopen_verify() {
    let dir = tempfile::tempdir().unwrap();
    let key = signer();
    let ledger = build(dir.path(), &key, 6, &[2, 6]);
    let report = Ledger::verify(dir.path(), &trust(&key)).unwrap();
    assert_eq!(report.records, 6);
    assert_eq!(report.checkpoints, 2);
    assert_eq!(report.signed_size, 6);
    let reopened = Ledger::open(dir.path()).unwrap();
    assert_eq!(reopened.len(), 6);
    assert_eq!(reopened.tree().root(), ledger.tree().root());
    let (r3, _) = reopened.record(3).unwrap();
    assert_eq!(r3.sequence, 3);
    assert_eq!(r3.inputs.len(), 2);
    // A second checkpoint at the same size is refused (write-once).
    let mut reopened = reopened;
    assert!(reopened.checkpoint(&key, T0).is_err());
    // An input link with the wrong hash is refused at append.
    let wrong = record(
        9,
        vec![Link {
            index: 1,
            leaf_hash: [0; 32],
        }],
    );
    assert!(matches!(
        ledger_err(reopened.append(wrong).unwrap_err()),
        LedgerError::InvalidRecord(_)
    ));
    // Init refuses a folder that is not empty.
    assert!(Ledger::init(dir.path(), "again").is_err());
}

#[test]
fn tamper_any_byte_of_any_record_names_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let key = signer();
    build(dir.path(), &key, 5, &[5]);
    let trusted = trust(&key);
    for i in 0..5 {
        let path = record_file(dir.path(), i);
        let original = fs::read(&path).unwrap();
        for pos in 0..original.len() {
            let mut bytes = original.clone();
            bytes[pos] ^= 0x20;
            fs::write(&path, &bytes).unwrap();
            assert_eq!(bad_index(dir.path(), &trusted), i, "record {i} byte {pos}");
        }
        fs::write(&path, &original).unwrap();
    }
    Ledger::verify(dir.path(), &trusted).unwrap();
}

#[test]
fn tamper_remove_reorder_truncate() {
    let dir = tempfile::tempdir().unwrap();
    let key = signer();
    build(dir.path(), &key, 8, &[8]);
    let trusted = trust(&key);
    let (p2, p3, p5, p7) = (
        record_file(dir.path(), 2),
        record_file(dir.path(), 3),
        record_file(dir.path(), 5),
        record_file(dir.path(), 7),
    );
    let (b2, b3, b5, b7) = (
        fs::read(&p2).unwrap(),
        fs::read(&p3).unwrap(),
        fs::read(&p5).unwrap(),
        fs::read(&p7).unwrap(),
    );
    // Removing a record.
    fs::remove_file(&p5).unwrap();
    assert_eq!(bad_index(dir.path(), &trusted), 5);
    fs::write(&p5, &b5).unwrap();
    // Reordering two.
    fs::write(&p2, &b3).unwrap();
    fs::write(&p3, &b2).unwrap();
    assert_eq!(bad_index(dir.path(), &trusted), 2);
    fs::write(&p2, &b2).unwrap();
    fs::write(&p3, &b3).unwrap();
    // Truncating the log (the last record, then the last three).
    fs::remove_file(&p7).unwrap();
    assert_eq!(bad_index(dir.path(), &trusted), 7);
    fs::remove_file(record_file(dir.path(), 6)).unwrap();
    fs::remove_file(&p5).unwrap();
    assert_eq!(bad_index(dir.path(), &trusted), 5);
    // Truncating a record file.
    fs::write(&p5, &b5).unwrap();
    fs::write(&p7, &b7[..b7.len() - 1]).unwrap();
    fs::write(record_file(dir.path(), 6), fs::read(&p5).unwrap()).unwrap();
    assert_eq!(bad_index(dir.path(), &trusted), 6);
}

#[test]
fn tampered_leaf_pieces_or_checkpoints_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = signer();
    build(dir.path(), &key, 4, &[2, 4]);
    let trusted = trust(&key);
    let piece = dir.path().join("leaves/000000000002-000000000004.bin");
    let original = fs::read(&piece).unwrap();
    let mut bytes = original.clone();
    bytes[40] ^= 1;
    fs::write(&piece, &bytes).unwrap();
    assert!(matches!(
        ledger_err(Ledger::verify(dir.path(), &trusted).unwrap_err()),
        LedgerError::Verify(_)
    ));
    fs::write(&piece, &original).unwrap();
    // A checkpoint by an unknown key, and by an expired one.
    let stranger = signer();
    assert!(matches!(
        ledger_err(Ledger::verify(dir.path(), &trust(&stranger)).unwrap_err()),
        LedgerError::UntrustedKey(_)
    ));
    let expired =
        TrustedKeys::new().with(TrustedKey::new(key.verifying_key().clone()).not_after(T0));
    assert!(matches!(
        ledger_err(Ledger::verify(dir.path(), &expired).unwrap_err()),
        LedgerError::KeyNotValid { .. }
    ));
    // A broken input link is caught (re-sign nothing: the link check does not need keys).
    let dir2 = tempfile::tempdir().unwrap();
    let mut ledger = build(dir2.path(), &key, 3, &[]);
    let mut forged = record(3, Vec::new());
    forged.sequence = 3;
    forged.inputs = vec![Link {
        index: 1,
        leaf_hash: [9; 32],
    }];
    fs::write(record_file(dir2.path(), 3), forged.encode().unwrap()).unwrap();
    assert_eq!(bad_index(dir2.path(), &trusted), 3);
    fs::remove_file(record_file(dir2.path(), 3)).unwrap();
    ledger.append(record(3, Vec::new())).unwrap();
    Ledger::verify(dir2.path(), &trusted).unwrap();
}

#[test]
fn offline_bundle_verifies_with_the_public_key_alone() {
    let dir = tempfile::tempdir().unwrap();
    let key = signer();
    let ledger = build(dir.path(), &key, 7, &[7]);
    let trusted = trust(&key);
    for i in 0..7 {
        let json = ledger.prove(i).unwrap().to_json();
        let (checkpoint, record) = Bundle::from_json(&json).unwrap().verify(&trusted).unwrap();
        assert_eq!(checkpoint.size, 7);
        assert_eq!(record.sequence, i);
    }
    let bundle = ledger.prove(4).unwrap();
    // Another record's bytes, a wrong index, an altered proof, an untrusted key: all refused.
    let mut swapped = bundle.clone();
    swapped.record = ledger.prove(5).unwrap().record;
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
    assert!(ledger.prove(7).is_err());
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
}
