//! The consumer's side: follow the pointer, verify the signed manifest, fetch and open only
//! what is new since the last pull, and write the table.
//!
//! The consumer's folder holds `TABLE.csv` (the whole table), `TABLE/part-NNNN.csv` (each
//! partition) and, under `.cipherflow/TABLE/`, what the next pull builds on: each partition's
//! state as a compacted run, and `pull.json` (generation, manifest hash, and per partition the
//! last run sequence applied). Everything fetched is opened and checked against the manifest
//! before the first file is written; files are replaced by rename, `pull.json` last, so an
//! interrupted pull leaves the previous table or is completed by the next (applying a run
//! twice changes nothing).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{
    Location, Manifest, PipelineError, Pointer, base_rel, check_hash, manifest_rel, run_rel,
};
use crate::cdc::{Change, TableSchema};
use crate::merge::{MergeState, decode_run, encode_run};
use crate::{Error, KeyUnwrapper, Opener, Verifier};

/// A consumer of one share.
#[derive(Clone)]
pub struct Consumer {
    /// The share store (read only).
    pub share: Location,
    /// The consumer's key.
    pub key: Arc<dyn KeyUnwrapper>,
    /// The producer's verifying key: when set, every object must carry its signature.
    pub signer: Option<Arc<dyn Verifier>>,
}

/// What a pull did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullReport {
    /// The generation now held.
    pub generation: u64,
    /// The generation held before (`None` on a first pull).
    pub previous: Option<u64>,
    /// Objects fetched and opened.
    pub fetched: Vec<String>,
    /// Sealed bytes fetched.
    pub bytes_fetched: u64,
    /// Partitions that changed.
    pub partitions_changed: Vec<u32>,
    /// Rows in the table.
    pub rows: u64,
    /// The table file.
    pub table_csv: PathBuf,
}

/// `pull.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PullState {
    generation: u64,
    manifest: String,
    /// Per partition, the last run sequence applied.
    through: Vec<u64>,
    /// Rows in the table written.
    rows: u64,
}

impl Consumer {
    /// Pulls `table` into `out` (see the module documentation).
    pub async fn pull(&self, table: &str, out: &Path) -> Result<PullReport, Error> {
        let meta_dir = out.join(".cipherflow").join(table);
        let state_path = meta_dir.join("pull.json");
        let previous = read_pull_state(&state_path)?;
        let pointer_rel = format!("{table}/_latest");
        let (bytes, _) = self.share.get(&pointer_rel).await?;
        let pointer = Pointer::decode(&pointer_rel, &bytes)?;
        let mut report = PullReport {
            generation: pointer.generation,
            previous: previous.as_ref().map(|p| p.generation),
            table_csv: out.join(format!("{table}.csv")),
            ..PullReport::default()
        };
        if let Some(prev) = &previous {
            if pointer.generation < prev.generation
                || (pointer.generation == prev.generation && pointer.manifest != prev.manifest)
            {
                return Err(PipelineError::Rollback {
                    seen: prev.generation,
                    found: pointer.generation,
                }
                .into());
            }
            if pointer.generation == prev.generation && report.table_csv.exists() {
                report.rows = prev.rows;
                return Ok(report);
            }
        }
        let rel = manifest_rel(table, pointer.generation, &pointer.manifest);
        let plaintext = self.fetch(&rel, &mut report).await?;
        let manifest = Manifest::decode(&rel, &plaintext, &pointer.manifest)?;
        if manifest.generation != pointer.generation || manifest.table != table {
            return Err(PipelineError::Manifest {
                object: rel,
                reason: format!("is not generation {} of table {table}", pointer.generation),
            }
            .into());
        }
        let schema = manifest
            .schema()
            .map_err(|reason| PipelineError::Manifest {
                object: rel.clone(),
                reason,
            })?;
        let mut through = match &previous {
            Some(prev) if prev.through.len() == manifest.partitions.len() => prev.through.clone(),
            _ => vec![0; manifest.partitions.len()],
        };

        // Fetch and verify everything new before writing anything.
        let mut fresh: BTreeMap<u32, (bool, Vec<Change>)> = BTreeMap::new();
        for (p, partition) in manifest.partitions.iter().enumerate() {
            let held = through[p];
            let latest = partition
                .runs
                .last()
                .map(|r| r.seq)
                .or(partition.base.as_ref().map(|b| b.through))
                .unwrap_or(0);
            if latest <= held {
                continue;
            }
            let mut changes = Vec::new();
            let mut restart = false;
            if let Some(base) = partition.base.as_ref().filter(|b| b.through > held) {
                let rel = base_rel(table, p, &base.id);
                let plaintext = self.fetch(&rel, &mut report).await?;
                check_hash(&rel, &plaintext, &base.id)?;
                changes.extend(decode_run(&rel, &schema, &plaintext)?);
                restart = true;
            }
            for run in partition.runs.iter().filter(|r| r.seq > held) {
                let rel = run_rel(table, p, &run.id);
                let plaintext = self.fetch(&rel, &mut report).await?;
                check_hash(&rel, &plaintext, &run.id)?;
                changes.extend(decode_run(&rel, &schema, &plaintext)?);
            }
            through[p] = latest;
            fresh.insert(p as u32, (restart, changes));
        }

        // Build each partition and the table, then write.
        std::fs::create_dir_all(&meta_dir)?;
        let part_dir = out.join(table);
        std::fs::create_dir_all(&part_dir)?;
        let mut table_state = MergeState::new(schema.clone());
        for p in 0..manifest.partitions.len() as u32 {
            let part_path = meta_dir.join(format!("part-{p:04}.run"));
            // An unchanged partition's file is already its compacted changes: straight into
            // the table.
            let Some((restart, changes)) = fresh.remove(&p) else {
                for change in read_part(&part_path, &schema)? {
                    table_state.apply_change(&change);
                }
                continue;
            };
            let mut state = MergeState::new(schema.clone());
            if !restart {
                for change in read_part(&part_path, &schema)? {
                    state.apply_change(&change);
                }
            }
            for change in &changes {
                state.apply_change(change);
            }
            let compact = state.to_changes();
            write_atomic(&part_path, &encode_run(&schema, &compact))?;
            let mut csv = Vec::new();
            state.write_snapshot(&mut csv)?;
            write_atomic(&part_dir.join(format!("part-{p:04}.csv")), &csv)?;
            report.partitions_changed.push(p);
            for change in &compact {
                table_state.apply_change(change);
            }
        }
        let mut csv = Vec::new();
        table_state.write_snapshot(&mut csv)?;
        report.rows = table_state
            .rows()
            .values()
            .filter(|r| !r.is_tombstone())
            .count() as u64;
        write_atomic(&report.table_csv, &csv)?;
        let state = PullState {
            generation: manifest.generation,
            manifest: pointer.manifest,
            through,
            rows: report.rows,
        };
        write_atomic(
            &state_path,
            &serde_json::to_vec(&state).expect("serialises"),
        )?;
        Ok(report)
    }

    /// Fetches and opens one object (signature required when a signer is set).
    async fn fetch(&self, rel: &str, report: &mut PullReport) -> Result<Vec<u8>, Error> {
        let (sealed, _) = self.share.get(rel).await?;
        let mut opener = Opener::new(&*self.key);
        if let Some(signer) = &self.signer {
            opener = opener.require_signer(&**signer);
        }
        let plaintext = opener.open_bytes(&sealed)?;
        report.fetched.push(rel.to_owned());
        report.bytes_fetched += sealed.len() as u64;
        Ok(plaintext)
    }
}

/// The tables a share publishes (each `TABLE/_latest` directly under the location), sorted.
pub async fn published_tables(share: &Location) -> Result<Vec<String>, Error> {
    let listing = share.store.list(&share.prefix).await?;
    Ok(listing
        .iter()
        .filter_map(|m| m.key.as_str()[share.prefix.len()..].strip_suffix("/_latest"))
        .filter(|t| !t.contains('/'))
        .map(str::to_owned)
        .collect())
}

fn read_pull_state(path: &Path) -> Result<Option<PullState>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            PipelineError::Manifest {
                object: path.display().to_string(),
                reason: format!("malformed pull state: {e}"),
            }
            .into()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn read_part(path: &Path, schema: &TableSchema) -> Result<Vec<Change>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(decode_run(&path.display().to_string(), schema, &bytes)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it into place.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| Error::Io(e.error))?;
    Ok(())
}
