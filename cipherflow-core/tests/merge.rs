//! The delta-merge engine against DMS fixtures, bad inputs, and (proptest) a sequential
//! reference model: batches in any order, with any duplication, give the same bytes.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use cipherflow_core::Error;
use cipherflow_core::cdc::{
    CdcError, CdcErrorKind, ChangeBatch, DmsOptions, KeySpec, TableSchema, read_dms,
    read_dms_packed,
};
use cipherflow_core::merge::{MergeState, PackedBatches, merge_sorted, write_rejects};
use proptest::prelude::*;
use sha2::Digest;

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/dms")
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
    schema(&["id", "name", "balance", "city"], "id:int64")
}

fn customers_options() -> DmsOptions {
    DmsOptions {
        timestamp_column: Some("commit_ts".into()),
        no_sup_value: Some(b"NOSUP".to_vec()),
        ..DmsOptions::default()
    }
}

fn orders() -> TableSchema {
    schema(
        &["region", "order_no", "amount", "placed_at"],
        "region,order_no:int64",
    )
}

fn read_file(rel: &str, schema: &TableSchema, options: &DmsOptions) -> ChangeBatch {
    let path = data(rel);
    let name = path.file_name().unwrap().to_str().unwrap();
    read_dms(name, fs::File::open(&path).unwrap(), schema, options)
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn snapshot(state: &MergeState) -> Vec<u8> {
    let mut out = Vec::new();
    state.write_snapshot(&mut out).unwrap();
    out
}

fn merged_onto(state: &MergeState, base: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    merge_sorted(state, "base.csv", base, &mut out).unwrap();
    out
}

const CUSTOMER_FILES: [&str; 3] = [
    "customers/LOAD00000001.csv",
    "customers/20141029-1134010000.csv",
    "customers/20141029-1135020000.csv.gz",
];

#[test]
fn dms_full_load_cdc_partial_updates_and_gzip() {
    let (schema, options) = (customers(), customers_options());
    let batches: Vec<_> = CUSTOMER_FILES
        .iter()
        .map(|f| read_file(f, &schema, &options))
        .collect();
    assert_eq!(batches[0].changes.len(), 5);
    assert_eq!(batches[1].changes.len(), 5);
    assert_eq!(batches[2].changes.len(), 4);
    // The hash is of the stored (compressed) bytes.
    let gz = fs::read(data(CUSTOMER_FILES[2])).unwrap();
    assert_eq!(batches[2].sha256[..], sha2::Sha256::digest(&gz)[..]);

    let expected = fs::read(data("customers/expected.csv")).unwrap();
    for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
        let mut state = MergeState::new(schema.clone());
        for i in order {
            assert!(state.apply(&batches[i]));
        }
        assert!(!state.apply(&batches[1]), "an applied batch is skipped");
        assert_eq!(
            String::from_utf8(snapshot(&state)).unwrap(),
            String::from_utf8(expected.clone()).unwrap()
        );
    }

    // Stateless: the two CDC files onto the load file as a sorted base.
    let mut state = MergeState::new(schema);
    state.apply(&batches[2]);
    state.apply(&batches[1]);
    let base = fs::read(data(CUSTOMER_FILES[0])).unwrap();
    let mut out = Vec::new();
    let stats = merge_sorted(&state, "LOAD00000001.csv", &base[..], &mut out).unwrap();
    assert_eq!(
        out,
        fs::read(data("customers/expected-from-base.csv")).unwrap()
    );
    assert_eq!(
        (stats.copied, stats.updated, stats.deleted, stats.inserted),
        (1, 4, 0, 1)
    );
    assert_eq!(stats.bytes, out.len() as u64);
}

#[test]
fn seq_column_beats_file_names_and_typed_composite_keys_sort() {
    let schema = orders();
    let expected = fs::read(data("orders/expected.csv")).unwrap();
    let base = fs::read(data("orders/base.csv")).unwrap();
    let with_header = DmsOptions::default();
    let without_header = DmsOptions {
        columns: Some(
            [
                "AR_H_CHANGE_SEQ",
                "Op",
                "region",
                "order_no",
                "amount",
                "placed_at",
            ]
            .map(String::from)
            .to_vec(),
        ),
        ..DmsOptions::default()
    };
    for (dir, options) in [
        ("orders", &with_header),
        ("orders/noheader", &without_header),
    ] {
        let mut state = MergeState::new(schema.clone());
        for f in ["20240105-0000000000.csv", "20240104-0000000000.csv"] {
            state.apply(&read_file(&format!("{dir}/{f}"), &schema, options));
        }
        let out = merged_onto(&state, &base);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(expected.clone()).unwrap(),
            "{dir}"
        );
        // The tombstone for us/1 stays in the state.
        assert_eq!(
            state.rows().values().filter(|r| r.is_tombstone()).count(),
            1
        );
    }
}

#[test]
fn values_are_never_reformatted() {
    let schema = schema(&["id", "amount"], "id:decimal");
    let batch = read_dms(
        "c.csv",
        &b"Op,id,amount\nI,1.50,7308.00\nI,02,1e3\nU,1.5,00.10\n"[..],
        &schema,
        &DmsOptions::default(),
    )
    .unwrap();
    let mut state = MergeState::new(schema);
    state.apply(&batch);
    // 1.50 and 1.5 are one key; the later change's bytes are kept as they arrived.
    assert_eq!(snapshot(&state), b"id,amount\n1.5,00.10\n02,1e3\n");
}

// ---------------------------------------------------------------------------------------------
// Bad input: one test per error kind, naming the place, changing nothing.

fn bad(input: &[u8], options: &DmsOptions) -> CdcError {
    match read_dms("bad.csv", input, &customers(), options) {
        Ok(b) => panic!("accepted: {:?}", b.changes),
        Err(e) => e,
    }
}

/// Whether an error is of the expected kind.
type KindCheck = fn(&CdcErrorKind) -> bool;

#[test]
fn every_bad_input_is_an_error_naming_the_place() {
    let opts = customers_options();
    let h = "Op,commit_ts,id,name,balance,city\n";
    let cases: Vec<(Vec<u8>, DmsOptions, &str, KindCheck)> = vec![
        (
            vec![0x1f, 0x8b, 8, 0, 1, 2, 3],
            opts.clone(),
            "bad.csv",
            |k| matches!(k, CdcErrorKind::Read(_)),
        ),
        (vec![], opts.clone(), "bad.csv", |k| {
            matches!(k, CdcErrorKind::NoHeader)
        }),
        (
            b"Op,id,id\n".to_vec(),
            opts.clone(),
            "bad.csv, line 1, column 3 (id)",
            |k| matches!(k, CdcErrorKind::DuplicateColumn(_)),
        ),
        (
            b"Op,commit_ts,name\n".to_vec(),
            opts.clone(),
            "bad.csv, line 1",
            |k| *k == CdcErrorKind::MissingColumn("id".into()),
        ),
        (
            b"Op,id,name,ts\n".to_vec(),
            opts.clone(),
            "bad.csv, line 1, column 4 (ts)",
            |k| *k == CdcErrorKind::UnknownColumn("ts".into()),
        ),
        (
            b"Op,commit_ts,id,nickname\n".to_vec(),
            opts.clone(),
            "bad.csv, line 1, column 4 (nickname)",
            |k| matches!(k, CdcErrorKind::UnknownColumn(_)),
        ),
        (
            format!("{h}I,,1,a,1,x\nI,,2,b,2\n").into_bytes(),
            opts.clone(),
            "bad.csv, line 3",
            |k| {
                matches!(
                    k,
                    CdcErrorKind::ColumnCount {
                        expected: 6,
                        found: 5
                    }
                )
            },
        ),
        (
            format!("{h}I,,1,a,1,x\nX,,2,b,2,y\n").into_bytes(),
            opts.clone(),
            "bad.csv, line 3, column 1 (Op)",
            |k| matches!(k, CdcErrorKind::UnknownOp(_)),
        ),
        (
            format!("{h}I,,1,\"a\nb\",1,x\nU,,,b,2,y\n").into_bytes(),
            opts.clone(),
            "bad.csv, line 4, column 3 (id)",
            |k| *k == CdcErrorKind::NullKey,
        ),
        (
            format!("{h}D,,NOSUP,,,\n").into_bytes(),
            opts.clone(),
            "bad.csv, line 2, column 3 (id)",
            |k| *k == CdcErrorKind::NullKey,
        ),
        (
            format!("{h}I,,1.0,a,1,x\n").into_bytes(),
            opts.clone(),
            "bad.csv, line 2, column 3 (id)",
            |k| matches!(k, CdcErrorKind::BadKey { ty: "int64", .. }),
        ),
        (
            format!("{h}I,2014-10-29 25:00:00,1,a,1,x\n").into_bytes(),
            opts.clone(),
            "bad.csv, line 2, column 2 (commit_ts)",
            |k| matches!(k, CdcErrorKind::BadTimestamp(_)),
        ),
        (
            b"AR_H_CHANGE_SEQ,Op,id\n1.5e3,I,1\n".to_vec(),
            DmsOptions::default(),
            "bad.csv, line 2, column 1 (AR_H_CHANGE_SEQ)",
            |k| matches!(k, CdcErrorKind::BadSequence(_)),
        ),
        (
            b"Op,id\xff\n".to_vec(),
            DmsOptions::default(),
            "bad.csv, line 1, column 2",
            |k| *k == CdcErrorKind::InvalidUtf8,
        ),
    ];
    for (input, options, place, kind) in cases {
        let e = bad(&input, &options);
        assert!(kind(e.kind()), "{e}");
        let message = Error::from(e).to_string();
        assert!(
            message.starts_with(&format!("{place}:")),
            "{message:?} names {place:?}"
        );
    }
    // A string key must be UTF-8.
    let e = read_dms(
        "s.csv",
        &b"Op,name\nI,ok\nI,\xc3\x28\n"[..],
        &schema(&["name"], "name"),
        &DmsOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "s.csv, line 3, column 2 (name): invalid UTF-8 where text is required"
    );
}

#[test]
fn a_refused_batch_leaves_the_state_untouched() {
    let (schema, options) = (customers(), customers_options());
    let mut state = MergeState::new(schema.clone());
    state.apply(&read_file(CUSTOMER_FILES[0], &schema, &options));
    let before = snapshot(&state);
    let input = b"Op,commit_ts,id,name,balance,city\nI,,9,new,1,x\nQ,,1,a,1,x\n";
    let result = read_dms("late.csv", &input[..], &schema, &options);
    assert!(result.is_err());
    if let Ok(batch) = result {
        state.apply(&batch);
    }
    assert_eq!(snapshot(&state), before);
}

#[test]
fn bad_base_snapshots_are_errors_naming_the_place() {
    let schema = orders();
    let state = MergeState::new(schema);
    let cases: [(&[u8], &str); 5] = [
        (b"", "base.csv: empty input"),
        (b"region,order_no,amount\n", "base.csv, line 1: header is"),
        (
            b"region,order_no,amount,placed_at\neu,10,1,t\neu,2,1,t\n",
            "base.csv, line 3: key is not greater",
        ),
        (
            b"region,order_no,amount,placed_at\neu,1,1,t\neu,1,1,t\n",
            "base.csv, line 3: key is not greater",
        ),
        (
            b"region,order_no,amount,placed_at\neu,x,1,t\n",
            "base.csv, line 2, column 2 (order_no): key \"x\" is not a valid int64",
        ),
    ];
    for (base, message) in cases {
        let mut out = Vec::new();
        let e = merge_sorted(&state, "base.csv", base, &mut out).unwrap_err();
        assert!(e.to_string().starts_with(message), "{e} / {message}");
    }
}

#[test]
fn reject_mode_keeps_good_rows_and_reports_bad_ones() {
    let (schema, mut options) = (customers(), customers_options());
    options.reject = true;
    let input =
        b"Op,commit_ts,id,name,balance,city\nI,,1,a,1,x\nZ,,2,b,2,y\nI,,3,c\nI,,4,\"d,e\",4,z\n";
    let batch = read_dms("r.csv", &input[..], &schema, &options).unwrap();
    assert_eq!(batch.changes.len(), 2);
    assert_eq!(batch.rejects.len(), 2);
    let mut out = Vec::new();
    write_rejects(&batch.rejects, &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "object,line,column,reason,record\n\
         r.csv,3,1 (Op),\"unknown Op \"\"Z\"\" (expected I, U or D)\",\"Z,,2,b,2,y\"\n\
         r.csv,4,,\"expected 6 fields, found 4\",\"I,,3,c\"\n"
    );
    let mut state = MergeState::new(schema);
    state.apply(&batch);
    assert_eq!(
        snapshot(&state),
        b"id,name,balance,city\n1,a,1,x\n4,\"d,e\",4,z\n"
    );
}

#[test]
fn tombstones_block_late_inserts_until_purged() {
    let schema = schema(&["id", "v"], "id:int64");
    let opts = DmsOptions::default();
    let read = |name: &str, text: &str| read_dms(name, text.as_bytes(), &schema, &opts).unwrap();
    let mut state = MergeState::new(schema.clone());
    state.apply(&read("2.csv", "Op,id,v\nD,1,\n"));
    state.apply(&read("1.csv", "Op,id,v\nI,1,old\n"));
    assert_eq!(snapshot(&state), b"id,v\n");
    let cutoff = read("3.csv", "Op,id,v\nI,9,x\n").changes[0].order.clone();
    assert_eq!(state.purge_tombstones(&cutoff), 1);
    assert_eq!(state.rows().len(), 0);
}

// ---------------------------------------------------------------------------------------------
// Property: any batching, order and duplication equals a sequential reference model.

const VALUES: [&[u8]; 9] = [
    b"",
    b"x",
    b"7308.00",
    b"1,5",
    b"q\"uote",
    b"two\nlines",
    b"cr\r",
    b" sp ",
    b"NOSUP",
];
const STRINGS: [&str; 4] = ["a", "b,c", "\u{e9}", "z\"q"];

#[derive(Debug, Clone)]
struct Ch {
    op: u8,
    k1: i64,
    k1_text: String,
    k2: &'static str,
    values: [&'static [u8]; 2],
    /// The value of `v3`, a column added mid-stream (written only by changes after it).
    v3: &'static [u8],
}

fn change() -> impl Strategy<Value = Ch> {
    (
        prop::sample::select(vec![b'I', b'U', b'D']),
        -2i64..4,
        0usize..3,
        prop::sample::select(STRINGS.to_vec()),
        prop::sample::select(VALUES.to_vec()),
        prop::sample::select(VALUES.to_vec()),
        prop::sample::select(VALUES.to_vec()),
    )
        .prop_map(|(op, k1, form, k2, v1, v2, v3)| Ch {
            op,
            k1,
            k1_text: match form {
                0 => k1.to_string(),
                1 => format!("{k1:+}"),
                _ => format!("{}{:03}", if k1 < 0 { "-" } else { "" }, k1.abs()),
            },
            k2,
            values: [v1, v2],
            v3,
        })
}

/// The reference: a sorted map, changes applied one after another in their true order.
type Model = BTreeMap<(i64, &'static str), Vec<Vec<u8>>>;

/// `added`: the change comes after column `v3` was added (it writes `v3`).
fn model_apply(model: &mut Model, ch: &Ch, added: bool) {
    let key = (ch.k1, ch.k2);
    if ch.op == b'D' {
        model.remove(&key);
        return;
    }
    let row = model.entry(key).or_insert_with(|| vec![Vec::new(); 5]);
    row[0] = ch.k1_text.as_bytes().to_vec();
    row[1] = ch.k2.as_bytes().to_vec();
    for (i, v) in ch.values.iter().enumerate() {
        if *v != b"NOSUP" {
            row[2 + i] = v.to_vec();
        }
    }
    if added && ch.v3 != b"NOSUP" {
        row[4] = ch.v3.to_vec();
    }
}

/// Encodes with the `csv` crate (not the engine's encoder), one record at a time, LF ends;
/// with `v3` when it was `added`.
fn model_csv(model: &Model, added: bool) -> Vec<u8> {
    let width = if added { 5 } else { 4 };
    let mut out = Vec::new();
    let mut record = |fields: &[&[u8]]| {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(Vec::new());
        w.write_record(fields).unwrap();
        let mut bytes = w.into_inner().unwrap();
        assert!(bytes.ends_with(b"\r\n"));
        bytes.truncate(bytes.len() - 2);
        out.extend_from_slice(&bytes);
        out.push(b'\n');
    };
    let header: [&[u8]; 5] = [b"k1", b"k2", b"v1", b"v2", b"v3"];
    record(&header[..width]);
    for row in model.values() {
        let fields: Vec<&[u8]> = row[..width].iter().map(Vec::as_slice).collect();
        record(&fields);
    }
    out
}

/// A DMS file of `changes` (change, sequence, after the column was added); the file has
/// column `v3` when any of its changes comes after it was added, and then the changes from
/// before write the sentinel there (kept, as DMS writes for a column it has no value for).
fn change_csv(changes: &[(Ch, Option<u128>, bool)], with_seq: bool) -> Vec<u8> {
    let wide = changes.iter().any(|c| c.2);
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    let mut header = vec!["Op", "k1", "k2", "v1", "v2"];
    if wide {
        header.push("v3");
    }
    if with_seq {
        header.insert(0, "AR_H_CHANGE_SEQ");
    }
    w.write_record(&header).unwrap();
    for (ch, seq, added) in changes {
        let mut fields: Vec<Vec<u8>> = vec![
            vec![ch.op],
            ch.k1_text.clone().into_bytes(),
            ch.k2.as_bytes().to_vec(),
            ch.values[0].to_vec(),
            ch.values[1].to_vec(),
        ];
        if wide {
            fields.push(if *added { ch.v3 } else { b"NOSUP" }.to_vec());
        }
        if with_seq {
            fields.insert(0, format!("{:035}", seq.unwrap()).into_bytes());
        }
        w.write_record(&fields).unwrap();
    }
    w.into_inner().unwrap()
}

#[derive(Debug, Clone)]
struct Case {
    base: Vec<Ch>,
    stream: Vec<Ch>,
    with_seq: bool,
    /// For each change in true order, which batch it goes to (with seq) or where the batch
    /// boundaries are (without: batch i is changes with assignment i, kept contiguous).
    batch_of: Vec<usize>,
    batches: usize,
    /// Application order: batch indices, each at least once, some repeated.
    schedule: Vec<usize>,
    shuffle_seed: u64,
    /// Changes from this index on (in true order) come after column `v3` was added.
    added_at: usize,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(change(), 0..12),
        prop::collection::vec(change(), 0..40),
        any::<bool>(),
        1usize..6,
        any::<u64>(),
        0usize..50,
    )
        .prop_flat_map(|(base, stream, with_seq, batches, seed, added_at)| {
            let n = stream.len();
            (
                Just(base),
                Just(stream),
                Just(with_seq),
                prop::collection::vec(0..batches, n),
                Just(batches),
                Just((0..batches).collect::<Vec<_>>()).prop_shuffle(),
                prop::collection::vec(0..batches, 0..4),
                Just((seed, added_at)),
            )
        })
        .prop_map(
            |(base, stream, with_seq, mut batch_of, batches, order, dups, (seed, added_at))| {
                if !with_seq {
                    // Contiguous batches in stream order: file name then line order is the
                    // true order.
                    batch_of.sort_unstable();
                }
                let mut schedule = order;
                for (i, d) in dups.into_iter().enumerate() {
                    let at = (seed as usize).wrapping_add(i * 7) % (schedule.len() + 1);
                    schedule.insert(at, d);
                }
                Case {
                    base,
                    stream,
                    with_seq,
                    batch_of,
                    batches,
                    schedule,
                    shuffle_seed: seed,
                    added_at,
                }
            },
        )
}

fn table() -> TableSchema {
    schema(&["k1", "k2", "v1", "v2"], "k1:int64,k2")
}

fn run_case(case: &Case) -> Result<(), TestCaseError> {
    // The reference model.
    let mut model = Model::new();
    for ch in &case.base {
        let mut ch = ch.clone();
        ch.op = b'I';
        ch.k1_text = ch.k1.to_string();
        ch.values = ch
            .values
            .map(|v| if v == b"NOSUP" { b"" as &[u8] } else { v });
        model_apply(&mut model, &ch, false);
    }
    let base_csv = model_csv(&model, false);
    for (i, ch) in case.stream.iter().enumerate() {
        model_apply(&mut model, ch, i >= case.added_at);
    }
    let added = case.added_at < case.stream.len();
    let expected = model_csv(&model, added);

    // The batches: with a sequence column, rows are spread over batches in shuffled order;
    // without, batches are contiguous runs named in order.
    let mut per_batch: Vec<Vec<(Ch, Option<u128>, bool)>> = vec![Vec::new(); case.batches];
    for (i, ch) in case.stream.iter().enumerate() {
        let seq = 10u128.pow(34) + i as u128 * 1_000_003;
        per_batch[case.batch_of[i]].push((ch.clone(), Some(seq), i >= case.added_at));
    }
    if case.with_seq {
        for (b, rows) in per_batch.iter_mut().enumerate() {
            let len = rows.len().max(1);
            let r = (case.shuffle_seed as usize).wrapping_add(b) % len;
            rows.rotate_left(r);
            if case.shuffle_seed & (1 << b) != 0 {
                rows.reverse();
            }
        }
    }
    let schema = table();
    let options = DmsOptions {
        no_sup_value: Some(b"NOSUP".to_vec()),
        added_columns: true,
        ..DmsOptions::default()
    };
    let files: Vec<(String, Vec<u8>)> = per_batch
        .iter()
        .enumerate()
        .map(|(b, rows)| {
            // With a sequence column, name order must not matter: reverse it.
            let name = if case.with_seq {
                format!("b{:03}.csv", 999 - b)
            } else {
                format!("b{b:03}.csv")
            };
            (name, change_csv(rows, case.with_seq))
        })
        .collect();
    // Each file is read against the table as the state has it when the file is applied (a
    // file that adds `v3` widens it for the files after it), as the command and the pipeline
    // read them.
    let apply = |state: &mut MergeState, b: usize| -> Result<(), TestCaseError> {
        let (name, bytes) = &files[b];
        let batch = read_dms(name, &bytes[..], state.schema(), &options)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        state.apply(&batch);
        Ok(())
    };

    let mut state = MergeState::new(schema.clone());
    for &b in &case.schedule {
        apply(&mut state, b)?;
    }
    let mut out = Vec::new();
    merge_sorted(&state, "base.csv", &base_csv[..], &mut out)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&expected)
    );

    // The one-off form: the same batches kept packed (as `cipherflow merge` reads them),
    // each key resolved as the merge reaches it.
    let mut packed = PackedBatches::new(schema.clone());
    for &b in &case.schedule {
        let (name, bytes) = &files[b];
        let mut batch = read_dms_packed(name, &bytes[..], packed.schema(), &options)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        batch.sort_by_key();
        packed.push(batch);
    }
    let mut out = Vec::new();
    merge_sorted(&packed, "base.csv", &base_csv[..], &mut out)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&expected)
    );

    // Stateful: the base as a full-load batch (named to sort first, no sequence) plus the
    // same batches, snapshot written from the state alone.
    let mut state = MergeState::new(schema);
    for &b in case.schedule.iter().rev() {
        apply(&mut state, b)?;
    }
    let load = read_dms("0-load.csv", &base_csv[..], state.schema(), &options)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    state.apply(&load);
    let mut out = Vec::new();
    state.write_snapshot(&mut out).unwrap();
    prop_assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&expected)
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_batching_order_and_duplication_equals_the_sequential_model(case in case()) {
        run_case(&case)?;
    }
}

#[test]
fn the_null_value_is_configurable() {
    let schema = schema(&["name", "v"], "name").with_null(b"NULL".to_vec());
    let opts = DmsOptions::default();
    // With a word for null, an empty string is a value, even in a key.
    let batch = read_dms("n.csv", &b"Op,name,v\nI,,NULL\nI,a,\n"[..], &schema, &opts).unwrap();
    let mut state = MergeState::new(schema.clone());
    state.apply(&batch);
    assert_eq!(snapshot(&state), b"name,v\n,NULL\na,\n");
    let e = read_dms("n.csv", &b"Op,name,v\nI,NULL,x\n"[..], &schema, &opts).unwrap_err();
    assert_eq!(
        e.to_string(),
        "n.csv, line 2, column 2 (name): key field is null"
    );
    // A column no change wrote after a delete is written as the null value.
    let batch = read_dms(
        "m.csv",
        &b"Op,name,v\nI,b,1\nD,b,NULL\nU,b,NOSUP\n"[..],
        &schema,
        &DmsOptions {
            no_sup_value: Some(b"NOSUP".to_vec()),
            ..DmsOptions::default()
        },
    )
    .unwrap();
    let mut state = MergeState::new(schema);
    state.apply(&batch);
    assert_eq!(snapshot(&state), b"name,v\nb,NULL\n");
}

#[test]
fn damaged_gzip_is_refused() {
    let gz = fs::read(data(CUSTOMER_FILES[2])).unwrap();
    let (schema, options) = (customers(), customers_options());
    for damaged in [gz[..gz.len() - 12].to_vec(), {
        let mut g = gz.clone();
        g[40] ^= 0x55;
        g
    }] {
        let e = read_dms("x.csv.gz", &damaged[..], &schema, &options).unwrap_err();
        assert!(matches!(e.kind(), CdcErrorKind::Read(_)), "{e}");
        assert!(e.to_string().starts_with("x.csv.gz"), "{e}");
    }
}

#[test]
fn line_numbers_count_crlf_ends_and_blank_lines() {
    let e = read_dms(
        "crlf.csv",
        &b"Op,id,v\r\nI,1,a\r\n\r\nI,2,\"b\r\nc\"\r\nX,3,c\r\n"[..],
        &schema(&["id", "v"], "id:int64"),
        &DmsOptions::default(),
    )
    .unwrap_err();
    assert_eq!(e.position().line, 6, "{e}");
    assert_eq!(e.position().record, 4, "{e}");
}

fn added_columns_options() -> DmsOptions {
    DmsOptions {
        added_columns: true,
        ..DmsOptions::default()
    }
}

const ORDER_FILES: [&str; 3] = [
    "orders/20240104-0000000000.csv",
    "orders/20240105-0000000000.csv",
    "orders/addcol/20240106-0000000000.csv",
];

#[test]
fn an_added_column_is_appended_with_nulls_for_older_rows_in_any_order() {
    let options = added_columns_options();
    let expected = fs::read(data("orders/addcol/expected.csv")).unwrap();
    let base = fs::read(data("orders/base.csv")).unwrap();
    for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]] {
        // Each file is read with the state's schema as it stands, as the command does.
        let mut state = MergeState::new(orders());
        for i in order {
            let batch = read_file(ORDER_FILES[i], state.schema(), &options);
            let adds = batch.added_columns.clone();
            assert!(state.apply(&batch));
            if i == 2 && adds.is_empty() {
                assert_eq!(state.schema().columns().len(), 5, "already added");
            }
        }
        assert_eq!(state.schema().columns()[4], "channel");
        // The base predates the column: its rows get null, untouched rows stay raw.
        let out = merged_onto(&state, &base);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(expected.clone()).unwrap(),
            "order {order:?}"
        );
        // The new column's file, applied again, changes nothing.
        let again = read_file(ORDER_FILES[2], state.schema(), &options);
        assert!(again.added_columns.is_empty());
        assert!(!state.apply(&again));
    }
}

#[test]
fn header_less_files_may_end_before_an_added_column() {
    let options = DmsOptions {
        columns: Some(
            "AR_H_CHANGE_SEQ,Op,region,order_no,amount,placed_at,channel"
                .split(',')
                .map(String::from)
                .collect(),
        ),
        ..added_columns_options()
    };
    let mut state = MergeState::new(orders());
    for f in [
        "orders/addcol/noheader/20240106-0000000000.csv",
        "orders/noheader/20240104-0000000000.csv",
        "orders/noheader/20240105-0000000000.csv",
    ] {
        let batch = read_file(f, state.schema(), &options);
        state.apply(&batch);
    }
    let base = fs::read(data("orders/base.csv")).unwrap();
    assert_eq!(
        merged_onto(&state, &base),
        fs::read(data("orders/addcol/expected.csv")).unwrap()
    );
    // One field count per object: a record shorter than the object's first is refused.
    let mixed = b"1,I,eu,5,1.00,2024-01-01 10:00:00,web\n2,I,eu,6,2.00,2024-01-01 10:00:00\n";
    let e = read_dms("mixed.csv", &mixed[..], state.schema(), &options).unwrap_err();
    assert_eq!(e.position().line, 2);
    assert_eq!(
        *e.kind(),
        CdcErrorKind::ColumnCount {
            expected: 7,
            found: 6
        }
    );
    // A key column cannot be missing.
    let short = b"1,I,eu\n";
    let e = read_dms("short.csv", &short[..], state.schema(), &options).unwrap_err();
    assert!(matches!(e.kind(), CdcErrorKind::ColumnCount { .. }), "{e}");
}

#[test]
fn other_schema_changes_are_errors_naming_object_line_and_column() {
    let options = added_columns_options();
    let cases = [
        (
            "bad-renamed.csv",
            6,
            "placed",
            "new column \"placed\" while table column \"placed_at\" is missing",
        ),
        (
            "bad-reordered.csv",
            5,
            "placed_at",
            "table column \"placed_at\" is out of order",
        ),
        (
            "bad-inserted.csv",
            6,
            "amount",
            "table column \"amount\" comes after the new column \"channel\"",
        ),
    ];
    for (file, column, name, why) in cases {
        let path = data(&format!("orders/addcol/{file}"));
        let e = read_dms(file, fs::File::open(&path).unwrap(), &orders(), &options).unwrap_err();
        let pos = e.position();
        assert_eq!((pos.object.as_str(), pos.line), (file, 1), "{e}");
        let col = pos.column.as_ref().expect("a column");
        assert_eq!(
            (col.index, col.name.as_deref()),
            (column, Some(name)),
            "{e}"
        );
        assert!(
            matches!(e.kind(), CdcErrorKind::SchemaChange(w) if w.starts_with(why)),
            "{e}"
        );
        assert!(e.to_string().contains("unsupported schema change"), "{e}");
    }
    // Without `added_columns` (the pipeline's reader), a well-placed new column is refused
    // as such, and a misplaced unknown name is still an unknown column.
    let path = data(ORDER_FILES[2]);
    let e = read_dms(
        "20240106-0000000000.csv",
        fs::File::open(&path).unwrap(),
        &orders(),
        &DmsOptions::default(),
    )
    .unwrap_err();
    assert_eq!(*e.kind(), CdcErrorKind::AddedColumn("channel".into()));
    assert_eq!(e.position().column.as_ref().unwrap().index, 7);
    let path = data("orders/addcol/bad-inserted.csv");
    let e = read_dms(
        "x.csv",
        fs::File::open(&path).unwrap(),
        &orders(),
        &DmsOptions::default(),
    )
    .unwrap_err();
    assert_eq!(*e.kind(), CdcErrorKind::UnknownColumn("channel".into()));
}

/// `apply` (rows found by walking the map or by look-ups, depending on the batch's size
/// against the state's) builds exactly the state that folding each change in file order
/// with `apply_change` builds.
#[test]
fn apply_equals_folding_each_change() {
    let schema = schema(&["id", "v", "w"], "id:int64");
    let options = DmsOptions {
        no_sup_value: Some(b"NOSUP".to_vec()),
        ..DmsOptions::default()
    };
    // A pseudo-random stream: inserts, partial updates, deletes, older and newer sequences.
    let mut x = 7u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut batch = |name: &str, n: usize, keys: u64| {
        let mut text = String::from("Op,AR_H_CHANGE_SEQ,id,v,w\n");
        for _ in 0..n {
            let r = next();
            let op = ["I", "U", "U", "D"][(r % 4) as usize];
            let w = if r % 5 == 0 {
                "NOSUP".to_string()
            } else {
                (r % 97).to_string()
            };
            text.push_str(&format!(
                "{op},{:035},{},v{},{w}\n",
                r % 100_000,
                (r >> 20) % keys,
                r % 13
            ));
        }
        read_dms(name, text.as_bytes(), &schema, &options).unwrap()
    };
    // Big first (walks an empty map), small onto a big state (look-ups), then medium.
    let batches = [
        batch("a.csv", 3000, 2000),
        batch("b.csv", 40, 2000),
        batch("c.csv", 900, 3000),
        batch("d.csv", 5, 2000),
    ];
    let mut by_batch = MergeState::new(schema.clone());
    let mut by_change = MergeState::new(schema.clone());
    for b in &batches {
        assert!(by_batch.apply(b));
        b.changes.iter().for_each(|c| by_change.apply_change(c));
    }
    assert!(!by_batch.apply(&batches[1]), "an applied batch is skipped");
    assert_eq!(by_batch.rows(), by_change.rows());
    assert_eq!(snapshot(&by_batch), snapshot(&by_change));
}
