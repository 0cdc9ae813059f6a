//! `cipherflow ledger`: the provenance ledger from the command line (`docs/LEDGER.md`).
//!
//! The arguments live here rather than in `cli.rs` so the ledger's command surface stays in
//! one file; `cli.rs` only names the subcommand. `--ledger DIR` is a local folder holding the
//! ledger's objects at its root (a [`LocalStore`]); the ledger API is async, driven here with
//! [`block_on`] since the local store needs no runtime.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cipherflow_core::ledger::cloudtrail;
use cipherflow_core::ledger::custody::custody_report;
use cipherflow_core::ledger::{
    Actor, Bundle, Kind, Ledger, LedgerError, Link, ObjectRef, Record, TrustedKey, TrustedKeys,
    format_rfc3339, parse_rfc3339,
};
use cipherflow_core::store::{LocalStore, ObjectStore, block_on};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::error::{Context, Error};
use crate::{load_signing, load_verifying, print_json};

/// `cipherflow ledger ...`.
#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Create an empty ledger folder.
    Init(InitArgs),
    /// Hash FILE and append a record for it; prints its index and leaf hash as JSON.
    Add(Box<AddArgs>),
    /// Sign a checkpoint (origin, size, root hash, time) of the whole ledger.
    Checkpoint(CheckpointArgs),
    /// Verify every record, checkpoint and link; on failure, name the first bad index.
    Verify(VerifyArgs),
    /// Show a summary, or one record as JSON.
    Show(ShowArgs),
    /// Print an offline proof bundle (checkpoint + record + inclusion proof) as JSON.
    Prove(ProveArgs),
    /// Check an offline proof bundle with a public key alone.
    CheckProof(CheckProofArgs),
    /// Join the ledger with CloudTrail logs / S3 notifications: a chain-of-custody report.
    Custody(CustodyArgs),
}

/// `cipherflow ledger init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The ledger folder (created; must be empty).
    #[arg(long, value_name = "DIR")]
    pub ledger: PathBuf,
    /// The log's name, the first line of every checkpoint (e.g. example.com/ledger/prod).
    #[arg(long, value_name = "NAME")]
    pub origin: String,
}

/// `cipherflow ledger add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The ledger folder.
    #[arg(long, value_name = "DIR")]
    pub ledger: PathBuf,
    /// What happened: landed, batch-applied, snapshot-sealed, shared, rewrapped,
    /// observed-by-cloudtrail.
    #[arg(long, value_parser = parse_kind, default_value = "landed")]
    pub kind: Kind,
    /// The store.
    #[arg(long, default_value = "s3")]
    pub store: String,
    /// The bucket.
    #[arg(long, value_name = "B")]
    pub bucket: String,
    /// The object key, raw (not URL-encoded).
    #[arg(long, value_name = "KEY")]
    pub object_key: String,
    /// The store's version id.
    #[arg(long, value_name = "V")]
    pub version_id: Option<String>,
    /// The store's ETag.
    #[arg(long)]
    pub etag: Option<String>,
    /// The principal's ARN.
    #[arg(long, value_name = "ARN")]
    pub principal: String,
    /// The role that issued the principal's session.
    #[arg(long, value_name = "ARN")]
    pub issuer: Option<String>,
    /// Source IP address.
    #[arg(long, value_name = "IP")]
    pub source_ip: Option<String>,
    /// User agent.
    #[arg(long, value_name = "UA")]
    pub user_agent: Option<String>,
    /// The pipeline step.
    #[arg(long, default_value = "ledger add")]
    pub step: String,
    /// Event time in milliseconds since the Unix epoch [default: now].
    #[arg(long, value_name = "UNIX_MS")]
    pub time_ms: Option<u64>,
    /// Index of an earlier record this one was made from; repeat for several.
    #[arg(long = "input", value_name = "INDEX")]
    pub inputs: Vec<u64>,
    /// The object's bytes, hashed as they landed.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// `cipherflow ledger checkpoint`.
#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// The ledger folder.
    #[arg(long, value_name = "DIR")]
    pub ledger: PathBuf,
    /// The signing key (ECDSA P-256 or RSA private key).
    #[arg(long, value_name = "SIGNER.pem")]
    pub sign_key: PathBuf,
    /// The checkpoint's stated time in seconds since the Unix epoch [default: now].
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub time: Option<u64>,
}

/// `cipherflow ledger verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The ledger folder, or `s3://bucket/prefix` (with the `aws` feature).
    #[arg(long, value_name = "DIR")]
    pub ledger: PathBuf,
    /// A public key trusted to sign checkpoints; repeat for several (rotated keys). A
    /// validity window may follow: `PUB.pem@FROM..UNTIL`, either bound Unix seconds or RFC
    /// 3339 UTC (`2026-01-01T00:00:00Z`) or empty for open; the key then vouches only for
    /// checkpoints whose stated time t has FROM <= t < UNTIL.
    #[arg(
        long = "trusted-key",
        value_name = "PUB.pem[@FROM..UNTIL]",
        required = true
    )]
    pub trusted_keys: Vec<String>,
    /// Accept records after the latest signed checkpoint (checked for form, order and
    /// links only). Without it, such records fail verification.
    #[arg(long)]
    pub allow_unsigned_tail: bool,
}

/// `cipherflow ledger show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The ledger folder.
    #[arg(long, value_name = "DIR")]
    pub ledger: PathBuf,
    /// Show this record.
    #[arg(long, value_name = "N")]
    pub index: Option<u64>,
}

/// `cipherflow ledger prove`.
#[derive(Debug, Args)]
pub struct ProveArgs {
    /// The ledger folder.
    #[arg(long, value_name = "DIR")]
    pub ledger: PathBuf,
    /// The record to prove (under the latest checkpoint).
    #[arg(long, value_name = "N")]
    pub index: u64,
}

/// `cipherflow ledger check-proof`.
#[derive(Debug, Args)]
pub struct CheckProofArgs {
    /// A public key trusted to sign checkpoints; repeat for several (rotated keys). A
    /// validity window may follow: `PUB.pem@FROM..UNTIL`, either bound Unix seconds or RFC
    /// 3339 UTC (`2026-01-01T00:00:00Z`) or empty for open; the key then vouches only for
    /// checkpoints whose stated time t has FROM <= t < UNTIL.
    #[arg(
        long = "trusted-key",
        value_name = "PUB.pem[@FROM..UNTIL]",
        required = true
    )]
    pub trusted_keys: Vec<String>,
    /// The bundle, as `ledger prove` prints it (`-` for stdin).
    #[arg(value_name = "BUNDLE")]
    pub bundle: PathBuf,
}

/// `cipherflow ledger custody`.
#[derive(Debug, Args)]
pub struct CustodyArgs {
    /// The ledger folder.
    #[arg(long, value_name = "DIR")]
    pub ledger: PathBuf,
    /// CloudTrail log files (`.json` or `.json.gz`) or S3 notification messages, or folders
    /// of them (read recursively); repeat for several.
    #[arg(long, value_name = "FILE_OR_DIR", required = true, num_args = 1..)]
    pub cloudtrail: Vec<PathBuf>,
    /// A principal or role ARN allowed to act on the objects; repeat for several. Without
    /// any, principals are not checked.
    #[arg(long = "allow-principal", value_name = "ARN")]
    pub allow_principals: Vec<String>,
    /// Re-hash the objects against the newest ledger write of each: a folder holding them
    /// as `BUCKET/KEY` (a local copy of the buckets). Flags `hash-mismatch` and
    /// `missing-on-recheck`.
    #[arg(long, value_name = "DIR")]
    pub recheck: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_kind(s: &str) -> Result<Kind, String> {
    Kind::from_name(s).ok_or_else(|| format!("unknown record kind {s:?}"))
}

/// Runs one `ledger` subcommand.
pub fn run(command: LedgerCommand) -> Result<(), Error> {
    match command {
        LedgerCommand::Init(args) => init(args),
        LedgerCommand::Add(args) => add(*args),
        LedgerCommand::Checkpoint(args) => checkpoint(args),
        LedgerCommand::Verify(args) => verify(args),
        LedgerCommand::Show(args) => show(args),
        LedgerCommand::Prove(args) => prove(args),
        LedgerCommand::CheckProof(args) => check_proof(args),
        LedgerCommand::Custody(args) => custody(args),
    }
}

/// The folder as a store; an existing ledger's folder must exist (a store would create it).
fn folder(dir: &Path, create: bool) -> Result<Arc<dyn ObjectStore>, Error> {
    let context = || format!("opening ledger {}", dir.display());
    if !create && !dir.is_dir() {
        return Err(Error::core(
            context(),
            LedgerError::Storage(format!("{} is not a folder", dir.display())).into(),
        ));
    }
    let store = LocalStore::new(dir)
        .map_err(cipherflow_core::Error::from)
        .context(context)?;
    Ok(Arc::new(store))
}

fn open(dir: &Path) -> Result<Ledger, Error> {
    block_on(Ledger::open(folder(dir, false)?, ""))
        .context(|| format!("opening ledger {}", dir.display()))
}

fn now() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn init(args: InitArgs) -> Result<(), Error> {
    let ledger = block_on(Ledger::init(folder(&args.ledger, true)?, "", &args.origin))
        .context(|| format!("creating ledger {}", args.ledger.display()))?;
    print_json(&json!({ "origin": ledger.origin(), "records": 0 }))
}

fn add(args: AddArgs) -> Result<(), Error> {
    let mut ledger = open(&args.ledger)?;
    let mut inputs = args.inputs.clone();
    inputs.sort_unstable();
    inputs.dedup();
    let inputs = inputs
        .into_iter()
        .map(|index| {
            let leaf_hash = ledger.tree().leaf(index).ok_or_else(|| {
                Error::Usage(format!(
                    "--input {index}: the ledger has {} records",
                    ledger.len()
                ))
            })?;
            Ok(Link { index, leaf_hash })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let object = ObjectRef {
        version_id: args.version_id,
        etag: args.etag,
        ..ObjectRef::of_file(&args.store, &args.bucket, &args.object_key, &args.file)
            .context(|| format!("hashing {}", args.file.display()))?
    };
    let record = Record {
        sequence: 0,
        kind: args.kind,
        time_ms: args.time_ms.unwrap_or_else(|| now().as_millis() as u64),
        object,
        actor: Actor {
            principal: args.principal,
            issuer: args.issuer,
            source_ip: args.source_ip,
            user_agent: args.user_agent,
        },
        step: args.step,
        tool_version: concat!("cipherflow ", env!("CARGO_PKG_VERSION")).into(),
        inputs,
    };
    let (index, leaf_hash) = block_on(ledger.append(record))
        .context(|| format!("appending to ledger {}", args.ledger.display()))?;
    print_json(&json!({ "index": index, "leaf_hash": hex_encode(&leaf_hash) }))
}

fn checkpoint(args: CheckpointArgs) -> Result<(), Error> {
    let signer = load_signing(&args.sign_key)?;
    let mut ledger = open(&args.ledger)?;
    let time = args.time.unwrap_or_else(|| now().as_secs());
    let note = block_on(ledger.checkpoint(&*signer, time))
        .context(|| format!("signing a checkpoint of {}", args.ledger.display()))?;
    print_json(&json!({
        "size": ledger.len(),
        "root_hash": hex_encode(&ledger.tree().root()),
        "time": format_rfc3339(time.saturating_mul(1000)),
        "checkpoint": note,
    }))
}

/// A `--trusted-key` value: a key file and an optional validity window in Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TrustedKeyArg {
    path: PathBuf,
    not_before: Option<u64>,
    not_after: Option<u64>,
}

/// Parses `PUB.pem` or `PUB.pem@FROM..UNTIL` (the text after the last `@` is a window only
/// if it holds `..`, so other paths with `@` still work).
fn parse_trusted_key(text: &str) -> Result<TrustedKeyArg, Error> {
    let window = text
        .rsplit_once('@')
        .and_then(|(path, window)| Some((path, window.split_once("..")?)));
    let Some((path, (from, until))) = window else {
        return Ok(TrustedKeyArg {
            path: PathBuf::from(text),
            not_before: None,
            not_after: None,
        });
    };
    let bound = |t: &str| -> Result<Option<u64>, Error> {
        if t.is_empty() {
            return Ok(None);
        }
        if t.bytes().all(|b| b.is_ascii_digit()) {
            return t.parse().map(Some).map_err(|_| {
                Error::Usage(format!("--trusted-key {text}: time {t} is out of range"))
            });
        }
        parse_rfc3339(t).map(|ms| Some(ms / 1000)).ok_or_else(|| {
            Error::Usage(format!(
                "--trusted-key {text}: {t:?} is neither Unix seconds nor an RFC 3339 UTC time"
            ))
        })
    };
    let (not_before, not_after) = (bound(from)?, bound(until)?);
    if let (Some(a), Some(b)) = (not_before, not_after)
        && a >= b
    {
        return Err(Error::Usage(format!(
            "--trusted-key {text}: the window is empty (FROM must be before UNTIL)"
        )));
    }
    Ok(TrustedKeyArg {
        path: PathBuf::from(path),
        not_before,
        not_after,
    })
}

fn trusted(args: &[String]) -> Result<TrustedKeys, Error> {
    let mut keys = TrustedKeys::new();
    for text in args {
        let arg = parse_trusted_key(text)?;
        let mut key = TrustedKey::new(load_verifying(&arg.path)?);
        if let Some(t) = arg.not_before {
            key = key.not_before(t);
        }
        if let Some(t) = arg.not_after {
            key = key.not_after(t);
        }
        keys = keys.with(key);
    }
    Ok(keys)
}

fn verify(args: VerifyArgs) -> Result<(), Error> {
    let keys = trusted(&args.trusted_keys)?;
    let context = || format!("verifying ledger {}", args.ledger.display());
    // A ledger on S3 (`s3://bucket/prefix`, with the `aws` feature) verifies the same way.
    let name = args.ledger.to_string_lossy();
    let report = if name.starts_with("s3://") {
        let store = crate::pipeline::open_store(&name)?;
        crate::pipeline::drive(Ledger::verify(store, "", &keys))?
    } else {
        block_on(Ledger::verify(folder(&args.ledger, false)?, "", &keys))
    }
    .context(context)?;
    if report.records > report.signed_size && !args.allow_unsigned_tail {
        return Err(Error::core(
            context(),
            LedgerError::BadRecord {
                index: report.signed_size,
                object: None,
                reason: "not covered by any signed checkpoint (sign one, or pass \
                         --allow-unsigned-tail)"
                    .into(),
            }
            .into(),
        ));
    }
    print_json(&json!({
        "origin": report.origin,
        "records": report.records,
        "checkpoints": report.checkpoints,
        "signed_size": report.signed_size,
        "root_hash": report.latest.as_ref().map(|c| hex_encode(&c.root)),
        "checkpoint_time": report.latest.as_ref().map(|c| format_rfc3339(c.time.saturating_mul(1000))),
    }))
}

fn show(args: ShowArgs) -> Result<(), Error> {
    let ledger = open(&args.ledger)?;
    match args.index {
        Some(index) => {
            let (record, leaf_hash) =
                block_on(ledger.record(index)).context(|| format!("reading record {index}"))?;
            let mut view = record.to_json();
            view["leaf_hash"] = hex_encode(&leaf_hash).into();
            print_json(&view)
        }
        None => print_json(&json!({
            "origin": ledger.origin(),
            "records": ledger.len(),
            "root_hash": hex_encode(&ledger.tree().root()),
            "latest_checkpoint": ledger.latest_checkpoint(),
        })),
    }
}

fn prove(args: ProveArgs) -> Result<(), Error> {
    let ledger = open(&args.ledger)?;
    let bundle =
        block_on(ledger.prove(args.index)).context(|| format!("proving record {}", args.index))?;
    println!("{}", bundle.to_json());
    Ok(())
}

fn check_proof(args: CheckProofArgs) -> Result<(), Error> {
    let keys = trusted(&args.trusted_keys)?;
    let label = args.bundle.display().to_string();
    let mut text = String::new();
    if args.bundle.as_os_str() == "-" {
        io::stdin()
            .read_to_string(&mut text)
            .context(|| "reading stdin")?;
    } else {
        text = fs::read_to_string(&args.bundle).context(|| format!("reading {label}"))?;
    }
    let context = || format!("checking proof bundle {label}");
    let bundle = Bundle::from_json(&text).context(context)?;
    let (checkpoint, record) = bundle.verify(&keys).context(context)?;
    print_json(&json!({
        "verified": true,
        "origin": checkpoint.origin,
        "tree_size": checkpoint.size,
        "root_hash": hex_encode(&checkpoint.root),
        "checkpoint_time": format_rfc3339(checkpoint.time.saturating_mul(1000)),
        "record": record.to_json(),
    }))
}

fn custody(args: CustodyArgs) -> Result<(), Error> {
    let ledger = open(&args.ledger)?;
    let records = block_on(ledger.records(0..ledger.len()))
        .context(|| format!("reading ledger {}", args.ledger.display()))?
        .into_iter()
        .map(|(record, _)| (record.sequence, record))
        .collect::<Vec<_>>();
    let mut files = Vec::new();
    for path in &args.cloudtrail {
        collect_files(path, &mut files)?;
    }
    let mut events = Vec::new();
    for file in files {
        let bytes = fs::read(&file).context(|| format!("reading {}", file.display()))?;
        events.extend(
            cloudtrail::read_events(&bytes).context(|| format!("reading {}", file.display()))?,
        );
    }
    let events = cloudtrail::dedupe_and_sort(events);
    let mut report = custody_report(&records, &events, &args.allow_principals);
    if let Some(dir) = &args.recheck {
        let store = folder(dir, false)?;
        block_on(report.recheck(&*store))
            .context(|| format!("re-checking objects in {}", dir.display()))?;
    }
    if args.json {
        print_json(&report)
    } else {
        print!("{}", report.to_text());
        Ok(())
    }
}

/// `path` if a file, else every file under it (sorted, hidden names skipped).
fn collect_files(path: &std::path::Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let meta = fs::metadata(path).context(|| format!("reading {}", path.display()))?;
    if !meta.is_dir() {
        out.push(path.to_owned());
        return Ok(());
    }
    let mut entries = fs::read_dir(path)
        .and_then(|d| {
            d.map(|e| e.map(|e| e.path()))
                .collect::<io::Result<Vec<_>>>()
        })
        .context(|| format!("reading {}", path.display()))?;
    entries.sort();
    for entry in entries {
        if !entry
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            collect_files(&entry, out)?;
        }
    }
    Ok(())
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_key_windows_parse() {
        let plain = parse_trusted_key("keys/pub.pem").unwrap();
        assert_eq!(
            (plain.path, plain.not_before, plain.not_after),
            (PathBuf::from("keys/pub.pem"), None, None)
        );
        let both = parse_trusted_key("k@x.pem@100..2026-01-01T00:00:00Z").unwrap();
        assert_eq!(
            (both.path, both.not_before, both.not_after),
            (PathBuf::from("k@x.pem"), Some(100), Some(1_767_225_600))
        );
        let open_end = parse_trusted_key("k.pem@1700000000..").unwrap();
        assert_eq!(
            (open_end.not_before, open_end.not_after),
            (Some(1_700_000_000), None)
        );
        let open_start = parse_trusted_key("k.pem@..5").unwrap();
        assert_eq!(
            (open_start.not_before, open_start.not_after),
            (None, Some(5))
        );
        // A path with `@` but no window is a path.
        assert_eq!(
            parse_trusted_key("me@host.pem").unwrap().path,
            PathBuf::from("me@host.pem")
        );
        for bad in [
            "k.pem@5..5",
            "k.pem@9..1",
            "k.pem@yesterday..",
            "k.pem@..99999999999999999999",
        ] {
            assert!(
                matches!(parse_trusted_key(bad), Err(Error::Usage(_))),
                "{bad} should be refused"
            );
        }
    }
}
