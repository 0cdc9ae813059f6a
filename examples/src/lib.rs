//! The story the README's first command tells, as a function so a test can check it.
//!
//! A producer shares a table snapshot with two outside consumers: it seals the CSV for both
//! (and signs it), holding only their public keys; each consumer opens it with its own private
//! key and checks the producer's signature; the producer later removes one consumer without
//! re-encrypting the body, and that consumer can no longer open it.

pub mod pipeline_demo;

use std::fmt::Write as _;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cipherflow_core::{
    Error, KeyWrapper, Opener, RsaPrivateKey, RsaPublicKey, Sealer, SigningKey, VerifyingKey,
    inspect, rewrap,
};
use sha2::{Digest, Sha256};

/// What the demo did, for printing and for tests.
#[derive(Debug)]
pub struct Summary {
    /// Where everything is.
    pub dir: PathBuf,
    /// Rows in the snapshot (without the header).
    pub rows: usize,
    /// Plaintext bytes.
    pub plaintext_bytes: u64,
    /// Sealed bytes.
    pub sealed_bytes: u64,
    /// SHA-256 of the snapshot as written by the producer.
    pub snapshot_sha256: String,
    /// SHA-256 of what each consumer opened.
    pub opened_sha256: Vec<String>,
    /// What opening failed with for the consumer removed by the rewrap.
    pub removed_consumer_error: String,
    /// Time per step.
    pub steps: Vec<(&'static str, Duration)>,
}

impl Summary {
    /// The few lines the example prints.
    pub fn report(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "CipherFlow demo in {}", self.dir.display());
        let _ = writeln!(
            s,
            "  snapshot:   {} rows, {} bytes, sha256 {}",
            self.rows, self.plaintext_bytes, self.snapshot_sha256
        );
        let _ = writeln!(
            s,
            "  sealed:     {} bytes for 2 consumers, signed by the producer",
            self.sealed_bytes
        );
        for (i, h) in self.opened_sha256.iter().enumerate() {
            let verdict = if *h == self.snapshot_sha256 {
                "identical"
            } else {
                "DIFFERENT"
            };
            let _ = writeln!(
                s,
                "  consumer {}: opened and verified, sha256 {h} ({verdict})",
                i + 1
            );
        }
        let _ = writeln!(
            s,
            "  rewrap:     consumer 2 removed; it now gets: {}",
            self.removed_consumer_error
        );
        for (step, t) in &self.steps {
            let _ = writeln!(s, "  {step:<22} {:>8.1} ms", t.as_secs_f64() * 1e3);
        }
        s
    }
}

/// Writes a customers table of `rows` rows as DMS would snapshot it (header, quoted fields
/// with commas, empty values for nulls).
pub fn write_customers_csv(path: &Path, rows: usize) -> std::io::Result<()> {
    let mut out = BufWriter::new(fs::File::create(path)?);
    writeln!(out, "id,name,email,city,balance,updated_at")?;
    let cities = ["Lisbon", "\"Washington, D.C.\"", "Zürich", "", "Osaka"];
    for id in 1..=rows {
        writeln!(
            out,
            "{id},Customer {id},c{id}@example.com,{},{}.{:02},2026-11-{:02} 10:{:02}:00.000000",
            cities[id % cities.len()],
            id * 37 % 100_000,
            id % 100,
            id % 28 + 1,
            id % 60
        )?;
    }
    out.flush()
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut file = std::io::BufReader::new(fs::File::open(path)?);
    loop {
        let buf = std::io::BufRead::fill_buf(&mut file)?;
        if buf.is_empty() {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(buf);
        let n = buf.len();
        std::io::BufRead::consume(&mut file, n);
    }
}

fn write_key(path: &Path, pem: &str) -> std::io::Result<()> {
    fs::write(path, pem)
}

/// Runs the whole story in `dir` (created if missing).
pub fn run(dir: &Path, rows: usize) -> Result<Summary, Error> {
    fs::create_dir_all(dir)?;
    let mut steps = Vec::new();
    let mut step = |name, t: Instant| steps.push((name, t.elapsed()));

    // Keys: each consumer makes its own pair and hands the producer only the public half.
    let t = Instant::now();
    let consumers = [
        RsaPrivateKey::generate(3072)?,
        RsaPrivateKey::generate(3072)?,
    ];
    let producer = SigningKey::generate_p256()?;
    for (i, c) in consumers.iter().enumerate() {
        write_key(&dir.join(format!("consumer{}.pem", i + 1)), &c.to_pem())?;
        write_key(
            &dir.join(format!("consumer{}.pub.pem", i + 1)),
            &c.public_key().to_pem(),
        )?;
    }
    write_key(&dir.join("producer.pem"), &producer.to_pem())?;
    write_key(
        &dir.join("producer.pub.pem"),
        &producer.verifying_key().to_pem(),
    )?;
    step("generate keys", t);

    let t = Instant::now();
    let snapshot = dir.join("customers.csv");
    write_customers_csv(&snapshot, rows)?;
    let snapshot_sha256 = sha256_file(&snapshot)?;
    step("write snapshot", t);

    // The producer side: public keys from files, never a private consumer key.
    let t = Instant::now();
    let recipients: Vec<RsaPublicKey> = (1..=2)
        .map(|i| RsaPublicKey::from_bytes(&fs::read(dir.join(format!("consumer{i}.pub.pem")))?))
        .collect::<Result<_, Error>>()?;
    let wrappers: Vec<&dyn KeyWrapper> = recipients.iter().map(|k| k as &dyn KeyWrapper).collect();
    let sealed_path = dir.join("customers.csv.cf");
    let sealer = Sealer::new(&wrappers)
        .metadata("table", "public.customers")
        .metadata("snapshot_sha256", &snapshot_sha256)
        .signer(&producer);
    let mut writer = sealer.seal_writer(BufWriter::new(fs::File::create(&sealed_path)?))?;
    std::io::copy(&mut fs::File::open(&snapshot)?, &mut writer)?;
    writer.finish()?;
    step("seal", t);

    // The consumer side: its own private key and the producer's public key.
    let t = Instant::now();
    let trusted = VerifyingKey::from_bytes(&fs::read(dir.join("producer.pub.pem"))?)?;
    let mut opened_sha256 = Vec::new();
    for (i, key) in consumers.iter().enumerate() {
        let out = dir.join(format!("consumer{}-customers.csv", i + 1));
        Opener::new(key)
            .require_signer(&trusted)
            .open_file(&sealed_path, &out)?;
        opened_sha256.push(sha256_file(&out)?);
    }
    step("open (both consumers)", t);

    let t = Instant::now();
    let rewrapped = dir.join("customers.consumer1-only.cf");
    let removed = consumers[1].public_key().key_id();
    let mut out = BufWriter::new(fs::File::create(&rewrapped)?);
    rewrap(
        fs::File::open(&sealed_path)?,
        &mut out,
        &consumers[0],
        &[],
        &[removed],
    )?;
    out.flush()?;
    drop(out);
    let removed_consumer_error = match Opener::new(&consumers[1]).open_bytes(&fs::read(&rewrapped)?)
    {
        Ok(_) => "opened (unexpected!)".to_string(),
        Err(e) => e.to_string().chars().take(60).collect::<String>() + "...",
    };
    step("rewrap", t);

    let info = inspect(fs::File::open(&sealed_path)?)?;
    Ok(Summary {
        dir: dir.to_path_buf(),
        rows,
        plaintext_bytes: info.plaintext_len,
        sealed_bytes: info.envelope_len,
        snapshot_sha256,
        opened_sha256,
        removed_consumer_error,
        steps,
    })
}
