//! The record schema, loaded from TOML: columns with types and rules, the primary key, the
//! optional version column, and what to do with unknown fields. One schema serves validation
//! and the merge engine ([`RecordSchema::table_schema`]).

use std::fmt;
use std::path::Path;

use regex::Regex;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

use super::RecordsError;
use super::value::{DecimalRef, Rfc3339};
use crate::cdc::{KeySpec, KeyType, TableSchema};

/// The type of a record column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// UTF-8 text.
    String,
    /// A signed 64-bit integer.
    Int64,
    /// An exact decimal number, kept as its text.
    Decimal,
    /// An RFC 3339 timestamp with offset.
    Timestamp,
    /// `true` or `false`.
    Bool,
}

impl ColumnType {
    /// The name used in the schema file.
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Int64 => "int64",
            ColumnType::Decimal => "decimal",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Bool => "bool",
        }
    }

    fn parse(s: &str) -> Option<ColumnType> {
        Some(match s {
            "string" => ColumnType::String,
            "int64" => ColumnType::Int64,
            "decimal" => ColumnType::Decimal,
            "timestamp" => ColumnType::Timestamp,
            "bool" => ColumnType::Bool,
            _ => return None,
        })
    }
}

/// What to do with a field the schema does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Extra {
    /// Refuse the record (the default: a misspelt field name does not go unnoticed).
    #[default]
    Error,
    /// Drop the field.
    Ignore,
}

/// A bound of `min`/`max`, in the column's own type.
#[derive(Debug, Clone)]
pub(crate) enum Bound {
    Int(i64),
    /// Decimal text as written in the schema (underscores removed); compared exactly.
    Decimal(String),
    Timestamp(Rfc3339),
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Int(v) => write!(f, "{v}"),
            Bound::Decimal(d) => f.write_str(d),
            Bound::Timestamp(t) => f.write_str(t.text()),
        }
    }
}

/// An enumeration of allowed values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Allowed {
    Strings(Vec<String>),
    Ints(Vec<i64>),
}

/// One column: name, type, whether it may be null, and its rules.
#[derive(Debug, Clone)]
pub struct Column {
    name: String,
    ty: ColumnType,
    nullable: bool,
    pub(crate) pattern: Option<Regex>,
    pub(crate) min: Option<Bound>,
    pub(crate) max: Option<Bound>,
    pub(crate) values: Option<Allowed>,
    pub(crate) max_length: Option<usize>,
}

impl Column {
    /// The column's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its type.
    pub fn ty(&self) -> ColumnType {
        self.ty
    }

    /// Whether the field may be null or absent.
    pub fn nullable(&self) -> bool {
        self.nullable
    }
}

impl PartialEq for Column {
    /// The same name, type, nullability and rules (patterns by their text, bounds by the
    /// text they were written as).
    fn eq(&self, other: &Column) -> bool {
        let text = |b: &Option<Bound>| b.as_ref().map(ToString::to_string);
        self.name == other.name
            && self.ty == other.ty
            && self.nullable == other.nullable
            && self.pattern.as_ref().map(Regex::as_str) == other.pattern.as_ref().map(Regex::as_str)
            && text(&self.min) == text(&other.min)
            && text(&self.max) == text(&other.max)
            && self.values == other.values
            && self.max_length == other.max_length
    }
}

/// A validated record schema. Two schemas are equal when they validate alike: the same name,
/// columns in the same order with the same rules, key, version and `extra`.
#[derive(Debug, Clone)]
pub struct RecordSchema {
    name: String,
    columns: Vec<Column>,
    key: Vec<usize>,
    version: Option<usize>,
    extra: Extra,
    table: TableSchema,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFile {
    name: String,
    key: Vec<String>,
    version: Option<String>,
    extra: Option<String>,
    columns: ColumnsFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnFile {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    nullable: bool,
    pattern: Option<String>,
    min: Option<toml::Spanned<toml::Value>>,
    max: Option<toml::Spanned<toml::Value>>,
    values: Option<Vec<toml::Value>>,
    max_length: Option<u64>,
}

/// `[columns.*]` in declaration order (the toml crate's `preserve_order` keeps it).
struct ColumnsFile(Vec<(String, ColumnFile)>);

impl<'de> Deserialize<'de> for ColumnsFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ColumnsFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of columns")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ColumnsFile, A::Error> {
                let mut out = Vec::new();
                while let Some((name, column)) = map.next_entry::<String, ColumnFile>()? {
                    out.push((name, column));
                }
                Ok(ColumnsFile(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl PartialEq for RecordSchema {
    fn eq(&self, other: &RecordSchema) -> bool {
        self.name == other.name
            && self.columns == other.columns
            && self.key == other.key
            && self.version == other.version
            && self.extra == other.extra
    }
}

impl RecordSchema {
    /// Parses and checks a schema file's text (format in `docs/RECORDS.md`).
    pub fn from_toml(text: &str) -> Result<RecordSchema, RecordsError> {
        let file: SchemaFile =
            toml::from_str(text).map_err(|e| RecordsError::Schema(e.to_string()))?;
        let bad = |msg: String| RecordsError::Schema(msg);
        if file.name.is_empty() {
            return Err(bad("name is empty".into()));
        }
        let extra = match file.extra.as_deref() {
            None | Some("error") => Extra::Error,
            Some("ignore") => Extra::Ignore,
            Some(other) => {
                return Err(bad(format!(
                    "extra = {other:?}: expected \"error\" or \"ignore\""
                )));
            }
        };
        if file.columns.0.is_empty() {
            return Err(bad("no columns".into()));
        }
        let columns = file
            .columns
            .0
            .into_iter()
            .map(|(name, c)| {
                column(text, &name, c).map_err(|m| bad(format!("column {name:?}: {m}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let index = |name: &str, what: &str| {
            columns
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| bad(format!("{what} {name:?} is not a column")))
        };
        if file.key.is_empty() {
            return Err(bad("key is empty: name at least one key column".into()));
        }
        let mut key = Vec::with_capacity(file.key.len());
        for name in &file.key {
            let i = index(name, "key column")?;
            if key.contains(&i) {
                return Err(bad(format!("key column {name:?} is named twice")));
            }
            let c = &columns[i];
            if c.nullable {
                return Err(bad(format!("key column {name:?} cannot be nullable")));
            }
            if c.ty == ColumnType::Bool {
                return Err(bad(format!("key column {name:?} cannot be a bool")));
            }
            key.push(i);
        }
        let version = match &file.version {
            None => None,
            Some(name) => {
                let i = index(name, "version")?;
                let c = &columns[i];
                if !matches!(c.ty, ColumnType::Int64 | ColumnType::Timestamp) {
                    return Err(bad(format!(
                        "version column {name:?} is a {}: it must be an int64 or a timestamp",
                        c.ty.name()
                    )));
                }
                if c.nullable {
                    return Err(bad(format!("version column {name:?} cannot be nullable")));
                }
                Some(i)
            }
        };
        let specs: Vec<KeySpec> = key
            .iter()
            .map(|&i| KeySpec {
                name: columns[i].name.clone(),
                ty: match columns[i].ty {
                    ColumnType::Int64 => KeyType::Int64,
                    ColumnType::Decimal => KeyType::Decimal,
                    ColumnType::Timestamp => KeyType::Timestamp,
                    ColumnType::String | ColumnType::Bool => KeyType::String,
                },
            })
            .collect();
        let table = TableSchema::new(columns.iter().map(|c| c.name.clone()).collect(), &specs)
            .map_err(|e| bad(e.to_string()))?;
        Ok(RecordSchema {
            name: file.name,
            columns,
            key,
            version,
            extra,
            table,
        })
    }

    /// Reads and parses a schema file.
    pub fn load(path: &Path) -> Result<RecordSchema, RecordsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RecordsError::Schema(format!("cannot read {}: {e}", path.display())))?;
        RecordSchema::from_toml(&text).map_err(|e| match e {
            RecordsError::Schema(m) => RecordsError::Schema(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// The table name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The columns, in declaration order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The key columns (indices into [`RecordSchema::columns`]), in key order.
    pub fn key(&self) -> &[usize] {
        &self.key
    }

    /// The version column, if the schema has one.
    pub fn version(&self) -> Option<usize> {
        self.version
    }

    /// What happens to unknown fields.
    pub fn extra(&self) -> Extra {
        self.extra
    }

    /// Index of a column by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The merge engine's view: the columns in declaration order, the key with its types
    /// (a timestamp key is a [`KeyType::Timestamp`] holding the UTC instant), null = empty.
    pub fn table_schema(&self) -> TableSchema {
        self.table.clone()
    }
}

fn column(source: &str, name: &str, c: ColumnFile) -> Result<Column, String> {
    if name.is_empty() {
        return Err("empty column name".into());
    }
    let ty = ColumnType::parse(&c.ty).ok_or_else(|| {
        format!(
            "unknown type {:?} (expected string, int64, decimal, timestamp or bool)",
            c.ty
        )
    })?;
    let only = |rule: &str, types: &[ColumnType]| -> Result<(), String> {
        if types.contains(&ty) {
            Ok(())
        } else {
            Err(format!("{rule} does not apply to a {} column", ty.name()))
        }
    };
    let pattern = match c.pattern {
        None => None,
        Some(p) => {
            only("pattern", &[ColumnType::String])?;
            Some(Regex::new(&p).map_err(|e| format!("pattern {p:?} is not a valid regex: {e}"))?)
        }
    };
    let max_length = match c.max_length {
        None => None,
        Some(n) => {
            only("max_length", &[ColumnType::String])?;
            Some(usize::try_from(n).map_err(|_| "max_length is too large".to_string())?)
        }
    };
    let bound =
        |what: &str, v: Option<toml::Spanned<toml::Value>>| -> Result<Option<Bound>, String> {
            let Some(v) = v else { return Ok(None) };
            only(
                what,
                &[
                    ColumnType::Int64,
                    ColumnType::Decimal,
                    ColumnType::Timestamp,
                ],
            )?;
            let literal = source.get(v.span()).unwrap_or_default().replace('_', "");
            bound(ty, what, v.into_inner(), &literal).map(Some)
        };
    let min = bound("min", c.min)?;
    let max = bound("max", c.max)?;
    let values = match c.values {
        None => None,
        Some(list) => {
            only("values", &[ColumnType::String, ColumnType::Int64])?;
            if list.is_empty() {
                return Err("values is empty".into());
            }
            Some(match ty {
                ColumnType::String => Allowed::Strings(
                    list.into_iter()
                        .map(|v| match v {
                            toml::Value::String(s) => Ok(s),
                            other => Err(format!("values: {other} is not a string")),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                _ => Allowed::Ints(
                    list.into_iter()
                        .map(|v| match v {
                            toml::Value::Integer(i) => Ok(i),
                            other => Err(format!("values: {other} is not an integer")),
                        })
                        .collect::<Result<_, _>>()?,
                ),
            })
        }
    };
    Ok(Column {
        name: name.to_owned(),
        ty,
        nullable: c.nullable,
        pattern,
        min,
        max,
        values,
        max_length,
    })
}

/// A `min`/`max` of a column of type `ty`: `literal` is the value's text in the schema file,
/// which is what a float is read from (never through `f64`).
fn bound(ty: ColumnType, what: &str, v: toml::Value, literal: &str) -> Result<Bound, String> {
    match (ty, v) {
        (ColumnType::Int64, toml::Value::Integer(i)) => Ok(Bound::Int(i)),
        (ColumnType::Int64, toml::Value::String(s)) => s
            .parse()
            .map(Bound::Int)
            .map_err(|_| format!("{what} {s:?} is not a 64-bit integer")),
        (ColumnType::Decimal, toml::Value::Integer(i)) => Ok(Bound::Decimal(i.to_string())),
        (ColumnType::Decimal, toml::Value::String(s)) => match DecimalRef::parse(&s) {
            Some(_) => Ok(Bound::Decimal(s)),
            None => Err(format!("{what} {s:?} is not a plain decimal number")),
        },
        (ColumnType::Decimal, toml::Value::Float(_)) => match DecimalRef::parse(literal) {
            Some(_) => Ok(Bound::Decimal(literal.to_owned())),
            None => Err(format!(
                "{what} {literal} is not a plain decimal: write it as a quoted decimal, \
                 e.g. {what} = \"0.25\""
            )),
        },
        (ColumnType::Timestamp, toml::Value::Datetime(_)) => Rfc3339::parse(literal)
            .map(Bound::Timestamp)
            .ok_or_else(|| format!("{what} {literal} is not an RFC 3339 timestamp with offset")),
        (ColumnType::Timestamp, toml::Value::String(s)) => Rfc3339::parse(&s)
            .map(Bound::Timestamp)
            .ok_or_else(|| format!("{what} {s:?} is not an RFC 3339 timestamp with offset")),
        (ty, v) => Err(format!(
            "{what} {v} does not fit a {} column (int64: an integer; decimal: an integer, \
             a decimal or a quoted decimal; timestamp: a quoted RFC 3339 timestamp)",
            ty.name()
        )),
    }
}
