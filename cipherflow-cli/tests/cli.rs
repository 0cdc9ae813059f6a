//! End-to-end tests of the `cipherflow` binary.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;
use tempfile::TempDir;

const WRONG_KEY: i32 = 3;
const INTEGRITY: i32 = 4;
const SIGNATURE: i32 = 5;
const USAGE: i32 = 2;

fn cf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cipherflow"))
}

struct KeyPair {
    private: PathBuf,
    public: PathBuf,
    id: String,
}

fn keygen(dir: &Path, name: &str, signing: bool) -> KeyPair {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let mut cmd = cf();
    cmd.arg("keygen")
        .arg("--private")
        .arg(&private)
        .arg("--public")
        .arg(&public);
    if signing {
        cmd.arg("--signing");
    } else {
        cmd.args(["--bits", "2048"]);
    }
    let out = cmd.assert().success().get_output().stdout.clone();
    let json: Value = serde_json::from_slice(&out).expect("keygen prints JSON");
    let id = json["key_id"]
        .as_str()
        .expect("key_id is a string")
        .to_owned();
    assert_eq!(id.len(), 64);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    KeyPair {
        private,
        public,
        id,
    }
}

fn inspect(path: &Path) -> Value {
    let out = cf()
        .arg("inspect")
        .arg(path)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).expect("inspect prints JSON")
}

/// Some plaintext spanning several 1 KiB chunks, with a short last one.
fn plaintext() -> Vec<u8> {
    (0..5000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

fn seal_file(dir: &Path, recipients: &[&KeyPair], extra: &[&str], plaintext: &[u8]) -> PathBuf {
    let input = dir.join("plain.bin");
    let output = dir.join("sealed.cfe");
    fs::write(&input, plaintext).unwrap();
    let mut cmd = cf();
    cmd.arg("seal");
    for r in recipients {
        cmd.arg("--recipient").arg(&r.public);
    }
    cmd.args(extra)
        .args(["--chunk-size", "1024"])
        .arg("-i")
        .arg(&input)
        .arg("-o")
        .arg(&output);
    cmd.assert().success().stdout("");
    output
}

/// Asserts the command failed with `code` and exactly one stderr line `error: ...` that
/// contains `needle`.
fn assert_one_line_error(assert: assert_cmd::assert::Assert, code: i32, needle: &str) {
    let assert = assert.failure().code(code);
    let stderr = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
    assert!(stderr.starts_with("error: "), "stderr: {stderr:?}");
    assert!(
        stderr.ends_with('\n') && stderr.lines().count() == 1,
        "not one line: {stderr:?}"
    );
    assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    assert!(
        assert.get_output().stdout.is_empty(),
        "nothing on stdout on failure"
    );
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn keygen_rsa_writes_private_key_0600_and_never_overwrites() {
    let dir = TempDir::new().unwrap();
    let key = keygen(dir.path(), "alice", false);
    let private = fs::read_to_string(&key.private).unwrap();
    let public = fs::read_to_string(&key.public).unwrap();
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&key.private).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // An existing private key is never overwritten, and no half pair is left behind.
    let other_public = dir.path().join("other.pub.pem");
    let assert = cf()
        .args(["keygen", "--bits", "2048", "--private"])
        .arg(&key.private)
        .arg("--public")
        .arg(&other_public)
        .assert();
    assert_one_line_error(assert, 1, &key.private.display().to_string());
    assert_eq!(fs::read_to_string(&key.private).unwrap(), private);
    assert!(!other_public.exists());

    // Nor is an existing public key, and then the new private key is removed again.
    let other_private = dir.path().join("other.pem");
    let assert = cf()
        .args(["keygen", "--bits", "2048", "--private"])
        .arg(&other_private)
        .arg("--public")
        .arg(&key.public)
        .assert();
    assert_one_line_error(assert, 1, "exists");
    assert!(!other_private.exists());
    assert_eq!(fs::read_to_string(&key.public).unwrap(), public);
}

#[test]
fn keygen_rejects_bad_sizes_and_bits_with_signing() {
    let dir = TempDir::new().unwrap();
    let p = dir.path();
    cf().args(["keygen", "--bits", "1024", "--private"])
        .arg(p.join("k.pem"))
        .arg("--public")
        .arg(p.join("k.pub.pem"))
        .assert()
        .failure()
        .code(USAGE);
    cf().args(["keygen", "--signing", "--bits", "2048", "--private"])
        .arg(p.join("k.pem"))
        .arg("--public")
        .arg(p.join("k.pub.pem"))
        .assert()
        .failure()
        .code(USAGE);
    assert!(dir_entries(p).is_empty());
}

#[test]
fn keygen_signing_key_signs_envelopes_with_its_key_id() {
    let dir = TempDir::new().unwrap();
    let signer = keygen(dir.path(), "producer", true);
    let private = fs::read_to_string(&signer.private).unwrap();
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&signer.private).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let consumer = keygen(dir.path(), "consumer", false);
    let sign_key = signer.private.to_str().unwrap();
    let sealed = seal_file(dir.path(), &[&consumer], &["--sign-key", sign_key], b"x");
    let info = inspect(&sealed);
    assert_eq!(info["signer"]["key_id"], signer.id.as_str());
    assert_eq!(info["signer"]["algorithm"], "ecdsa-p256-sha256");
}

#[test]
fn seal_open_round_trip_via_files() {
    let dir = TempDir::new().unwrap();
    let key = keygen(dir.path(), "alice", false);
    let data = plaintext();
    let sealed = seal_file(dir.path(), &[&key], &[], &data);
    let opened = dir.path().join("opened.bin");
    cf().arg("open")
        .arg("--key")
        .arg(&key.private)
        .arg("-i")
        .arg(&sealed)
        .arg("-o")
        .arg(&opened)
        .assert()
        .success()
        .stdout("")
        .stderr("");
    assert_eq!(fs::read(&opened).unwrap(), data);
    let info = inspect(&sealed);
    assert_eq!(info["chunk_count"], 5);
    assert_eq!(info["plaintext_len"], data.len());
}

#[test]
fn seal_open_round_trip_via_stdin_and_stdout() {
    let dir = TempDir::new().unwrap();
    let key = keygen(dir.path(), "alice", false);
    let data = plaintext();
    let sealed = cf()
        .arg("seal")
        .arg("--recipient")
        .arg(&key.public)
        .write_stdin(data.clone())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(sealed.starts_with(b"\x89CFE\r\n\x1a\n"));
    cf().arg("open")
        .arg("--key")
        .arg(&key.private)
        .write_stdin(sealed.clone())
        .assert()
        .success()
        .stdout(data.clone());
    // `-` names stdin/stdout explicitly.
    cf().arg("open")
        .arg("--key")
        .arg(&key.private)
        .args(["-i", "-", "-o", "-"])
        .write_stdin(sealed)
        .assert()
        .success()
        .stdout(data);
}

#[test]
fn empty_plaintext_round_trips() {
    let dir = TempDir::new().unwrap();
    let key = keygen(dir.path(), "alice", false);
    let sealed = seal_file(dir.path(), &[&key], &[], b"");
    let info = inspect(&sealed);
    assert_eq!(info["plaintext_len"], 0);
    assert_eq!(info["chunk_count"], 1);
    cf().arg("open")
        .arg("-k")
        .arg(&key.private)
        .arg("-i")
        .arg(&sealed)
        .assert()
        .success()
        .stdout("");
}

#[test]
fn two_recipients_can_each_open() {
    let dir = TempDir::new().unwrap();
    let alice = keygen(dir.path(), "alice", false);
    let bob = keygen(dir.path(), "bob", false);
    let data = plaintext();
    let sealed = seal_file(dir.path(), &[&alice, &bob], &[], &data);
    for key in [&alice, &bob] {
        cf().arg("open")
            .arg("--key")
            .arg(&key.private)
            .arg("-i")
            .arg(&sealed)
            .assert()
            .success()
            .stdout(data.clone());
    }
    let info = inspect(&sealed);
    assert_eq!(info["recipients"], serde_json::json!([alice.id, bob.id]));
}

#[test]
fn metadata_shows_in_inspect() {
    let dir = TempDir::new().unwrap();
    let key = keygen(dir.path(), "alice", false);
    let data = plaintext();
    let sealed = seal_file(
        dir.path(),
        &[&key],
        &[
            "--meta",
            "table=customers",
            "--meta",
            "watermark=2024-01-01T00:00:00Z=x",
        ],
        &data,
    );
    let info = inspect(&sealed);
    let envelope_len = fs::metadata(&sealed).unwrap().len();
    assert_eq!(info["format_version"], 1);
    assert_eq!(info["suite"], 1);
    assert_eq!(info["chunk_size"], 1024);
    assert_eq!(info["chunk_count"], 5);
    assert_eq!(info["plaintext_len"], data.len());
    assert_eq!(info["envelope_len"], envelope_len);
    assert!(info["header_len"].as_u64().unwrap() < envelope_len);
    assert_eq!(info["recipients"], serde_json::json!([key.id]));
    assert_eq!(info["signer"], Value::Null);
    assert_eq!(
        info["metadata"],
        serde_json::json!({"table": "customers", "watermark": "2024-01-01T00:00:00Z=x"})
    );
}

#[test]
fn bad_meta_is_a_usage_error() {
    let dir = TempDir::new().unwrap();
    let key = keygen(dir.path(), "alice", false);
    for bad in ["bad", "=value"] {
        cf().arg("seal")
            .arg("--recipient")
            .arg(&key.public)
            .args(["--meta", bad])
            .write_stdin("x")
            .assert()
            .failure()
            .code(USAGE)
            .stdout("")
            .stderr(
                predicate::str::starts_with("error: ").and(predicate::str::contains("KEY=VALUE")),
            );
    }
    // A key given twice is refused too (not silently overwritten).
    let assert = cf()
        .arg("seal")
        .arg("--recipient")
        .arg(&key.public)
        .args(["--meta", "a=1", "--meta", "a=2"])
        .write_stdin("x")
        .assert();
    assert_one_line_error(assert, USAGE, "more than once");
}

#[test]
fn signatures_are_required_and_checked() {
    let dir = TempDir::new().unwrap();
    let p = dir.path();
    let consumer = keygen(p, "consumer", false);
    let producer = keygen(p, "producer", true);
    let impostor = keygen(p, "impostor", true);
    let data = plaintext();

    let sign_key = producer.private.to_str().unwrap();
    let signed = seal_file(p, &[&consumer], &["--sign-key", sign_key], &data);
    let signed_copy = p.join("signed.cfe");
    fs::rename(&signed, &signed_copy).unwrap();
    let unsigned = seal_file(p, &[&consumer], &[], &data);

    let open = |envelope: &Path, signer: &KeyPair| {
        cf().arg("open")
            .arg("--key")
            .arg(&consumer.private)
            .arg("--signer")
            .arg(&signer.public)
            .arg("-i")
            .arg(envelope)
            .assert()
    };
    open(&signed_copy, &producer).success().stdout(data.clone());
    assert_one_line_error(open(&unsigned, &producer), SIGNATURE, "unsigned");
    assert_one_line_error(open(&signed_copy, &impostor), SIGNATURE, &impostor.id);

    // The signature is over the whole body: a valid envelope re-signed nowhere else fails
    // when its last byte (in the signature) is altered.
    let mut bytes = fs::read(&signed_copy).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    let tampered = p.join("tampered.cfe");
    fs::write(&tampered, bytes).unwrap();
    assert_one_line_error(open(&tampered, &producer), SIGNATURE, "does not verify");

    // Without --signer, a signed envelope opens like any other.
    cf().arg("open")
        .arg("--key")
        .arg(&consumer.private)
        .arg("-i")
        .arg(&signed_copy)
        .assert()
        .success()
        .stdout(data);
}

#[test]
fn wrong_key_is_refused_with_its_own_exit_code() {
    let dir = TempDir::new().unwrap();
    let alice = keygen(dir.path(), "alice", false);
    let mallory = keygen(dir.path(), "mallory", false);
    let sealed = seal_file(dir.path(), &[&alice], &[], &plaintext());
    let out = dir.path().join("out.bin");
    let assert = cf()
        .arg("open")
        .arg("--key")
        .arg(&mallory.private)
        .arg("-i")
        .arg(&sealed)
        .arg("-o")
        .arg(&out)
        .assert();
    assert_one_line_error(assert, WRONG_KEY, "wrong key");
    assert!(!out.exists());
}

#[test]
fn tampered_envelope_leaves_no_output_file() {
    let dir = TempDir::new().unwrap();
    let key = keygen(dir.path(), "alice", false);
    let sealed = seal_file(dir.path(), &[&key], &[], &plaintext());
    let header_len = inspect(&sealed)["header_len"].as_u64().unwrap() as usize;
    let before = dir_entries(dir.path());

    // A flipped bit in the last chunk: every earlier chunk verifies and is written to the
    // temporary file, which must be gone afterwards.
    let mut bytes = fs::read(&sealed).unwrap();
    let at = bytes.len() - 20;
    assert!(at > header_len + 4 * 1040);
    bytes[at] ^= 0x40;
    fs::write(&sealed, &bytes).unwrap();

    let out = dir.path().join("out.bin");
    let assert = cf()
        .arg("open")
        .arg("--key")
        .arg(&key.private)
        .arg("-i")
        .arg(&sealed)
        .arg("-o")
        .arg(&out)
        .assert();
    assert_one_line_error(assert, INTEGRITY, "chunk 4");
    assert!(!out.exists());
    assert_eq!(
        dir_entries(dir.path()),
        before,
        "no temporary file left behind"
    );

    // A flipped bit in the header MAC region is refused as well.
    let mut bytes = fs::read(&sealed).unwrap();
    bytes[at] ^= 0x40;
    bytes[header_len - 1] ^= 1;
    fs::write(&sealed, &bytes).unwrap();
    let assert = cf()
        .arg("open")
        .arg("--key")
        .arg(&key.private)
        .arg("-i")
        .arg(&sealed)
        .arg("-o")
        .arg(&out)
        .assert();
    assert_one_line_error(assert, INTEGRITY, "header");
    assert_eq!(dir_entries(dir.path()), before);
}

#[test]
fn truncated_envelope_is_refused() {
    let dir = TempDir::new().unwrap();
    let key = keygen(dir.path(), "alice", false);
    let sealed = seal_file(dir.path(), &[&key], &[], &plaintext());
    let bytes = fs::read(&sealed).unwrap();
    // Cut at a chunk boundary: the new last chunk was not sealed as the last.
    let header_len = inspect(&sealed)["header_len"].as_u64().unwrap() as usize;
    fs::write(&sealed, &bytes[..header_len + 2 * 1040]).unwrap();
    let assert = cf()
        .arg("open")
        .arg("--key")
        .arg(&key.private)
        .arg("-i")
        .arg(&sealed)
        .assert();
    let stderr = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
    assert_eq!(
        assert.get_output().status.code(),
        Some(INTEGRITY),
        "{stderr}"
    );
    assert!(
        stderr.starts_with("error: ") && stderr.lines().count() == 1,
        "{stderr:?}"
    );
}

#[test]
fn empty_file_is_a_one_line_format_error() {
    let dir = TempDir::new().unwrap();
    let key = keygen(dir.path(), "alice", false);
    let empty = dir.path().join("empty.cfe");
    fs::write(&empty, b"").unwrap();
    let assert = cf()
        .arg("open")
        .arg("--key")
        .arg(&key.private)
        .arg("-i")
        .arg(&empty)
        .assert();
    assert_one_line_error(assert, INTEGRITY, "malformed envelope");
    let assert = cf().arg("inspect").arg(&empty).assert();
    assert_one_line_error(assert, INTEGRITY, "malformed envelope");
}

#[test]
fn key_file_errors_name_the_path() {
    let dir = TempDir::new().unwrap();
    let key = keygen(dir.path(), "alice", false);
    let missing = dir.path().join("missing.pem");
    let assert = cf()
        .arg("open")
        .arg("--key")
        .arg(&missing)
        .write_stdin("")
        .assert();
    assert_one_line_error(assert, 1, &format!("reading key {}", missing.display()));

    // A public key where a private key is needed, and the reverse.
    let assert = cf()
        .arg("open")
        .arg("--key")
        .arg(&key.public)
        .write_stdin("")
        .assert();
    assert_one_line_error(assert, 1, &format!("reading key {}", key.public.display()));
    let assert = cf()
        .arg("seal")
        .arg("--recipient")
        .arg(&key.private)
        .write_stdin("")
        .assert();
    assert_one_line_error(assert, 1, &format!("reading key {}", key.private.display()));
}

#[test]
fn rewrap_adds_and_removes_recipients_keeping_body_and_signature() {
    let dir = TempDir::new().unwrap();
    let p = dir.path();
    let alice = keygen(p, "alice", false);
    let bob = keygen(p, "bob", false);
    let carol = keygen(p, "carol", false);
    let producer = keygen(p, "producer", true);
    let data = plaintext();
    let sign_key = producer.private.to_str().unwrap();
    let sealed = seal_file(
        p,
        &[&alice, &bob],
        &["--sign-key", sign_key, "--meta", "table=t"],
        &data,
    );
    let rewrapped = p.join("rewrapped.cfe");

    let out = cf()
        .arg("rewrap")
        .arg("--key")
        .arg(&alice.private)
        .arg("--add")
        .arg(&carol.public)
        .args(["--remove", &bob.id])
        .arg("-i")
        .arg(&sealed)
        .arg("-o")
        .arg(&rewrapped)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let printed: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        printed["recipients"],
        serde_json::json!([alice.id, carol.id])
    );

    let before = inspect(&sealed);
    let after = inspect(&rewrapped);
    assert_eq!(after["recipients"], serde_json::json!([alice.id, carol.id]));
    assert_eq!(after["metadata"], before["metadata"]);
    assert_eq!(after["signer"], before["signer"]);
    let old = fs::read(&sealed).unwrap();
    let new = fs::read(&rewrapped).unwrap();
    let old_header = before["header_len"].as_u64().unwrap() as usize;
    let new_header = after["header_len"].as_u64().unwrap() as usize;
    assert_eq!(
        old[old_header..],
        new[new_header..],
        "body and signature copied byte for byte"
    );

    let open = |key: &KeyPair| {
        cf().arg("open")
            .arg("--key")
            .arg(&key.private)
            .arg("--signer")
            .arg(&producer.public)
            .arg("-i")
            .arg(&rewrapped)
            .assert()
    };
    open(&carol).success().stdout(data.clone());
    open(&alice).success().stdout(data.clone());
    assert_one_line_error(open(&bob), WRONG_KEY, "wrong key");
}

#[test]
fn rewrap_refuses_output_equal_to_input() {
    let dir = TempDir::new().unwrap();
    let alice = keygen(dir.path(), "alice", false);
    let bob = keygen(dir.path(), "bob", false);
    let sealed = seal_file(dir.path(), &[&alice], &[], &plaintext());
    let original = fs::read(&sealed).unwrap();
    let before = dir_entries(dir.path());
    // The same path, and the same file under another spelling.
    let other_spelling = dir.path().join(".").join("sealed.cfe");
    for out in [&sealed, &other_spelling] {
        let assert = cf()
            .arg("rewrap")
            .arg("--key")
            .arg(&alice.private)
            .arg("--add")
            .arg(&bob.public)
            .arg("-i")
            .arg(&sealed)
            .arg("-o")
            .arg(out)
            .assert();
        assert_one_line_error(assert, USAGE, "input");
    }
    assert_eq!(fs::read(&sealed).unwrap(), original);
    assert_eq!(dir_entries(dir.path()), before);
}

#[test]
fn rewrap_failure_leaves_no_output() {
    let dir = TempDir::new().unwrap();
    let alice = keygen(dir.path(), "alice", false);
    let bob = keygen(dir.path(), "bob", false);
    let sealed = seal_file(dir.path(), &[&alice], &[], &plaintext());
    let before = dir_entries(dir.path());
    let out = dir.path().join("out.cfe");
    // Bob is not a recipient: he cannot rewrap.
    let assert = cf()
        .arg("rewrap")
        .arg("--key")
        .arg(&bob.private)
        .arg("--add")
        .arg(&bob.public)
        .arg("-i")
        .arg(&sealed)
        .arg("-o")
        .arg(&out)
        .assert();
    assert_one_line_error(assert, WRONG_KEY, "wrong key");
    // Removing the only recipient is refused.
    let assert = cf()
        .arg("rewrap")
        .arg("--key")
        .arg(&alice.private)
        .args(["--remove", &alice.id])
        .arg("-i")
        .arg(&sealed)
        .arg("-o")
        .arg(&out)
        .assert();
    assert_one_line_error(assert, 1, "no recipient");
    assert_eq!(dir_entries(dir.path()), before);
}

#[test]
fn chunk_size_out_of_range_is_a_usage_error() {
    let dir = TempDir::new().unwrap();
    let key = keygen(dir.path(), "alice", false);
    cf().arg("seal")
        .arg("--recipient")
        .arg(&key.public)
        .args(["--chunk-size", "100"])
        .write_stdin("x")
        .assert()
        .failure()
        .code(USAGE)
        .stdout("");
}

#[test]
fn help_documents_exit_codes() {
    cf().arg("--help").assert().success().stdout(
        predicate::str::contains("Exit status:").and(predicate::str::contains("3  wrong key")),
    );
}
