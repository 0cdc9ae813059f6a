//! End-to-end tests of `cipherflow ingest` into a local records pipeline: records land, one
//! step publishes them and a consumer pulls the expected table; a replay writes nothing and
//! changes no share object; a refused file exits 1 naming object, record, line and field and
//! writes nothing; in reject mode the reject file holds exactly the bad records.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

const FAILURE: i32 = 1;
const USAGE: i32 = 2;

const SCHEMA: &str = r#"
name = "readings"
key = ["device_id"]
version = "timestamp"
[columns.device_id]
type = "string"
pattern = "^device-[0-9]{3}$"
[columns.timestamp]
type = "timestamp"
[columns.value]
type = "decimal"
min = 0
max = 1000
nullable = true
"#;

const A_JSON: &str = r#"[
  {"device_id": "device-001", "timestamp": "2026-02-01T10:00:00Z", "value": 42},
  {"device_id": "device-002", "timestamp": "2026-02-01T10:00:00Z", "value": 1000.50e0}
]"#;
const A_GOOD: &str = r#"[
  {"device_id": "device-001", "timestamp": "2026-02-01T10:00:00Z", "value": 42},
  {"device_id": "device-002", "timestamp": "2026-02-01T10:00:00Z", "value": 7.50}
]"#;
const B_JSONL: &str = "{\"device_id\": \"device-001\", \"timestamp\": \"2026-02-01T11:00:00Z\", \"value\": 43.0}\n\
                       {\"device_id\": \"device-003\", \"timestamp\": \"2026-02-01T09:00:00Z\", \"value\": null}\n";
const C_CSV: &str = "device_id,timestamp,value\ndevice-001,2026-02-01T09:00:00Z,1\n\
                     device-004,2026-02-01T12:00:00+01:00,0.001\n";
const EXPECTED: &str = "device_id,timestamp,value\n\
                        device-001,2026-02-01T11:00:00Z,43.0\n\
                        device-002,2026-02-01T10:00:00Z,7.50\n\
                        device-003,2026-02-01T09:00:00Z,\n\
                        device-004,2026-02-01T12:00:00+01:00,0.001\n";

fn cf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cipherflow"))
}

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../cipherflow-core/tests/data")
        .join(rel)
}

/// A records pipeline folder (`pipeline/`), the schema beside it, and the input files.
fn setup() -> TempDir {
    let dir = TempDir::new().unwrap();
    let p = dir.path().join("pipeline");
    let keys = p.join("keys");
    fs::create_dir_all(&keys).unwrap();
    for (from, to) in [
        ("alice.pub.pem", "alice.pub.pem"),
        ("producer-rsa.pem", "state.pem"),
        ("producer-rsa.pub.pem", "state.pub.pem"),
        ("producer.pem", "signer.pem"),
    ] {
        fs::copy(data(from), keys.join(to)).unwrap();
    }
    fs::write(p.join("readings.toml"), SCHEMA).unwrap();
    fs::write(
        p.join("pipeline.toml"),
        r#"[table]
name = "readings"
partitions = 2

[input]
format = "records"
schema = "readings.toml"
prefix = "uploads/"

[stores]
landing = "landing"
state = "state"
share = "share"
ledger = "ledger"

[keys]
recipients = ["keys/alice.pub.pem"]
state_public = "keys/state.pub.pem"
state_private = "keys/state.pem"
signer = "keys/signer.pem"
"#,
    )
    .unwrap();
    // The command's schema: a copy elsewhere (equal by content, not by path).
    fs::write(dir.path().join("schema.toml"), SCHEMA).unwrap();
    for (name, text) in [
        ("a.json", A_GOOD),
        ("b.jsonl", B_JSONL),
        ("c.csv", C_CSV),
        ("bad.json", A_JSON),
    ] {
        fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn ingest(dir: &Path, to: &Path, files: &[&str]) -> Command {
    let mut cmd = cf();
    cmd.arg("ingest")
        .arg("--schema")
        .arg(dir.join("schema.toml"))
        .arg("--to")
        .arg(to);
    for f in files {
        cmd.arg(dir.join(f));
    }
    cmd
}

fn json(cmd: &mut Command) -> Value {
    let out = cmd.assert().success().get_output().stdout.clone();
    serde_json::from_slice(&out).unwrap()
}

fn pull(dir: &Path) -> String {
    let out = dir.join("alice");
    cf().arg("pull")
        .arg("--share")
        .arg(dir.join("pipeline/share"))
        .arg("--key")
        .arg(data("alice.pem"))
        .arg("--signer")
        .arg(data("producer.pub.pem"))
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    fs::read_to_string(out.join("readings.csv")).unwrap()
}

/// Every file under `dir` (outside `.cipherflow/`) with its content.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n == ".cipherflow") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.clone(), fs::read(&path).unwrap());
            }
        }
    }
    out
}

fn counts(v: &Value) -> [u64; 4] {
    ["read", "written", "skipped", "rejected"].map(|k| v[k].as_u64().unwrap())
}

#[test]
fn ingest_lands_applies_and_a_replay_writes_nothing() {
    let dir = setup();
    let d = dir.path();
    let to = d.join("pipeline");
    let report = json(&mut ingest(d, &to, &["a.json", "b.jsonl", "c.csv"]));
    assert_eq!(counts(&report["total"]), [6, 6, 0, 0], "{report}");
    assert_eq!(report["total"]["refused"], 0);
    assert_eq!(counts(&report["files"][1]), [2, 2, 0, 0]);
    assert_eq!(report["files"][1]["object"], "b.jsonl");
    assert_eq!(report["step"]["generation"], 1);
    assert_eq!(report["step"]["applied"].as_array().unwrap().len(), 3);
    assert_eq!(report["step"]["changes"], 6);
    assert_eq!(pull(d), EXPECTED);

    // The same files again, through the pipeline.toml itself: written 0, skipped 6, no new
    // generation, and not one share or state object changed.
    let share = files(&to.join("share"));
    let state = files(&to.join("state"));
    let landing = files(&to.join("landing"));
    let again = json(&mut ingest(
        d,
        &to.join("pipeline.toml"),
        &["a.json", "b.jsonl", "c.csv"],
    ));
    assert_eq!(counts(&again["total"]), [6, 0, 6, 0], "{again}");
    assert_eq!(again["step"]["generation"], 1);
    assert_eq!(again["step"]["applied"].as_array().unwrap().len(), 0);
    assert_eq!(files(&to.join("share")), share);
    assert_eq!(files(&to.join("state")), state);
    assert_eq!(files(&to.join("landing")), landing);
    assert_eq!(pull(d), EXPECTED);
}

#[test]
fn a_refused_file_exits_1_names_every_error_and_writes_nothing() {
    let dir = setup();
    let d = dir.path();
    let to = d.join("pipeline");
    let out = ingest(d, &to, &["bad.json"])
        .assert()
        .code(FAILURE)
        .get_output()
        .clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(
            "error: bad.json, record 2 (line 3), field \"value\": 1000.50e0 is not a decimal \
             number (digits, optional sign and point, no exponent)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: 1 of 1 files refused; nothing of them was written"),
        "{stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["files"][0]["refused"], true);
    assert_eq!(report["files"][0]["errors"], 1);
    assert_eq!(counts(&report["total"]), [0, 0, 0, 0]);
    assert!(files(&to.join("landing")).is_empty());
    assert!(files(&to.join("share")).is_empty());
    assert!(files(&to.join("ledger")).is_empty());

    // Past 20 errors, the first 20 and a count.
    let many: String = (1..=25)
        .map(|i| {
            format!("{{\"device_id\": \"dev-{i}\", \"timestamp\": \"2026-02-01T10:00:00Z\"}}\n")
        })
        .collect();
    fs::write(d.join("many.jsonl"), many).unwrap();
    let out = ingest(d, &to, &["many.jsonl"])
        .assert()
        .code(FAILURE)
        .get_output()
        .clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.matches("does not match the pattern").count(),
        20,
        "{stderr}"
    );
    assert!(
        stderr.contains("error: many.jsonl, record 20 (line 20), field \"device_id\"")
            && stderr.contains("error: many.jsonl: 5 more errors not shown"),
        "{stderr}"
    );
    assert!(files(&to.join("landing")).is_empty());

    // With a good file beside it: the good one lands and is published, the exit is still 1.
    let out = ingest(d, &to, &["bad.json", "c.csv"])
        .assert()
        .code(FAILURE)
        .get_output()
        .clone();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(counts(&report["total"]), [2, 2, 0, 0], "{report}");
    assert_eq!(report["total"]["refused"], 1);
    assert_eq!(report["step"]["changes"], 2);
}

#[test]
fn reject_mode_puts_exactly_the_bad_records_aside() {
    let dir = setup();
    let d = dir.path();
    let to = d.join("pipeline");
    let rejects = d.join("rejects");
    let report = json(
        ingest(d, &to, &["bad.json", "b.jsonl", "c.csv"])
            .arg("--reject")
            .arg(&rejects),
    );
    assert_eq!(counts(&report["total"]), [6, 5, 0, 1], "{report}");
    assert_eq!(
        report["files"][0]["reject_object"],
        "bad.json.rejects.jsonl"
    );
    let written = files(&rejects);
    assert_eq!(written.len(), 1, "{written:?}");
    let text = String::from_utf8(written[&rejects.join("bad.json.rejects.jsonl")].clone()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["record"], 2);
    assert_eq!(lines[0]["line"], 3);
    assert_eq!(
        lines[0]["raw"],
        r#"{"device_id": "device-002", "timestamp": "2026-02-01T10:00:00Z", "value": 1000.50e0}"#
    );
    assert_eq!(lines[0]["errors"][0]["field"], "value");
    // device-002 was the bad record, so it is not in the table.
    let expected: String = EXPECTED
        .lines()
        .filter(|l| !l.starts_with("device-002"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(pull(d), expected);
}

#[test]
fn the_target_must_be_a_records_pipeline_of_the_same_schema() {
    let dir = setup();
    let d = dir.path();
    let to = d.join("pipeline");
    fs::write(
        d.join("schema.toml"),
        SCHEMA.replace("max = 1000", "max = 999"),
    )
    .unwrap();
    let out = ingest(d, &to, &["c.csv"])
        .assert()
        .code(USAGE)
        .get_output()
        .clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("is not the same as"), "{stderr}");
    fs::write(d.join("schema.toml"), SCHEMA).unwrap();

    let out = ingest(d, Path::new("dynamodb://readings"), &["c.csv"])
        .assert()
        .code(USAGE)
        .get_output()
        .clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("dynamodb://readings"), "{stderr}");

    // A pipeline target records landed objects in its own ledger: --ledger is refused.
    let out = ingest(d, &to, &["c.csv"])
        .arg("--ledger")
        .arg(d.join("pipeline/ledger"))
        .assert()
        .code(USAGE)
        .get_output()
        .clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("--ledger is for dynamodb:// targets"),
        "{stderr}"
    );

    fs::write(d.join("notes.txt"), "x").unwrap();
    let out = ingest(d, &to, &["notes.txt"])
        .assert()
        .code(USAGE)
        .get_output()
        .clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("notes.txt: no format for this extension"),
        "{stderr}"
    );
    assert!(files(&to.join("landing")).is_empty());
}
