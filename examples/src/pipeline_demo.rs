//! The README's main job, as a function so a test can check it: a CDC pipeline on the local
//! default store, end to end.
//!
//! It generates keys (the pipeline's state key, two consumers, a signing key), writes a
//! `pipeline.toml`, then lands a DMS full load and CDC batches — inserts, updates, deletes,
//! a batch delivered twice, and a late batch whose changes are older than ones already
//! applied — running one pipeline step after each and pulling as both consumers. At the end
//! it checks each consumer's table against an independent merge of every file in sequence
//! order, and verifies the ledger with the signer's public key alone.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cipherflow_core::cdc::{DmsOptions, KeySpec, TableSchema, read_dms};
use cipherflow_core::ledger::{Ledger, TrustedKey, TrustedKeys};
use cipherflow_core::merge::MergeState;
use cipherflow_core::pipeline::{Consumer, Location, PipelineConfig, PullReport, StepReport};
use cipherflow_core::store::{LocalStore, ObjectStore, block_on};
use cipherflow_core::{Error, RsaPrivateKey, SigningKey, Verifier};
use sha2::{Digest, Sha256};

const COLUMNS: [&str; 6] = ["id", "name", "email", "country", "balance", "updated_at"];
/// A marker file so a rerun only ever deletes a folder this demo made.
const MARKER: &str = ".cipherflow-demo";

/// One step of the story: what landed, what the pipeline did, what the consumers pulled.
#[derive(Debug)]
pub struct Step {
    /// What happened.
    pub label: String,
    /// The pipeline's report.
    pub run: StepReport,
    /// Each consumer's pull.
    pub pulls: Vec<PullReport>,
    /// Time for the step and the pulls.
    pub elapsed: Duration,
}

/// What the demo did, for printing and for tests.
#[derive(Debug)]
pub struct Summary {
    /// Where everything is.
    pub dir: PathBuf,
    /// The steps.
    pub steps: Vec<Step>,
    /// Rows in the final table.
    pub rows: u64,
    /// SHA-256 of each consumer's table file.
    pub consumer_sha256: Vec<String>,
    /// SHA-256 of the independent merge of every file.
    pub expected_sha256: String,
    /// Ledger records and signed checkpoints verified, and the latest root (hex).
    pub ledger: (u64, u64, String),
}

impl Summary {
    /// The lines the example prints.
    pub fn report(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "CipherFlow pipeline demo in {}", self.dir.display());
        let _ = writeln!(
            s,
            "  {:<34} {:>5} {:>8} {:>11} {:>12} {:>9}",
            "step", "gen", "changes", "partitions", "sealed B", "ms"
        );
        for step in &self.steps {
            let r = &step.run;
            let parts = if r.applied.is_empty() {
                "-".to_owned()
            } else {
                let mut p = format!("{}", r.partitions_touched.len());
                if !r.compacted.is_empty() {
                    let _ = write!(p, " ({}c)", r.compacted.len());
                }
                p
            };
            let _ = writeln!(
                s,
                "  {:<34} {:>5} {:>8} {:>11} {:>12} {:>9}",
                step.label,
                r.generation,
                r.changes,
                parts,
                r.bytes_sealed,
                step.elapsed.as_millis()
            );
        }
        let ok = self
            .consumer_sha256
            .iter()
            .all(|h| *h == self.expected_sha256);
        let _ = writeln!(
            s,
            "  final table: {} rows; both consumers' copies {} the independent merge (sha256 {})",
            self.rows,
            if ok { "equal" } else { "DIFFER FROM" },
            &self.expected_sha256[..16]
        );
        let (records, checkpoints, root) = &self.ledger;
        let _ = writeln!(
            s,
            "  ledger: {records} records, {checkpoints} signed checkpoints verified; root {root}"
        );
        let d = self.dir.display();
        let _ = writeln!(s, "  where: {d}/pipeline.toml, {d}/landing (CDC files),");
        let _ = writeln!(
            s,
            "         {d}/share (what consumers read), {d}/state (the pipeline's, sealed),"
        );
        let _ = writeln!(
            s,
            "         {d}/ledger, {d}/consumers/{{alice,bob}}/customers.csv"
        );
        let _ = writeln!(
            s,
            "  try: cargo run -p cipherflow-cli -- pull --share {d}/share --key {d}/keys/alice.pem --signer {d}/keys/signer.pub.pem --out /tmp/alice"
        );
        s
    }
}

/// A small deterministic generator, so the demo's data is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const COUNTRIES: [&str; 6] = ["DE", "FR", "US", "JP", "BR", "NZ"];

fn customer_row(rng: &mut Rng, id: u64, day: u32) -> String {
    let cents = rng.below(10_000_000);
    let country = COUNTRIES[rng.below(6) as usize];
    format!(
        "{id},\"Customer {id}, Ltd\",c{id}@example.com,{country},{}.{:02},2014-10-{day:02} 11:34:01.{:06}",
        cents / 100,
        cents % 100,
        rng.below(1_000_000)
    )
}

/// The DMS files of the story: (label, object name, bytes), landed in this order.
fn story(rows: u64) -> Vec<(String, String, Vec<u8>)> {
    let mut rng = Rng(7308);
    let mut files = Vec::new();
    let mut load = format!("{}\n", COLUMNS.join(","));
    for id in 1..=rows {
        load.push_str(&customer_row(&mut rng, id, 1));
        load.push('\n');
    }
    files.push((
        format!("full load ({rows} rows)"),
        "LOAD00000001.csv".to_owned(),
        load.into_bytes(),
    ));

    let header = format!("Op,AR_H_CHANGE_SEQ,{}\n", COLUMNS.join(","));
    let seq = |n: u64| {
        format!(
            "{:035}",
            20141029113401_u128 * 10u128.pow(21) + u128::from(n)
        )
    };
    let mut next_id = rows + 1;
    let mut deleted = Vec::new();
    let mut batch =
        |rng: &mut Rng, first_seq: u64, day: u32, inserts: u64, updates: u64, deletes: u64| {
            let mut text = header.clone();
            deleted.clear();
            let mut n = first_seq;
            for _ in 0..inserts {
                let _ = writeln!(text, "I,{},{}", seq(n), customer_row(rng, next_id, day));
                next_id += 1;
                n += 1;
            }
            for _ in 0..updates {
                let id = 1 + rng.below(rows);
                let _ = writeln!(text, "U,{},{}", seq(n), customer_row(rng, id, day));
                n += 1;
            }
            for _ in 0..deletes {
                let id = 1 + rng.below(rows);
                let _ = writeln!(text, "D,{},{id},,,,,", seq(n));
                deleted.push(id);
                n += 1;
            }
            (text.into_bytes(), deleted.clone())
        };
    let scale = (rows / 100).max(1);
    let (b1, _) = batch(&mut rng, 1_000_000, 2, 5 * scale, 10 * scale, 2 * scale);
    let (b2, _) = batch(&mut rng, 2_000_000, 3, 2 * scale, 8 * scale, 3 * scale);
    let (b4, b4_deleted) = batch(&mut rng, 4_000_000, 5, 3 * scale, 6 * scale, scale);
    // Late: written before b4 (older sequence numbers) but landing after it. Its updates
    // lose to b4's where they touch the same rows, and it re-inserts rows b4 deleted, with
    // older changes, which must not bring them back.
    let (mut b3, _) = batch(&mut rng, 3_000_000, 4, scale, 6 * scale, scale);
    for (i, id) in b4_deleted.iter().enumerate() {
        let row = customer_row(&mut rng, *id, 4);
        b3.extend_from_slice(format!("I,{},{row}\n", seq(3_500_000 + i as u64)).as_bytes());
    }
    files.push((
        "CDC batch 1".into(),
        "20141029-1134010000.csv".into(),
        b1.clone(),
    ));
    files.push(("CDC batch 2".into(), "20141030-0900000000.csv".into(), b2));
    files.push((
        "batch 1 delivered again".into(),
        "20141029-1134010000.csv".into(),
        b1,
    ));
    files.push(("CDC batch 4".into(), "20141101-0800000000.csv".into(), b4));
    files.push((
        "batch 3, late (older changes)".into(),
        "20141031-2300000000.csv".into(),
        b3,
    ));
    files
}

fn write_key(path: &Path, pem: &str) -> std::io::Result<()> {
    fs::write(path, pem)
}

/// Runs the story in `dir` (created; a previous demo folder there is replaced) with a full
/// load of `rows` rows.
pub fn run(dir: &Path, rows: u64) -> Result<Summary, Error> {
    if dir.join(MARKER).exists() {
        fs::remove_dir_all(dir)?;
    } else if dir.exists() && fs::read_dir(dir)?.next().is_some() {
        return Err(Error::misuse(format!(
            "{} exists and is not an earlier demo folder; choose another",
            dir.display()
        )));
    }
    let keys = dir.join("keys");
    fs::create_dir_all(&keys)?;
    fs::write(dir.join(MARKER), b"made by the cipherflow pipeline demo\n")?;

    // Keys: the pipeline's own state key, two consumers, a signing key. The pipeline gets
    // the consumers' public keys only.
    for name in ["state", "alice", "bob"] {
        let key = RsaPrivateKey::generate(3072)?;
        write_key(&keys.join(format!("{name}.pem")), &key.to_pem())?;
        write_key(
            &keys.join(format!("{name}.pub.pem")),
            &key.public_key().to_pem(),
        )?;
    }
    let signer = SigningKey::generate_p256()?;
    write_key(&keys.join("signer.pem"), &signer.to_pem())?;
    write_key(
        &keys.join("signer.pub.pem"),
        &signer.verifying_key().to_pem(),
    )?;

    let config_path = dir.join("pipeline.toml");
    fs::write(
        &config_path,
        format!(
            r#"# The demo's pipeline: one table, local folders, two consumers, signed.
[table]
name = "customers"
columns = [{columns}]
key = "id:int64"
partitions = 8

[input]
prefix = "dbo/customers/"
sequence_column = "AR_H_CHANGE_SEQ"

[stores]
landing = "landing"
state = "state"
share = "share"
ledger = "ledger"

[keys]
recipients = ["keys/alice.pub.pem", "keys/bob.pub.pem"]
state_public = "keys/state.pub.pem"
state_private = "keys/state.pem"
signer = "keys/signer.pem"

[compaction]
max_runs = 3
"#,
            columns = COLUMNS.map(|c| format!("{c:?}")).join(", ")
        ),
    )?;
    let config = PipelineConfig::load(&config_path)?;
    let pipeline = config.pipeline(&config_path, None)?;
    let landing = LocalStore::new(dir.join("landing"))?;
    let share: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.join("share"))?);
    let verifier: Arc<dyn Verifier> = Arc::new(signer.verifying_key().clone());
    let consumers: Vec<(PathBuf, Consumer)> = ["alice", "bob"]
        .into_iter()
        .map(|name| {
            let key =
                cipherflow_core::pipeline::load_private_key(&keys.join(format!("{name}.pem")))?;
            Ok((
                dir.join("consumers").join(name),
                Consumer {
                    share: Location::new(share.clone(), ""),
                    key: Arc::new(key),
                    signer: Some(verifier.clone()),
                },
            ))
        })
        .collect::<Result<_, Error>>()?;

    let files = story(rows);
    let mut steps = Vec::new();
    for (label, name, bytes) in &files {
        let key = cipherflow_core::store::ObjectKey::new(format!("dbo/customers/{name}"))?;
        block_on(landing.put(
            &key,
            bytes.clone().into(),
            cipherflow_core::store::PutMode::Overwrite,
        ))?;
        let started = Instant::now();
        let run = block_on(pipeline.run_once())?;
        let mut pulls = Vec::new();
        for (out, consumer) in &consumers {
            pulls.push(block_on(consumer.pull("customers", out))?);
        }
        steps.push(Step {
            label: label.clone(),
            run,
            pulls,
            elapsed: started.elapsed(),
        });
    }

    // The independent check: every distinct file merged in one go.
    let schema = TableSchema::new(
        COLUMNS.map(String::from).to_vec(),
        &KeySpec::parse_list("id:int64").expect("valid"),
    )
    .expect("the demo's schema is valid");
    let options = DmsOptions {
        seq_column: Some("AR_H_CHANGE_SEQ".into()),
        ..DmsOptions::default()
    };
    let mut expected = MergeState::new(schema.clone());
    for (_, name, bytes) in &files {
        expected.apply(&read_dms(
            &format!("dbo/customers/{name}"),
            &bytes[..],
            &schema,
            &options,
        )?);
    }
    let mut expected_csv = Vec::new();
    expected.write_snapshot(&mut expected_csv)?;
    let consumer_sha256 = consumers
        .iter()
        .map(|(out, _)| {
            Ok(hex::encode(Sha256::digest(fs::read(
                out.join("customers.csv"),
            )?)))
        })
        .collect::<Result<Vec<_>, Error>>()?;

    let ledger_store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.join("ledger"))?);
    let trusted = TrustedKeys::new().with(TrustedKey::new(signer.verifying_key().clone()));
    let verified = block_on(Ledger::verify(ledger_store, "", &trusted))?;
    let root = verified
        .latest
        .as_ref()
        .map(|c| hex::encode(c.root))
        .unwrap_or_default();

    Ok(Summary {
        dir: dir.to_owned(),
        rows: steps
            .last()
            .and_then(|s| s.pulls.first())
            .map_or(0, |p| p.rows),
        steps,
        consumer_sha256,
        expected_sha256: hex::encode(Sha256::digest(&expected_csv)),
        ledger: (verified.records, verified.checkpoints, root),
    })
}
