//! Records as a pipeline input (`format = "records"`) and the landing sink: landed record
//! files in any order, replayed, or older than what the table holds give the same table; a
//! bad file refuses the step and nothing is written; `Ingest` with the landing sink feeds the
//! step, and a replay lands nothing; `pipeline.toml` takes its table from the schema.

use std::path::Path;
use std::sync::Arc;

use cipherflow_core::ledger::{Actor, Kind, Ledger};
use cipherflow_core::pipeline::{
    Consumer, InputFormat, Keys, LandingSink, Location, Pipeline, PipelineConfig, PipelineError,
    Stores, Table,
};
use cipherflow_core::records::{Format, Ingest, Reason, RecordSchema, RecordsError, RejectTarget};
use cipherflow_core::store::{MemoryStore, ObjectKey, ObjectStore, PutMode, block_on};
use cipherflow_core::{Error, RsaPrivateKey, RsaPublicKey, SigningKey, Verifier};

const SCHEMA: &str = r#"
name = "devices"
key = ["device_id"]
version = "updated"
[columns.device_id]
type = "string"
pattern = "^device-[0-9]{3}$"
[columns.updated]
type = "timestamp"
[columns.value]
type = "decimal"
min = 0
max = 10000
nullable = true
"#;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .unwrap()
}

fn signer() -> SigningKey {
    SigningKey::from_bytes(&data("producer.pem")).unwrap()
}

fn schema() -> Arc<RecordSchema> {
    Arc::new(RecordSchema::from_toml(SCHEMA).unwrap())
}

fn pipeline(store: Arc<dyn ObjectStore>) -> Pipeline {
    let state = RsaPrivateKey::from_bytes(&data("producer-rsa.pem")).unwrap();
    let signer = signer();
    let records = schema();
    Pipeline {
        table: Table {
            name: "devices".into(),
            schema: records.table_schema(),
            key: "device_id:string".into(),
            partitions: 2,
        },
        stores: Stores {
            landing: Location::new(store.clone(), "landing/devices/"),
            state: Location::new(store.clone(), "state"),
            share: Location::new(store.clone(), "share"),
            ledger: Location::new(store, "ledger"),
        },
        keys: Keys {
            recipients: vec![Arc::new(
                RsaPublicKey::from_bytes(&data("alice.pub.pem")).unwrap(),
            )],
            state_seal: Arc::new(state.public_key().clone()),
            state_open: Arc::new(state),
            state_verifier: Some(Arc::new(signer.verifying_key().clone())),
            signer: Some(Arc::new(signer)),
        },
        input: InputFormat::Records(records),
        compact_after: 2,
        actor: Actor {
            principal: "test".into(),
            ..Actor::default()
        },
    }
}

/// Three files, one per format. device-001: 10:00 (a), 11:00 (b, newest), 09:30 (c, oldest);
/// device-002: 10:00 (a), 11:00Z written as 12:00+01:00 (c, newest); device-003 only in b.
const FILES: [(&str, &str); 3] = [
    (
        "a.json",
        r#"[{"device_id": "device-001", "updated": "2026-02-01T10:00:00Z", "value": 1},
 {"device_id": "device-002", "updated": "2026-02-01T10:00:00Z", "value": 2.50}]"#,
    ),
    (
        "b.jsonl",
        "{\"device_id\": \"device-001\", \"updated\": \"2026-02-01T11:00:00Z\", \"value\": 10.000}\n\
         {\"device_id\": \"device-003\", \"updated\": \"2026-02-01T09:00:00Z\"}\n",
    ),
    (
        "c.csv",
        "value,device_id,updated\n0.5,device-001,2026-02-01T09:30:00Z\n\
         7308.00,device-002,2026-02-01T12:00:00+01:00\n",
    ),
];

const EXPECTED: &str = "device_id,updated,value\n\
                        device-001,2026-02-01T11:00:00Z,10.000\n\
                        device-002,2026-02-01T12:00:00+01:00,7308.00\n\
                        device-003,2026-02-01T09:00:00Z,\n";

fn land(store: &dyn ObjectStore, name: &str, text: &str) {
    let key = ObjectKey::new(format!("landing/devices/{name}")).unwrap();
    block_on(store.put(&key, text.as_bytes().to_vec().into(), PutMode::Overwrite)).unwrap();
}

fn pull(store: Arc<dyn ObjectStore>) -> String {
    let out = tempfile::tempdir().unwrap();
    let consumer = Consumer {
        share: Location::new(store, "share"),
        key: Arc::new(RsaPrivateKey::from_bytes(&data("alice.pem")).unwrap()),
        signer: Some(Arc::new(signer().verifying_key().clone()) as Arc<dyn Verifier>),
    };
    block_on(consumer.pull("devices", out.path())).unwrap();
    std::fs::read_to_string(out.path().join("devices.csv")).unwrap()
}

/// Every object outside the landing prefix, with its content.
fn published(store: &dyn ObjectStore) -> Vec<(String, Vec<u8>)> {
    block_on(store.list(""))
        .unwrap()
        .into_iter()
        .filter(|m| !m.key.as_str().starts_with("landing/"))
        .map(|m| {
            let bytes = block_on(store.get(&m.key)).unwrap().0.to_vec();
            (m.key.to_string(), bytes)
        })
        .collect()
}

#[test]
fn any_landing_order_and_replays_give_the_same_table() {
    let orders: [[usize; 3]; 6] = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for order in orders {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let p = pipeline(store.clone());
        for &i in &order {
            let (name, text) = FILES[i];
            land(&*store, name, text);
            let report = block_on(p.run_once()).unwrap();
            assert_eq!(report.applied, vec![format!("landing/devices/{name}")]);
            // A replay (the same bytes again) is skipped: no new generation.
            land(&*store, name, text);
            let again = block_on(p.run_once()).unwrap();
            assert_eq!(again.generation, report.generation, "{order:?}");
            assert!(again.applied.is_empty());
        }
        assert_eq!(pull(store.clone()), EXPECTED, "order {order:?}");
        // The same files again under other names: applied, and the table is the same.
        for (name, text) in FILES {
            land(&*store, &format!("again-{name}"), text);
        }
        let report = block_on(p.run_once()).unwrap();
        assert_eq!(report.applied.len(), 3);
        assert_eq!(pull(store), EXPECTED, "order {order:?}, replayed");
    }
    // All three in one step.
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    for (name, text) in FILES {
        land(&*store, name, text);
    }
    assert_eq!(
        block_on(pipeline(store.clone()).run_once())
            .unwrap()
            .changes,
        6
    );
    assert_eq!(pull(store), EXPECTED);
}

#[test]
fn an_older_version_after_a_newer_one_changes_nothing() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let p = pipeline(store.clone());
    for (name, text) in FILES {
        land(&*store, name, text);
    }
    block_on(p.run_once()).unwrap();
    let before = pull(store.clone());
    land(
        &*store,
        "late.jsonl",
        "{\"device_id\": \"device-001\", \"updated\": \"2026-02-01T10:59:59.999999999Z\", \"value\": 99}\n\
         {\"device_id\": \"device-002\", \"updated\": \"2026-02-01T11:00:00+00:00\", \"value\": null}\n",
    );
    let report = block_on(p.run_once()).unwrap();
    assert_eq!(report.changes, 2);
    // device-001's late record is older than 11:00: no change. device-002's has the same
    // instant as the newest (11:00Z, written 12:00+01:00 in c.csv): a tie, which the object
    // name breaks ("landing/devices/late.jsonl" > "landing/devices/c.csv"), as for DMS files.
    let after = pull(store.clone());
    let expected_after = before.replace(
        "device-002,2026-02-01T12:00:00+01:00,7308.00",
        "device-002,2026-02-01T11:00:00+00:00,",
    );
    assert_eq!(after, expected_after);
    // Strictly older: nothing changes.
    land(
        &*store,
        "older.json",
        r#"{"device_id": "device-003", "updated": "2026-02-01T08:59:59Z", "value": 5}"#,
    );
    block_on(p.run_once()).unwrap();
    assert_eq!(pull(store), after);
}

#[test]
fn a_bad_file_refuses_the_step_and_nothing_is_written() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let p = pipeline(store.clone());
    land(&*store, FILES[0].0, FILES[0].1);
    block_on(p.run_once()).unwrap();
    let before = published(&*store);
    land(&*store, FILES[1].0, FILES[1].1);
    land(
        &*store,
        "bad.json",
        "[{\"device_id\": \"device-004\", \"updated\": \"2026-02-01T10:00:00Z\"},\n\
          {\"device_id\": \"device-5\", \"updated\": \"2026-02-01T10:00:00Z\", \"value\": 10001}]",
    );
    let err = block_on(p.run_once()).unwrap_err();
    let Error::Records(RecordsError::Invalid { object, errors }) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(object, "landing/devices/bad.json");
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            r#"landing/devices/bad.json, record 2 (line 2), field "device_id": "device-5" does not match the pattern "^device-[0-9]{3}$""#,
            r#"landing/devices/bad.json, record 2 (line 2), field "value": 10001 is greater than the maximum 10000"#,
        ]
    );
    assert!(matches!(errors[0].reason, Reason::Pattern { .. }));
    assert_eq!(
        published(&*store),
        before,
        "the refused step wrote something"
    );

    // A name whose extension says no format: refused, naming the object.
    let key = ObjectKey::new("landing/devices/bad.json").unwrap();
    block_on(store.delete(&key)).unwrap();
    land(&*store, "notes.txt", "device-001");
    let err = block_on(p.run_once()).unwrap_err();
    assert!(
        matches!(&err, Error::Pipeline(PipelineError::Input { object, .. }) if object == "landing/devices/notes.txt"),
        "{err:?}"
    );
    assert_eq!(published(&*store), before);
}

#[test]
fn ingest_through_the_landing_sink_feeds_the_step_and_a_replay_lands_nothing() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let p = pipeline(store.clone());
    let records = schema();
    let sink = LandingSink::of(&p);
    let rejects: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let mut ingest = Ingest {
        schema: &records,
        sink: &sink,
        rejects: Some(RejectTarget {
            store: rejects.clone(),
            prefix: "rejects/".into(),
        }),
        max_bytes: None,
        ledger: None,
    };
    // a.json with one bad record added: rejected, the rest lands.
    let with_bad = FILES[0].1.replace(
        "}]",
        "},\n {\"device_id\": \"device-009\", \"updated\": \"yesterday\"}]",
    );
    let mut landed = Vec::new();
    for (name, text) in [("a.json", with_bad.as_str()), FILES[1], FILES[2]] {
        let format = Format::from_name(name).unwrap();
        let report = block_on(ingest.object(name, text.as_bytes(), format)).unwrap();
        assert_eq!(report.skipped, 0);
        landed.push(report);
    }
    assert_eq!(landed[0].read, 3);
    assert_eq!(
        (landed[0].written.clone(), landed[0].rejected),
        (vec![1, 2], 1)
    );
    assert_eq!(
        landed[0].reject_object.as_deref(),
        Some("rejects/a.json.rejects.jsonl")
    );
    let key = ObjectKey::new("rejects/a.json.rejects.jsonl").unwrap();
    let reject = String::from_utf8(block_on(rejects.get(&key)).unwrap().0.to_vec()).unwrap();
    assert_eq!(reject.lines().count(), 1);
    assert!(
        reject.contains(r#""raw":"{\"device_id\": \"device-009\", \"updated\": \"yesterday\"}""#),
        "{reject}"
    );

    let step = block_on(p.run_once()).unwrap();
    assert_eq!(step.applied.len(), 3);
    assert!(
        step.applied
            .iter()
            .all(|o| o.starts_with("landing/devices/") && o.ends_with(".jsonl")),
        "{:?}",
        step.applied
    );
    assert_eq!(pull(store.clone()), EXPECTED);

    // A replay lands nothing: every record skipped, no new object, no new generation.
    let landing_before = block_on(store.list("landing/")).unwrap().len();
    for (name, text) in [("a.json", with_bad.as_str()), FILES[1], FILES[2]] {
        let format = Format::from_name(name).unwrap();
        let report = block_on(ingest.object(name, text.as_bytes(), format)).unwrap();
        assert!(report.written.is_empty());
        assert_eq!(report.skipped, report.read - report.rejected);
    }
    assert_eq!(
        block_on(store.list("landing/")).unwrap().len(),
        landing_before
    );
    let again = block_on(p.run_once()).unwrap();
    assert_eq!(
        (again.generation, again.applied.len()),
        (step.generation, 0)
    );

    // The step's ledger has one `landed` record per landed object.
    let ledger = block_on(Ledger::open(store.clone(), "ledger")).unwrap();
    let records = block_on(ledger.records(0..ledger.len())).unwrap();
    let landed: Vec<&str> = records
        .iter()
        .filter(|(r, _)| r.kind == Kind::Landed)
        .map(|(r, _)| r.object.key.as_str())
        .collect();
    assert_eq!(landed.len(), 3, "{landed:?}");
    assert!(landed.iter().all(|k| k.ends_with(".jsonl")), "{landed:?}");
}

fn config_dir(table: &str, input: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    for (from, to) in [
        ("alice.pub.pem", "alice.pub.pem"),
        ("producer-rsa.pem", "state.pem"),
        ("producer-rsa.pub.pem", "state.pub.pem"),
    ] {
        std::fs::write(dir.path().join("keys").join(to), data(from)).unwrap();
    }
    std::fs::write(dir.path().join("devices.toml"), SCHEMA).unwrap();
    std::fs::write(
        dir.path().join("pipeline.toml"),
        format!(
            "[table]\n{table}\n[input]\n{input}\n\
             [stores]\nlanding = \"landing\"\nstate = \"state\"\nshare = \"share\"\nledger = \"ledger\"\n\
             [keys]\nrecipients = [\"keys/alice.pub.pem\"]\n\
             state_public = \"keys/state.pub.pem\"\nstate_private = \"keys/state.pem\"\n"
        ),
    )
    .unwrap();
    dir
}

fn build(dir: &Path) -> Result<Pipeline, Error> {
    let path = dir.join("pipeline.toml");
    PipelineConfig::load(&path)?.pipeline(&path, None)
}

#[test]
fn the_configuration_takes_the_table_from_the_schema() {
    let records = "format = \"records\"\nschema = \"devices.toml\"";
    let dir = config_dir("name = \"devices\"", records);
    let p = build(dir.path()).unwrap();
    assert_eq!(p.table.schema.columns(), ["device_id", "updated", "value"]);
    assert_eq!(p.table.key, "device_id:string");
    let InputFormat::Records(schema) = &p.input else {
        panic!("{:?}", p.input)
    };
    assert!(**schema == RecordSchema::from_toml(SCHEMA).unwrap());

    // Given, columns and key must be the schema's.
    let same = config_dir(
        "name = \"devices\"\ncolumns = [\"device_id\", \"updated\", \"value\"]\nkey = \"device_id\"",
        records,
    );
    assert_eq!(build(same.path()).unwrap().table.key, "device_id:string");
    let refused = |table: &str, input: &str| {
        let dir = config_dir(table, input);
        build(dir.path()).unwrap_err().to_string()
    };
    let e = refused(
        "name = \"devices\"\ncolumns = [\"device_id\", \"value\", \"updated\"]",
        records,
    );
    assert!(
        e.contains("table.columns") && e.contains("not the record schema's columns"),
        "{e}"
    );
    let e = refused("name = \"devices\"\nkey = \"device_id:int64\"", records);
    assert!(
        e.contains(
            "table.key \"device_id:int64\" is not the record schema's key \"device_id:string\""
        ),
        "{e}"
    );
    let e = refused("name = \"devices\"\nnull = \"NULL\"", records);
    assert!(e.contains("table.null"), "{e}");
    let e = refused("name = \"devices\"", "format = \"records\"");
    assert!(e.contains("needs schema"), "{e}");
    let e = refused(
        "name = \"devices\"",
        "format = \"records\"\nschema = \"missing.toml\"",
    );
    assert!(
        e.contains("input.schema \"missing.toml\"") && e.contains("cannot read"),
        "{e}"
    );
    let e = refused(
        "name = \"devices\"",
        "format = \"records\"\nschema = \"devices.toml\"\nsequence_column = \"seq\"",
    );
    assert!(e.contains("input.sequence_column does not apply"), "{e}");
    let e = refused(
        "name = \"devices\"\ncolumns = [\"id\"]\nkey = \"id\"",
        "schema = \"devices.toml\"",
    );
    assert!(e.contains("input.schema applies only to format"), "{e}");
    let e = refused("name = \"devices\"", "format = \"dms\"");
    assert!(
        e.contains("table.columns and table.key are required"),
        "{e}"
    );
}
