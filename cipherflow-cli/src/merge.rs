//! `cipherflow merge`: the stateless merge of DMS change files onto a sorted base snapshot.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use cipherflow_core::Error as CoreError;
use cipherflow_core::cdc::{
    CdcError, DmsOptions, Position, TableSchema, read_csv_header, read_dms,
};
use cipherflow_core::merge::{MergeState, merge_sorted, write_rejects};
use serde::Serialize;

use crate::cli::MergeArgs;
use crate::error::{Context, Error};
use crate::{BUF_SIZE, Output, print_json};

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

    // Read and validate every change file before writing anything.
    let mut state = MergeState::new(schema);
    let mut rejects = Vec::new();
    let mut changes = 0;
    for path in &args.changes {
        let label = path.display().to_string();
        let file = File::open(path).context(|| format!("reading {label}"))?;
        let batch = read_dms(
            &label,
            BufReader::with_capacity(BUF_SIZE, file),
            state.schema(),
            &options,
        )
        .map_err(CoreError::from)
        .context(|| "merge refused")?;
        changes += batch.changes.len() as u64;
        state.apply(&batch);
        rejects.extend(batch.rejects);
    }

    let mut reject_out = match &args.reject {
        Some(path) => {
            let mut out = Output::create(Some(path))?;
            write_rejects(&rejects, &mut out).context(|| format!("writing {}", path.display()))?;
            Some(out)
        }
        None => None,
    };

    let base = File::open(&base_path).context(|| format!("reading {base_label}"))?;
    let mut out = Output::create(Some(&args.out))?;
    let stats = merge_sorted(
        &state,
        &base_label,
        BufReader::with_capacity(BUF_SIZE, base),
        &mut out,
    )
    .context(|| "merge refused")?;
    out.commit()?;
    if let Some(out) = reject_out.take() {
        out.commit()?;
    }
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
