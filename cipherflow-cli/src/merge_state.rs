//! `cipherflow merge --state DIR`: the stateful merge. The state (every key's ordering keys,
//! tombstones, and the batches applied) lives in a local folder between runs
//! ([`StateFolder`]), so repeated runs with batches in any order, and with duplicates,
//! write byte-identical snapshots. Kept apart from the stateless path (`merge.rs`).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use cipherflow_core::Error as CoreError;
use cipherflow_core::cdc::{DmsOptions, KeySpec, OrderKey, Timestamp, parse_seq, read_dms};
use cipherflow_core::merge::{MergeState, StateFolder};
use serde::Serialize;

use crate::cli::MergeArgs;
use crate::error::{Context, Error};
use crate::merge::{dms_options, read_schema};
use crate::{BUF_SIZE, Output, print_json};

#[derive(Serialize)]
struct StatefulJson {
    rows: u64,
    keys: u64,
    columns: u64,
    changes: u64,
    applied: u64,
    skipped: u64,
    rejected: u64,
    tombstones_purged: u64,
    bytes: u64,
}

/// Loads the folder (or starts it from `--base`), applies the base and change files not
/// applied before, writes the snapshot, then saves the folder. Every file is read and
/// validated before anything is written; the folder is written last, so a failure anywhere
/// leaves it as it was.
pub fn merge_stateful(args: &MergeArgs, dir: &Path) -> Result<(), Error> {
    let folder = StateFolder::new(dir);
    let refused = || "merge refused";
    let mut state = match folder.load().context(refused)? {
        Some(state) => {
            check_same_table(&state, args, dir)?;
            state
        }
        None => {
            let base = args.base.as_ref().ok_or_else(|| {
                Error::Usage(format!(
                    "{} holds no merge state yet: give --base to start it",
                    dir.display()
                ))
            })?;
            MergeState::new(read_schema(base, args)?)
        }
    };
    let purge_before = args
        .purge_tombstones_before
        .as_deref()
        .map(parse_order_bound)
        .transpose()
        .map_err(Error::Usage)?;

    let options = dms_options(args);
    // The base is a full load (no Op column, its own header), whatever --change-columns says.
    let base_options = DmsOptions {
        columns: None,
        reject: false,
        ..options.clone()
    };
    let inputs = args
        .base
        .iter()
        .map(|p| (p, &base_options))
        .chain(args.changes.iter().map(|p| (p, &options)));
    let (mut changes, mut applied, mut skipped) = (0u64, 0u64, 0u64);
    let mut rejects = Vec::new();
    for (path, options) in inputs {
        let label = path.display().to_string();
        let file = File::open(path).context(|| format!("reading {label}"))?;
        let batch = read_dms(
            &label,
            BufReader::with_capacity(BUF_SIZE, file),
            state.schema(),
            options,
        )
        .map_err(CoreError::from)
        .context(refused)?;
        if state.apply(&batch) {
            applied += 1;
            changes += batch.changes.len() as u64;
            rejects.extend(batch.rejects);
        } else {
            skipped += 1;
        }
    }
    let tombstones_purged = purge_before.map_or(0, |b| state.purge_tombstones(&b)) as u64;

    let mut reject_out = crate::merge::write_reject_file(args.reject.as_deref(), &rejects)?;
    let mut out = Output::create(Some(&args.out))?;
    let mut counting = Counting {
        inner: &mut out,
        bytes: 0,
    };
    state
        .write_snapshot(&mut counting)
        .context(|| format!("writing {}", args.out.display()))?;
    let bytes = counting.bytes;
    out.commit()?;
    if let Some(out) = reject_out.take() {
        out.commit()?;
    }
    folder
        .save(&state)
        .context(|| format!("saving the merge state in {}", dir.display()))?;
    let live = state.rows().values().filter(|r| !r.is_tombstone()).count() as u64;
    print_json(&StatefulJson {
        rows: live,
        keys: state.rows().len() as u64,
        columns: state.schema().columns().len() as u64,
        changes,
        applied,
        skipped,
        rejected: rejects.len() as u64,
        tombstones_purged,
        bytes,
    })
}

/// The folder's table must be the one the arguments describe: same key, same null.
fn check_same_table(state: &MergeState, args: &MergeArgs, dir: &Path) -> Result<(), Error> {
    let schema = state.schema();
    let stored = schema.key_specs();
    if stored != args.key {
        return Err(Error::Usage(format!(
            "{} holds a table keyed by {}, not by {}",
            dir.display(),
            KeySpec::list_text(&stored),
            KeySpec::list_text(&args.key)
        )));
    }
    if schema.null() != args.null_value.as_bytes() {
        return Err(Error::Usage(format!(
            "{} holds a table whose null value is {:?}, not {:?}",
            dir.display(),
            String::from_utf8_lossy(schema.null()),
            args.null_value
        )));
    }
    Ok(())
}

/// `seq:N` or `ts:TIME` as the least ordering key with that sequence (and no timestamp) or
/// that commit time (and no sequence).
fn parse_order_bound(s: &str) -> Result<OrderKey, String> {
    let bad = || {
        format!("--purge-tombstones-before {s:?}: expected seq:N or ts:yyyy-MM-dd[ HH:mm:ss[.f]]")
    };
    let (seq, timestamp) = match s.split_once(':') {
        Some(("seq", n)) => (
            Some(parse_seq(n.as_bytes()).ok().flatten().ok_or_else(bad)?),
            None,
        ),
        Some(("ts", t)) => (None, Some(Timestamp::parse(t.as_bytes()).ok_or_else(bad)?)),
        _ => return Err(bad()),
    };
    Ok(OrderKey {
        seq,
        timestamp,
        cdc: false,
        object: Arc::from(""),
        line: 0,
    })
}

/// Counts the bytes written through it.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: std::io::Write> std::io::Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
