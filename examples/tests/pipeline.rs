//! The README's main job: the example program runs and says what it must, and the story's
//! facts hold (both consumers hold exactly the independently merged table; the ledger
//! verifies; the replayed batch changed nothing; the late batch did not win).

use std::path::PathBuf;
use std::process::Command;

/// The example's binary, which `cargo test` builds beside the test binaries.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("examples")
        .join(format!("pipeline{}", std::env::consts::EXE_SUFFIX))
}

#[test]
fn the_main_job_prints_its_summary() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let out = Command::new(example_binary())
        .arg(&demo)
        .arg("2000")
        .output()
        .expect("run the pipeline example");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "full load (2000 rows)",
        "batch 1 delivered again",
        "both consumers' copies equal the independent merge",
        "signed checkpoints verified; root ",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    for file in [
        "pipeline.toml",
        "consumers/alice/customers.csv",
        "consumers/bob/customers.csv",
        "share/customers/_latest",
        "keys/signer.pub.pem",
    ] {
        assert!(demo.join(file).exists(), "{file} missing");
    }
    // Run again in the same folder: it replaces its own earlier demo.
    let again = Command::new(example_binary())
        .arg(&demo)
        .arg("500")
        .output()
        .unwrap();
    assert!(again.status.success());
}

#[test]
fn the_story_holds() {
    let dir = tempfile::tempdir().unwrap();
    let summary = cipherflow_examples::pipeline_demo::run(&dir.path().join("d"), 1000).unwrap();
    assert_eq!(
        summary.consumer_sha256,
        vec![summary.expected_sha256.clone(); 2]
    );
    let labels: Vec<&str> = summary.steps.iter().map(|s| s.label.as_str()).collect();
    let replay = labels.iter().position(|l| l.contains("again")).unwrap();
    let step = &summary.steps[replay];
    assert!(step.run.applied.is_empty() && step.run.changes == 0);
    assert_eq!(
        step.run.generation,
        summary.steps[replay - 1].run.generation
    );
    let generations: Vec<u64> = summary.steps.iter().map(|s| s.run.generation).collect();
    assert_eq!(generations, [1, 2, 3, 3, 4, 5]);
    assert!(
        summary.steps.iter().any(|s| !s.run.compacted.is_empty()),
        "compaction shown"
    );
    let (records, checkpoints, root) = &summary.ledger;
    assert!(*records > 0 && *checkpoints == 5 && root.len() == 64);
    // Every pull after the first fetched only new objects: never more than the step wrote.
    for step in &summary.steps[1..] {
        for pull in &step.pulls {
            assert!(pull.fetched.len() <= step.run.partitions_touched.len() * 2 + 1);
        }
    }
    // A row deleted by batch 4 and re-inserted by the late batch 3 stays deleted: the
    // independent merge agrees, and both equal it (checked above).
    assert!(summary.rows > 1000);
}
