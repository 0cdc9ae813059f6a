//! The manifest: which sealed objects make up a table at one generation, and which landed
//! objects it has applied. It is sealed like the data (for consumers in the share store, for
//! the pipeline in its state store) and named by generation and content hash; a small
//! unencrypted pointer names the current one and is the only object ever replaced, by
//! compare-and-swap, last.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::PipelineError;
use crate::Error;
use crate::cdc::{KeySpec, TableSchema};

/// The manifest format this build writes and reads.
pub const MANIFEST_FORMAT: &str = "cipherflow-manifest/1";
/// The pointer format.
pub const POINTER_FORMAT: &str = "cipherflow-pointer/1";

/// One generation of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    /// The table's name.
    pub table: String,
    /// Increases by one with every published step; a consumer refuses to go back.
    pub generation: u64,
    /// The table's columns.
    pub columns: Vec<String>,
    /// The key, as `name:type,...` (see [`KeySpec::parse_list`]).
    pub key: String,
    /// The bytes that mean null.
    pub null: String,
    /// Per key partition (index = partition number), its base and runs.
    pub partitions: Vec<Partition>,
    /// The landed objects applied so far, sorted by object key.
    pub applied: Vec<Applied>,
}

/// One key partition: an optional compacted base and the runs written since.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// The compacted base, if the partition was ever compacted.
    pub base: Option<Base>,
    /// Runs after the base, in sequence order.
    pub runs: Vec<RunRef>,
}

/// A compacted partition: every run up to and including sequence `through`, merged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Base {
    /// Hex SHA-256 of the base's plaintext (a run).
    pub id: String,
    /// The last run sequence it includes.
    pub through: u64,
    /// Plaintext size in bytes.
    pub size: u64,
}

/// A delta run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRef {
    /// Sequence within the partition, from 1.
    pub seq: u64,
    /// Hex SHA-256 of the run's plaintext.
    pub id: String,
    /// Plaintext size in bytes.
    pub size: u64,
}

/// A landed object that was applied.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Applied {
    /// Its key in the landing store.
    pub object: String,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
    /// Its size.
    pub size: u64,
}

/// The pointer to the current manifest: the one object that is replaced (by compare-and-swap).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pointer {
    /// [`POINTER_FORMAT`].
    pub format: String,
    /// The current generation.
    pub generation: u64,
    /// Hex SHA-256 of the current manifest's plaintext.
    pub manifest: String,
}

impl Manifest {
    /// Generation 0 of a table: no partitions written, nothing applied.
    pub fn empty(table: &str, schema: &TableSchema, key: &str, partitions: u32) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT.into(),
            table: table.into(),
            generation: 0,
            columns: schema.columns().to_vec(),
            key: key.into(),
            null: String::from_utf8_lossy(schema.null()).into_owned(),
            partitions: vec![Partition::default(); partitions as usize],
            applied: Vec::new(),
        }
    }

    /// The canonical bytes (compact JSON in field order) and their hex SHA-256.
    pub fn encode(&self) -> (Vec<u8>, String) {
        let bytes = serde_json::to_vec(self).expect("a manifest always serialises");
        let hash = hex::encode(Sha256::digest(&bytes));
        (bytes, hash)
    }

    /// Parses a manifest whose plaintext must hash to `expected` (hex); checks its form.
    pub fn decode(object: &str, bytes: &[u8], expected: &str) -> Result<Manifest, Error> {
        let bad = |reason: String| PipelineError::Manifest {
            object: object.into(),
            reason,
        };
        let found = hex::encode(Sha256::digest(bytes));
        if found != expected {
            return Err(PipelineError::Mismatch {
                object: object.into(),
                expected: expected.into(),
                found,
            }
            .into());
        }
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("malformed: {e}")))?;
        if manifest.format != MANIFEST_FORMAT {
            let format = &manifest.format;
            return Err(bad(format!(
                "format {format:?}, this build reads {MANIFEST_FORMAT:?}"
            ))
            .into());
        }
        if manifest.partitions.is_empty() {
            return Err(bad("no partitions".into()).into());
        }
        manifest.schema().map_err(|e| bad(e.to_string()))?;
        Ok(manifest)
    }

    /// The table schema the manifest describes.
    pub fn schema(&self) -> Result<TableSchema, String> {
        let key = KeySpec::parse_list(&self.key).map_err(|e| format!("key {:?}: {e}", self.key))?;
        let schema = TableSchema::new(self.columns.clone(), &key).map_err(|e| e.to_string())?;
        Ok(schema.with_null(self.null.as_bytes()))
    }

    /// Whether the landed object `object` with hex SHA-256 `sha256` was applied.
    pub fn is_applied(&self, object: &str, sha256: &str) -> bool {
        let start = self.applied.partition_point(|a| a.object.as_str() < object);
        self.applied[start..]
            .iter()
            .take_while(|a| a.object == object)
            .any(|a| a.sha256 == sha256)
    }
}

impl Pointer {
    /// Parses a pointer.
    pub fn decode(object: &str, bytes: &[u8]) -> Result<Pointer, Error> {
        let bad = |reason: String| PipelineError::Manifest {
            object: object.into(),
            reason,
        };
        let pointer: Pointer =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("malformed pointer: {e}")))?;
        let hex_ok = pointer.manifest.len() == 64
            && pointer
                .manifest
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if pointer.format != POINTER_FORMAT || !hex_ok {
            return Err(bad("not a cipherflow-pointer/1".into()).into());
        }
        Ok(pointer)
    }

    /// The pointer's bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a pointer always serialises")
    }
}
