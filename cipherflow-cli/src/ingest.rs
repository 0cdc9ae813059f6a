//! `cipherflow ingest`: record files validated against a schema with
//! [`Ingest`](cipherflow_core::records::Ingest) and written to a sink: a records pipeline's
//! landing store (then one pipeline step), or DynamoDB in builds with AWS support. A refused
//! file writes nothing; the others go on; the exit status says whether any was refused
//! (docs/RECORDS.md, "Ingestion").

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use cipherflow_core::Error as CoreError;
use cipherflow_core::ledger::{Actor, Ledger};
use cipherflow_core::pipeline::{InputFormat, LandingSink, Pipeline, local_principal};
use cipherflow_core::records::{
    Format, Ingest, IngestError, IngestLedger, RecordSchema, RecordSink, RecordsError, RejectTarget,
};
use serde::Serialize;

use crate::cli::{IngestArgs, RecordFormat};
use crate::error::{Context, Error};
use crate::pipeline::{RunJson, drive, load, open_store};
use crate::print_json;

/// Record errors printed per refused file; past this, a count.
const SHOWN_ERRORS: usize = 20;

#[derive(Serialize, Default)]
struct Counts {
    read: u64,
    written: u64,
    skipped: u64,
    rejected: u64,
}

#[derive(Serialize)]
struct FileJson {
    file: String,
    object: String,
    #[serde(flatten)]
    counts: Counts,
    refused: bool,
    /// Record errors of a refused file.
    errors: usize,
    reject_object: Option<String>,
    /// Index of the file's `landed` ledger record (`--ledger`).
    ledger_index: Option<u64>,
}

#[derive(Serialize)]
struct TotalJson {
    files: usize,
    refused: usize,
    #[serde(flatten)]
    counts: Counts,
}

#[derive(Serialize)]
struct IngestJson<'a> {
    to: &'a str,
    files: Vec<FileJson>,
    total: TotalJson,
    /// The pipeline step run after landing (`--to DIR`).
    step: Option<RunJson<'a>>,
}

pub fn ingest(args: IngestArgs) -> Result<(), Error> {
    let schema = RecordSchema::load(&args.schema)
        .map_err(CoreError::from)
        .context(|| "loading the record schema")?;
    let inputs = inputs(&args)?;
    let pipeline = target_pipeline(&args.to, &args.schema, &schema)?;
    let sink = record_sink(&args.to, pipeline.as_ref())?;
    let rejects = match &args.reject {
        Some(to) => Some(RejectTarget {
            store: open_store(to)?,
            prefix: String::new(),
        }),
        None => None,
    };
    let mut ledger = match (&args.ledger, &pipeline) {
        (Some(_), Some(_)) => {
            return Err(Error::Usage(
                "--ledger is for dynamodb:// targets: a pipeline's step records every object it \
                 lands in the pipeline's own ledger"
                    .into(),
            ));
        }
        (Some(location), None) => Some(open_ledger(location)?),
        (None, _) => None,
    };
    let mut ingest = Ingest {
        schema: &schema,
        sink: &*sink,
        rejects,
        max_bytes: None,
        ledger: ledger.as_mut().map(|ledger| IngestLedger {
            ledger,
            store: "file".into(),
            bucket: String::new(),
            actor: Actor {
                principal: local_principal(),
                ..Actor::default()
            },
            step: "cipherflow ingest".into(),
        }),
    };

    let mut files = Vec::new();
    let mut total = TotalJson {
        files: inputs.len(),
        refused: 0,
        counts: Counts::default(),
    };
    for (path, object, format) in &inputs {
        let bytes = fs::read(path).context(|| format!("reading {}", path.display()))?;
        let mut entry = FileJson {
            file: path.display().to_string(),
            object: object.clone(),
            counts: Counts::default(),
            refused: false,
            errors: 0,
            reject_object: None,
            ledger_index: None,
        };
        match drive(ingest.object(object, &bytes, *format))? {
            Ok(report) => {
                entry.counts = Counts {
                    read: report.read,
                    written: report.written.len() as u64,
                    skipped: report.skipped,
                    rejected: report.rejected,
                };
                entry.reject_object = report.reject_object;
                entry.ledger_index = report.ledger_index;
            }
            Err(IngestError::Records(refused)) => {
                print_refusal(&refused);
                entry.refused = true;
                entry.errors = refused.errors().len();
                total.refused += 1;
            }
            Err(IngestError::Sink(e)) => {
                return Err(Error::Failed(format!(
                    "ingesting {}: {e} (what was written stays; the sink is idempotent: run \
                     the same files again)",
                    path.display()
                )));
            }
            Err(IngestError::Store(e)) => {
                return Err(e).context(|| format!("ingesting {}", path.display()));
            }
            Err(e) => {
                return Err(Error::Failed(format!("ingesting {}: {e}", path.display())));
            }
        }
        let t = &mut total.counts;
        t.read += entry.counts.read;
        t.written += entry.counts.written;
        t.skipped += entry.counts.skipped;
        t.rejected += entry.counts.rejected;
        files.push(entry);
    }

    // Land, then apply: one step publishes what this run landed (and anything an earlier,
    // interrupted run left in the landing store).
    let step = match &pipeline {
        Some(p) => Some(drive(p.run_once())?.context(|| "pipeline step failed")?),
        None => None,
    };
    let refused = total.refused;
    print_json(&IngestJson {
        to: &args.to,
        files,
        total,
        step: match (&pipeline, &step) {
            (Some(p), Some(report)) => Some(RunJson::new(&p.table.name, report)),
            _ => None,
        },
    })?;
    if refused > 0 {
        return Err(Error::Failed(format!(
            "{refused} of {} files refused; nothing of them was written (their errors are above)",
            inputs.len()
        )));
    }
    Ok(())
}

/// An existing ledger: a folder (never created here: a mistyped path must not start an empty
/// ledger) or, with AWS support, `s3://bucket/prefix`.
fn open_ledger(location: &str) -> Result<Ledger, Error> {
    if !location.contains("://") && !Path::new(location).is_dir() {
        return Err(Error::Usage(format!(
            "--ledger {location}: not a folder (create a ledger with `cipherflow ledger init`)"
        )));
    }
    let store = open_store(location)?;
    drive(Ledger::open(store, ""))?.context(|| format!("opening ledger {location}"))
}

/// Prints every error of a refused file (or the first [`SHOWN_ERRORS`] and a count).
fn print_refusal(refused: &RecordsError) {
    let errors = refused.errors();
    if errors.is_empty() {
        eprintln!("error: {refused}");
        return;
    }
    for e in errors.iter().take(SHOWN_ERRORS) {
        eprintln!("error: {e}");
    }
    if errors.len() > SHOWN_ERRORS {
        eprintln!(
            "error: {}: {} more errors not shown",
            errors[0].object,
            errors.len() - SHOWN_ERRORS
        );
    }
}

/// Each file with its object name (the file's name: it names the file in messages and its
/// reject object) and format; two files of the same name are a usage error.
fn inputs(args: &IngestArgs) -> Result<Vec<(PathBuf, String, Format)>, Error> {
    let mut seen = BTreeMap::new();
    let mut out = Vec::new();
    for path in &args.files {
        let object = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::Usage(format!("{}: not a file name", path.display())))?;
        if let Some(other) = seen.insert(object.clone(), path) {
            return Err(Error::Usage(format!(
                "{} and {} have the same name: their records and rejects would be named alike; \
                 ingest them in separate runs",
                other.display(),
                path.display()
            )));
        }
        let format = match args.format {
            Some(RecordFormat::Json) => Format::Json,
            Some(RecordFormat::Jsonl) => Format::JsonLines,
            Some(RecordFormat::Csv) => Format::Csv,
            None => Format::from_name(&object).ok_or_else(|| {
                Error::Usage(format!(
                    "{}: no format for this extension (.json, .jsonl, .ndjson, .csv); give \
                     --format",
                    path.display()
                ))
            })?,
        };
        out.push((path.clone(), object, format));
    }
    Ok(out)
}

/// The pipeline that `--to` names (a folder holding `pipeline.toml`, or the file), which must
/// read records of `schema`; `None` for a `scheme://` target.
fn target_pipeline(
    to: &str,
    schema_path: &Path,
    schema: &RecordSchema,
) -> Result<Option<Pipeline>, Error> {
    if to.contains("://") {
        return Ok(None);
    }
    let path = Path::new(to);
    let config = if path.is_dir() {
        path.join("pipeline.toml")
    } else {
        path.to_owned()
    };
    let pipeline = load(&config)?;
    match &pipeline.input {
        InputFormat::Records(theirs) if **theirs == *schema => Ok(Some(pipeline)),
        InputFormat::Records(_) => Err(Error::Usage(format!(
            "{}: the pipeline's record schema ([input] schema) is not the same as {}",
            config.display(),
            schema_path.display()
        ))),
        _ => Err(Error::Usage(format!(
            "{}: the pipeline's input is not format = \"records\"; ingest lands records only in \
             a records pipeline",
            config.display()
        ))),
    }
}

/// The sink `--to` names: a records pipeline's landing store (`pipeline`, loaded by
/// [`target_pipeline`]), or `dynamodb://TABLE`.
fn record_sink(to: &str, pipeline: Option<&Pipeline>) -> Result<Box<dyn RecordSink>, Error> {
    if to.starts_with("dynamodb://") {
        #[cfg(feature = "aws")]
        return crate::aws::dynamo_sink(to);
        #[cfg(not(feature = "aws"))]
        return Err(Error::Usage(format!(
            "{to}: this cipherflow was built without AWS support (cargo build --features aws)"
        )));
    }
    match pipeline {
        Some(pipeline) => Ok(Box::new(LandingSink::of(pipeline))),
        None => Err(Error::Usage(format!(
            "--to {to}: expected a pipeline folder, a pipeline.toml, or dynamodb://TABLE"
        ))),
    }
}
