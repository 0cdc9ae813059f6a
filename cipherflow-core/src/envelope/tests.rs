//! Test vectors (`docs/vectors/envelope-v1.json`) and byte-identity across backends.
//!
//! The vectors are made with fixed data keys and file ids. Regenerate them with
//! `CIPHERFLOW_WRITE_VECTORS=1 cargo test -p cipherflow-core vectors` (only when the format
//! changes on purpose); every other run checks the stored file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::keys::DataKey;
use super::*;
use crate::crypto::all_backends;
use crate::{RsaPrivateKey, RsaPublicKey, SigningKey, VerifyingKey};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/vectors/envelope-v1.json")
}

#[derive(Serialize, Deserialize)]
struct Vectors {
    format: String,
    note: String,
    cases: Vec<Case>,
}

#[derive(Serialize, Deserialize, Clone)]
struct Case {
    name: String,
    valid: bool,
    /// For must-fail cases: what an opener must report.
    reason: Option<String>,
    /// Fixture file names of the private keys that must open (valid) or must fail.
    recipient_private_keys_pem: Vec<String>,
    /// The producer public key an opener requires, if any.
    signer_public_key_pem: Option<String>,
    data_key: String,
    file_id: String,
    chunk_size: usize,
    metadata: BTreeMap<String, String>,
    plaintext: String,
    envelope: String,
}

struct Spec {
    name: &'static str,
    recipients: &'static [&'static str],
    signer: Option<&'static str>,
    chunk_size: usize,
    metadata: &'static [(&'static str, &'static str)],
    plaintext_len: usize,
}

const SPECS: &[Spec] = &[
    Spec {
        name: "empty plaintext",
        recipients: &["alice"],
        signer: None,
        chunk_size: 1024,
        metadata: &[],
        plaintext_len: 0,
    },
    Spec {
        name: "one chunk",
        recipients: &["alice"],
        signer: None,
        chunk_size: 1024,
        metadata: &[],
        plaintext_len: 100,
    },
    Spec {
        name: "exactly one full chunk",
        recipients: &["alice"],
        signer: None,
        chunk_size: 1024,
        metadata: &[],
        plaintext_len: 1024,
    },
    Spec {
        name: "several chunks, short last chunk",
        recipients: &["alice"],
        signer: None,
        chunk_size: 1024,
        metadata: &[],
        plaintext_len: 2 * 1024 + 500,
    },
    Spec {
        name: "two recipients",
        recipients: &["alice", "bob"],
        signer: None,
        chunk_size: 1024,
        metadata: &[],
        plaintext_len: 1500,
    },
    Spec {
        name: "metadata",
        recipients: &["alice"],
        signer: None,
        chunk_size: 4096,
        metadata: &[
            ("created", "2026-11-27T13:00:00Z"),
            ("schema_hash", "5f1c"),
            ("snapshot_id", "42"),
            ("table", "public.customers"),
            ("watermark", "0000000000000000000000000000000123"),
        ],
        plaintext_len: 300,
    },
    Spec {
        name: "signed ECDSA P-256",
        recipients: &["alice"],
        signer: Some("producer"),
        chunk_size: 1024,
        metadata: &[("table", "orders")],
        plaintext_len: 1100,
    },
    Spec {
        name: "signed RSA-PSS",
        recipients: &["alice", "bob"],
        signer: Some("producer-rsa"),
        chunk_size: 1024,
        metadata: &[],
        plaintext_len: 2100,
    },
];

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn seal_spec(spec: &Spec, index: usize, backend: &'static dyn Backend) -> Case {
    let publics: Vec<RsaPublicKey> = spec
        .recipients
        .iter()
        .map(|r| {
            RsaPublicKey::from_bytes(&fixture(&format!("{r}.pub.pem")))
                .unwrap()
                .with_backend(backend)
        })
        .collect();
    let wrappers: Vec<&dyn KeyWrapper> = publics.iter().map(|k| k as &dyn KeyWrapper).collect();
    let signer = spec.signer.map(|s| {
        SigningKey::from_bytes(&fixture(&format!("{s}.pem")))
            .unwrap()
            .with_backend(backend)
    });
    let mut sealer = Sealer::new(&wrappers)
        .chunk_size(spec.chunk_size)
        .backend(backend);
    for (k, v) in spec.metadata {
        sealer = sealer.metadata(*k, *v);
    }
    if let Some(s) = &signer {
        sealer = sealer.signer(s);
    }
    let data_key = [index as u8 + 1; 32];
    let file_id = [0xF0 | index as u8; 32];
    let plaintext = pattern(spec.plaintext_len, index as u8);
    let mut out = Vec::new();
    let mut w = sealer
        .seal_writer_with(&mut out, DataKey::from_bytes(data_key), file_id)
        .unwrap();
    w.write_all(&plaintext).unwrap();
    w.finish().unwrap();
    Case {
        name: spec.name.into(),
        valid: true,
        reason: None,
        recipient_private_keys_pem: spec.recipients.iter().map(|r| format!("{r}.pem")).collect(),
        signer_public_key_pem: spec.signer.map(|s| format!("{s}.pub.pem")),
        data_key: hex::encode(data_key),
        file_id: hex::encode(file_id),
        chunk_size: spec.chunk_size,
        metadata: spec
            .metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        plaintext: hex::encode(&plaintext),
        envelope: hex::encode(&out),
    }
}

/// Must-fail variants, each derived from a valid case by one edit.
fn must_fail(valid: &[Case]) -> Vec<Case> {
    let several = valid
        .iter()
        .find(|c| c.name == "several chunks, short last chunk")
        .unwrap();
    let signed = valid
        .iter()
        .find(|c| c.name == "signed ECDSA P-256")
        .unwrap();
    let env = hex::decode(&several.envelope).unwrap();
    let header_len = Header::read(&env[..]).unwrap().encoded_len();
    let stride = several.chunk_size + 16;
    let variant = |base: &Case, name: &str, reason: &str, bytes: Vec<u8>| Case {
        name: name.into(),
        valid: false,
        reason: Some(reason.into()),
        envelope: hex::encode(bytes),
        ..base.clone()
    };
    let flip = |bytes: &[u8], at: usize| {
        let mut b = bytes.to_vec();
        b[at] ^= 0x01;
        b
    };
    let mut swapped = env.clone();
    let (a, b) = (header_len, header_len + stride);
    let first: Vec<u8> = env[a..b].to_vec();
    swapped[a..b].copy_from_slice(&env[b..b + stride]);
    swapped[b..b + stride].copy_from_slice(&first);
    let signed_env = hex::decode(&signed.envelope).unwrap();
    let mut v2 = env.clone();
    v2[9] = 2;
    vec![
        variant(
            several,
            "flipped body byte",
            "integrity: chunk 1",
            flip(&env, header_len + stride + 5),
        ),
        variant(
            several,
            "flipped tag byte",
            "integrity: chunk 0",
            flip(&env, header_len + stride - 1),
        ),
        variant(
            several,
            "truncated at a chunk boundary",
            "integrity: chunk 1",
            env[..header_len + 2 * stride].to_vec(),
        ),
        variant(
            several,
            "truncated inside the last tag",
            "integrity: chunk 2",
            env[..env.len() - 1].to_vec(),
        ),
        variant(
            several,
            "swapped chunks 0 and 1",
            "integrity: chunk 0",
            swapped,
        ),
        variant(
            several,
            "flipped commitment byte",
            "integrity: header",
            flip(&env, 48),
        ),
        variant(
            several,
            "flipped header MAC byte",
            "integrity: header",
            flip(&env, header_len - 1),
        ),
        variant(
            several,
            "flipped file id byte",
            "integrity: header",
            flip(&env, 20),
        ),
        variant(
            several,
            "unknown format version",
            "unsupported: format version 2",
            v2,
        ),
        variant(
            signed,
            "flipped signature byte",
            "signature: invalid",
            flip(&signed_env, signed_env.len() - 3),
        ),
    ]
}

fn error_label(e: &Error) -> String {
    match e {
        Error::Integrity(IntegrityError::Header) => "integrity: header".into(),
        Error::Integrity(IntegrityError::Chunk(i)) => format!("integrity: chunk {i}"),
        Error::Integrity(IntegrityError::Length) => "integrity: length".into(),
        Error::Unsupported { what, value } => format!("unsupported: {what} {value}"),
        Error::Signature(SignatureError::Invalid) => "signature: invalid".into(),
        other => format!("other: {other}"),
    }
}

fn open_case(case: &Case, backend: &'static dyn Backend) -> Vec<Result<Vec<u8>, String>> {
    let envelope = hex::decode(&case.envelope).unwrap();
    let verifier = case.signer_public_key_pem.as_ref().map(|p| {
        VerifyingKey::from_bytes(&fixture(p))
            .unwrap()
            .with_backend(backend)
    });
    case.recipient_private_keys_pem
        .iter()
        .map(|k| {
            let key = RsaPrivateKey::from_bytes(&fixture(k))
                .unwrap()
                .with_backend(backend);
            let mut opener = Opener::new(&key).backend(backend);
            if let Some(v) = &verifier {
                opener = opener.require_signer(v);
            }
            opener.open_bytes(&envelope).map_err(|e| error_label(&e))
        })
        .collect()
}

#[test]
fn vectors() {
    let path = vectors_path();
    if std::env::var_os("CIPHERFLOW_WRITE_VECTORS").is_some() {
        let valid: Vec<Case> = SPECS
            .iter()
            .enumerate()
            .map(|(i, s)| seal_spec(s, i, default_backend()))
            .collect();
        let mut cases = valid.clone();
        cases.extend(must_fail(&valid));
        let vectors = Vectors {
            format: "cipherflow envelope v1".into(),
            note: "Keys are files in cipherflow-core/tests/data/. RSA-OAEP and ECDSA are randomised, so wrapped keys and signatures are given as produced; the body is deterministic given data_key, file_id and plaintext.".into(),
            cases,
        };
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&vectors).unwrap() + "\n",
        )
        .unwrap();
    }
    let vectors: Vectors = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(vectors.cases.len(), SPECS.len() + 10);
    for backend in all_backends() {
        for case in &vectors.cases {
            for result in open_case(case, backend) {
                match (case.valid, result) {
                    (true, Ok(pt)) => assert_eq!(hex::encode(pt), case.plaintext, "{}", case.name),
                    (false, Err(label)) => {
                        assert_eq!(
                            Some(&label),
                            case.reason.as_ref(),
                            "{} on {}",
                            case.name,
                            backend.name()
                        )
                    }
                    (valid, other) => panic!(
                        "{} (valid: {valid}) on {}: {other:?}",
                        case.name,
                        backend.name()
                    ),
                }
            }
        }
    }
}

/// Every backend, given the same data key and file id, writes the same preamble and body.
#[test]
fn backends_write_identical_bytes() {
    let vectors: Vectors = serde_json::from_slice(&std::fs::read(vectors_path()).unwrap()).unwrap();
    for (i, spec) in SPECS.iter().enumerate() {
        let stored = hex::decode(&vectors.cases[i].envelope).unwrap();
        let stored_header = Header::read(&stored[..]).unwrap();
        let sig = stored_header.signature_len();
        for backend in all_backends() {
            let fresh = hex::decode(seal_spec(spec, i, backend).envelope).unwrap();
            let header = Header::read(&fresh[..]).unwrap();
            assert_eq!(
                header.preamble_bytes,
                stored_header.preamble_bytes,
                "{} preamble on {}",
                spec.name,
                backend.name()
            );
            assert_eq!(
                &fresh[header.encoded_len()..fresh.len() - sig],
                &stored[stored_header.encoded_len()..stored.len() - sig],
                "{} body on {}",
                spec.name,
                backend.name()
            );
        }
    }
}
