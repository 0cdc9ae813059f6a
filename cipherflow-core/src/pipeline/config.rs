//! `pipeline.toml`: one table, its stores and keys. Paths are relative to the file.
//!
//! ```toml
//! [table]
//! name = "customers"
//! columns = ["id", "name", "balance"]
//! key = "id:int64"             # name:type,... (string, int64, decimal, timestamp)
//! partitions = 8               # fixed once the table is published
//! null = ""                    # DMS CsvNullValue
//!
//! [input]                      # change files under the landing store
//! format = "dms"               # AWS DMS CSV (default), or "debezium" (JSON lines)
//! prefix = "dbo/customers/"
//! sequence_column = "AR_H_CHANGE_SEQ"   # optional
//! timestamp_column = "commit_ts"        # optional (DMS TimestampColumnName)
//! no_sup_value = "~"                    # optional (DMS CsvNoSupValue)
//! # debezium_table = "customers"        # optional: only events of this source.table
//!
//! [stores]                     # folders, or another scheme the caller resolves (s3://...)
//! landing = "landing"
//! state = "state"
//! share = "share"
//! ledger = "ledger"
//!
//! [keys]
//! recipients = ["keys/alice.pub.pem", "keys/bob.pub.pem"]
//! state_public = "keys/state.pub.pem"
//! state_private = "keys/state.pem"
//! signer = "keys/signer.pem"   # optional: sign everything written
//!
//! [compaction]
//! max_runs = 8                 # compact a partition with more runs than this
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::{InputFormat, Keys, Location, Pipeline, PipelineError, Stores, Table};
use crate::cdc::{DebeziumOptions, DmsOptions, KeySpec, TableSchema};
use crate::ledger::Actor;
use crate::store::{LocalStore, ObjectStore};
use crate::{Error, RsaPrivateKey, RsaPublicKey, SigningKey, Verifier};

/// The parsed file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// The table.
    pub table: TableConfig,
    /// How landed files are read.
    #[serde(default)]
    pub input: InputConfig,
    /// The four stores.
    pub stores: StoresConfig,
    /// Key files.
    pub keys: KeysConfig,
    /// Compaction.
    #[serde(default)]
    pub compaction: CompactionConfig,
}

/// `[table]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// Name: one object-key segment.
    pub name: String,
    /// Columns, in order.
    pub columns: Vec<String>,
    /// Key columns with types.
    pub key: String,
    /// Key partitions.
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// Null's bytes.
    #[serde(default)]
    pub null: String,
}

/// `[input]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// `dms` (default) or `debezium`.
    #[serde(default)]
    pub format: FormatName,
    /// Debezium: only events whose `source.table` is this.
    pub debezium_table: Option<String>,
    /// Landing prefix for this table.
    #[serde(default)]
    pub prefix: String,
    /// The change sequence column.
    pub sequence_column: Option<String>,
    /// The commit timestamp column.
    pub timestamp_column: Option<String>,
    /// The keep-old-value sentinel.
    pub no_sup_value: Option<String>,
}

/// The input formats by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FormatName {
    /// AWS DMS CSV.
    #[default]
    Dms,
    /// Debezium JSON lines.
    Debezium,
}

/// `[stores]`: where each store is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoresConfig {
    /// Landed CDC files.
    pub landing: String,
    /// The pipeline's private state.
    pub state: String,
    /// What consumers read.
    pub share: String,
    /// The ledger.
    pub ledger: String,
}

/// `[keys]`: key files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// Consumers' RSA public keys.
    pub recipients: Vec<PathBuf>,
    /// The pipeline's own RSA public key (seals the state).
    pub state_public: PathBuf,
    /// Its private key (opens the state).
    pub state_private: PathBuf,
    /// A signing key (P-256 or RSA), optional.
    pub signer: Option<PathBuf>,
}

/// `[compaction]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompactionConfig {
    /// A partition with more runs than this is compacted.
    #[serde(default = "default_max_runs")]
    pub max_runs: usize,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            max_runs: default_max_runs(),
        }
    }
}

fn default_partitions() -> u32 {
    8
}

fn default_max_runs() -> usize {
    8
}

/// Opens a store named in `[stores]`; the default opens local folders.
pub type StoreResolver<'a> = &'a dyn Fn(&str) -> Result<Option<Arc<dyn ObjectStore>>, Error>;

impl PipelineConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<PipelineConfig, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| config_error(path, e.to_string()))?;
        let config: PipelineConfig =
            toml::from_str(&text).map_err(|e| config_error(path, e.to_string()))?;
        config.table(path)?;
        Ok(config)
    }

    fn table(&self, path: &Path) -> Result<Table, Error> {
        let t = &self.table;
        let bad = |reason: String| config_error(path, reason);
        if t.name.is_empty() || t.name.contains(['/', '\\']) || t.name.starts_with('.') {
            return Err(bad(format!(
                "table name {:?} must be one plain key segment",
                t.name
            )));
        }
        if !(1..=4096).contains(&t.partitions) {
            return Err(bad(format!(
                "partitions = {}, must be 1 to 4096",
                t.partitions
            )));
        }
        let key = KeySpec::parse_list(&t.key).map_err(|e| bad(format!("key: {e}")))?;
        let schema = TableSchema::new(t.columns.clone(), &key)
            .map_err(|e| bad(format!("table: {e}")))?
            .with_null(t.null.as_bytes());
        Ok(Table {
            name: t.name.clone(),
            schema,
            key: t.key.clone(),
            partitions: t.partitions,
        })
    }

    /// Builds the pipeline: loads the keys, opens the stores (folders relative to the file's
    /// folder `base`, unless `resolve` claims the name).
    pub fn pipeline(
        &self,
        path: &Path,
        resolve: Option<StoreResolver<'_>>,
    ) -> Result<Pipeline, Error> {
        let base = path.parent().unwrap_or(Path::new("."));
        let open = |name: &str| -> Result<Location, Error> {
            if let Some(resolve) = resolve
                && let Some(store) = resolve(name)?
            {
                return Ok(Location::new(store, ""));
            }
            let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(base.join(name))?);
            Ok(Location::new(store, ""))
        };
        let stores = Stores {
            landing: Location::new(open(&self.stores.landing)?.store, &self.input.prefix),
            state: open(&self.stores.state)?,
            share: open(&self.stores.share)?,
            ledger: open(&self.stores.ledger)?,
        };
        let k = &self.keys;
        if k.recipients.is_empty() {
            return Err(config_error(path, "keys.recipients is empty".into()));
        }
        let mut recipients: Vec<Arc<dyn crate::KeyWrapper>> = Vec::new();
        for file in &k.recipients {
            recipients.push(Arc::new(load_public_key(&base.join(file))?));
        }
        let state_private = load_private_key(&base.join(&k.state_private))?;
        let state_public = load_public_key(&base.join(&k.state_public))?;
        if state_private.key_id() != state_public.key_id() {
            return Err(config_error(
                path,
                "keys.state_public is not the public half of keys.state_private".into(),
            ));
        }
        let signer = match &k.signer {
            Some(file) => Some(read_key_file(&base.join(file), SigningKey::from_bytes)?),
            None => None,
        };
        let state_verifier = signer
            .as_ref()
            .map(|s| Arc::new(s.verifying_key().clone()) as Arc<dyn Verifier>);
        let input = &self.input;
        let input = match input.format {
            FormatName::Dms => InputFormat::Dms(DmsOptions {
                seq_column: input.sequence_column.clone(),
                timestamp_column: input.timestamp_column.clone(),
                no_sup_value: input.no_sup_value.as_ref().map(|s| s.as_bytes().to_vec()),
                ..DmsOptions::default()
            }),
            FormatName::Debezium => InputFormat::Debezium(DebeziumOptions {
                table: input.debezium_table.clone(),
                ..DebeziumOptions::default()
            }),
        };
        Ok(Pipeline {
            table: self.table(path)?,
            stores,
            keys: Keys {
                recipients,
                state_seal: Arc::new(state_public),
                state_open: Arc::new(state_private),
                signer: signer.map(|s| Arc::new(s) as Arc<dyn crate::Signer>),
                state_verifier,
            },
            input,
            compact_after: self.compaction.max_runs.max(1),
            actor: Actor {
                principal: local_principal(),
                ..Actor::default()
            },
        })
    }
}

/// The local user, as the ledger's principal when no cloud identity is at hand.
fn local_principal() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("local:{user}")
}

fn config_error(path: &Path, reason: String) -> Error {
    PipelineError::Config {
        source_name: path.display().to_string(),
        reason,
    }
    .into()
}

fn read_key_file<T>(path: &Path, parse: fn(&[u8]) -> Result<T, Error>) -> Result<T, Error> {
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(path).map_err(|e| config_error(path, format!("cannot read key: {e}")))?,
    );
    parse(&bytes).map_err(|e| config_error(path, e.to_string()))
}

/// Loads an RSA public key file (PEM or DER), naming the file on error.
pub fn load_public_key(path: &Path) -> Result<RsaPublicKey, Error> {
    read_key_file(path, RsaPublicKey::from_bytes)
}

/// Loads an RSA private key file (PEM or DER), naming the file on error.
pub fn load_private_key(path: &Path) -> Result<RsaPrivateKey, Error> {
    read_key_file(path, RsaPrivateKey::from_bytes)
}
