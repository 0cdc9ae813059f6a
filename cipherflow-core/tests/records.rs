//! Records: schema loading, every validation reason with its message, the three readers,
//! reject mode, the size limit, exact numbers, and the merge sink's idempotence.

use std::path::Path;

use cipherflow_core::cdc::{Cell, KeyType, KeyValue};
use cipherflow_core::merge::{MergeState, decode_run, encode_run};
use cipherflow_core::records::{
    ColumnType, Extra, Format, ReadOptions, Reason, RecordSchema, Records, RecordsError, Value,
    read_records, read_records_from, to_changes, version_seq, write_rejects,
};
use proptest::prelude::*;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/records")
            .join(name),
    )
    .expect("fixture")
}

fn readings() -> RecordSchema {
    RecordSchema::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/records/readings.toml"),
    )
    .expect("schema")
}

/// A schema with every rule.
const RULES: &str = r#"
name = "orders"
key = ["id"]
version = "at"
[columns.id]
type = "int64"
min = 1
max = "1000"
[columns.name]
type = "string"
max_length = 5
pattern = "^[a-zé]+$"
[columns.status]
type = "string"
values = ["new", "done"]
[columns.amount]
type = "decimal"
min = "0.01"
max = 1_000.5
[columns.at]
type = "timestamp"
min = 2020-01-01T00:00:00Z
[columns.active]
type = "bool"
[columns.note]
type = "string"
nullable = true
[columns.qty]
type = "int64"
values = [1, 2, 3]
nullable = true
"#;

fn rules() -> RecordSchema {
    RecordSchema::from_toml(RULES).expect("schema")
}

fn read(input: &str, format: Format, schema: &RecordSchema) -> Result<Records, RecordsError> {
    read_records(
        "in",
        input.as_bytes(),
        format,
        schema,
        &ReadOptions::default(),
    )
}

fn messages(err: &RecordsError) -> Vec<String> {
    err.errors().iter().map(ToString::to_string).collect()
}

const GOOD: &str = r#"{"id": 7, "name": "ada", "status": "new", "amount": 12.50, "at": "2026-02-01T10:00:00Z", "active": true}"#;

/// GOOD with `field` set to `value` (raw JSON), or removed when `value` is None.
fn with(field: &str, value: Option<&str>) -> String {
    let mut map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(GOOD).unwrap();
    let mut out = String::from("{");
    map.remove(field);
    for (k, v) in &map {
        out.push_str(&format!("{k:?}: {v},"));
    }
    if let Some(value) = value {
        out.push_str(&format!("{field:?}: {value},"));
    }
    out.pop();
    out.push('}');
    // 12.50 must stay as written; serde_json::Value would print 12.5.
    out.replace("\"amount\": 12.5", "\"amount\": 12.50")
}

#[test]
fn the_issue_schema_loads_in_declaration_order() {
    let schema = readings();
    assert_eq!(schema.name(), "ProcessedRecords");
    let names: Vec<_> = schema.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["device_id", "timestamp", "value"]);
    assert_eq!(schema.key(), &[0, 1]);
    assert_eq!(schema.version(), Some(1));
    assert_eq!(schema.extra(), Extra::Error);
    assert_eq!(schema.columns()[2].ty(), ColumnType::Decimal);
    assert!(schema.columns()[2].nullable() && !schema.columns()[0].nullable());
    let table = schema.table_schema();
    assert_eq!(table.columns(), ["device_id", "timestamp", "value"]);
    assert_eq!(
        table.key(),
        &[(0, KeyType::String), (1, KeyType::Timestamp)]
    );
    // Declaration order, not alphabetical.
    let names: Vec<_> = rules()
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "id", "name", "status", "amount", "at", "active", "note", "qty"
        ]
    );
}

#[test]
fn bad_schemas_are_refused_with_a_reason() {
    let base = "name = \"t\"\nkey = [\"k\"]\n[columns.k]\ntype = \"string\"\n";
    let cases: &[(&str, &str)] = &[
        ("[columns.x]\ntype = \"float\"", "unknown type \"float\""),
        (
            "[columns.x]\ntype = \"int64\"\npattern = \"a\"",
            "pattern does not apply to a int64",
        ),
        (
            "[columns.x]\ntype = \"string\"\npattern = \"(\"",
            "is not a valid regex",
        ),
        (
            "[columns.x]\ntype = \"decimal\"\nmax = 1e3",
            "write it as a quoted decimal",
        ),
        (
            "[columns.x]\ntype = \"decimal\"\nmax = nan",
            "write it as a quoted decimal",
        ),
        (
            "[columns.x]\ntype = \"int64\"\nmin = 0.5",
            "does not fit a int64 column",
        ),
        (
            "[columns.x]\ntype = \"timestamp\"\nmin = \"2020-01-01\"",
            "not an RFC 3339",
        ),
        (
            "[columns.x]\ntype = \"bool\"\nmax_length = 3",
            "max_length does not apply",
        ),
        (
            "[columns.x]\ntype = \"decimal\"\nvalues = [1]",
            "values does not apply",
        ),
        (
            "[columns.x]\ntype = \"string\"\nvalues = [1]",
            "is not a string",
        ),
        (
            "[columns.x]\ntype = \"string\"\nunique = true",
            "unknown field `unique`",
        ),
        ("extra = \"drop\"", "expected \"error\" or \"ignore\""),
    ];
    for (tail, expected) in cases {
        // Top-level keys must come before the tables.
        let text = if tail.starts_with('[') {
            format!("{base}{tail}\n")
        } else {
            format!("{tail}\n{base}")
        };
        let err = RecordSchema::from_toml(&text).expect_err(tail).to_string();
        assert!(err.contains(expected), "{tail}: {err}");
    }
    let whole: &[(&str, &str)] = &[
        (
            "name = \"t\"\nkey = []\n[columns.k]\ntype = \"string\"",
            "key is empty",
        ),
        (
            "name = \"t\"\nkey = [\"x\"]\n[columns.k]\ntype = \"string\"",
            "key column \"x\" is not a column",
        ),
        (
            "name = \"t\"\nkey = [\"k\"]\n[columns.k]\ntype = \"string\"\nnullable = true",
            "cannot be nullable",
        ),
        (
            "name = \"t\"\nkey = [\"k\"]\n[columns.k]\ntype = \"bool\"",
            "cannot be a bool",
        ),
        (
            "name = \"t\"\nkey = [\"k\"]\nversion = \"k\"\n[columns.k]\ntype = \"string\"",
            "must be an int64 or a timestamp",
        ),
        (
            "name = \"t\"\nkey = [\"k\"]\nversion = \"v\"\n[columns.k]\ntype = \"string\"",
            "version \"v\" is not a column",
        ),
        (
            "name = \"t\"\nkey = [\"k\"]\nversion = \"v\"\n[columns.k]\ntype = \"string\"\n[columns.v]\ntype = \"int64\"\nnullable = true",
            "version column \"v\" cannot be nullable",
        ),
        (
            "name = \"t\"\nkey = [\"k\"]\ncolour = 1\n[columns.k]\ntype = \"string\"",
            "unknown field `colour`",
        ),
    ];
    for (text, expected) in whole {
        let err = RecordSchema::from_toml(text).expect_err(text);
        assert!(matches!(err, RecordsError::Schema(_)));
        assert!(err.to_string().contains(expected), "{text}: {err}");
    }
}

#[test]
fn the_good_record_is_typed() {
    let records = read(GOOD, Format::JsonLines, &rules()).expect("valid");
    let values = &records.records[0].values;
    assert_eq!(values[0], Value::Int64(7));
    assert_eq!(values[1], Value::String("ada".into()));
    assert_eq!(values[3], Value::Decimal("12.50".into()));
    match &values[4] {
        Value::Timestamp(t) => assert_eq!(t.text(), "2026-02-01T10:00:00Z"),
        other => panic!("{other:?}"),
    }
    assert_eq!(values[5], Value::Bool(true));
    assert_eq!(values[6], Value::Null);
    assert_eq!(values[7], Value::Null);
}

#[test]
fn every_reason_has_its_message() {
    let schema = rules();
    let cases: Vec<(String, &str)> = vec![
        (
            with("id", Some("\"7\"")),
            r#"in, record 1 (line 1), field "id": expected type int64, found a string"#,
        ),
        (
            with("id", Some("7.5")),
            r#"in, record 1 (line 1), field "id": 7.5 is not a 64-bit integer"#,
        ),
        (
            with("id", Some("9223372036854775808")),
            r#"in, record 1 (line 1), field "id": 9223372036854775808 is not a 64-bit integer"#,
        ),
        (
            with("id", Some("0")),
            r#"in, record 1 (line 1), field "id": 0 is less than the minimum 1"#,
        ),
        (
            with("id", Some("1001")),
            r#"in, record 1 (line 1), field "id": 1001 is greater than the maximum 1000"#,
        ),
        (
            with("name", Some("\"Ada\"")),
            r#"in, record 1 (line 1), field "name": "Ada" does not match the pattern "^[a-zé]+$""#,
        ),
        (
            with("name", Some("\"abcdéf\"")),
            r#"in, record 1 (line 1), field "name": 6 characters, more than max_length 5"#,
        ),
        (
            with("name", Some("42")),
            r#"in, record 1 (line 1), field "name": expected type string, found a number"#,
        ),
        (
            with("status", Some("\"old\"")),
            r#"in, record 1 (line 1), field "status": "old" is not one of the allowed values ("new", "done")"#,
        ),
        (
            with("qty", Some("4")),
            r#"in, record 1 (line 1), field "qty": 4 is not one of the allowed values (1, 2, 3)"#,
        ),
        (
            with("amount", Some("0.001")),
            r#"in, record 1 (line 1), field "amount": 0.001 is less than the minimum 0.01"#,
        ),
        (
            with("amount", Some("1000.50000000000000000001")),
            r#"in, record 1 (line 1), field "amount": 1000.50000000000000000001 is greater than the maximum 1000.5"#,
        ),
        (
            with("amount", Some("1e3")),
            r#"in, record 1 (line 1), field "amount": 1e3 is not a decimal number (digits, optional sign and point, no exponent)"#,
        ),
        (
            with("amount", Some("\"12,5\"")),
            r#"in, record 1 (line 1), field "amount": "12,5" is not a decimal number (digits, optional sign and point, no exponent)"#,
        ),
        (
            with("amount", Some("[1]")),
            r#"in, record 1 (line 1), field "amount": expected type decimal, found an array"#,
        ),
        (
            with("at", Some("\"2026-02-01 10:00:00\"")),
            r#"in, record 1 (line 1), field "at": "2026-02-01 10:00:00" is not an RFC 3339 timestamp with offset (like 2026-02-01T10:00:00Z)"#,
        ),
        (
            with("at", Some("\"2019-12-31T23:59:59Z\"")),
            r#"in, record 1 (line 1), field "at": 2019-12-31T23:59:59Z is less than the minimum 2020-01-01T00:00:00Z"#,
        ),
        (
            with("at", Some("1700000000")),
            r#"in, record 1 (line 1), field "at": expected type timestamp, found a number"#,
        ),
        (
            with("active", Some("\"true\"")),
            r#"in, record 1 (line 1), field "active": expected type bool, found a string"#,
        ),
        (
            with("active", Some("1")),
            r#"in, record 1 (line 1), field "active": expected type bool, found a number"#,
        ),
        (
            with("active", None),
            r#"in, record 1 (line 1), field "active": required field is missing"#,
        ),
        (
            with("status", Some("null")),
            r#"in, record 1 (line 1), field "status": null, but the column is not nullable"#,
        ),
        (
            with("colour", Some("\"red\"")),
            r#"in, record 1 (line 1), field "colour": unknown field (the schema has extra = "error")"#,
        ),
        (
            format!("{}, \"id\": 8}}", GOOD.trim_end_matches('}')),
            r#"in, record 1 (line 1), field "id": appears twice"#,
        ),
        (
            "[1, 2]".into(),
            r#"in, record 1 (line 1): a record must be a JSON object, found an array"#,
        ),
        (
            "{\"id\": 7,".into(),
            r#"in, record 1 (line 1): malformed input: EOF while parsing a value at line 1 column 9"#,
        ),
    ];
    for (line, expected) in &cases {
        let err = read(line, Format::JsonLines, &schema).expect_err(line);
        assert_eq!(messages(&err), [*expected], "{line}");
    }
}

#[test]
fn csv_reasons_and_bool_forms() {
    let schema = rules();
    let header = "id,name,status,amount,at,active,note,qty\n";
    let ok = read(
        &format!(
            "{header}1,a,new,1,2026-02-01T10:00:00Z,true,,\n2,b,done,1,2026-02-01T10:00:00Z,FALSE,x,3\n3,c,new,1,2026-02-01T10:00:00Z,True,,1\n"
        ),
        Format::Csv,
        &schema,
    )
    .expect("valid");
    let active: Vec<_> = ok.records.iter().map(|r| r.values[5].clone()).collect();
    assert_eq!(
        active,
        [Value::Bool(true), Value::Bool(false), Value::Bool(true)]
    );
    let err = read(
        &format!(
            "{header}1,a,new,1,2026-02-01T10:00:00Z,yes,,\n2,,new,x,2026-02-01T10:00:00Z,true,,\n3,a,new,1\n+4,a,new,+.5,2026-02-01T10:00:00Z,true,,\n"
        ),
        Format::Csv,
        &schema,
    )
    .expect_err("bad");
    assert_eq!(
        messages(&err),
        [
            r#"in, record 1 (line 2), field "active": "yes" is not a boolean (true or false)"#,
            r#"in, record 2 (line 3), field "name": null, but the column is not nullable"#,
            r#"in, record 2 (line 3), field "amount": x is not a decimal number (digits, optional sign and point, no exponent)"#,
            r#"in, record 3 (line 4): expected 8 fields, found 4"#,
        ]
    );
    // JSON's booleans are only the literals.
    let json_bool = read(&with("active", Some("false")), Format::JsonLines, &schema).unwrap();
    assert_eq!(json_bool.records[0].values[5], Value::Bool(false));
    // Header problems refuse the file.
    let err = read("id,name,colour,name\n", Format::Csv, &schema).expect_err("header");
    assert_eq!(
        messages(&err),
        [
            r#"in, line 1, field "colour": unknown field (the schema has extra = "error")"#,
            r#"in, line 1, field "name": appears twice"#,
            r#"in, line 1, field "status": required field is missing"#,
            r#"in, line 1, field "amount": required field is missing"#,
            r#"in, line 1, field "at": required field is missing"#,
            r#"in, line 1, field "active": required field is missing"#,
        ]
    );
    let bytes = b"id,name,status,amount,at,active\n1,\xff,new,1,2026-02-01T10:00:00Z,true\n";
    let err = read_records("in", bytes, Format::Csv, &schema, &ReadOptions::default())
        .expect_err("utf-8");
    assert_eq!(
        messages(&err),
        [r#"in, record 1 (line 2), field "name": not valid UTF-8"#]
    );
}

#[test]
fn extra_fields_are_accepted_with_extra_ignore() {
    let text = RULES.replace("version = \"at\"", "version = \"at\"\nextra = \"ignore\"");
    let schema = RecordSchema::from_toml(&text).expect("schema");
    assert_eq!(schema.extra(), Extra::Ignore);
    let line = with("colour", Some("{\"deep\": [1, 2]}"));
    let records = read(&line, Format::JsonLines, &schema).expect("ignored");
    assert_eq!(records.records.len(), 1);
    let csv = "id,colour,name,status,amount,at,active\n1,red,a,new,1,2026-02-01T10:00:00Z,true\n";
    assert_eq!(read(csv, Format::Csv, &schema).unwrap().records.len(), 1);
    assert!(read(&line, Format::JsonLines, &rules()).is_err());
}

#[test]
fn every_error_of_a_file_is_returned() {
    let schema = rules();
    let file = [
        with("id", Some("0")),
        GOOD.to_owned(),
        with("name", Some("\"ABCDEFG\"")),
        with("status", None),
    ]
    .join("\n");
    let err = read(&file, Format::JsonLines, &schema).expect_err("bad");
    assert_eq!(
        messages(&err),
        [
            r#"in, record 1 (line 1), field "id": 0 is less than the minimum 1"#,
            r#"in, record 3 (line 3), field "name": 7 characters, more than max_length 5"#,
            r#"in, record 3 (line 3), field "name": "ABCDEFG" does not match the pattern "^[a-zé]+$""#,
            r#"in, record 4 (line 4), field "status": required field is missing"#,
        ]
    );
    assert!(
        err.to_string()
            .starts_with("in: refused, 4 error(s); first: in, record 1")
    );
    let core: cipherflow_core::Error = err.into();
    assert!(matches!(
        core,
        cipherflow_core::Error::Records(RecordsError::Invalid { .. })
    ));
    // A JSON array's syntax error is reported with the errors of the records before it.
    let array = format!("[\n{},\n{}\n{}]", with("id", Some("0")), GOOD, GOOD);
    let err = read(&array, Format::Json, &schema).expect_err("syntax");
    assert_eq!(
        messages(&err),
        [
            r#"in, record 1 (line 2), field "id": 0 is less than the minimum 1"#,
            r#"in, line 4: malformed input: expected `,` or `]` at line 4 column 1"#,
        ]
    );
}

#[test]
fn duplicate_keys_within_a_file_are_refused() {
    let schema = readings();
    let file = concat!(
        r#"{"device_id": "device-001", "timestamp": "2026-02-01T10:00:00Z"}"#,
        "\n",
        r#"{"device_id": "device-002", "timestamp": "2026-02-01T10:00:00Z"}"#,
        "\n",
        r#"{"device_id": "device-001", "timestamp": "2026-02-01T11:00:00.000+01:00"}"#,
        "\n",
    );
    let err = read(file, Format::JsonLines, &schema).expect_err("duplicate");
    assert_eq!(
        messages(&err),
        [
            r#"in, record 1 (line 1), field "device_id,timestamp": same primary key as record 3"#,
            r#"in, record 3 (line 3), field "device_id,timestamp": same primary key as record 1"#,
        ]
    );
    let options = ReadOptions {
        reject: true,
        ..ReadOptions::default()
    };
    let got = read_records("in", file.as_bytes(), Format::JsonLines, &schema, &options).unwrap();
    assert_eq!(got.records.len(), 1);
    let raws: Vec<_> = got.rejects.iter().map(|r| r.raw.as_slice()).collect();
    let lines: Vec<_> = file.lines().map(str::as_bytes).collect();
    assert_eq!(raws, [lines[0], lines[2]]);
}

#[test]
fn the_three_readers_give_the_same_records() {
    let schema = readings();
    let opts = ReadOptions::default();
    let json = read_records(
        "r.json",
        &data("readings.json"),
        Format::Json,
        &schema,
        &opts,
    )
    .unwrap();
    let lines = read_records(
        "r.jsonl",
        &data("readings.jsonl"),
        Format::JsonLines,
        &schema,
        &opts,
    )
    .unwrap();
    let csv = read_records("r.csv", &data("readings.csv"), Format::Csv, &schema, &opts).unwrap();
    let typed = |r: &Records| {
        r.records
            .iter()
            .map(|r| (r.index, r.values.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(json.records.len(), 5);
    assert_eq!(typed(&json), typed(&lines));
    assert_eq!(typed(&json), typed(&csv));
    let line_numbers = |r: &Records| r.records.iter().map(|r| r.line).collect::<Vec<_>>();
    assert_eq!(line_numbers(&json), [2, 7, 8, 9, 10]);
    assert_eq!(line_numbers(&lines), [1, 2, 4, 5, 6]);
    assert_eq!(line_numbers(&csv), [2, 3, 4, 5, 6]);
    assert_eq!(
        Format::from_name("up/2026/r.JSONL"),
        Some(Format::JsonLines)
    );
    assert_eq!(Format::from_name("r.ndjson"), Some(Format::JsonLines));
    assert_eq!(Format::from_name("r.csv"), Some(Format::Csv));
    assert_eq!(Format::from_name("r.json"), Some(Format::Json));
    assert_eq!(Format::from_name("r.txt"), None);
    // A single object is one record (an HTTP POST body), a byte-order mark is skipped.
    let one =
        "\u{feff}\n {\"device_id\": \"device-009\", \"timestamp\": \"2026-02-01T10:00:00Z\"}\n";
    let got = read(one, Format::Json, &schema).unwrap();
    assert_eq!((got.records[0].index, got.records[0].line), (1, 2));
}

#[test]
fn numbers_are_kept_exactly() {
    let schema = readings();
    let json = read_records(
        "r.json",
        &data("readings.json"),
        Format::Json,
        &schema,
        &ReadOptions::default(),
    )
    .unwrap();
    let values: Vec<_> = json.records.iter().map(|r| r.values[2].clone()).collect();
    assert_eq!(
        values,
        [
            Value::Decimal("42".into()),
            Value::Decimal("1000.00".into()),
            Value::Null,
            Value::Null,
            Value::Decimal("0.000000000000000000001".into()),
        ]
    );
    let big = "{\"id\": 9223372036854775807}";
    let schema = RecordSchema::from_toml(
        "name = \"t\"\nkey = [\"id\"]\n[columns.id]\ntype = \"int64\"\n[columns.d]\ntype = \"decimal\"\nnullable = true\n",
    )
    .unwrap();
    let got = read(big, Format::JsonLines, &schema).unwrap();
    assert_eq!(got.records[0].values[0], Value::Int64(i64::MAX));
    let exact =
        "{\"id\": -1, \"d\": 123456789012345678901234567890.123456789012345678901234567890}";
    let got = read(exact, Format::JsonLines, &schema).unwrap();
    assert_eq!(
        got.records[0].values[1].cell_text(),
        "123456789012345678901234567890.123456789012345678901234567890"
    );
    // And the cell the merge engine gets is that text.
    let changes = to_changes(&got.records, &schema, "t.jsonl");
    assert_eq!(
        changes[0].cells[1],
        Cell::Value((*b"123456789012345678901234567890.123456789012345678901234567890").into())
    );
}

#[test]
fn reject_mode_keeps_the_bad_records_verbatim() {
    let schema = readings();
    let options = ReadOptions {
        reject: true,
        ..ReadOptions::default()
    };
    let bad1 = r#"{"device_id": "device-1", "timestamp": "2026-02-01T10:00:00Z",   "value": 1}"#;
    let bad2 = r#"{"device_id":"device-002","timestamp":"yesterday","value":-0.5}"#;
    let bad3 = "not json at all";
    let good = r#"{"device_id": "device-003", "timestamp": "2026-02-01T10:00:00Z", "value": 3}"#;
    let jsonl = format!("{good}\n{bad1}\r\n{bad2}\n{bad3}\n{good}x\n");
    let got = read_records(
        "r.jsonl",
        jsonl.as_bytes(),
        Format::JsonLines,
        &schema,
        &options,
    )
    .unwrap();
    assert_eq!(got.records.len(), 1);
    let raws: Vec<_> = got
        .rejects
        .iter()
        .map(|r| String::from_utf8_lossy(&r.raw))
        .collect();
    assert_eq!(
        raws,
        [
            bad1.to_owned(),
            bad2.into(),
            bad3.into(),
            format!("{good}x")
        ]
    );
    assert_eq!(got.rejects[1].errors.len(), 2);
    assert_eq!(
        got.rejects[1].errors[1].to_string(),
        r#"r.jsonl, record 3 (line 3), field "value": -0.5 is less than the minimum 0"#
    );
    // Same in a JSON array: each bad element's text, exactly.
    let array = format!("[{good},\n  {bad1} , {bad2}]");
    let got = read_records("r.json", array.as_bytes(), Format::Json, &schema, &options).unwrap();
    let raws: Vec<_> = got
        .rejects
        .iter()
        .map(|r| String::from_utf8_lossy(&r.raw))
        .collect();
    assert_eq!(raws, [bad1, bad2]);
    assert_eq!((got.rejects[0].line, got.rejects[1].line), (2, 2));
    // And in CSV: the record's line as written, quotes and all.
    let csv = "device_id,timestamp,value\ndevice-001,2026-02-01T10:00:00Z,1\n\"device-1\",2026-02-01T10:00:00Z, 2\ndevice-002,2026-02-01T10:00:00Z\n";
    let got = read_records("r.csv", csv.as_bytes(), Format::Csv, &schema, &options).unwrap();
    let raws: Vec<_> = got
        .rejects
        .iter()
        .map(|r| String::from_utf8_lossy(&r.raw))
        .collect();
    assert_eq!(
        raws,
        [
            "\"device-1\",2026-02-01T10:00:00Z, 2",
            "device-002,2026-02-01T10:00:00Z"
        ]
    );
    assert_eq!(got.rejects[0].errors.len(), 2);
    // The reject file: one JSON line per record, the record's text verbatim.
    let mut out = Vec::new();
    write_rejects("r.csv", &got.rejects, &mut out).unwrap();
    let lines: Vec<serde_json::Value> = out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["raw"], "device-002,2026-02-01T10:00:00Z");
    assert_eq!(lines[1]["record"], 3);
    assert_eq!(lines[1]["line"], 4);
    assert_eq!(
        lines[1]["errors"][0]["reason"],
        "expected 3 fields, found 2"
    );
    assert_eq!(lines[0]["errors"][0]["field"], "device_id");
    // Without reject mode the same file is refused whole, with every error.
    let err = read_records(
        "r.csv",
        csv.as_bytes(),
        Format::Csv,
        &schema,
        &ReadOptions::default(),
    )
    .expect_err("refused");
    assert_eq!(err.errors().len(), 3);
    // A malformed JSON array is refused whole even in reject mode.
    let err = read_records("r.json", b"[{}", Format::Json, &schema, &options).expect_err("syntax");
    assert!(matches!(err.errors()[0].reason, Reason::Malformed(_)));
}

#[test]
fn the_size_limit_has_its_own_error() {
    let schema = readings();
    let input = data("readings.jsonl");
    let limit = |n| ReadOptions {
        max_bytes: Some(n),
        ..ReadOptions::default()
    };
    let n = input.len() as u64;
    assert!(read_records("r", &input, Format::JsonLines, &schema, &limit(n)).is_ok());
    let err = read_records("r", &input, Format::JsonLines, &schema, &limit(n - 1)).unwrap_err();
    assert_eq!(
        err,
        RecordsError::TooLarge {
            object: "r".into(),
            limit: n - 1
        }
    );
    assert_eq!(
        err.to_string(),
        format!("r: larger than the limit of {} bytes", n - 1)
    );
    let err =
        read_records_from("r", &input[..], Format::JsonLines, &schema, &limit(10)).unwrap_err();
    assert!(matches!(err, RecordsError::TooLarge { limit: 10, .. }));
    let ok = read_records_from("r", &input[..], Format::JsonLines, &schema, &limit(n)).unwrap();
    assert_eq!(ok.records.len(), 5);
}

/// The readings of one device, as its latest state: key device_id, version timestamp.
const LATEST: &str = r#"
name = "latest"
key = ["device_id"]
version = "timestamp"
[columns.device_id]
type = "string"
[columns.timestamp]
type = "timestamp"
[columns.value]
type = "decimal"
"#;

fn snapshot(state: &MergeState) -> String {
    let mut out = Vec::new();
    state.write_snapshot(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn replays_and_older_versions_leave_the_snapshot_unchanged() {
    let schema = RecordSchema::from_toml(LATEST).unwrap();
    let newer = "{\"device_id\": \"d1\", \"timestamp\": \"2026-02-01T12:00:00+01:00\", \"value\": 2.50}\n\
                 {\"device_id\": \"d2\", \"timestamp\": \"2026-02-01T10:00:00Z\", \"value\": 7}\n";
    let older =
        "{\"device_id\": \"d1\", \"timestamp\": \"2026-02-01T10:59:59.999Z\", \"value\": 1}\n";
    let opts = ReadOptions::default();
    let new = read_records(
        "b.jsonl",
        newer.as_bytes(),
        Format::JsonLines,
        &schema,
        &opts,
    )
    .unwrap();
    // The older file's name sorts after the newer's: the version decides, not the name.
    let old = read_records(
        "c.jsonl",
        older.as_bytes(),
        Format::JsonLines,
        &schema,
        &opts,
    )
    .unwrap();
    let mut state = MergeState::new(schema.table_schema());
    for change in to_changes(&new.records, &schema, &new.object) {
        state.apply_change(&change);
    }
    let before = snapshot(&state);
    assert_eq!(
        before,
        "device_id,timestamp,value\nd1,2026-02-01T12:00:00+01:00,2.50\nd2,2026-02-01T10:00:00Z,7\n"
    );
    for change in to_changes(&new.records, &schema, &new.object) {
        state.apply_change(&change); // the same file again
    }
    assert_eq!(snapshot(&state), before);
    assert!(state.apply(&old.to_batch(&schema))); // an older version after the newer one
    assert_eq!(snapshot(&state), before);
    assert!(!state.apply(&old.to_batch(&schema))); // a replayed batch is recognised
    // The other way round: older first, then newer, gives the same snapshot.
    let mut other = MergeState::new(schema.table_schema());
    other.apply(&old.to_batch(&schema));
    assert_eq!(
        snapshot(&other),
        "device_id,timestamp,value\nd1,2026-02-01T10:59:59.999Z,1\n"
    );
    other.apply(&new.to_batch(&schema));
    assert_eq!(snapshot(&other), before);
}

#[test]
fn changes_are_upserts_ordered_by_version() {
    let schema = readings();
    let json = read_records(
        "r.json",
        &data("readings.json"),
        Format::Json,
        &schema,
        &ReadOptions::default(),
    )
    .unwrap();
    let changes = to_changes(&json.records, &schema, "r.json");
    let c = &changes[1];
    assert_eq!(c.op, cipherflow_core::cdc::Op::Insert);
    assert_eq!(&*c.order.object, "r.json");
    assert_eq!(c.order.line, 2);
    assert_eq!(c.order.timestamp, None);
    // device-002 at 11:00+01:00 is 10:00Z: the same version as device-001's.
    assert_eq!(changes[0].order.seq, changes[1].order.seq);
    assert!(changes[2].order.seq > changes[1].order.seq);
    // The key's timestamp is the UTC instant, in the merge engine's form; the value keeps
    // its text.
    assert_eq!(c.cells[1], Cell::Value((*b"2026-02-01T10:00:00").into()));
    assert_eq!(
        c.key.0[1],
        KeyValue::parse(KeyType::Timestamp, b"2026-02-01 10:00:00").unwrap()
    );
    // A run of these changes decodes to the same changes (key cells parse back).
    let table = schema.table_schema();
    let run = encode_run(&table, &changes);
    let mut decoded = decode_run("run", &table, &run).unwrap();
    decoded.sort_by_key(|a| a.order.line);
    assert_eq!(decoded, changes);
    // The version's seq: signed order onto unsigned order.
    let int = |v| version_seq(&Value::Int64(v)).unwrap();
    assert!(int(i64::MIN) < int(-1) && int(-1) < int(0) && int(0) < int(i64::MAX));
    assert_eq!(int(0), 1 << 100);
    assert!(int(i64::MAX) < 10u128.pow(38));
    assert_eq!(version_seq(&Value::Bool(true)), None);
    // Without a version, the order is (object, index).
    let schema = RecordSchema::from_toml(&LATEST.replace("version = \"timestamp\"\n", "")).unwrap();
    let line = b"{\"device_id\": \"d1\", \"timestamp\": \"2026-02-01T12:00:00Z\", \"value\": 1}";
    let got = read_records(
        "x",
        line,
        Format::JsonLines,
        &schema,
        &ReadOptions::default(),
    )
    .unwrap();
    let changes = to_changes(&got.records, &schema, "x");
    assert_eq!((changes[0].order.seq, changes[0].order.line), (None, 1));
}

/// A generated valid record of [`RULES`]' schema.
#[derive(Debug, Clone)]
struct Gen {
    id: i64,
    name: String,
    status: &'static str,
    amount: String,
    at: String,
    active: bool,
    note: Option<String>,
    qty: Option<i64>,
}

fn gen_record() -> impl Strategy<Value = Gen> {
    let amount = prop_oneof![
        (1u64..1000, 0u32..100).prop_map(|(i, f)| format!("{i}.{f:02}")),
        (1u64..=1000).prop_map(|i| i.to_string()),
        (1u32..100).prop_map(|f| format!("0.{f:02}")),
    ];
    let at = (
        2020i32..2100,
        1u32..=12,
        1u32..=28,
        0u32..24,
        0u32..60,
        0u32..60,
        0u32..1000,
        -12i32..=12,
    )
        .prop_map(|(y, mo, d, h, mi, s, ms, off)| {
            let zone = if off == 0 {
                "Z".to_owned()
            } else {
                format!("{:+03}:30", off)
            };
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}{zone}")
        });
    (
        1i64..=1000,
        "[a-zé]{1,5}",
        prop_oneof![Just("new"), Just("done")],
        amount,
        at,
        any::<bool>(),
        proptest::option::of("\\PC{1,12}"),
        proptest::option::of(1i64..=3),
    )
        .prop_map(|(id, name, status, amount, at, active, note, qty)| Gen {
            id,
            name,
            status,
            amount,
            at,
            active,
            note,
            qty,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_valid_records_read_back_equal(records in proptest::collection::vec(gen_record(), 1..20)) {
        let schema = rules();
        // Distinct keys: a file states each row once.
        let records: Vec<Gen> = records
            .into_iter()
            .enumerate()
            .map(|(i, mut g)| { g.id = i as i64 + 1; g })
            .collect();
        let mut jsonl = String::new();
        let mut csv = csv::Writer::from_writer(Vec::new());
        csv.write_record(["id", "name", "status", "amount", "at", "active", "note", "qty"]).unwrap();
        for g in &records {
            jsonl.push_str(&format!(
                "{{\"id\":{},\"name\":{},\"status\":\"{}\",\"amount\":{},\"at\":\"{}\",\"active\":{},\"note\":{},\"qty\":{}}}\n",
                g.id,
                serde_json::to_string(&g.name).unwrap(),
                g.status,
                g.amount,
                g.at,
                g.active,
                serde_json::to_string(&g.note).unwrap(),
                g.qty.map_or("null".into(), |q| q.to_string()),
            ));
            csv.write_record([
                g.id.to_string(),
                g.name.clone(),
                g.status.into(),
                g.amount.clone(),
                g.at.clone(),
                g.active.to_string(),
                g.note.clone().unwrap_or_default(),
                g.qty.map_or(String::new(), |q| q.to_string()),
            ]).unwrap();
        }
        let csv = csv.into_inner().unwrap();
        let opts = ReadOptions::default();
        let a = read_records("a", jsonl.as_bytes(), Format::JsonLines, &schema, &opts).unwrap();
        let b = read_records("b", &csv, Format::Csv, &schema, &opts).unwrap();
        prop_assert_eq!(a.records.len(), records.len());
        for ((g, ra), rb) in records.iter().zip(&a.records).zip(&b.records) {
            prop_assert_eq!(&ra.values, &rb.values);
            prop_assert_eq!(&ra.values[0], &Value::Int64(g.id));
            prop_assert_eq!(&ra.values[1], &Value::String(g.name.as_str().into()));
            prop_assert_eq!(&ra.values[3], &Value::Decimal(g.amount.as_str().into()));
            prop_assert_eq!(ra.values[4].cell_text(), g.at.as_str());
            prop_assert_eq!(&ra.values[5], &Value::Bool(g.active));
            let note = g.note.as_deref().map_or(Value::Null, |n| Value::String(n.into()));
            prop_assert_eq!(&ra.values[6], &note);
            prop_assert_eq!(&ra.values[7], &g.qty.map_or(Value::Null, Value::Int64));
        }
    }
}
