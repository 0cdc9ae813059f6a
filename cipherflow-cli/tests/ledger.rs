//! End-to-end tests of `cipherflow ledger`.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;
use tempfile::TempDir;

fn cf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cipherflow"))
}

fn json(cmd: &mut Command) -> Value {
    let out = cmd.assert().success().get_output().stdout.clone();
    serde_json::from_slice(&out).unwrap()
}

/// A signing key pair: (private, public).
fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    cf().args(["keygen", "--signing", "--private"])
        .arg(&private)
        .arg("--public")
        .arg(&public)
        .assert()
        .success();
    (private, public)
}

/// A ledger with three records (the third made from the first two), checkpointed.
fn setup() -> (TempDir, PathBuf, PathBuf, PathBuf) {
    let tmp = TempDir::new().unwrap();
    let (private, public) = keygen(tmp.path(), "signer");
    let ledger = tmp.path().join("ledger");
    cf().args([
        "ledger",
        "init",
        "--origin",
        "example.com/ledger/test",
        "--ledger",
    ])
    .arg(&ledger)
    .assert()
    .success();
    for (i, key) in ["in/a b+c.csv", "in/ü:=.csv", "out/merged.csv"]
        .iter()
        .enumerate()
    {
        let file = tmp.path().join(format!("f{i}"));
        fs::write(&file, format!("contents {i}\n")).unwrap();
        let mut cmd = cf();
        cmd.args(["ledger", "add", "--ledger"])
            .arg(&ledger)
            .args([
                "--bucket",
                "landing",
                "--object-key",
                key,
                "--version-id",
                "v1",
            ])
            .args([
                "--principal",
                "arn:aws:sts::123456789012:assumed-role/ingest/s",
            ])
            .args(["--source-ip", "192.0.2.1", "--time-ms", "1790000000000"]);
        if i == 2 {
            cmd.args(["--kind", "batch-applied", "--input", "0", "--input", "1"]);
        }
        let out = json(cmd.arg(&file));
        assert_eq!(out["index"], i as u64);
        assert_eq!(out["leaf_hash"].as_str().unwrap().len(), 64);
    }
    let out = json(
        cf().args(["ledger", "checkpoint", "--time", "1790000000", "--ledger"])
            .arg(&ledger)
            .arg("--sign-key")
            .arg(&private),
    );
    assert_eq!(out["size"], 3);
    (tmp, ledger, private, public)
}

fn verify(ledger: &Path, public: &Path) -> assert_cmd::assert::Assert {
    cf().args(["ledger", "verify", "--ledger"])
        .arg(ledger)
        .arg("--trusted-key")
        .arg(public)
        .assert()
}

#[test]
fn add_checkpoint_verify_show_prove_check() {
    let (tmp, ledger, _, public) = setup();
    let report: Value =
        serde_json::from_slice(&verify(&ledger, &public).success().get_output().stdout).unwrap();
    assert_eq!(report["records"], 3);
    assert_eq!(report["signed_size"], 3);

    let summary = json(cf().args(["ledger", "show", "--ledger"]).arg(&ledger));
    assert_eq!(summary["records"], 3);
    let record = json(
        cf().args(["ledger", "show", "--index", "2", "--ledger"])
            .arg(&ledger),
    );
    assert_eq!(record["kind"], "batch-applied");
    assert_eq!(record["object"]["key"], "out/merged.csv");
    assert_eq!(record["inputs"].as_array().unwrap().len(), 2);
    let record1 = json(
        cf().args(["ledger", "show", "--index", "1", "--ledger"])
            .arg(&ledger),
    );
    assert_eq!(record1["object"]["key"], "in/ü:=.csv");

    let bundle = tmp.path().join("bundle.json");
    let out = cf()
        .args(["ledger", "prove", "--index", "1", "--ledger"])
        .arg(&ledger)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    fs::write(&bundle, &out).unwrap();
    let checked = json(
        cf().args(["ledger", "check-proof", "--trusted-key"])
            .arg(&public)
            .arg(&bundle),
    );
    assert_eq!(checked["verified"], true);
    assert_eq!(checked["tree_size"], 3);
    assert_eq!(checked["record"]["sequence"], 1);

    // The bundle does not check against another key, nor once altered.
    let (_, stranger) = keygen(tmp.path(), "stranger");
    cf().args(["ledger", "check-proof", "--trusted-key"])
        .arg(&stranger)
        .arg(&bundle)
        .assert()
        .code(5)
        .stderr(predicate::str::contains("not signed by any trusted key"));
    let mut value: Value = serde_json::from_slice(&out).unwrap();
    value["index"] = 0.into();
    fs::write(&bundle, value.to_string()).unwrap();
    cf().args(["ledger", "check-proof", "--trusted-key"])
        .arg(&public)
        .arg(&bundle)
        .assert()
        .code(4);
}

#[test]
fn verify_names_the_first_bad_index() {
    let (_tmp, ledger, _, public) = setup();
    // `ledger add` appends one record per call, so record i is segment i's only record.
    let rec = |i: u64| ledger.join(format!("segments/{i:012}.seg"));
    let original = fs::read(rec(1)).unwrap();
    let mut altered = original.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    fs::write(rec(1), &altered).unwrap();
    verify(&ledger, &public)
        .code(4)
        .stderr(predicate::str::contains("at record 1:"))
        .stderr(predicate::str::contains(
            "(segment segments/000000000001.seg)",
        ));
    fs::write(rec(1), &original).unwrap();

    fs::remove_file(rec(2)).unwrap();
    verify(&ledger, &public)
        .code(4)
        .stderr(predicate::str::contains("at record 2: missing"));
}

#[test]
fn unsigned_tail_and_untrusted_key_fail_verify() {
    let (tmp, ledger, _, public) = setup();
    let file = tmp.path().join("late");
    fs::write(&file, "late\n").unwrap();
    cf().args([
        "ledger",
        "add",
        "--bucket",
        "b",
        "--object-key",
        "k",
        "--principal",
        "p",
        "--ledger",
    ])
    .arg(&ledger)
    .arg(&file)
    .assert()
    .success();
    verify(&ledger, &public)
        .code(4)
        .stderr(predicate::str::contains("at record 3: not covered"));
    cf().args(["ledger", "verify", "--allow-unsigned-tail", "--ledger"])
        .arg(&ledger)
        .arg("--trusted-key")
        .arg(&public)
        .assert()
        .success();
    let (_, stranger) = keygen(tmp.path(), "stranger");
    verify(&ledger, &stranger)
        .code(5)
        .stderr(predicate::str::contains("not signed by any trusted key"));
    // An input link to a record that does not exist is a usage error.
    cf().args([
        "ledger",
        "add",
        "--bucket",
        "b",
        "--object-key",
        "k",
        "--principal",
        "p",
    ])
    .args(["--input", "99", "--ledger"])
    .arg(&ledger)
    .arg(&file)
    .assert()
    .code(2);
}

#[test]
fn custody_report_from_cloudtrail() {
    let tmp = TempDir::new().unwrap();
    let ledger = tmp.path().join("ledger");
    cf().args(["ledger", "init", "--origin", "o", "--ledger"])
        .arg(&ledger)
        .assert()
        .success();
    let file = tmp.path().join("five");
    fs::write(&file, "12345").unwrap();
    cf().args([
        "ledger",
        "add",
        "--bucket",
        "landing-bucket",
        "--object-key",
        "in/a b+c:d=é.csv",
    ])
    .args([
        "--version-id",
        "v1",
        "--principal",
        "arn:aws:sts::123456789012:assumed-role/ingest/run-1",
    ])
    .arg("--ledger")
    .arg(&ledger)
    .arg(&file)
    .assert()
    .success();
    let trail = tmp.path().join("trail");
    fs::create_dir(&trail).unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cipherflow-core/tests/data/ledger");
    fs::copy(data.join("cloudtrail.json"), trail.join("a.json")).unwrap();
    fs::copy(data.join("notification.json"), trail.join("b.json")).unwrap();
    let report = json(
        cf().args(["ledger", "custody", "--json", "--ledger"])
            .arg(&ledger)
            .arg("--cloudtrail")
            .arg(&trail)
            .args(["--allow-principal", "arn:aws:iam::123456789012:role/ingest"]),
    );
    let objects = report["objects"].as_array().unwrap();
    assert_eq!(objects[0]["key"], "in/a b+c:d=é.csv");
    assert_eq!(objects[0]["ledger"][0]["index"], 0);
    let kinds: Vec<&str> = objects
        .iter()
        .flat_map(|o| o["anomalies"].as_array().unwrap())
        .map(|a| a["anomaly"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"unknown-to-ledger"));
    assert!(kinds.contains(&"principal-not-allowed"));
    cf().args(["ledger", "custody", "--ledger"])
        .arg(&ledger)
        .arg("--cloudtrail")
        .arg(&trail)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "s3://landing-bucket/in/a b+c:d=é.csv",
        ));

    // Re-checking against a copy of the bucket: intact, then altered.
    let copy = tmp.path().join("buckets");
    let object = copy.join("landing-bucket/in/a b+c:d=é.csv");
    fs::create_dir_all(object.parent().unwrap()).unwrap();
    fs::write(&object, "12345").unwrap();
    let recheck = || {
        json(
            cf().args(["ledger", "custody", "--json", "--ledger"])
                .arg(&ledger)
                .arg("--cloudtrail")
                .arg(&trail)
                .arg("--recheck")
                .arg(&copy),
        )
    };
    let rechecked = |report: &Value| -> Vec<Value> {
        report["objects"][0]["anomalies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["anomaly"] == "hash-mismatch" || a["anomaly"] == "missing-on-recheck")
            .cloned()
            .collect()
    };
    assert_eq!(rechecked(&recheck()), Vec::<Value>::new());
    fs::write(&object, "12346").unwrap();
    let flagged = rechecked(&recheck());
    assert_eq!(flagged.len(), 1);
    assert_eq!(flagged[0]["anomaly"], "hash-mismatch");
    assert_eq!(flagged[0]["index"], 0);
    assert_eq!(flagged[0]["stored_size"], 5);
    assert_eq!(
        flagged[0]["ledger_sha256"],
        "5994471abb01112afcc18159f6cc74b4f511b99806da59b3caf5a9c173cacfc5"
    );
    assert_ne!(flagged[0]["stored_sha256"], flagged[0]["ledger_sha256"]);
}

#[test]
fn trusted_key_windows_bound_the_checkpoint_time() {
    // The setup's checkpoint states time 1790000000 (2026-09-21T14:13:20Z).
    let (tmp, ledger, _, public) = setup();
    let with_window = |window: &str| {
        let mut arg = public.clone().into_os_string();
        arg.push(window);
        cf().args(["ledger", "verify", "--ledger"])
            .arg(&ledger)
            .arg("--trusted-key")
            .arg(arg)
            .assert()
    };
    with_window("@1700000000..1800000000").success();
    with_window("@2026-09-21T14:13:20Z..").success();
    // Expired before the checkpoint (the end is exclusive), or not yet valid.
    with_window("@..1790000000")
        .code(5)
        .stderr(predicate::str::contains(
            "not valid at the checkpoint's time",
        ));
    with_window("@1790000001..")
        .code(5)
        .stderr(predicate::str::contains(
            "not valid at the checkpoint's time",
        ));
    with_window("@9..1").code(2);
    // A rotated set: an unrelated key alongside the valid one still verifies.
    let (_, stranger) = keygen(tmp.path(), "stranger");
    cf().args(["ledger", "verify", "--ledger"])
        .arg(&ledger)
        .arg("--trusted-key")
        .arg(&stranger)
        .arg("--trusted-key")
        .arg(&public)
        .assert()
        .success();
}
