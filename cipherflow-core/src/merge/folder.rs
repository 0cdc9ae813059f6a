//! A merge state kept in a local folder between runs (`cipherflow merge --state DIR`), so
//! batches can arrive over many invocations, in any order and more than once.
//!
//! The folder holds two files: the state as one delta run (`state-SHA256.csv`, the format of
//! [`encode_run`], named by the SHA-256 of its bytes), and `state.json`, the manifest: the
//! table (columns, key, null), the run's name and SHA-256, and the batches applied (object,
//! SHA-256). Saving writes the run, then the manifest, each to a temporary file that is
//! synced and renamed; the manifest's rename is the commit point, so a crash leaves either
//! the old state or the new one. Loading checks the run against the manifest's SHA-256.
//! `docs/MERGE.md` §7 specifies the folder.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{MergeState, decode_run, encode_run};
use crate::Error;
use crate::cdc::{CdcError, CdcErrorKind, KeySpec, Position, TableSchema};

/// The manifest's file name inside the folder.
pub const STATE_MANIFEST: &str = "state.json";
/// The manifest's `format` value.
const FORMAT: &str = "cipherflow-merge-state/1";

/// The manifest, as stored.
#[derive(Serialize, Deserialize)]
struct Manifest {
    format: String,
    columns: Vec<String>,
    /// `COL:TYPE`, in key order.
    key: Vec<String>,
    /// The null value's bytes, in hex (it need not be UTF-8).
    null: String,
    /// The run's file name in the folder.
    state: String,
    /// The run's SHA-256, in hex.
    state_sha256: String,
    /// (object, SHA-256 in hex), sorted.
    applied: Vec<(String, String)>,
}

/// A local folder holding one table's [`MergeState`].
#[derive(Debug, Clone)]
pub struct StateFolder {
    dir: PathBuf,
}

impl StateFolder {
    /// The folder at `dir` (created by the first [`StateFolder::save`]).
    pub fn new(dir: impl Into<PathBuf>) -> StateFolder {
        StateFolder { dir: dir.into() }
    }

    /// The folder's path.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The stored state, or `None` when the folder has no manifest yet. A manifest or run
    /// that does not parse, or a run whose SHA-256 differs from the manifest's, is an error
    /// naming the file.
    pub fn load(&self) -> Result<Option<MergeState>, Error> {
        let manifest_path = self.dir.join(STATE_MANIFEST);
        let bytes = match fs::read(&manifest_path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(corrupt(&manifest_path, &format!("cannot read: {e}"))),
        };
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(&manifest_path, &format!("not a state manifest: {e}")))?;
        if manifest.format != FORMAT {
            return Err(corrupt(
                &manifest_path,
                &format!("format {:?}, expected {FORMAT:?}", manifest.format),
            ));
        }
        let bad = |what: &str| corrupt(&manifest_path, what);
        let key = manifest
            .key
            .iter()
            .map(|k| match KeySpec::parse_list(k)?.as_slice() {
                [one] => Ok(one.clone()),
                _ => Err(format!("bad key column {k:?}")),
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| bad(&e))?;
        let null = hex::decode(&manifest.null).map_err(|_| bad("null is not hex"))?;
        let schema = TableSchema::new(manifest.columns, &key)
            .map_err(|e| bad(&e.to_string()))?
            .with_null(null);
        if !is_run_name(&manifest.state) {
            return Err(bad(&format!("bad state file name {:?}", manifest.state)));
        }
        let run_path = self.dir.join(&manifest.state);
        let run = fs::read(&run_path).map_err(|e| corrupt(&run_path, &format!("{e}")))?;
        if hex::encode(Sha256::digest(&run)) != manifest.state_sha256 {
            return Err(corrupt(&run_path, "SHA-256 differs from the manifest's"));
        }
        let mut state = MergeState::new(schema);
        for change in decode_run(&run_path.display().to_string(), state.schema(), &run)? {
            state.apply_change(&change);
        }
        for (object, sha) in manifest.applied {
            let sha: [u8; 32] = hex::decode(&sha)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| bad(&format!("bad SHA-256 for {object:?}")))?;
            state.mark_applied(Arc::from(object), sha);
        }
        Ok(Some(state))
    }

    /// Stores `state`, replacing what the folder held: the run first, then the manifest (the
    /// commit point), each written to a temporary file, synced and renamed; then runs the
    /// manifest no longer names are removed.
    pub fn save(&self, state: &MergeState) -> Result<(), Error> {
        fs::create_dir_all(&self.dir).map_err(|e| io_at(&self.dir, e))?;
        let schema = state.schema();
        let run = encode_run(schema, &state.to_changes());
        let run_sha = hex::encode(Sha256::digest(&run));
        let run_name = format!("state-{run_sha}.csv");
        self.write_atomic(&run_name, &run)?;
        let manifest = Manifest {
            format: FORMAT.into(),
            columns: schema.columns().to_vec(),
            key: schema
                .key()
                .iter()
                .map(|&(i, ty)| format!("{}:{}", schema.columns()[i], ty.name()))
                .collect(),
            null: hex::encode(schema.null()),
            state: run_name.clone(),
            state_sha256: run_sha,
            applied: state
                .applied()
                .iter()
                .map(|(object, sha)| (object.to_string(), hex::encode(sha)))
                .collect(),
        };
        let mut json = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
        json.push(b'\n');
        self.write_atomic(STATE_MANIFEST, &json)?;
        // Old runs are garbage once the manifest names the new one.
        let entries = fs::read_dir(&self.dir).map_err(|e| io_at(&self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_at(&self.dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if is_run_name(&name) && name != run_name {
                fs::remove_file(entry.path()).map_err(|e| io_at(&entry.path(), e))?;
            }
        }
        Ok(())
    }

    /// Writes `name` in the folder through a synced temporary file and a rename, then syncs
    /// the folder so the rename is durable.
    fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), Error> {
        let path = self.dir.join(name);
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)
            .map_err(|e| io_at(&self.dir, e))?;
        tmp.write_all(bytes).map_err(|e| io_at(&path, e))?;
        tmp.as_file().sync_all().map_err(|e| io_at(&path, e))?;
        tmp.persist(&path).map_err(|e| io_at(&path, e.error))?;
        sync_dir(&self.dir).map_err(|e| io_at(&self.dir, e))
    }
}

/// Whether `name` is a state run's file name (`state-` 64 hex digits `.csv`).
fn is_run_name(name: &str) -> bool {
    name.strip_prefix("state-")
        .and_then(|n| n.strip_suffix(".csv"))
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// A folder file that is not what the folder format says, naming the file.
fn corrupt(path: &Path, why: &str) -> Error {
    CdcError::new(
        Position::object(path.display().to_string()),
        CdcErrorKind::Read(format!("state folder: {why}")),
    )
    .into()
}

/// An I/O error, naming the path.
fn io_at(path: &Path, e: io::Error) -> Error {
    Error::Io(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdc::{DmsOptions, read_dms};

    #[test]
    fn save_then_load_gives_the_same_snapshot_and_applied_list() {
        let schema = TableSchema::new(
            vec!["id".into(), "v".into()],
            &KeySpec::parse_list("id:int64").unwrap(),
        )
        .unwrap()
        .with_null("NULL");
        let file = b"Op,id,v\nI,1,a\nI,2,\"b,c\"\nD,1,\n";
        let batch = read_dms("c.csv", &file[..], &schema, &DmsOptions::default()).unwrap();
        let mut state = MergeState::new(schema);
        state.apply(&batch);
        let dir = tempfile::tempdir().unwrap();
        let folder = StateFolder::new(dir.path().join("s"));
        assert!(folder.load().unwrap().is_none());
        folder.save(&state).unwrap();
        let loaded = folder.load().unwrap().expect("saved");
        let snap = |s: &MergeState| {
            let mut out = Vec::new();
            s.write_snapshot(&mut out).unwrap();
            out
        };
        assert_eq!(snap(&loaded), snap(&state));
        assert_eq!(loaded.applied(), state.applied());
        assert_eq!(loaded.schema(), state.schema());
        // The tombstone survived: an older insert of key 1 does not resurrect it.
        assert_eq!(loaded.rows().len(), 2);

        let run = fs::read_dir(folder.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("state-")
            })
            .unwrap();
        fs::write(&run, b"tampered").unwrap();
        let e = folder.load().unwrap_err().to_string();
        assert!(e.contains("SHA-256 differs"), "{e}");
    }
}
