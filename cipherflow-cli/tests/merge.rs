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

    // Files are parsed on two threads, but the error named is the first bad file's in the
    // order given, whichever thread finished first; the later bad file (parsed by the other
    // thread, and short, so likely first) is not the one reported.
    let later = dir.path().join("20240107-0000000000.csv");
    fs::write(
        &later,
        "Op,region,order_no,amount,placed_at
Q,eu,6,1,t
",
    )
    .unwrap();
    orders_merge(&out)
        .arg(&bad)
        .arg(&later)
        .assert()
        .code(FAILURE)
        .stderr(predicate::str::contains(format!(
            "error: merge refused: {}, line 3, column 1 (Op): unknown Op \"X\"",
            bad.display()
        )))
        .stderr(predicate::str::contains("20240107").not());
    orders_merge(&out)
        .arg(dms("orders/20240105-0000000000.csv"))
        .arg(&later)
        .arg(&bad)
        .assert()
        .code(FAILURE)
        .stderr(predicate::str::contains(format!(
            "error: merge refused: {}, line 2, column 1 (Op): unknown Op \"Q\"",
            later.display()
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
        .stderr(predicate::str::contains(
            "unsupported schema change: new column \"region\" while table column \"id\" is missing",
        ));
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

#[test]
fn an_added_column_is_appended_with_header_or_change_columns() {
    let dir = TempDir::new().unwrap();
    let expected = fs::read(dms("orders/addcol/expected.csv")).unwrap();
    let out = dir.path().join("out.csv");
    orders_merge(&out)
        .arg(dms("orders/addcol/20240106-0000000000.csv"))
        .arg(dms("orders/20240104-0000000000.csv"))
        .arg(dms("orders/20240105-0000000000.csv"))
        .assert()
        .success();
    assert_eq!(fs::read(&out).unwrap(), expected);
    let out = dir.path().join("noheader.csv");
    orders_merge(&out)
        .args([
            "--change-columns",
            "AR_H_CHANGE_SEQ,Op,region,order_no,amount,placed_at,channel",
        ])
        .arg(dms("orders/noheader/20240104-0000000000.csv"))
        .arg(dms("orders/addcol/noheader/20240106-0000000000.csv"))
        .arg(dms("orders/noheader/20240105-0000000000.csv"))
        .assert()
        .success();
    assert_eq!(fs::read(&out).unwrap(), expected);
    // Merging the new column's file onto the widened snapshot again changes nothing.
    let again = dir.path().join("again.csv");
    cf().args(["merge", "--key", "region,order_no:int64", "--base"])
        .arg(&out)
        .arg("--out")
        .arg(&again)
        .arg(dms("orders/addcol/20240106-0000000000.csv"))
        .assert()
        .success();
    assert_eq!(fs::read(&again).unwrap(), expected);
    // A renamed column is refused, naming file, line and column; nothing is written.
    let out = dir.path().join("renamed.csv");
    let bad = dms("orders/addcol/bad-renamed.csv");
    orders_merge(&out)
        .arg(&bad)
        .assert()
        .code(FAILURE)
        .stderr(predicate::str::contains(format!(
            "{}, line 1, column 6 (placed): unsupported schema change",
            bad.display()
        )));
    assert!(!out.exists());
}

/// `cipherflow merge --state DIR` on the orders table.
fn stateful(state: &Path, out: &Path, files: &[PathBuf]) -> Command {
    let mut cmd = cf();
    cmd.args(["merge", "--key", "region,order_no:int64", "--state"])
        .arg(state)
        .arg("--base")
        .arg(dms("orders/base.csv"))
        .arg("--out")
        .arg(out)
        .args(files);
    cmd
}

/// Every file of a folder, by name, with its bytes.
fn folder_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

fn order_files() -> [PathBuf; 3] {
    [
        dms("orders/20240104-0000000000.csv"),
        dms("orders/20240105-0000000000.csv"),
        dms("orders/addcol/20240106-0000000000.csv"),
    ]
}

#[test]
fn stateful_runs_in_any_order_with_duplicates_converge() {
    let dir = TempDir::new().unwrap();
    let files = order_files();
    let expected = fs::read(dms("orders/addcol/expected.csv")).unwrap();
    // Indices into `files`: each inner list is one invocation.
    let runs: [&[&[usize]]; 4] = [
        &[&[0, 1, 2]],
        &[&[2], &[0], &[1]],
        &[&[1, 1], &[2, 0], &[0, 2]],
        &[&[2, 1], &[2], &[1, 0], &[]],
    ];
    let mut folders = Vec::new();
    for (i, invocations) in runs.iter().enumerate() {
        let state = dir.path().join(format!("state{i}"));
        let out = dir.path().join(format!("out{i}.csv"));
        for picks in invocations.iter() {
            let picked: Vec<PathBuf> = picks.iter().map(|&k| files[k].clone()).collect();
            stateful(&state, &out, &picked).assert().success();
        }
        assert_eq!(
            String::from_utf8(fs::read(&out).unwrap()).unwrap(),
            String::from_utf8(expected.clone()).unwrap(),
            "run {i}"
        );
        folders.push(folder_bytes(&state));
    }
    for f in &folders[1..] {
        assert_eq!(*f, folders[0], "the folders are byte-identical too");
    }
    assert_eq!(
        folders[0].len(),
        2,
        "state.json and one run: {:?}",
        folders[0].iter().map(|f| &f.0).collect::<Vec<_>>()
    );
}

#[test]
fn stateful_replay_is_a_no_op_and_a_bad_file_changes_nothing() {
    let dir = TempDir::new().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("out.csv");
    let files = order_files();
    stateful(&state, &out, &files[..2]).assert().success();
    let before = folder_bytes(&state);
    let snapshot = fs::read(&out).unwrap();

    // Replay: every file (the base included) is skipped, nothing changes.
    let stdout = stateful(&state, &out, &files[..2])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let json: Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(
        (json["applied"].clone(), json["skipped"].clone()),
        (0.into(), 3.into())
    );
    assert_eq!(folder_bytes(&state), before);
    assert_eq!(fs::read(&out).unwrap(), snapshot);

    // A good new file and a bad one: refused whole; folder and snapshot untouched.
    let bad = dir.path().join("20240107-0000000000.csv");
    fs::write(
        &bad,
        "AR_H_CHANGE_SEQ,Op,region,order_no,amount,placed_at\n\
         20240105000000000000000000000000900,X,eu,2,1,2024-01-01 10:00:00\n",
    )
    .unwrap();
    stateful(&state, &out, &[files[2].clone(), bad.clone()])
        .assert()
        .code(FAILURE)
        .stderr(predicate::str::contains(format!(
            "{}, line 2, column 2 (Op): unknown Op \"X\"",
            bad.display()
        )));
    assert_eq!(folder_bytes(&state), before);
    assert_eq!(fs::read(&out).unwrap(), snapshot);

    // A damaged state folder is refused, naming the file, and left as it is.
    let manifest = state.join("state.json");
    let good = fs::read(&manifest).unwrap();
    fs::write(&manifest, &good[..good.len() / 2]).unwrap();
    stateful(&state, &out, &files[2..])
        .assert()
        .code(FAILURE)
        .stderr(predicate::str::contains(
            "state.json: cannot read: state folder",
        ));
    fs::write(&manifest, &good).unwrap();

    // A different key for the same folder is a usage error.
    cf().args(["merge", "--key", "region", "--state"])
        .arg(&state)
        .arg("--out")
        .arg(&out)
        .arg(&files[2])
        .assert()
        .code(USAGE)
        .stderr(predicate::str::contains(
            "keyed by region:string,order_no:int64",
        ));
    assert_eq!(folder_bytes(&state), before);
}

#[test]
fn stateful_tombstones_block_late_inserts_until_purged() {
    let dir = TempDir::new().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("out.csv");
    let files = order_files();
    // us,1 is deleted at sequence ...300.
    stateful(&state, &out, &files[..2]).assert().success();
    let late = dir.path().join("20240103-0000000000.csv");
    fs::write(
        &late,
        "AR_H_CHANGE_SEQ,Op,region,order_no,amount,placed_at\n\
         20240105000000000000000000000000050,I,us,1,1.00,2024-01-01 10:00:00\n",
    )
    .unwrap();
    stateful(&state, &out, std::slice::from_ref(&late))
        .assert()
        .success();
    assert!(!fs::read_to_string(&out).unwrap().contains("us,1,"));
    let stdout = cf()
        .args(["merge", "--key", "region,order_no:int64", "--state"])
        .arg(&state)
        .arg("--out")
        .arg(&out)
        .args([
            "--purge-tombstones-before",
            "seq:20240105000000000000000000000000301",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let json: Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(json["tombstones_purged"], 1);
    // The late insert was applied before: it stays skipped. A second late copy (another
    // object) now resurrects the key, as documented.
    let late2 = dir.path().join("20240103-0000000001.csv");
    fs::copy(&late, &late2).unwrap();
    stateful(&state, &out, &[late2]).assert().success();
    assert!(fs::read_to_string(&out).unwrap().contains("us,1,1.00"));
}
