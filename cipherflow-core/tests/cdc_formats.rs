//! The other CDC inputs: Debezium JSON change events and AWS DMS transaction files
//! (`CDC_TXN-*.csv`), against fixtures with expected snapshots, DMS CSV equivalence, bad
//! inputs, and (proptest) a JSON round trip.

use std::fs;
use std::path::{Path, PathBuf};

use cipherflow_core::cdc::{
    CdcError, CdcErrorKind, Cell, ChangeBatch, DebeziumOptions, DmsOptions, KeySpec, Op,
    TableSchema, TxnOptions, TxnTable, read_debezium, read_dms, read_dms_txn,
};
use cipherflow_core::merge::{MergeState, key_text};
use proptest::prelude::*;
use sha2::Digest;

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

fn schema(columns: &[&str], key: &str) -> TableSchema {
    TableSchema::new(
        columns.iter().map(|c| c.to_string()).collect(),
        &KeySpec::parse_list(key).unwrap(),
    )
    .unwrap()
}

fn customers() -> TableSchema {
    schema(&["id", "name", "balance", "city", "active"], "id:int64")
}

fn orders() -> TableSchema {
    schema(
        &["region", "order_no", "amount", "placed_at"],
        "region,order_no:int64",
    )
}

fn debezium(rel: &str, schema: &TableSchema, options: &DebeziumOptions) -> ChangeBatch {
    let path = data(rel);
    let name = path.file_name().unwrap().to_str().unwrap();
    read_debezium(name, fs::File::open(&path).unwrap(), schema, options)
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn snapshot_of(schema: &TableSchema, batches: &[&ChangeBatch]) -> String {
    let mut state = MergeState::new(schema.clone());
    for b in batches {
        state.apply(b);
    }
    let mut out = Vec::new();
    state.write_snapshot(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn value(cell: &Cell) -> &[u8] {
    match cell {
        Cell::Value(v) => v,
        Cell::Keep => panic!("keep"),
    }
}

// ---------------------------------------------------------------------------------------------
// Debezium fixtures.

#[test]
fn debezium_postgres_lines_keep_values_byte_exact() {
    let (schema, options) = (customers(), DebeziumOptions::default());
    let pg = debezium("debezium/pg-customers.jsonl", &schema, &options);
    // Seven lines: a blank line and a tombstone are not changes.
    let ops: Vec<(Op, u64)> = pg.changes.iter().map(|c| (c.op, c.order.line)).collect();
    assert_eq!(
        ops,
        [
            (Op::Insert, 1),
            (Op::Insert, 2),
            (Op::Update, 3),
            (Op::Delete, 5),
            (Op::Insert, 7),
            (Op::Insert, 8)
        ]
    );
    let file = fs::read(data("debezium/pg-customers.jsonl")).unwrap();
    assert_eq!(pg.sha256[..], sha2::Sha256::digest(&file)[..]);
    // Numbers are their JSON text; strings unescaped; booleans as words; null as the null.
    let cells = |i: usize| -> Vec<&[u8]> { pg.changes[i].cells.iter().map(value).collect() };
    assert_eq!(
        cells(0),
        [&b"1"[..], b"Ada", b"7308.00", "Zürich".as_bytes(), b"true"]
    );
    assert_eq!(
        cells(1),
        [&b"2"[..], b"Bob \"the builder\"", b"1e3", b"Oslo", b"false"]
    );
    assert_eq!(cells(2)[2..4], [&b"-0.50"[..], b""]);
    assert_eq!(
        cells(4)[1..4],
        [
            "😀 Eve".as_bytes(),
            b"12345678901234567890.123456789",
            "São Paulo\nSP".as_bytes()
        ]
    );
    // The key-only delete.
    assert!(pg.changes[3].cells.is_empty());
    assert_eq!(key_text(&pg.changes[3].key), "2");
    // LSN then total_order: the two events of transaction 572 share an LSN.
    let seq = |i: usize| pg.changes[i].order.seq.unwrap();
    assert_eq!(seq(1), (24023200u128 << 64) | 1);
    assert_eq!(seq(2), (24023200u128 << 64) | 2);
    assert_eq!(seq(0), 24023128u128 << 64);
    assert_eq!(
        pg.changes[0].order.timestamp.unwrap().to_string(),
        "2023-11-14 22:13:20.000000000"
    );

    let envelope = debezium("debezium/envelope-customers.jsonl", &schema, &options);
    assert_eq!(envelope.changes.len(), 3);
    let expected = fs::read_to_string(data("debezium/expected.csv")).unwrap();
    assert_eq!(snapshot_of(&schema, &[&pg, &envelope]), expected);
    assert_eq!(snapshot_of(&schema, &[&envelope, &pg]), expected);
}

#[test]
fn debezium_and_dms_csv_of_the_same_changes_give_the_same_snapshot() {
    let schema = customers();
    let pg = debezium(
        "debezium/pg-customers.jsonl",
        &schema,
        &DebeziumOptions::default(),
    );
    let path = data("debezium/equivalent-dms.csv");
    let dms = read_dms(
        "equivalent-dms.csv",
        fs::File::open(path).unwrap(),
        &schema,
        &DmsOptions::default(),
    )
    .unwrap();
    let from_json = snapshot_of(&schema, &[&pg]);
    assert_eq!(from_json, snapshot_of(&schema, &[&dms]));
    assert_eq!(
        from_json,
        "id,name,balance,city,active\n1,\"Ada, Countess\",-0.50,,true\n\
         3,😀 Eve,12345678901234567890.123456789,\"São Paulo\nSP\",true\n4,Dora,0,Rome,false\n"
    );
    // Cell by cell, too.
    for (j, d) in pg.changes.iter().zip(&dms.changes) {
        assert_eq!((j.op, &j.key, &j.cells), (d.op, &d.key, &d.cells));
    }
}

#[test]
fn debezium_options_pick_one_table_of_a_mixed_file() {
    let pick = |table: &str, schema: Option<&str>, columns: &TableSchema| {
        let options = DebeziumOptions {
            table: Some(table.into()),
            schema: schema.map(str::to_owned),
            ..DebeziumOptions::default()
        };
        debezium("debezium/mixed-tables.jsonl", columns, &options)
    };
    let c = pick("customers", None, &customers());
    assert_eq!(c.changes.len(), 1);
    assert_eq!(c.changes[0].order.line, 2);
    let o = pick("orders", Some("public"), &orders());
    assert_eq!(
        snapshot_of(&orders(), &[&o]),
        "region,order_no,amount,placed_at\neu,2,7.5,2024-01-05 10:02:00\n\
         eu,10,99.90,2024-01-05 10:00:00\n"
    );
    assert_eq!(pick("orders", None, &orders()).changes.len(), 3);
    // Without a filter, the orders rows are not customers rows.
    let e = read_debezium(
        "mixed-tables.jsonl",
        fs::File::open(data("debezium/mixed-tables.jsonl")).unwrap(),
        &customers(),
        &DebeziumOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "mixed-tables.jsonl, line 1, field after.region: column \"region\" is not a table column"
    );
}

#[test]
fn debezium_options_missing_as_keep_ignore_unknown_and_reject() {
    let schema = customers();
    let line = br#"{"op":"u","after":{"id":1,"name":"A","extra":[1]},"source":{"lsn":5}}"#;
    let lenient = DebeziumOptions {
        missing_as_keep: true,
        ignore_unknown: true,
        ..DebeziumOptions::default()
    };
    let b = read_debezium("k.jsonl", &line[..], &schema, &lenient).unwrap();
    assert_eq!(
        b.changes[0].cells,
        [
            Cell::Value(b"1"[..].into()),
            Cell::Value(b"A"[..].into()),
            Cell::Keep,
            Cell::Keep,
            Cell::Keep
        ]
    );
    let reject = DebeziumOptions {
        reject: true,
        ..lenient
    };
    let input = [&line[..], b"\n{\"op\":\"x\"}\n"].concat();
    let b = read_debezium("k.jsonl", &input[..], &schema, &reject).unwrap();
    assert_eq!(b.changes.len(), 1);
    assert_eq!(b.rejects.len(), 1);
    assert_eq!(b.rejects[0].fields, [b"{\"op\":\"x\"}".to_vec()]);
    assert_eq!(b.rejects[0].error.position().line, 2);
}

// ---------------------------------------------------------------------------------------------
// Debezium bad input: one case per error kind, naming object, line and field; state unchanged.

/// Whether an error is of the expected kind.
type KindCheck = fn(&CdcErrorKind) -> bool;

#[test]
fn every_bad_debezium_event_is_an_error_naming_the_place() {
    let ok = r#"{"op":"c","after":{"id":1,"name":"a","balance":1,"city":"x","active":true}}"#;
    let cases: Vec<(String, &str, KindCheck)> = vec![
        (
            format!("{ok}\n{{\"op\":\"c\",\"after\":{{\"id\":2,}}\n"),
            "bad.jsonl, line 2:",
            |k| matches!(k, CdcErrorKind::Read(_)),
        ),
        (
            "\n\n{\"after\":{\"id\":1}}\n".into(),
            "bad.jsonl, line 3, field op:",
            |k| *k == CdcErrorKind::MissingColumn("op".into()),
        ),
        (
            r#"{"op":"t","source":{"lsn":1}}"#.into(),
            "bad.jsonl, line 1, field op:",
            |k| matches!(k, CdcErrorKind::BadEvent(_)),
        ),
        (
            r#"{"op":"c","after":{"id":1,"name":{"first":"a"}}}"#.into(),
            "bad.jsonl, line 1, field after.name:",
            |k| matches!(k, CdcErrorKind::BadEvent(_)),
        ),
        (
            r#"{"op":"c","after":{"id":1,"name":"a","name":"b"}}"#.into(),
            "bad.jsonl, line 1, field after:",
            |k| matches!(k, CdcErrorKind::BadEvent(_)),
        ),
        (
            r#"{"op":"c","after":{"id":1,"nick":"a"}}"#.into(),
            "bad.jsonl, line 1, field after.nick:",
            |k| *k == CdcErrorKind::UnknownColumn("nick".into()),
        ),
        (
            r#"{"op":"u","after":{"id":1,"name":"a","balance":1,"active":true}}"#.into(),
            "bad.jsonl, line 1, field after.city:",
            |k| *k == CdcErrorKind::MissingColumn("city".into()),
        ),
        (
            r#"{"op":"d","before":null,"after":null}"#.into(),
            "bad.jsonl, line 1, field before:",
            |k| *k == CdcErrorKind::MissingColumn("before".into()),
        ),
        (
            r#"{"op":"d","before":{"id":null}}"#.into(),
            "bad.jsonl, line 1, field before.id:",
            |k| *k == CdcErrorKind::NullKey,
        ),
        (
            r#"{"op":"d","before":{"name":"a"}}"#.into(),
            "bad.jsonl, line 1, field before.id:",
            |k| *k == CdcErrorKind::NullKey,
        ),
        (
            r#"{"op":"d","before":{"id":1.5}}"#.into(),
            "bad.jsonl, line 1, field before.id:",
            |k| matches!(k, CdcErrorKind::BadKey { ty: "int64", .. }),
        ),
        (
            r#"{"op":"d","before":{"id":1},"source":{"lsn":-4}}"#.into(),
            "bad.jsonl, line 1, field source.lsn:",
            |k| matches!(k, CdcErrorKind::BadSequence(_)),
        ),
        (
            r#"{"op":"d","before":{"id":1},"source":{"lsn":4},"transaction":{"total_order":"1"}}"#
                .into(),
            "bad.jsonl, line 1, field transaction.total_order:",
            |k| matches!(k, CdcErrorKind::BadSequence(_)),
        ),
        (
            r#"{"op":"d","before":{"id":1},"ts_ms":1.5}"#.into(),
            "bad.jsonl, line 1, field ts_ms:",
            |k| matches!(k, CdcErrorKind::BadTimestamp(_)),
        ),
        (
            r#"{"op":"d","before":{"id":1},"source":{"ts_ms":"x"}}"#.into(),
            "bad.jsonl, line 1, field source.ts_ms:",
            |k| matches!(k, CdcErrorKind::BadTimestamp(_)),
        ),
        (
            r#"{"op":"d","before":{"id":1},"source":{"table":7}}"#.into(),
            "bad.jsonl, line 1, field source.table:",
            |k| matches!(k, CdcErrorKind::BadEvent(_)),
        ),
    ];
    let mut state = MergeState::new(customers());
    let good = read_debezium(
        "good.jsonl",
        ok.as_bytes(),
        &customers(),
        &DebeziumOptions::default(),
    )
    .unwrap();
    state.apply(&good);
    let mut before = Vec::new();
    state.write_snapshot(&mut before).unwrap();
    for (input, place, kind) in cases {
        let options = DebeziumOptions {
            table: input.contains("\"table\"").then(|| "customers".into()),
            ..DebeziumOptions::default()
        };
        let e: CdcError = match read_debezium("bad.jsonl", input.as_bytes(), &customers(), &options)
        {
            Ok(b) => {
                state.apply(&b);
                panic!("accepted {input}: {:?}", b.changes)
            }
            Err(e) => e,
        };
        assert!(kind(e.kind()), "{input}: {e}");
        let message = e.to_string();
        assert!(message.starts_with(place), "{message:?} names {place:?}");
    }
    let mut after = Vec::new();
    state.write_snapshot(&mut after).unwrap();
    assert_eq!(before, after);
}

// ---------------------------------------------------------------------------------------------
// Debezium round trip (proptest).

/// A JSON value and the bytes it must read back as.
fn json_value() -> impl Strategy<Value = (String, Vec<u8>)> {
    prop_oneof![
        any::<String>().prop_map(|s| (serde_json::to_string(&s).unwrap(), s.into_bytes())),
        "-?(0|[1-9][0-9]{0,30})(\\.[0-9]{1,12})?([eE][+-]?[0-9]{1,3})?"
            .prop_map(|n| (n.clone(), n.into_bytes())),
        any::<bool>().prop_map(|b| (b.to_string(), b.to_string().into_bytes())),
        Just(("null".to_string(), b"NULL".to_vec())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn rows_written_as_debezium_json_read_back_as_the_same_cells(
        rows in proptest::collection::vec(
            (any::<i64>(), proptest::collection::vec(json_value(), 3), 0..4u8),
            1..20,
        ),
        envelope in any::<bool>(),
    ) {
        let schema = schema(&["id", "a", "b", "c"], "id:int64").with_null("NULL");
        let mut file = String::new();
        for (i, (id, values, op)) in rows.iter().enumerate() {
            let image = format!(
                "{{\"id\":{id},\"a\":{},\"b\":{},\"c\":{}}}",
                values[0].0, values[1].0, values[2].0
            );
            let op = ["c", "r", "u", "d"][usize::from(*op)];
            let (before, after) = if op == "d" { (image.as_str(), "null") } else { ("null", image.as_str()) };
            let payload = format!(
                "{{\"before\":{before},\"after\":{after},\"op\":\"{op}\",\
                  \"source\":{{\"lsn\":{i},\"ts_ms\":{i}}},\"transaction\":null}}"
            );
            if envelope {
                file.push_str(&format!("{{\"schema\":{{}},\"payload\":{payload}}}\n"));
            } else {
                file.push_str(&payload);
                file.push('\n');
            }
        }
        let batch = read_debezium("p.jsonl", file.as_bytes(), &schema, &DebeziumOptions::default())
            .map_err(|e| TestCaseError::fail(format!("{e}\n{file}")))?;
        prop_assert_eq!(batch.changes.len(), rows.len());
        for (change, (id, values, op)) in batch.changes.iter().zip(&rows) {
            prop_assert_eq!(key_text(&change.key), id.to_string());
            if *op == 3 {
                prop_assert_eq!(change.op, Op::Delete);
                prop_assert!(change.cells.is_empty());
            } else {
                let mut expected = vec![Cell::Value(id.to_string().into_bytes().into())];
                expected.extend(values.iter().map(|v| Cell::Value(v.1.clone().into())));
                prop_assert_eq!(&change.cells, &expected);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// DMS transaction files.

const TXN_FILES: [&str; 2] = [
    "dms/txn/CDC_TXN-20240105-120000000.csv",
    "dms/txn/CDC_TXN-20240105-120500000.csv.gz",
];

fn txn_options() -> TxnOptions {
    TxnOptions {
        no_sup_value: Some(b"NOSUP".to_vec()),
        ..TxnOptions::default()
    }
}

#[test]
fn dms_transaction_files_split_into_per_table_snapshots() {
    let (c, o) = (customers(), orders());
    let tables = [
        TxnTable {
            schema_name: "shop",
            table_name: "orders",
            schema: &o,
        },
        TxnTable {
            schema_name: "shop",
            table_name: "customers",
            schema: &c,
        },
    ];
    let files: Vec<_> = TXN_FILES
        .iter()
        .map(|f| {
            let path = data(f);
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            read_dms_txn(
                &name,
                fs::File::open(&path).unwrap(),
                &tables,
                &txn_options(),
            )
            .unwrap_or_else(|e| panic!("{f}: {e}"))
        })
        .collect();
    let count = |f: usize, t: usize| files[f].batches[t].changes.len();
    assert_eq!(
        [count(0, 0), count(0, 1), count(1, 0), count(1, 1)],
        [4, 3, 2, 2]
    );
    // Lines count the header and the quoted newline; the sentinel keeps old values.
    let lines: Vec<u64> = files[0].batches[1]
        .changes
        .iter()
        .map(|c| c.order.line)
        .collect();
    assert_eq!(lines, [2, 5, 6]);
    assert_eq!(files[0].batches[1].changes[1].cells[2], Cell::Keep);
    let gz = fs::read(data(TXN_FILES[1])).unwrap();
    assert_eq!(
        files[1].batches[0].sha256[..],
        sha2::Sha256::digest(&gz)[..]
    );

    for (t, (schema, expected)) in [(&o, "orders"), (&c, "customers")].into_iter().enumerate() {
        let expected =
            fs::read_to_string(data(&format!("dms/txn/{expected}-expected.csv"))).unwrap();
        let (a, b) = (&files[0].batches[t], &files[1].batches[t]);
        assert_eq!(snapshot_of(schema, &[a, b]), expected);
        assert_eq!(snapshot_of(schema, &[b, a, b]), expected);
    }
}

#[test]
fn every_bad_transaction_row_is_an_error_naming_the_place() {
    let (c, o) = (customers(), orders());
    let tables = [
        TxnTable {
            schema_name: "shop",
            table_name: "orders",
            schema: &o,
        },
        TxnTable {
            schema_name: "shop",
            table_name: "customers",
            schema: &c,
        },
    ];
    let ok = "I,orders,shop,eu,1,2.00,2024-01-05\n";
    let cases: Vec<(String, &str, KindCheck)> = vec![
        (
            format!("{ok}I,orders,public,eu,2,1,2024-01-05\n"),
            "t.csv, line 2, column 2 (table):",
            |k| *k == CdcErrorKind::UnknownTable("public.orders".into()),
        ),
        (format!("{ok}I,orders\n"), "t.csv, line 2:", |k| {
            matches!(
                k,
                CdcErrorKind::ColumnCount {
                    expected: 3,
                    found: 2
                }
            )
        }),
        (
            format!("{ok}I,orders,shop,eu,2,1\n"),
            "t.csv, line 2:",
            |k| {
                matches!(
                    k,
                    CdcErrorKind::ColumnCount {
                        expected: 7,
                        found: 6
                    }
                )
            },
        ),
        (
            format!("{ok}X,customers,shop,1,a,1,x,true\n"),
            "t.csv, line 2, column 1 (Op):",
            |k| matches!(k, CdcErrorKind::UnknownOp(_)),
        ),
        (
            format!("{ok}I,customers,shop,,a,1,x,true\n"),
            "t.csv, line 2, column 4 (id):",
            |k| *k == CdcErrorKind::NullKey,
        ),
        (
            format!("{ok}I,orders,shop,eu,x,1,2024-01-05\n"),
            "t.csv, line 2, column 5 (order_no):",
            |k| matches!(k, CdcErrorKind::BadKey { ty: "int64", .. }),
        ),
        (
            format!("{ok}I,orders,shop,eu,\"3\n"),
            "t.csv, line 2:",
            |k| matches!(k, CdcErrorKind::ColumnCount { .. }),
        ),
    ];
    for (input, place, kind) in cases {
        let e = read_dms_txn("t.csv", input.as_bytes(), &tables, &TxnOptions::default())
            .map(|b| panic!("accepted {input}: {:?}", b.batches))
            .unwrap_err();
        assert!(kind(e.kind()), "{input}: {e}");
        assert!(e.to_string().starts_with(place), "{e} names {place:?}");
    }
    let twice = [tables[0], tables[0]];
    let e = read_dms_txn("t.csv", ok.as_bytes(), &twice, &TxnOptions::default()).unwrap_err();
    assert_eq!(
        *e.kind(),
        CdcErrorKind::DuplicateTable("shop.orders".into())
    );

    // Reject mode: a bad row of a known table goes to that table's rejects, a row of an
    // unknown table to the file's; the rest applies.
    let input = format!("{ok}I,nope,shop,1\nI,orders,shop,eu,x,1,2024-01-05\n{ok}");
    let options = TxnOptions {
        reject: true,
        ..TxnOptions::default()
    };
    let got = read_dms_txn("t.csv", input.as_bytes(), &tables, &options).unwrap();
    assert_eq!(got.batches[0].changes.len(), 2);
    assert_eq!(got.batches[0].rejects[0].error.position().line, 3);
    assert_eq!(got.rejects[0].error.position().line, 2);
    assert_eq!(got.skipped, 0);
}
