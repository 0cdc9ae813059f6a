//! `cipherflow merge`: the stateless merge of DMS change files onto a sorted base snapshot.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;

use cipherflow_core::Error as CoreError;
use cipherflow_core::cdc::{
    CdcError, DmsOptions, PackedBatch, Position, Reject, TableSchema, read_csv_header,
    read_dms_packed,
};
use cipherflow_core::merge::{PackedBatches, merge_sorted, write_rejects};
use serde::Serialize;

use crate::cli::MergeArgs;
use crate::error::{Context, Error};
use crate::{Output, print_json};

/// How many threads parse change files: one per core of a small machine.
const PARSERS: usize = 2;

#[derive(Serialize)]
struct MergeJson {
    rows: u64,
    copied: u64,
    updated: u64,
    inserted: u64,
    deleted: u64,
    changes: u64,
    rejected: u64,
    bytes: u64,
}

pub fn merge(args: MergeArgs) -> Result<(), Error> {
    if let Some(dir) = args.state.clone() {
        return crate::merge_state::merge_stateful(&args, &dir);
    }
    let base_path = args
        .base
        .clone()
        .expect("clap requires --base without --state");
    let base_label = base_path.display().to_string();
    let schema = read_schema(&base_path, &args)?;
    let options = dms_options(&args);

    // Read and validate every change file before writing anything. The batches are kept
    // packed, as read, and each key is resolved only as the merge reaches it.
    let mut batches = PackedBatches::new(schema);
    let mut rejects = Vec::new();
    let mut changes = 0;
    let files = &args.changes;
    let parse = |path: &PathBuf, schema: &TableSchema| -> Result<PackedBatch, Error> {
        let label = path.display().to_string();
        let mut batch = File::open(path)
            .context(|| format!("reading {label}"))
            .and_then(|file| {
                read_dms_packed(&label, file, schema, &options)
                    .map_err(CoreError::from)
                    .context(|| "merge refused")
            })?;
        batch.sort_by_key();
        Ok(batch)
    };
    let table = batches.schema().clone();
    std::thread::scope(|scope| -> Result<(), Error> {
        // PARSERS threads parse and sort the files (thread w takes files w, w + PARSERS, ...),
        // one ahead of this thread, which takes them in the files' order.
        let parsed: Vec<_> = (0..PARSERS)
            .map(|w| {
                let (tx, rx) = sync_channel(0);
                let (table, parse) = (&table, &parse);
                scope.spawn(move || {
                    for path in files.iter().skip(w).step_by(PARSERS) {
                        let batch = parse(path, table);
                        let failed = batch.is_err();
                        if tx.send(batch).is_err() || failed {
                            break;
                        }
                    }
                });
                rx
            })
            .collect();
        for (i, path) in files.iter().enumerate() {
            let batch = parsed[i % PARSERS].recv();
            // A file that added columns widens the table for the files after it: those were
            // parsed with the old columns, so they are parsed again here, with the new ones
            // (rare: a schema change).
            let mut batch = match batch {
                Ok(batch) if *batches.schema() == table => batch?,
                _ => parse(path, batches.schema())?,
            };
            changes += batch.changes().len() as u64;
            rejects.append(&mut batch.rejects);
            batches.push(batch);
        }
        Ok(())
    })?;

    let mut reject_out = write_reject_file(args.reject.as_deref(), &rejects)?;

    let base = File::open(&base_path).context(|| format!("reading {base_label}"))?;
    let mut out = Output::create(Some(&args.out))?;
    let out_label = out.label();
    // `merge_sorted` writes from this thread (and merges on another): only the output can
    // fail with an I/O error (a bad base is a `CdcError`).
    let stats = match merge_sorted(&batches, &base_label, base, &mut out) {
        Err(CoreError::Io(e)) => Err(e).context(|| format!("writing {out_label}")),
        merged => merged.context(|| "merge refused"),
    }?;
    out.commit()?;
    if let Some(out) = reject_out.take() {
        out.commit()?;
    }
    // The process ends here: freeing the batches one change at a time would only cost time.
    std::mem::forget(batches);
    print_json(&MergeJson {
        rows: stats.rows,
        copied: stats.copied,
        updated: stats.updated,
        inserted: stats.inserted,
        deleted: stats.deleted,
        changes,
        rejected: rejects.len() as u64,
        bytes: stats.bytes,
    })
}

/// Writes the rejects to `--reject FILE` (uncommitted: the caller commits it once the
/// snapshot is in place).
pub(crate) fn write_reject_file(
    path: Option<&Path>,
    rejects: &[Reject],
) -> Result<Option<Output>, Error> {
    let Some(path) = path else { return Ok(None) };
    let mut out = Output::create(Some(path))?;
    write_rejects(rejects, &mut out).context(|| format!("writing {}", path.display()))?;
    Ok(Some(out))
}

/// How the command reads change files. Columns added mid-stream are accepted: appended to
/// the table, null for older rows.
pub(crate) fn dms_options(args: &MergeArgs) -> DmsOptions {
    DmsOptions {
        columns: (!args.change_columns.is_empty()).then(|| args.change_columns.clone()),
        seq_column: args.seq_column.clone(),
        timestamp_column: args.timestamp_column.clone(),
        no_sup_value: args.no_sup_value.clone().map(String::into_bytes),
        reject: args.reject.is_some(),
        added_columns: true,
        ..DmsOptions::default()
    }
}

/// The table's columns are the base snapshot's header.
pub(crate) fn read_schema(base: &Path, args: &MergeArgs) -> Result<TableSchema, Error> {
    let label = base.display().to_string();
    let file = File::open(base).context(|| format!("reading {label}"))?;
    let columns = read_csv_header(&label, BufReader::new(file))
        .map_err(CoreError::from)
        .context(|| "merge refused")?;
    let at_header = |kind| {
        let pos = Position {
            line: 1,
            record: 1,
            ..Position::object(&label)
        };
        CoreError::from(CdcError::new(pos, kind))
    };
    let schema = TableSchema::new(columns, &args.key)
        .map_err(at_header)
        .context(|| "merge refused")?;
    Ok(schema.with_null(args.null_value.clone().into_bytes()))
}
