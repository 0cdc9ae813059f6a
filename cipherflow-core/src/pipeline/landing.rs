//! The landing sink: validated records put into a pipeline's landing store as one JSON-lines
//! object, which the next step ([`Pipeline::run_once`](super::Pipeline::run_once)) applies
//! like any landed file. `cipherflow ingest --to DIR` and the Lambda handler feed a records
//! pipeline this way, so validation, rejects and the ledger are those of
//! [`Ingest`](crate::records::Ingest), and ordering and replay those of the step.

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::Location;
use crate::records::{Record, RecordSchema, RecordSink, SinkError, SinkReport, Value};
use crate::store::{Bytes, PutMode, StoreError};

/// A [`RecordSink`] into a landing location (a pipeline's `stores.landing`, its prefix
/// included).
///
/// Each call writes one object, `<name>.<hash>.jsonl` (see [`landing_name`]), with a
/// create-only put. The name carries the hash of the content, so writing the same records
/// again finds the object there with the same bytes and adopts it: every record counts as
/// skipped and nothing is written. Different records from a source of the same name land
/// under another name, beside the first (their versions order them in the table).
#[derive(Debug, Clone)]
pub struct LandingSink {
    landing: Location,
}

impl LandingSink {
    /// A sink into `landing`.
    pub fn new(landing: Location) -> LandingSink {
        LandingSink { landing }
    }

    /// A sink into `pipeline`'s landing location.
    pub fn of(pipeline: &super::Pipeline) -> LandingSink {
        LandingSink::new(pipeline.stores.landing.clone())
    }

    fn error(&self, reason: impl std::fmt::Display) -> SinkError {
        SinkError {
            sink: self.describe(),
            reason: reason.to_string(),
        }
    }
}

#[async_trait]
impl RecordSink for LandingSink {
    fn describe(&self) -> String {
        format!(
            "landing {}/{}",
            self.landing.store.describe(),
            self.landing.prefix
        )
    }

    async fn write(
        &self,
        object: &str,
        schema: &RecordSchema,
        records: &[Record],
    ) -> Result<SinkReport, SinkError> {
        let body = encode_records(schema, records);
        let name = landing_name(object, &body);
        let key = self
            .landing
            .key(&name)
            .map_err(|e| self.error(format!("{name}: {e}")))?;
        let body = Bytes::from(body);
        match self
            .landing
            .store
            .put(&key, body.clone(), PutMode::Create)
            .await
        {
            Ok(_) => Ok(SinkReport {
                written: records.iter().map(|r| r.index).collect(),
                skipped: 0,
            }),
            Err(StoreError::AlreadyExists { .. }) => {
                let (stored, _) = self
                    .landing
                    .store
                    .get(&key)
                    .await
                    .map_err(|e| self.error(e))?;
                if stored != body {
                    return Err(self.error(format!(
                        "{key} exists with other content than these records, though its name \
                         carries their hash: it was changed after it landed"
                    )));
                }
                Ok(SinkReport {
                    written: Vec::new(),
                    skipped: records.len() as u64,
                })
            }
            Err(e) => Err(self.error(e)),
        }
    }
}

/// The landing object's name (relative to the landing location) for records from `source`
/// encoded as `body`: `<name>.<hash>.jsonl`, where `<name>` is the last segment of `source`
/// (after any `/` or `\`) with every character outside `A-Z a-z 0-9 . _ -` replaced by `_`,
/// a leading `.` by `_`, cut at 128 characters (`records` if nothing is left), and `<hash>`
/// is the first 16 bytes of the SHA-256 of `body`, in hex.
pub fn landing_name(source: &str, body: &[u8]) -> String {
    let last = source.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut name: String = last
        .chars()
        .take(128)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.starts_with('.') {
        name.replace_range(..1, "_");
    }
    if name.is_empty() {
        name.push_str("records");
    }
    let hash = Sha256::digest(body);
    format!("{name}.{}.jsonl", hex::encode(&hash[..16]))
}

/// The records as JSON lines, re-encoded from their typed values: one object per record with
/// every column in schema order (null as `null`), integers and decimals as the exact text that
/// arrived (a decimal whose text is not a JSON number, such as `.5` or `007.50`, as a JSON
/// string, which a decimal column reads back to the same text), timestamps as their original
/// text. Reading the result with the same schema gives the same values.
fn encode_records(schema: &RecordSchema, records: &[Record]) -> Vec<u8> {
    let names: Vec<String> = schema
        .columns()
        .iter()
        .map(|c| serde_json::to_string(c.name()).expect("a string serialises"))
        .collect();
    let mut out = Vec::with_capacity(records.len() * 64);
    for record in records {
        out.push(b'{');
        for (i, (name, value)) in names.iter().zip(&record.values).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            match value {
                Value::Null => out.extend_from_slice(b"null"),
                Value::Int64(v) => out.extend_from_slice(v.to_string().as_bytes()),
                Value::Decimal(d) if is_json_number(d) => out.extend_from_slice(d.as_bytes()),
                Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
                Value::String(_) | Value::Decimal(_) | Value::Timestamp(_) => {
                    let text = value.cell_text();
                    serde_json::to_writer(&mut out, &*text).expect("writing to a Vec");
                }
            }
        }
        out.extend_from_slice(b"}\n");
    }
    out
}

/// Whether `text` is a JSON number without exponent: `-?(0|[1-9][0-9]*)(\.[0-9]+)?`.
fn is_json_number(text: &str) -> bool {
    let b = text.strip_prefix('-').unwrap_or(text).as_bytes();
    let (int, frac) = match b.iter().position(|&c| c == b'.') {
        Some(dot) => (&b[..dot], Some(&b[dot + 1..])),
        None => (b, None),
    };
    let int_ok = match int {
        [b'0'] => true,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    int_ok && frac.is_none_or(|f| !f.is_empty() && f.iter().all(u8::is_ascii_digit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Format, ReadOptions, read_records};

    #[test]
    fn json_numbers() {
        for yes in ["0", "-0", "7308", "-12.50", "0.001", "1000.50"] {
            assert!(is_json_number(yes), "{yes}");
        }
        for no in [
            "", "-", ".5", "5.", "007.50", "+5", "01", "1e3", "1.2.3", "0x1",
        ] {
            assert!(!is_json_number(no), "{no}");
        }
    }

    #[test]
    fn names_are_sanitised_and_carry_the_hash() {
        let h = |s: &str| landing_name(s, b"x");
        let suffix = &hex::encode(Sha256::digest(b"x"))[..32];
        assert_eq!(
            h("up/2026/readings.json"),
            format!("readings.json.{suffix}.jsonl")
        );
        assert_eq!(h(r"C:\in\a b+c.csv"), format!("a_b_c.csv.{suffix}.jsonl"));
        assert_eq!(h("../.."), format!("_..{suffix}.jsonl"));
        assert_eq!(h("dir/"), format!("records.{suffix}.jsonl"));
        assert_eq!(h("ü.json"), format!("_.json.{suffix}.jsonl"));
        assert_ne!(landing_name("a.json", b"x"), landing_name("a.json", b"y"));
    }

    #[test]
    fn the_encoding_reads_back_to_the_same_values() {
        let schema = RecordSchema::from_toml(
            r#"
            name = "t"
            key = ["id"]
            [columns.id]
            type = "int64"
            [columns.name]
            type = "string"
            nullable = true
            [columns.amount]
            type = "decimal"
            nullable = true
            [columns.at]
            type = "timestamp"
            [columns.ok]
            type = "bool"
            "#,
        )
        .unwrap();
        let csv = "id,name,amount,at,ok\n\
                   1,\"Ada \"\"x\"\", é\",007.50,2026-02-01T11:00:00+01:00,TRUE\n\
                   -2,,.5,2026-02-01t10:00:00.120z,false\n\
                   3,\\n,-0.000,2026-02-01T10:00:00Z,true\n";
        let options = ReadOptions::default();
        let first = read_records("in.csv", csv.as_bytes(), Format::Csv, &schema, &options).unwrap();
        let body = encode_records(&schema, &first.records);
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(
            text.starts_with(
                r#"{"id":1,"name":"Ada \"x\", é","amount":"007.50","at":"2026-02-01T11:00:00+01:00","ok":true}"#
            ),
            "{text}"
        );
        assert!(text.contains(r#""name":null,"amount":".5""#), "{text}");
        assert!(text.contains(r#""amount":-0.000,"#), "{text}");
        let again = read_records("x.jsonl", &body, Format::JsonLines, &schema, &options).unwrap();
        let values = |r: &crate::records::Records| {
            r.records
                .iter()
                .map(|r| r.values.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(values(&again), values(&first));
    }
}
