//! End-to-end tests of `cipherflow merge` on the DMS fixtures of cipherflow-core.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;
use tempfile::TempDir;

const FAILURE: i32 = 1;
const USAGE: i32 = 2;

fn cf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cipherflow"))
}

fn dms(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../cipherflow-core/tests/data/dms")
        .join(rel)
}

fn orders_merge(out: &Path) -> Command {
    let mut cmd = cf();
    cmd.args(["merge", "--key", "region,order_no:int64", "--base"])
        .arg(dms("orders/base.csv"))
        .arg("--out")
        .arg(out);
    cmd
}

#[test]
fn merges_changes_onto_a_sorted_base() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out.csv");
    let stdout = orders_merge(&out)
        .arg(dms("orders/20240105-0000000000.csv"))
        .arg(dms("orders/20240104-0000000000.csv"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(
        fs::read(&out).unwrap(),
        fs::read(dms("orders/expected.csv")).unwrap()
    );
    let json: Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(json["rows"], 3);
    assert_eq!(json["copied"], 1);
    assert_eq!(json["deleted"], 1);
    assert_eq!(json["changes"], 5);
    assert_eq!(json["bytes"], fs::metadata(&out).unwrap().len());
}

#[test]
fn files_without_header_take_change_columns() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out.csv");
    orders_merge(&out)
        .args([
            "--change-columns",
            "AR_H_CHANGE_SEQ,Op,region,order_no,amount,placed_at",
        ])
        .arg(dms("orders/noheader/20240104-0000000000.csv"))
        .arg(dms("orders/noheader/20240105-0000000000.csv"))
        .assert()
        .success();
    assert_eq!(
        fs::read(&out).unwrap(),
        fs::read(dms("orders/expected.csv")).unwrap()
    );
}

#[test]
fn gzip_timestamps_partial_updates_and_replay() {
    let dir = TempDir::new().unwrap();
    let merge = |base: &Path, out: &Path| {
        cf().args([
            "merge",
            "--key",
            "id:int64",
            "--timestamp-column",
            "commit_ts",
        ])
        .args(["--no-sup-value", "NOSUP", "--base"])
        .arg(base)
        .arg("--out")
        .arg(out)
        .arg(dms("customers/20141029-1135020000.csv.gz"))
        .arg(dms("customers/20141029-1134010000.csv"))
        .assert()
        .success();
    };
    let once = dir.path().join("once.csv");
    merge(&dms("customers/LOAD00000001.csv"), &once);
    assert_eq!(
        fs::read_to_string(&once).unwrap(),
        fs::read_to_string(dms("customers/expected-from-base.csv")).unwrap()
    );
    // Replaying the same changes onto the result changes nothing.
    let twice = dir.path().join("twice.csv");
    merge(&once, &twice);
    assert_eq!(fs::read(&once).unwrap(), fs::read(&twice).unwrap());
}

#[test]
fn a_bad_change_file_refuses_the_merge_and_leaves_out_alone() {
    let dir = TempDir::new().unwrap();
    let bad = dir.path().join("20240106-0000000000.csv");
    fs::write(
        &bad,
        "Op,region,order_no,amount,placed_at\nI,eu,4,1,t\nX,eu,5,1,t\n",
    )
    .unwrap();
    let out = dir.path().join("out.csv");
    fs::write(&out, "previous").unwrap();
    orders_merge(&out)
        .arg(dms("orders/20240105-0000000000.csv"))
        .arg(&bad)
        .assert()
        .code(FAILURE)
        .stdout("")
        .stderr(predicate::str::contains(format!(
            "error: merge refused: {}, line 3, column 1 (Op): unknown Op \"X\"",
            bad.display()
        )));
    assert_eq!(fs::read_to_string(&out).unwrap(), "previous");
}

#[test]
fn an_unsorted_base_is_refused() {
    let dir = TempDir::new().unwrap();
    let base = dir.path().join("base.csv");
    fs::write(&base, "id,v\n2,a\n10,b\n9,c\n").unwrap();
    let out = dir.path().join("out.csv");
    cf().args(["merge", "--key", "id:int64", "--base"])
        .arg(&base)
        .arg("--out")
        .arg(&out)
        .arg(dms("orders/base.csv"))
        .assert()
        .code(FAILURE)
        .stderr(predicate::str::contains("is not a table column"));
    let changes = dir.path().join("c.csv");
    fs::write(&changes, "Op,id,v\nU,2,z\n").unwrap();
    cf().args(["merge", "--key", "id:int64", "--base"])
        .arg(&base)
        .arg("--out")
        .arg(&out)
        .arg(&changes)
        .assert()
        .code(FAILURE)
        .stderr(predicate::str::contains(format!(
            "{}, line 4: key is not greater than the previous row's key",
            base.display()
        )));
    assert!(!out.exists());
}

#[test]
fn reject_mode_writes_bad_rows_and_applies_the_rest() {
    let dir = TempDir::new().unwrap();
    let base = dir.path().join("base.csv");
    fs::write(&base, "id,v\n1,a\n").unwrap();
    let changes = dir.path().join("c.csv");
    fs::write(&changes, "Op,id,v\nU,1,b\nI,x,c\nI,3\nI,2,\"d,e\"\n").unwrap();
    let (out, rejects) = (dir.path().join("out.csv"), dir.path().join("rejects.csv"));
    let stdout = cf()
        .args(["merge", "--key", "id:int64", "--base"])
        .arg(&base)
        .arg("--out")
        .arg(&out)
        .arg("--reject")
        .arg(&rejects)
        .arg(&changes)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(fs::read_to_string(&out).unwrap(), "id,v\n1,b\n2,\"d,e\"\n");
    let label = changes.display();
    assert_eq!(
        fs::read_to_string(&rejects).unwrap(),
        format!(
            "object,line,column,reason,record\n\
             {label},3,2 (id),\"key \"\"x\"\" is not a valid int64\",\"I,x,c\"\n\
             {label},4,,\"expected 3 fields, found 2\",\"I,3\"\n"
        )
    );
    let json: Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(json["rejected"], 2);
}

#[test]
fn bad_arguments_are_usage_errors() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out.csv");
    cf().args(["merge", "--key", "id:float", "--base"])
        .arg(dms("orders/base.csv"))
        .arg("--out")
        .arg(&out)
        .arg(dms("orders/base.csv"))
        .assert()
        .code(USAGE)
        .stderr(predicate::str::contains("unknown key type \"float\""));
    // A key column the base does not have.
    cf().args(["merge", "--key", "id", "--base"])
        .arg(dms("orders/base.csv"))
        .arg("--out")
        .arg(&out)
        .arg(dms("orders/20240104-0000000000.csv"))
        .assert()
        .code(FAILURE)
        .stderr(predicate::str::contains(
            "base.csv, line 1: column \"id\" is missing",
        ));
    assert!(!out.exists());
}
