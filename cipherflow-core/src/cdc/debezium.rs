//! Debezium JSON change events (one per line) read into a [`ChangeBatch`], values kept as the
//! exact JSON text of numbers so that `7308.00` stays `7308.00`.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::value::RawValue;

use super::dms::{Cell, Change, ChangeBatch, Op, Reject, read_error, read_object};
use super::error::{CdcError, CdcErrorKind, ColumnRef, Position};
use super::order::OrderKey;
use super::schema::{TableSchema, Timestamp};

/// How to read Debezium files.
#[derive(Debug, Clone, Default)]
pub struct DebeziumOptions {
    /// Only events whose `source.table` is this; others are skipped (a file mixing tables).
    pub table: Option<String>,
    /// Only events whose `source.schema` is this (PostgreSQL, SQL Server, Oracle).
    pub schema: Option<String>,
    /// Only events whose `source.db` is this (the database; the schema, for MySQL).
    pub database: Option<String>,
    /// A table column missing from an insert's or update's `after` image is
    /// [`Cell::Keep`] instead of an error. Debezium writes full rows, so a missing column
    /// usually means the wrong table; use this for connectors configured to drop columns.
    pub missing_as_keep: bool,
    /// Fields of `after` (or `before`) that are not table columns are ignored instead of
    /// refused ([`CdcErrorKind::UnknownColumn`]).
    pub ignore_unknown: bool,
    /// Reject mode: bad events go to [`ChangeBatch::rejects`] (the line as the only field)
    /// instead of refusing the batch.
    pub reject: bool,
}

/// How `source.lsn` and `transaction.total_order` fold into [`OrderKey::seq`]:
/// `seq = lsn * 2^64 + total_order`, both below 2^64, so it never overflows a u128 and orders
/// by LSN first, then by position in the transaction.
pub const DEBEZIUM_ORDER_SHIFT: u32 = 64;

/// Reads one Debezium JSON-lines object (plain or gzip) of `schema`'s table.
///
/// Each non-blank line is one event: the payload (`before`, `after`, `op`, `source`,
/// `ts_ms`, `transaction`) or the converter's envelope `{"schema": ..., "payload": {...}}`.
/// A line `null` (a Kafka tombstone; also a `null` payload) is skipped. See `docs/MERGE.md`,
/// "Debezium JSON", for the mapping of ops, values and the ordering key.
pub fn read_debezium(
    object: &str,
    input: impl Read,
    schema: &TableSchema,
    options: &DebeziumOptions,
) -> Result<ChangeBatch, CdcError> {
    let object_name: Arc<str> = object.into();
    let ((changes, rejects), sha256) = read_object(object, input, |decoded| {
        let mut input = BufReader::with_capacity(1 << 16, decoded);
        let (mut changes, mut rejects) = (Vec::new(), Vec::new());
        let mut text = Vec::new();
        let mut pos = Position {
            object: object.to_owned(),
            ..Position::default()
        };
        let mut next_byte = 0u64;
        loop {
            text.clear();
            let n = input
                .read_until(b'\n', &mut text)
                .map_err(|e| read_error(pos.clone(), &e))?;
            if n == 0 {
                break;
            }
            pos.line += 1;
            pos.byte = next_byte;
            next_byte += n as u64;
            let line = text.trim_ascii();
            if line.is_empty() {
                continue;
            }
            pos.record += 1;
            let reader = EventReader {
                pos: &pos,
                object: &object_name,
                schema,
                options,
            };
            match reader.event(line) {
                Ok(Some(change)) => changes.push(change),
                Ok(None) => {}
                Err(error) if options.reject => rejects.push(Reject {
                    error,
                    fields: vec![line.to_vec()],
                }),
                Err(error) => return Err(error),
            }
        }
        Ok((changes, rejects))
    })?;
    Ok(ChangeBatch {
        object: object_name,
        sha256,
        changes,
        rejects,
        added_columns: Vec::new(),
    })
}

/// The fields of one event (the payload) that the reader uses; the rest is ignored.
#[derive(Deserialize)]
struct Event {
    before: Option<Box<RawValue>>,
    after: Option<Box<RawValue>>,
    op: Option<Box<RawValue>>,
    source: Option<Box<RawValue>>,
    ts_ms: Option<Box<RawValue>>,
    transaction: Option<Box<RawValue>>,
    /// The envelope's fields: `Some(None)` when present but null.
    #[serde(default, deserialize_with = "present")]
    payload: Option<Option<Box<RawValue>>>,
    #[serde(default, deserialize_with = "present")]
    schema: Option<Option<Box<RawValue>>>,
}

/// Tells a field that is present but null from one that is absent.
fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<Box<RawValue>>>, D::Error> {
    Option::<Box<RawValue>>::deserialize(d).map(Some)
}

/// The fields of `source` that the reader uses.
#[derive(Deserialize)]
struct Source {
    lsn: Option<Box<RawValue>>,
    ts_ms: Option<Box<RawValue>>,
    table: Option<Box<RawValue>>,
    schema: Option<Box<RawValue>>,
    db: Option<Box<RawValue>>,
}

/// The fields of `transaction` that the reader uses.
#[derive(Deserialize)]
struct Transaction {
    total_order: Option<Box<RawValue>>,
}

/// A row image: its fields in order, each as raw JSON, refusing a field named twice.
struct Image(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Image {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Image, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Image;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object (a row image)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Image, A::Error> {
                let mut fields: Vec<(String, Box<RawValue>)> = Vec::new();
                while let Some((name, value)) = map.next_entry::<String, Box<RawValue>>()? {
                    if fields.iter().any(|(n, _)| *n == name) {
                        return Err(serde::de::Error::custom(format!(
                            "field {name:?} appears twice"
                        )));
                    }
                    fields.push((name, value));
                }
                Ok(Image(fields))
            }
        }
        d.deserialize_map(V)
    }
}

/// Reads the events of one line; `pos` is the line's position.
struct EventReader<'a> {
    pos: &'a Position,
    object: &'a Arc<str>,
    schema: &'a TableSchema,
    options: &'a DebeziumOptions,
}

/// A JSON value's text is JSON `null`.
fn is_null(raw: &Option<Box<RawValue>>) -> bool {
    raw.as_deref().is_none_or(|r| r.get() == "null")
}

impl EventReader<'_> {
    /// An error at `field` (a dotted path such as `after.balance`) of this line.
    fn at(&self, field: &str, kind: CdcErrorKind) -> CdcError {
        CdcError::new(
            Position {
                column: Some(ColumnRef {
                    index: 0,
                    name: Some(field.to_owned()),
                }),
                ..self.pos.clone()
            },
            kind,
        )
    }

    /// Parses `raw` (the JSON at `field`) as a `T`.
    fn parse<'j, T: Deserialize<'j>>(&self, field: &str, raw: &'j str) -> Result<T, CdcError> {
        serde_json::from_str(raw)
            .map_err(|e| self.at(field, CdcErrorKind::BadEvent(format!("{field}: {e}"))))
    }

    /// A string field (`source.table`, `op`), or `None` when absent or null.
    fn string(&self, field: &str, raw: &Option<Box<RawValue>>) -> Result<Option<String>, CdcError> {
        if is_null(raw) {
            return Ok(None);
        }
        let raw = raw.as_deref().map_or("null", RawValue::get);
        self.parse::<String>(field, raw).map(Some)
    }

    /// A non-negative integer below 2^64, or `None` when absent or null.
    fn uint(
        &self,
        field: &str,
        raw: &Option<Box<RawValue>>,
        bad: fn(String) -> CdcErrorKind,
    ) -> Result<Option<u64>, CdcError> {
        if is_null(raw) {
            return Ok(None);
        }
        let text = raw.as_deref().map_or("null", RawValue::get);
        match text
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| text.parse::<u64>())
        {
            Some(Ok(v)) => Ok(Some(v)),
            _ => Err(self.at(field, bad(text.to_owned()))),
        }
    }

    /// The change on this line, or `None` for a tombstone or an event of another table.
    fn event(&self, line: &[u8]) -> Result<Option<Change>, CdcError> {
        if line == b"null" {
            return Ok(None);
        }
        let whole = |e: serde_json::Error| {
            CdcError::new(
                self.pos.clone(),
                CdcErrorKind::Read(format!("invalid JSON: {e}")),
            )
        };
        let mut event: Event = serde_json::from_slice(line).map_err(whole)?;
        // The converter's envelope: `{"schema": ..., "payload": ...}`.
        if event.op.is_none() && (event.payload.is_some() || event.schema.is_some()) {
            let payload = match event.payload.take() {
                None => {
                    return Err(self.at("payload", CdcErrorKind::MissingColumn("payload".into())));
                }
                Some(None) => return Ok(None),
                Some(Some(p)) => p,
            };
            event = self.parse("payload", payload.get())?;
        }
        let source: Option<Source> = match &event.source {
            Some(raw) if raw.get() != "null" => Some(self.parse("source", raw.get())?),
            _ => None,
        };
        if !self.wanted(source.as_ref())? {
            return Ok(None);
        }
        let op = match self.string("op", &event.op)? {
            None => return Err(self.at("op", CdcErrorKind::MissingColumn("op".into()))),
            Some(op) => match op.as_str() {
                "c" | "r" => Op::Insert,
                "u" => Op::Update,
                "d" => Op::Delete,
                _ => {
                    return Err(self.at(
                        "op",
                        CdcErrorKind::BadEvent(format!("op {op:?} is not c, r, u or d")),
                    ));
                }
            },
        };
        let order = self.order(&event, source.as_ref())?;
        let (image_name, image) = if op == Op::Delete {
            ("before", &event.before)
        } else {
            ("after", &event.after)
        };
        let image: Image = match image {
            Some(raw) if raw.get() != "null" => self.parse(image_name, raw.get())?,
            _ => {
                return Err(self.at(image_name, CdcErrorKind::MissingColumn(image_name.into())));
            }
        };
        let mut cells: Vec<Option<Box<[u8]>>> = vec![None; self.schema.columns().len()];
        for (name, raw) in &image.0 {
            let path = format!("{image_name}.{name}");
            match self.schema.column_index(name) {
                // A delete uses only the key: the other columns of `before` are not read.
                Some(c) if op == Op::Delete && !self.schema.key().iter().any(|k| k.0 == c) => {}
                Some(c) => cells[c] = Some(self.value(&path, raw)?),
                None if self.options.ignore_unknown => {}
                None if op == Op::Delete => {}
                None => {
                    return Err(self.at(&path, CdcErrorKind::UnknownColumn(name.clone())));
                }
            }
        }
        let columns = self.schema.columns();
        let key = self
            .schema
            .parse_key(|c| cells[c].as_deref())
            .map_err(|(c, kind)| self.at(&format!("{image_name}.{}", columns[c]), kind))?;
        let cells = if op == Op::Delete {
            Vec::new()
        } else {
            let mut out = Vec::with_capacity(cells.len());
            for (c, cell) in cells.into_iter().enumerate() {
                out.push(match cell {
                    Some(v) => Cell::Value(v),
                    None if self.options.missing_as_keep => Cell::Keep,
                    None => {
                        return Err(self.at(
                            &format!("after.{}", columns[c]),
                            CdcErrorKind::MissingColumn(columns[c].clone()),
                        ));
                    }
                });
            }
            out
        };
        Ok(Some(Change {
            op,
            key,
            order,
            cells,
        }))
    }

    /// Whether the event is of the table the options pick.
    fn wanted(&self, source: Option<&Source>) -> Result<bool, CdcError> {
        let o = self.options;
        let checks = [
            ("source.table", &o.table, source.map(|s| &s.table)),
            ("source.schema", &o.schema, source.map(|s| &s.schema)),
            ("source.db", &o.database, source.map(|s| &s.db)),
        ];
        for (field, want, raw) in checks {
            let Some(want) = want else { continue };
            let got = match raw {
                Some(raw) => self.string(field, raw)?,
                None => None,
            };
            match got {
                None => return Err(self.at(field, CdcErrorKind::MissingColumn(field.into()))),
                Some(got) if got != *want => return Ok(false),
                Some(_) => {}
            }
        }
        Ok(true)
    }

    /// The ordering key: `source.lsn` (with `transaction.total_order`) as the sequence, the
    /// commit time `source.ts_ms` (else the event's `ts_ms`) as the timestamp.
    fn order(&self, event: &Event, source: Option<&Source>) -> Result<OrderKey, CdcError> {
        let lsn = match source {
            Some(s) => self.uint("source.lsn", &s.lsn, CdcErrorKind::BadSequence)?,
            None => None,
        };
        let total_order = match &event.transaction {
            Some(raw) if raw.get() != "null" => {
                let t: Transaction = self.parse("transaction", raw.get())?;
                self.uint(
                    "transaction.total_order",
                    &t.total_order,
                    CdcErrorKind::BadSequence,
                )?
            }
            _ => None,
        };
        let seq = lsn.map(|lsn| {
            (u128::from(lsn) << DEBEZIUM_ORDER_SHIFT) | u128::from(total_order.unwrap_or(0))
        });
        let (field, ts) = match source.map(|s| &s.ts_ms).filter(|t| !is_null(t)) {
            Some(ts) => ("source.ts_ms", ts),
            None => ("ts_ms", &event.ts_ms),
        };
        let timestamp = self
            .uint(field, ts, CdcErrorKind::BadTimestamp)?
            .map(|ms| {
                timestamp_of_millis(ms)
                    .ok_or_else(|| self.at(field, CdcErrorKind::BadTimestamp(ms.to_string())))
            })
            .transpose()?;
        Ok(OrderKey {
            seq,
            timestamp,
            // Snapshot reads (`r`) carry the snapshot's position like any event: no need to
            // rank them as a full load.
            cdc: true,
            object: self.object.clone(),
            line: self.pos.line,
        })
    }

    /// A column's value as bytes: a number's exact text, a string unescaped, `true`/`false`,
    /// null as the table's null. Objects and arrays are refused.
    fn value(&self, path: &str, raw: &RawValue) -> Result<Box<[u8]>, CdcError> {
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'"') => Ok(self.parse::<String>(path, text)?.into_bytes().into()),
            Some(b'n') => Ok(self.schema.null().into()),
            Some(b'{' | b'[') => Err(self.at(
                path,
                CdcErrorKind::BadEvent(format!("{path} is an object or array, not a value")),
            )),
            // Numbers, `true` and `false`: serde_json has validated them; keep the text.
            _ => Ok(text.as_bytes().into()),
        }
    }
}

/// `ms` milliseconds after 1970-01-01 00:00:00 UTC as a [`Timestamp`] (proleptic Gregorian,
/// years up to 9999).
fn timestamp_of_millis(ms: u64) -> Option<Timestamp> {
    let days = ms / 86_400_000;
    let rem = ms % 86_400_000;
    // Howard Hinnant's civil_from_days, for days since the epoch (non-negative here).
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if year > 9999 {
        return None;
    }
    let text = format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    );
    Timestamp::parse(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_to_timestamps() {
        let t = |s: &str| Timestamp::parse(s.as_bytes());
        assert_eq!(timestamp_of_millis(0), t("1970-01-01 00:00:00"));
        assert_eq!(
            timestamp_of_millis(1_559_033_904_863),
            t("2019-05-28 08:58:24.863")
        );
        assert_eq!(timestamp_of_millis(951_782_400_000), t("2000-02-29"));
        assert_eq!(timestamp_of_millis(u64::MAX), None);
    }
}
