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
//! format = "dms"               # AWS DMS CSV (default), "debezium" (JSON lines), or "records"
//! # schema = "readings.toml"   # records only: the record schema (docs/RECORDS.md)
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
//! [keys]                       # files, or a name the caller resolves (kms:alias/...)
//! recipients = ["keys/alice.pub.pem", "keys/bob.pub.pem"]
//! state_public = "keys/state.pub.pem"
//! state_private = "keys/state.pem"
//! signer = "keys/signer.pem"   # optional: sign everything written
//!
//! [compaction]
//! max_runs = 8                 # compact a partition with more runs than this
//! ```
//!
//! With `format = "records"` and `schema = "PATH.toml"` (a record schema, docs/RECORDS.md),
//! `[table] columns` and `key` may be left out: the table is the schema's, and given, they
//! must be the schema's.
//!
//! A name in `[stores]` or `[keys]` with a scheme (`s3://bucket/prefix`, `kms:alias/x`) is
//! not a local path: a [`Resolver`] the caller passes opens it (cipherflow-aws has one for S3
//! and KMS), so the core never depends on a cloud SDK. A scheme no resolver claims is a
//! configuration error, never a file name.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::{InputFormat, Keys, Location, Pipeline, PipelineError, Stores, Table};
use crate::cdc::{DebeziumOptions, DmsOptions, KeySpec, TableSchema};
use crate::ledger::Actor;
use crate::records::{RecordSchema, RecordsError};
use crate::store::{LocalStore, ObjectStore};
use crate::{
    Error, KeyUnwrapper, KeyWrapper, RsaPrivateKey, RsaPublicKey, Signer, SigningKey, Verifier,
};

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
    /// Columns, in order. With `format = "records"` they may be left out (empty): they are
    /// the record schema's; given, they must be the same.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Key columns with types. With `format = "records"` it may be left out (empty), as
    /// `columns`.
    #[serde(default)]
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
    /// `dms` (default), `debezium` or `records`.
    #[serde(default)]
    pub format: FormatName,
    /// `records`: the record schema file (relative to the configuration file), or a name
    /// with a scheme that the [`Resolver`] reads ([`Resolver::text`]).
    pub schema: Option<String>,
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
    /// Validated records (JSON, JSON lines or CSV by extension) under `[input] schema`, each
    /// an upsert ordered by the schema's version field (docs/RECORDS.md).
    Records,
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

/// `[keys]`: key files (relative to the configuration file), or names a [`Resolver`] opens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// Consumers' RSA public keys.
    pub recipients: Vec<String>,
    /// The pipeline's own RSA public key (seals the state).
    pub state_public: String,
    /// Its private key (opens the state).
    pub state_private: String,
    /// A signing key (P-256 or RSA), optional.
    pub signer: Option<String>,
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

/// Opens the names in `[stores]` and `[keys]` that are not local paths (`s3://...`,
/// `kms:...`). Each method answers `None` for a name it does not claim; the configuration then
/// opens it as a local folder or key file, or refuses it if it has a scheme.
///
/// A closure `Fn(&str) -> Result<Option<Arc<dyn ObjectStore>>, Error>` is a resolver of
/// stores only.
pub trait Resolver {
    /// A store named in `[stores]`.
    fn store(&self, name: &str) -> Result<Option<Arc<dyn ObjectStore>>, Error> {
        let _ = name;
        Ok(None)
    }

    /// A public key that wraps data keys: a recipient, or the state's public key.
    fn wrapper(&self, name: &str) -> Result<Option<Arc<dyn KeyWrapper>>, Error> {
        let _ = name;
        Ok(None)
    }

    /// The state's private key, which unwraps them.
    fn unwrapper(&self, name: &str) -> Result<Option<Arc<dyn KeyUnwrapper>>, Error> {
        let _ = name;
        Ok(None)
    }

    /// A signing key, with the verifier of its signatures.
    fn signer(&self, name: &str) -> Result<Option<ResolvedSigner>, Error> {
        let _ = name;
        Ok(None)
    }

    /// The text of a file named in the configuration (`[input] schema`).
    fn text(&self, name: &str) -> Result<Option<String>, Error> {
        let _ = name;
        Ok(None)
    }
}

/// A signing key and the verifier of its signatures, as a [`Resolver`] opens them.
pub type ResolvedSigner = (Arc<dyn Signer>, Arc<dyn Verifier>);

impl<F> Resolver for F
where
    F: Fn(&str) -> Result<Option<Arc<dyn ObjectStore>>, Error>,
{
    fn store(&self, name: &str) -> Result<Option<Arc<dyn ObjectStore>>, Error> {
        self(name)
    }
}

/// The scheme of a name like `kms:alias/x` or `s3://bucket` (two or more letters, digits or
/// `+-.` before the first `:`; a one-letter "scheme" is a Windows drive).
fn scheme(name: &str) -> Option<&str> {
    let (scheme, _) = name.split_once(':')?;
    let valid = scheme.len() >= 2
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

impl PipelineConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<PipelineConfig, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| config_error(path, e.to_string()))?;
        PipelineConfig::parse(&text, path)
    }

    /// Parses and checks the text of a configuration read from elsewhere (an S3 object);
    /// `source` names it in errors, and local paths in it are relative to its folder.
    pub fn parse(text: &str, source: &Path) -> Result<PipelineConfig, Error> {
        let config: PipelineConfig =
            toml::from_str(text).map_err(|e| config_error(source, e.to_string()))?;
        config.check_input(source)?;
        // A records table is checked against its schema when the pipeline is built (the
        // schema may be a name only the resolver opens).
        if config.input.format != FormatName::Records {
            config.table(source, None)?;
        }
        Ok(config)
    }

    /// The `[input]` settings that apply to the format, and only those.
    fn check_input(&self, path: &Path) -> Result<(), Error> {
        let i = &self.input;
        let bad = |reason: String| Err(config_error(path, reason));
        if i.format == FormatName::Records {
            if i.schema.is_none() {
                return bad("format = \"records\" needs schema = \"PATH.toml\" in [input]".into());
            }
            for (set, name) in [
                (i.sequence_column.is_some(), "sequence_column"),
                (i.timestamp_column.is_some(), "timestamp_column"),
                (i.no_sup_value.is_some(), "no_sup_value"),
                (i.debezium_table.is_some(), "debezium_table"),
            ] {
                if set {
                    return bad(format!(
                        "input.{name} does not apply to format = \"records\" (records are \
                         ordered by the schema's version field)"
                    ));
                }
            }
        } else if i.schema.is_some() {
            return bad("input.schema applies only to format = \"records\"".into());
        }
        Ok(())
    }

    /// Every name in `[stores]`, `[keys]` and `[input] schema` (for a caller that must check
    /// where they point, such as a Lambda function that has no local files).
    pub fn names(&self) -> Vec<&str> {
        let s = &self.stores;
        let k = &self.keys;
        let mut names = vec![&*s.landing, &*s.state, &*s.share, &*s.ledger];
        names.extend(self.input.schema.as_deref());
        names.extend(k.recipients.iter().map(String::as_str));
        names.extend([&*k.state_public, &*k.state_private]);
        names.extend(k.signer.as_deref());
        names
    }

    /// The table: from `[table]`, or for a records input, the record schema's
    /// ([`RecordSchema::table_schema`]); `[table]` columns and key, when given, must be the
    /// schema's.
    fn table(&self, path: &Path, records: Option<&RecordSchema>) -> Result<Table, Error> {
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
        let (schema, key) = match records {
            None => {
                if t.columns.is_empty() || t.key.is_empty() {
                    return Err(bad("table.columns and table.key are required".into()));
                }
                let key = KeySpec::parse_list(&t.key).map_err(|e| bad(format!("key: {e}")))?;
                let schema = TableSchema::new(t.columns.clone(), &key)
                    .map_err(|e| bad(format!("table: {e}")))?
                    .with_null(t.null.as_bytes());
                (schema, t.key.clone())
            }
            Some(records) => records_table(t, records).map_err(bad)?,
        };
        Ok(Table {
            name: t.name.clone(),
            schema,
            key,
            partitions: t.partitions,
        })
    }

    /// The record schema named by `[input] schema`: read through `resolve` when it claims the
    /// name, else a file relative to the configuration's folder.
    fn record_schema(
        &self,
        path: &Path,
        resolve: Option<&dyn Resolver>,
    ) -> Result<RecordSchema, Error> {
        let name = self.input.schema.as_deref().unwrap_or_default();
        let bad = |reason: String| config_error(path, format!("input.schema {name:?}: {reason}"));
        let text = match resolve {
            Some(resolve) => resolve.text(name)?,
            None => None,
        };
        let parsed = match text {
            Some(text) => RecordSchema::from_toml(&text),
            None => {
                if let Some(scheme) = scheme(name) {
                    return Err(bad(format!("nothing here opens {scheme}: names")));
                }
                let base = path.parent().unwrap_or(Path::new("."));
                RecordSchema::load(&base.join(name))
            }
        };
        parsed.map_err(|e| match e {
            RecordsError::Schema(m) => bad(m),
            other => bad(other.to_string()),
        })
    }

    /// Builds the pipeline: opens the stores and keys (local folders and files relative to
    /// the file's folder, unless `resolve` claims the name).
    pub fn pipeline(&self, path: &Path, resolve: Option<&dyn Resolver>) -> Result<Pipeline, Error> {
        let base = path.parent().unwrap_or(Path::new("."));
        let unclaimed = |name: &str, what: &str| -> Result<(), Error> {
            match scheme(name) {
                Some(scheme) => Err(config_error(
                    path,
                    format!(
                        "{what} {name:?}: nothing here opens {scheme}: names \
                         (for kms: and s3://, build cipherflow with AWS support)"
                    ),
                )),
                None => Ok(()),
            }
        };
        let open = |name: &str| -> Result<Location, Error> {
            if let Some(resolve) = resolve
                && let Some(store) = resolve.store(name)?
            {
                return Ok(Location::new(store, ""));
            }
            unclaimed(name, "store")?;
            let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(base.join(name))?);
            Ok(Location::new(store, ""))
        };
        let stores = Stores {
            landing: Location::new(open(&self.stores.landing)?.store, &self.input.prefix),
            state: open(&self.stores.state)?,
            share: open(&self.stores.share)?,
            ledger: open(&self.stores.ledger)?,
        };
        let wrapper = |name: &str| -> Result<Arc<dyn KeyWrapper>, Error> {
            if let Some(resolve) = resolve
                && let Some(key) = resolve.wrapper(name)?
            {
                return Ok(key);
            }
            unclaimed(name, "key")?;
            Ok(Arc::new(load_public_key(&base.join(name))?))
        };
        let k = &self.keys;
        if k.recipients.is_empty() {
            return Err(config_error(path, "keys.recipients is empty".into()));
        }
        let recipients = k
            .recipients
            .iter()
            .map(|name| wrapper(name))
            .collect::<Result<Vec<_>, Error>>()?;
        let state_public = wrapper(&k.state_public)?;
        let resolved = match resolve {
            Some(resolve) => resolve.unwrapper(&k.state_private)?,
            None => None,
        };
        let state_private: Arc<dyn KeyUnwrapper> = match resolved {
            Some(key) => key,
            None => {
                unclaimed(&k.state_private, "key")?;
                Arc::new(load_private_key(&base.join(&k.state_private))?)
            }
        };
        if state_private.key_id() != state_public.key_id() {
            return Err(config_error(
                path,
                "keys.state_public is not the public half of keys.state_private".into(),
            ));
        }
        let signer: Option<ResolvedSigner> = match &k.signer {
            None => None,
            Some(name) => {
                let resolved = match resolve {
                    Some(resolve) => resolve.signer(name)?,
                    None => None,
                };
                match resolved {
                    Some(found) => Some(found),
                    None => {
                        unclaimed(name, "key")?;
                        let key = read_key_file(&base.join(name), SigningKey::from_bytes)?;
                        let verifier = Arc::new(key.verifying_key().clone()) as Arc<dyn Verifier>;
                        Some((Arc::new(key) as Arc<dyn Signer>, verifier))
                    }
                }
            }
        };
        let (signer, state_verifier) = match signer {
            Some((signer, verifier)) => (Some(signer), Some(verifier)),
            None => (None, None),
        };
        let records = match self.input.format {
            FormatName::Records => Some(Arc::new(self.record_schema(path, resolve)?)),
            _ => None,
        };
        let table = self.table(path, records.as_deref())?;
        let input = &self.input;
        let input = match input.format {
            FormatName::Records => InputFormat::Records(records.expect("loaded above")),
            FormatName::Dms => InputFormat::Dms(DmsOptions {
                seq_column: input.sequence_column.clone(),
                timestamp_column: input.timestamp_column.clone(),
                no_sup_value: input.no_sup_value.as_ref().map(|s| s.as_bytes().to_vec()),
                added_columns: true,
                ..DmsOptions::default()
            }),
            FormatName::Debezium => InputFormat::Debezium(DebeziumOptions {
                table: input.debezium_table.clone(),
                ..DebeziumOptions::default()
            }),
        };
        Ok(Pipeline {
            table,
            stores,
            keys: Keys {
                recipients,
                state_seal: state_public,
                state_open: state_private,
                signer,
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
pub fn local_principal() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("local:{user}")
}

/// The table of a records input: the schema's columns and typed key (written `name:type,...`
/// with every type explicit, so the manifest's key does not depend on how `[table]` spelt
/// it); `[table]` columns and key, where given, must say the same.
fn records_table(t: &TableConfig, records: &RecordSchema) -> Result<(TableSchema, String), String> {
    let schema = records.table_schema();
    if !t.columns.is_empty() && t.columns != schema.columns() {
        return Err(format!(
            "table.columns {:?} are not the record schema's columns {:?} (leave table.columns \
             out to take them from the schema)",
            t.columns,
            schema.columns()
        ));
    }
    let specs = schema.key_specs();
    let key = KeySpec::list_text(&specs);
    if !t.key.is_empty() && KeySpec::parse_list(&t.key).ok().as_ref() != Some(&specs) {
        return Err(format!(
            "table.key {:?} is not the record schema's key {key:?} (leave table.key out to take \
             it from the schema)",
            t.key
        ));
    }
    if !t.null.is_empty() {
        return Err(format!(
            "table.null = {:?}: a records table's null is the empty field; leave table.null out",
            t.null
        ));
    }
    Ok((schema, key))
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
