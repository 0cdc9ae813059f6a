//! `cipherflow run`, `pull` and `gc`: one pipeline step, the consumer's pull, and garbage
//! collection, on the stores a `pipeline.toml` names (docs/PIPELINE.md).

use std::path::Path;
use std::sync::Arc;

use cipherflow_core::pipeline::{
    Consumer, Location, PipelineConfig, Resolver, StepReport, published_tables,
};
use cipherflow_core::store::{LocalStore, ObjectStore};
use cipherflow_core::{Error as CoreError, KeyUnwrapper, Verifier};
use serde::Serialize;

use crate::cli::{GcArgs, PullArgs, RunArgs};
use crate::error::{Context, Error};
use crate::{load_private, load_verifying, print_json};

/// A step's report as printed (by `run`, and by `ingest` after landing records).
#[derive(Serialize)]
pub(crate) struct RunJson<'a> {
    table: &'a str,
    generation: u64,
    applied: &'a [String],
    skipped: usize,
    changes: u64,
    partitions_touched: &'a [u32],
    compacted: &'a [u32],
    bytes_sealed: u64,
    ledger_records: u64,
    attempts: u32,
    millis: u64,
}

impl<'a> RunJson<'a> {
    pub(crate) fn new(table: &'a str, report: &'a StepReport) -> RunJson<'a> {
        RunJson {
            table,
            generation: report.generation,
            applied: &report.applied,
            skipped: report.skipped,
            changes: report.changes,
            partitions_touched: &report.partitions_touched,
            compacted: &report.compacted,
            bytes_sealed: report.bytes_sealed,
            ledger_records: report.ledger_records,
            attempts: report.attempts,
            millis: report.millis,
        }
    }
}

pub fn run(args: RunArgs) -> Result<(), Error> {
    let pipeline = load(&args.config)?;
    let report = drive(pipeline.run_once())?.context(|| "pipeline step failed")?;
    print_json(&RunJson::new(&pipeline.table.name, &report))
}

#[derive(Serialize)]
struct PullJson<'a> {
    table: &'a str,
    generation: u64,
    previous: Option<u64>,
    fetched: usize,
    bytes_fetched: u64,
    partitions_changed: &'a [u32],
    rows: u64,
    table_csv: String,
}

pub fn pull(args: PullArgs) -> Result<(), Error> {
    let share = open_store(&args.share.to_string_lossy())?;
    let key: Arc<dyn KeyUnwrapper> = Arc::from(load_private(&args.key)?);
    let signer = match &args.signer {
        Some(path) => Some(Arc::new(load_verifying(path)?) as Arc<dyn Verifier>),
        None => None,
    };
    let share = Location::new(share, "");
    let table = match &args.table {
        Some(table) => table.clone(),
        None => only_table(&share)?,
    };
    let consumer = Consumer { share, key, signer };
    let report = drive(consumer.pull(&table, &args.out))?
        .context(|| format!("pulling {table} from {}", args.share.display()))?;
    print_json(&PullJson {
        table: &table,
        generation: report.generation,
        previous: report.previous,
        fetched: report.fetched.len(),
        bytes_fetched: report.bytes_fetched,
        partitions_changed: &report.partitions_changed,
        rows: report.rows,
        table_csv: report.table_csv.display().to_string(),
    })
}

/// The one table a share publishes; a usage error if there are none or several.
fn only_table(share: &Location) -> Result<String, Error> {
    let tables = drive(published_tables(share))?.context(|| "listing the share")?;
    match tables.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::Usage("the share publishes no table".into())),
        many => Err(Error::Usage(format!(
            "the share publishes several tables ({}); name one with --table",
            many.join(", ")
        ))),
    }
}

#[derive(Serialize)]
struct GcJson<'a> {
    dry_run: bool,
    kept_generations: &'a [u64],
    removed: &'a [String],
    unreferenced: &'a [String],
}

pub fn gc(args: GcArgs) -> Result<(), Error> {
    let pipeline = load(&args.config)?;
    let report =
        drive(pipeline.gc(args.keep, args.dry_run))?.context(|| "garbage collection failed")?;
    print_json(&GcJson {
        dry_run: args.dry_run,
        kept_generations: &report.kept_generations,
        removed: &report.removed,
        unreferenced: &report.unreferenced,
    })
}

/// Loads `pipeline.toml`; with the `aws` feature its `s3://` stores and `kms:` keys open
/// through cipherflow-aws's resolver (without it, such names are refused by name).
pub(crate) fn load(path: &Path) -> Result<cipherflow_core::pipeline::Pipeline, Error> {
    let config = PipelineConfig::load(path).context(|| "loading the pipeline configuration")?;
    #[cfg(feature = "aws")]
    let aws = crate::aws::resolver()?;
    #[cfg(feature = "aws")]
    let resolver: Option<&dyn Resolver> = Some(&aws);
    #[cfg(not(feature = "aws"))]
    let resolver: Option<&dyn Resolver> = None;
    config
        .pipeline(path, resolver)
        .context(|| format!("setting up the pipeline of {}", path.display()))
}

/// A store argument: a local folder, or `s3://bucket/prefix` (with the `aws` feature).
pub(crate) fn open_store(name: &str) -> Result<Arc<dyn ObjectStore>, Error> {
    if name.starts_with("s3://") {
        #[cfg(feature = "aws")]
        return crate::aws::store(name);
        #[cfg(not(feature = "aws"))]
        return Err(Error::Usage(format!(
            "{name}: this cipherflow was built without AWS support (cargo build --features aws)"
        )));
    }
    let store = LocalStore::new(name)
        .map_err(CoreError::from)
        .context(|| format!("opening {name}"))?;
    Ok(Arc::new(store))
}

/// Drives a store future: on the AWS runtime when S3 may be involved, else on this thread.
pub(crate) fn drive<F: std::future::Future>(future: F) -> Result<F::Output, Error> {
    #[cfg(feature = "aws")]
    return crate::aws::block_on(future);
    #[cfg(not(feature = "aws"))]
    return Ok(cipherflow_core::store::block_on(future));
}
