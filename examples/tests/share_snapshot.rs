//! The main job's story holds: both consumers open exactly what was sealed, the removed one
//! cannot, and the printed summary says so.

#[test]
fn the_main_job_shares_and_revokes() {
    let dir = tempfile::tempdir().unwrap();
    let summary = cipherflow_examples::run(dir.path(), 5_000).unwrap();
    assert_eq!(summary.rows, 5_000);
    assert_eq!(
        summary.opened_sha256,
        vec![summary.snapshot_sha256.clone(); 2]
    );
    assert!(summary.sealed_bytes > summary.plaintext_bytes);
    assert!(
        summary.removed_consumer_error.starts_with("wrong key"),
        "{}",
        summary.removed_consumer_error
    );
    let report = summary.report();
    assert!(report.contains("consumer 1: opened and verified") && report.contains("(identical)"));
    assert!(!report.contains("DIFFERENT") && !report.contains("unexpected"));
    for f in [
        "consumer1.pem",
        "consumer2.pub.pem",
        "producer.pub.pem",
        "customers.csv.cf",
        "consumer2-customers.csv",
    ] {
        assert!(dir.path().join(f).exists(), "{f} missing");
    }
}
