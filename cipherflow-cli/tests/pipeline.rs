//! End-to-end tests of `cipherflow run`, `pull` and `gc` on local folders: the pipeline's
//! output pulled by a consumer equals the direct merge of the same files, a tampered share
//! is refused with exit status 4 and nothing written, and gc keeps what is referenced.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

const INTEGRITY: i32 = 4;

fn cf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cipherflow"))
}

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../cipherflow-core/tests/data")
        .join(rel)
}

fn json(cmd: &mut Command) -> Value {
    let out = cmd.assert().success().get_output().stdout.clone();
    serde_json::from_slice(&out).unwrap()
}

/// A pipeline folder: keys copied from the fixtures, a config, an empty landing folder.
fn setup(max_runs: usize) -> TempDir {
    let dir = TempDir::new().unwrap();
    let keys = dir.path().join("keys");
    fs::create_dir_all(&keys).unwrap();
    for (from, to) in [
        ("alice.pub.pem", "alice.pub.pem"),
        ("producer-rsa.pem", "state.pem"),
        ("producer-rsa.pub.pem", "state.pub.pem"),
        ("producer.pem", "signer.pem"),
    ] {
        fs::copy(data(from), keys.join(to)).unwrap();
    }
    fs::write(
        dir.path().join("pipeline.toml"),
        format!(
            r#"[table]
name = "orders"
columns = ["region", "order_no", "amount", "status"]
key = "region,order_no:int64"
partitions = 3

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

[compaction]
max_runs = {max_runs}
"#
        ),
    )
    .unwrap();
    fs::create_dir_all(dir.path().join("landing")).unwrap();
    dir
}

fn land(dir: &Path, name: &str, text: &str) {
    fs::write(dir.join("landing").join(name), text).unwrap();
}

fn run(dir: &Path) -> Value {
    json(
        cf().arg("run")
            .arg("--config")
            .arg(dir.join("pipeline.toml")),
    )
}

fn pull(dir: &Path, out: &Path) -> Command {
    let mut cmd = cf();
    cmd.arg("pull")
        .arg("--share")
        .arg(dir.join("share"))
        .arg("--key")
        .arg(data("alice.pem"))
        .arg("--signer")
        .arg(data("producer.pub.pem"))
        .arg("--out")
        .arg(out);
    cmd
}

const LOAD: &str =
    "region,order_no,amount,status\neu,1,10.00,new\neu,2,20.00,new\nus,1,7308.00,new\n";
const B1: &str =
    "Op,region,order_no,amount,status\nU,eu,1,11.00,paid\nD,eu,2,,\nI,us,2,5,\"new, rush\"\n";
const B2: &str = "Op,region,order_no,amount,status\nU,us,1,7308.00,shipped\n";
const EXPECTED: &str =
    "region,order_no,amount,status\neu,1,11.00,paid\nus,1,7308.00,shipped\nus,2,5,\"new, rush\"\n";

#[test]
fn run_then_pull_gives_the_merged_table() {
    let dir = setup(1);
    let out = dir.path().join("alice");
    land(dir.path(), "LOAD00000001.csv", LOAD);
    let report = run(dir.path());
    assert_eq!(report["generation"], 1);
    assert_eq!(report["changes"], 3);
    let pulled = json(&mut pull(dir.path(), &out));
    assert_eq!(pulled["generation"], 1);
    assert_eq!(pulled["rows"], 3);

    land(dir.path(), "20240104-0000000000.csv", B1);
    land(dir.path(), "20240105-0000000000.csv", B2);
    let report = run(dir.path());
    assert_eq!(report["generation"], 2);
    assert_eq!(report["applied"].as_array().unwrap().len(), 2);
    let pulled = json(&mut pull(dir.path(), &out));
    assert_eq!(pulled["previous"], 1);
    assert_eq!(
        fs::read_to_string(out.join("orders.csv")).unwrap(),
        EXPECTED
    );
    // Nothing new: the same generation, nothing fetched.
    assert_eq!(run(dir.path())["generation"], 2);
    assert_eq!(json(&mut pull(dir.path(), &out))["fetched"], 0);

    // max_runs = 1: the second step compacted what it touched; gc removes the folded runs
    // once only the latest generation is kept, and the table still pulls.
    assert!(!report["compacted"].as_array().unwrap().is_empty());
    let gc = json(
        cf().arg("gc")
            .arg("--config")
            .arg(dir.path().join("pipeline.toml"))
            .args(["--keep", "1"]),
    );
    assert!(!gc["removed"].as_array().unwrap().is_empty(), "{gc}");
    assert_eq!(gc["unreferenced"].as_array().unwrap().len(), 0, "{gc}");
    let fresh = dir.path().join("fresh");
    json(&mut pull(dir.path(), &fresh));
    assert_eq!(
        fs::read_to_string(fresh.join("orders.csv")).unwrap(),
        EXPECTED
    );
}

#[test]
fn a_tampered_share_is_refused_and_nothing_is_written() {
    let dir = setup(8);
    land(dir.path(), "LOAD00000001.csv", LOAD);
    run(dir.path());
    let runs = dir.path().join("share/orders/runs");
    let part = fs::read_dir(&runs).unwrap().next().unwrap().unwrap().path();
    let file = fs::read_dir(part).unwrap().next().unwrap().unwrap().path();
    let mut bytes = fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fs::write(&file, bytes).unwrap();
    let out = dir.path().join("alice");
    pull(dir.path(), &out).assert().code(INTEGRITY);
    assert!(!out.join("orders.csv").exists());
}

#[test]
fn a_bad_change_file_is_refused_with_its_place() {
    let dir = setup(8);
    land(dir.path(), "LOAD00000001.csv", LOAD);
    run(dir.path());
    land(
        dir.path(),
        "20240104-0000000000.csv",
        "Op,region,order_no,amount,status\nU,eu,x,1,a\n",
    );
    let out = cf()
        .arg("run")
        .arg("--config")
        .arg(dir.path().join("pipeline.toml"))
        .assert()
        .failure()
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8(out).unwrap();
    assert!(
        err.contains("20240104-0000000000.csv") && err.contains("line 2"),
        "{err}"
    );
    assert!(err.contains("order_no"), "{err}");
}
