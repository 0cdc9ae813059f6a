//! Command-line arguments. This is the only module that knows about clap.

use std::path::PathBuf;

use cipherflow_core::KeyId;
use cipherflow_core::cdc::KeySpec;
use cipherflow_core::envelope::{MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};
use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit status:
  0  success
  1  general failure (I/O, unreadable key file, unsupported envelope, ...)
  2  usage error (bad arguments)
  3  wrong key: the envelope has no recipient for the given private key
  4  the envelope is malformed, truncated or was tampered with (also: a pulled object
     does not match its signed manifest, or a share went back to an older generation)
  5  producer signature missing, from another key, or invalid

Errors are printed as one line, `error: ...`, on stderr.
A path of `-` for -i/-o means stdin/stdout, as does leaving the option out.";

/// Envelope encryption for sharing database snapshots.
#[derive(Debug, Parser)]
#[command(name = "cipherflow", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a recipient key pair (RSA) or, with --signing, a producer signing key (ECDSA P-256).
    #[command(after_help = EXIT_CODES)]
    Keygen(KeygenArgs),
    /// Seal plaintext for one or more recipients.
    #[command(after_help = EXIT_CODES)]
    Seal(SealArgs),
    /// Open an envelope with a recipient's private key.
    #[command(after_help = EXIT_CODES)]
    Open(OpenArgs),
    /// Show what an envelope says about itself, as JSON (no key needed, nothing verified).
    #[command(after_help = EXIT_CODES)]
    Inspect(InspectArgs),
    /// Add or remove recipients without touching the body (a producer signature stays valid).
    #[command(after_help = EXIT_CODES)]
    Rewrap(RewrapArgs),
    /// Provenance ledger: append records, sign checkpoints, verify, prove (docs/LEDGER.md).
    #[command(subcommand)]
    Ledger(crate::ledger::LedgerCommand),
    /// Apply DMS change files to a base snapshot sorted by key; write the new snapshot.
    #[command(after_help = EXIT_CODES)]
    Merge(MergeArgs),
    /// Run one pipeline step: apply new CDC files, seal, ledger, publish (docs/PIPELINE.md).
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// As a consumer: fetch, verify and open what is new in a share; write the table as CSV.
    #[command(after_help = EXIT_CODES)]
    Pull(PullArgs),
    /// Remove objects that newer generations superseded (never one a kept manifest needs).
    #[command(after_help = EXIT_CODES)]
    Gc(GcArgs),
    /// Validate record files (JSON, JSON lines, CSV) against a schema and write them to a
    /// records pipeline (then run one step) or DynamoDB (docs/RECORDS.md, "Ingestion").
    #[command(after_help = INGEST_EXIT_CODES)]
    Ingest(IngestArgs),
}

const INGEST_EXIT_CODES: &str = "\
Prints a JSON summary on stdout: per file and in total, records read, written, skipped (not
newer: for a pipeline, the file's records had landed before) and rejected; then the pipeline
step's report.

Exit status:
  0  every file was ingested (in reject mode, bad records went to --reject)
  1  a file was refused (every record error, or the first 20 and a count, is printed on
     stderr as `error: OBJECT, record N (line L), field \"F\": REASON`; nothing of that file
     was written, the other files were), or a general failure (I/O, the sink, the step)
  2  usage error (bad arguments; --to is not a records pipeline with this schema)";

/// `cipherflow ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// The record schema (TOML, docs/RECORDS.md).
    #[arg(long, value_name = "SCHEMA.toml")]
    pub schema: PathBuf,
    /// Where valid records go: a pipeline folder holding pipeline.toml, or a pipeline.toml,
    /// whose input is `format = "records"` with the same schema (records land in its landing
    /// store, then one pipeline step runs); or dynamodb://TABLE (builds with AWS support).
    #[arg(long, value_name = "DIR|dynamodb://TABLE")]
    pub to: String,
    /// Reject mode: bad records go to DIR (or s3://bucket/prefix/, with AWS support) as
    /// FILE.rejects.jsonl, with their reasons, and the rest is written. Without it, a file
    /// with any bad record is refused whole.
    #[arg(long, value_name = "DIR|s3://bucket/prefix/")]
    pub reject: Option<String>,
    /// With `--to dynamodb://`: the ledger (a folder made by `cipherflow ledger init`, or
    /// s3://bucket/prefix with AWS support) that gets a `landed` record (name, size, SHA-256)
    /// for each file ingested. A pipeline target needs none: its step records every object
    /// it lands in the pipeline's ledger.
    #[arg(long, value_name = "DIR|s3://bucket/prefix")]
    pub ledger: Option<String>,
    /// The files' format [default: by extension: .json, .jsonl/.ndjson, .csv].
    #[arg(long, value_enum)]
    pub format: Option<RecordFormat>,
    /// The record files. Each is validated whole before anything of it is written.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RecordFormat {
    /// A JSON array of objects, or one object.
    Json,
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header row.
    Csv,
}

/// `cipherflow run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipeline configuration (TOML; paths in it are relative to it).
    #[arg(long, value_name = "pipeline.toml")]
    pub config: PathBuf,
}

/// `cipherflow pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The share folder.
    #[arg(long, value_name = "DIR")]
    pub share: PathBuf,
    /// The table to pull [default: the share's only table].
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,
    /// Your private key (RSA, PEM or DER).
    #[arg(long, value_name = "PRIV.pem")]
    pub key: PathBuf,
    /// The producer's public signing key: every object must carry its valid signature.
    #[arg(long, value_name = "PUB.pem")]
    pub signer: Option<PathBuf>,
    /// Where to write TABLE.csv, TABLE/part-NNNN.csv and the pull state.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// `cipherflow gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// The pipeline configuration.
    #[arg(long, value_name = "pipeline.toml")]
    pub config: PathBuf,
    /// How many of the latest generations stay readable.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub keep: u64,
    /// Only report what would be removed.
    #[arg(long)]
    pub dry_run: bool,
}

/// `cipherflow keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Generate an ECDSA P-256 producer signing key instead of an RSA recipient key.
    #[arg(long)]
    pub signing: bool,
    /// Where to write the private key (PKCS#8 PEM, mode 0600; must not exist yet).
    #[arg(long, value_name = "PATH")]
    pub private: PathBuf,
    /// Where to write the public key (SPKI PEM; must not exist yet).
    #[arg(long, value_name = "PATH")]
    pub public: PathBuf,
    /// RSA modulus size in bits.
    #[arg(
        long,
        default_value_t = 3072,
        value_parser = parse_bits,
        conflicts_with = "signing"
    )]
    pub bits: usize,
}

/// `cipherflow seal`.
#[derive(Debug, Args)]
pub struct SealArgs {
    /// A recipient's RSA public key file (PEM or DER); repeat for several recipients.
    #[arg(
        short = 'r',
        long = "recipient",
        value_name = "PUB.pem",
        required = true
    )]
    pub recipients: Vec<PathBuf>,
    /// Authenticated metadata entry; repeat for several.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
    pub meta: Vec<(String, String)>,
    /// Sign the envelope with this producer private key (ECDSA P-256 or RSA).
    #[arg(long, value_name = "SIGNER.pem")]
    pub sign_key: Option<PathBuf>,
    /// Plaintext bytes per chunk (default 1 MiB).
    #[arg(
        long,
        value_name = "BYTES",
        value_parser = clap::value_parser!(u32).range(MIN_CHUNK_SIZE as i64..=MAX_CHUNK_SIZE as i64)
    )]
    pub chunk_size: Option<u32>,
    /// Plaintext to seal [default: stdin].
    #[arg(short, long, value_name = "IN")]
    pub input: Option<PathBuf>,
    /// Where to write the envelope [default: stdout].
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
}

/// `cipherflow open`.
#[derive(Debug, Args)]
pub struct OpenArgs {
    /// The recipient's RSA private key file.
    #[arg(short, long, value_name = "PRIV.pem")]
    pub key: PathBuf,
    /// Require a producer signature by this public key.
    #[arg(long, value_name = "SIGNER.pub.pem")]
    pub signer: Option<PathBuf>,
    /// Envelope to open [default: stdin].
    #[arg(short, long, value_name = "IN")]
    pub input: Option<PathBuf>,
    /// Where to write the plaintext [default: stdout]. A file appears only once everything
    /// verified; on failure it is not created. To stdout, chunks are released as they
    /// verify, so check the exit status before using the output.
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
}

/// `cipherflow inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The envelope (`-` for stdin).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// `cipherflow rewrap`.
#[derive(Debug, Args)]
pub struct RewrapArgs {
    /// The private key of a current recipient.
    #[arg(short, long, value_name = "PRIV.pem")]
    pub key: PathBuf,
    /// A new recipient's RSA public key file; repeat for several.
    #[arg(long = "add", value_name = "PUB.pem")]
    pub add: Vec<PathBuf>,
    /// Key id (64 hex digits, as `inspect` prints) of a recipient to remove; repeat for several.
    #[arg(long = "remove", value_name = "KEYID")]
    pub remove: Vec<KeyId>,
    /// The envelope to rewrap.
    #[arg(short, long, value_name = "IN")]
    pub input: PathBuf,
    /// Where to write the rewrapped envelope (must not be IN).
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
}

/// `cipherflow merge` (semantics: docs/MERGE.md).
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The primary key: COL[:TYPE][,COL[:TYPE]...], TYPE one of string (default), int64,
    /// decimal, timestamp. Rows are sorted by it, typed.
    #[arg(long, value_name = "COL[:TYPE],...", required = true, value_delimiter = ',', value_parser = parse_key_spec)]
    pub key: Vec<KeySpec>,
    /// The current snapshot: CSV with the table's header, sorted by the key (as `merge`
    /// writes it). Its header defines the table's columns. With --state: needed only to
    /// start a new state folder, and then loaded as a full load (older than every change).
    #[arg(long, value_name = "BASE.csv", required_unless_present = "state")]
    pub base: Option<PathBuf>,
    /// Stateful form: keep the merge state (row ordering keys, tombstones, batches applied)
    /// in this folder between runs, so batches can come in any order and more than once
    /// (docs/MERGE.md §7). The folder is updated only when the merge succeeds.
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// With --state: forget tombstones whose delete is older than this ordering key,
    /// `seq:N` (a change sequence) or `ts:yyyy-MM-dd HH:mm:ss` (a commit time). An older
    /// change to such a key can then bring it back: purge only past the point where late
    /// changes can arrive.
    #[arg(long, value_name = "seq:N|ts:TIME", requires = "state")]
    pub purge_tombstones_before: Option<String>,
    /// Where to write the new snapshot (replaced only on success).
    #[arg(long, value_name = "OUT.csv")]
    pub out: PathBuf,
    /// The change files' column names, when they have no header row (e.g. Op,ts,id,...).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub change_columns: Vec<String>,
    /// The change-sequence column [default: AR_H_CHANGE_SEQ, where present].
    #[arg(long, value_name = "NAME")]
    pub seq_column: Option<String>,
    /// The commit-timestamp column (DMS TimestampColumnName), where present.
    #[arg(long, value_name = "NAME")]
    pub timestamp_column: Option<String>,
    /// The field that means null (DMS CsvNullValue).
    #[arg(long, value_name = "WORD", default_value = "")]
    pub null_value: String,
    /// The field that means "not logged, keep the old value" (DMS CsvNoSupValue).
    #[arg(long, value_name = "WORD")]
    pub no_sup_value: Option<String>,
    /// Reject mode: write bad change rows, with reasons, to this CSV file and apply the
    /// rest. Without it, any bad row refuses the whole merge.
    #[arg(long, value_name = "REJECTS.csv")]
    pub reject: Option<PathBuf>,
    /// DMS change files (CSV, or gzip-compressed CSV), applied by ordering key, not by
    /// their order here.
    #[arg(value_name = "CHANGES", required_unless_present = "state")]
    pub changes: Vec<PathBuf>,
}

fn parse_key_spec(s: &str) -> Result<KeySpec, String> {
    match KeySpec::parse_list(s)?.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!("bad key column {s:?}")),
    }
}

fn parse_bits(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(bits @ (2048 | 3072 | 4096)) => Ok(bits),
        _ => Err("RSA key size must be 2048, 3072 or 4096".into()),
    }
}

fn parse_meta(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!(
            "expected KEY=VALUE with a non-empty KEY, got {s:?}"
        )),
    }
}

/// Parses the process arguments; exits with status 2 on a usage error.
pub fn parse() -> Cli {
    Cli::parse()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn meta_needs_key_and_equals() {
        assert_eq!(parse_meta("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(parse_meta("a=").unwrap(), ("a".into(), String::new()));
        assert!(parse_meta("bad").is_err());
        assert!(parse_meta("=v").is_err());
    }
}
