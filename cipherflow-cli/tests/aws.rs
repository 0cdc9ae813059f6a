//! `cipherflow` with `kms:` keys and `s3://` objects against the moto server (feature `aws`;
//! run by `cipherflow-aws/tests/run-moto-tests.sh`, which starts the server). The consumer
//! key lives only in KMS: sealing wraps locally with its public key, opening calls
//! `kms:Decrypt`; the producer signs with `kms:Sign`.

use std::fs;
use std::process::Command;

use cipherflow_aws::aws_config::{self, BehaviorVersion, Region};
use cipherflow_aws::aws_sdk_kms::Client as Kms;
use cipherflow_aws::aws_sdk_kms::config::Credentials;
use cipherflow_aws::aws_sdk_kms::types::{KeySpec, KeyUsageType};
use cipherflow_aws::aws_sdk_s3::Client as S3;

fn endpoint() -> String {
    std::env::var("CIPHERFLOW_MOTO_ENDPOINT").unwrap_or_else(|_| {
        panic!("CIPHERFLOW_MOTO_ENDPOINT is not set: run cipherflow-aws/tests/run-moto-tests.sh")
    })
}

fn unique(stem: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{stem}-{}-{nanos}", std::process::id())
}

/// Creates a key with an alias; returns the alias.
async fn key(kms: &Kms, spec: KeySpec, usage: KeyUsageType) -> String {
    let id = kms
        .create_key()
        .key_spec(spec)
        .key_usage(usage)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let alias = format!("alias/{}", unique("cli"));
    kms.create_alias()
        .alias_name(&alias)
        .target_key_id(id)
        .send()
        .await
        .unwrap();
    alias
}

fn cf(endpoint: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cipherflow"));
    cmd.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn seal_to_s3_with_a_kms_recipient_and_open_with_kms_decrypt() {
    let endpoint = endpoint();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (consumer, producer, bucket) = runtime.block_on(async {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "t"))
            .load()
            .await;
        let kms = Kms::new(&config);
        let consumer = key(&kms, KeySpec::Rsa3072, KeyUsageType::EncryptDecrypt).await;
        let producer = key(&kms, KeySpec::EccNistP256, KeyUsageType::SignVerify).await;
        let s3 = S3::from_conf(
            cipherflow_aws::aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        );
        let bucket = unique("cli");
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        (consumer, producer, bucket)
    });

    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("customers.csv");
    fs::write(&plain, "id,name\n1,\"Ada, Countess\"\n2,Grace\n").unwrap();
    let sealed = format!("s3://{bucket}/share/customers.csv.cfe");
    ok(cf(&endpoint)
        .args(["seal", "--recipient"])
        .arg(format!("kms:{consumer}"))
        .arg("--sign-key")
        .arg(format!("kms:{producer}"))
        .arg("-i")
        .arg(&plain)
        .args(["-o", &sealed]));

    // Open from S3 with kms:Decrypt, requiring the producer's KMS signature.
    let opened = dir.path().join("opened.csv");
    ok(cf(&endpoint)
        .args(["open", "--key"])
        .arg(format!("kms:{consumer}"))
        .arg("--signer")
        .arg(format!("kms:{producer}"))
        .args(["-i", &sealed, "-o"])
        .arg(&opened));
    assert_eq!(fs::read(&opened).unwrap(), fs::read(&plain).unwrap());

    // And from S3 to S3.
    let copy = format!("s3://{bucket}/private/customers.csv");
    ok(cf(&endpoint)
        .args(["open", "--key"])
        .arg(format!("kms:{consumer}"))
        .args(["-i", &sealed, "-o", &copy]));
    let stdout = ok(cf(&endpoint)
        .args(["open", "--key"])
        .arg(format!("kms:{consumer}"))
        .args(["-i", &sealed]));
    assert_eq!(stdout.as_bytes(), fs::read(&plain).unwrap());
    // The S3 copy is the plaintext: seal it again from S3 and open it back.
    let resealed = format!("s3://{bucket}/share/again.cfe");
    ok(cf(&endpoint)
        .args(["seal", "--recipient"])
        .arg(format!("kms:{consumer}"))
        .args(["-i", &copy, "-o", &resealed]));
    let again = ok(cf(&endpoint)
        .args(["open", "--key"])
        .arg(format!("kms:{consumer}"))
        .args(["-i", &resealed]));
    assert_eq!(again.as_bytes(), fs::read(&plain).unwrap());

    // A key that is not a recipient: wrong key (exit 3), nothing written.
    let other = runtime.block_on(async {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "t"))
            .load()
            .await;
        key(
            &Kms::new(&config),
            KeySpec::Rsa2048,
            KeyUsageType::EncryptDecrypt,
        )
        .await
    });
    let refused = dir.path().join("refused.csv");
    let out = cf(&endpoint)
        .args(["open", "--key"])
        .arg(format!("kms:{other}"))
        .args(["-i", &sealed, "-o"])
        .arg(&refused)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!refused.exists());
}

/// `cipherflow ingest --to dynamodb://TABLE --ledger DIR`: the records reach the table, each
/// file gets a `landed` ledger record, and a replay writes nothing new.
#[test]
fn ingest_to_dynamodb_records_each_file_and_a_replay_writes_nothing() {
    use cipherflow_aws::aws_sdk_dynamodb::Client as Dynamo;
    use cipherflow_aws::aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };

    let endpoint = endpoint();
    let table = unique("readings");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dynamo = runtime.block_on(async {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "t"))
            .load()
            .await;
        let dynamo = Dynamo::new(&config);
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap()
        };
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .unwrap()
        };
        dynamo
            .create_table()
            .table_name(&table)
            .attribute_definitions(attribute("device_id"))
            .attribute_definitions(attribute("timestamp"))
            .key_schema(key("device_id", KeyType::Hash))
            .key_schema(key("timestamp", KeyType::Range))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .unwrap();
        dynamo
    });

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(
        d.join("schema.toml"),
        include_str!("../../cipherflow-core/tests/data/records/readings.toml"),
    )
    .unwrap();
    fs::write(
        d.join("upload.json"),
        r#"[{"device_id": "device-001", "timestamp": "2026-02-01T10:00:00Z", "value": 730.80},
            {"device_id": "device-001", "timestamp": "2026-02-01T11:00:00Z", "value": 1},
            {"device_id": "device-002", "timestamp": "2026-02-01T10:00:00Z", "value": 0.5}]"#,
    )
    .unwrap();
    let ledger = d.join("ledger");
    ok(cf(&endpoint)
        .args([
            "ledger",
            "init",
            "--origin",
            "example.com/ingest",
            "--ledger",
        ])
        .arg(&ledger));
    let ingest = || {
        let out = ok(cf(&endpoint)
            .arg("ingest")
            .arg("--schema")
            .arg(d.join("schema.toml"))
            .args(["--to", &format!("dynamodb://{table}"), "--ledger"])
            .arg(&ledger)
            .arg(d.join("upload.json")));
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let first = ingest();
    assert_eq!(first["total"]["written"], 3, "{first}");
    assert_eq!(first["files"][0]["ledger_index"], 0, "{first}");
    let again = ingest();
    assert_eq!(
        (&again["total"]["written"], &again["total"]["skipped"]),
        (&serde_json::json!(0), &serde_json::json!(3)),
        "{again}"
    );
    assert_eq!(again["files"][0]["ledger_index"], 1, "{again}");

    let items = runtime.block_on(async {
        dynamo
            .scan()
            .table_name(&table)
            .send()
            .await
            .unwrap()
            .items
            .unwrap_or_default()
    });
    assert_eq!(items.len(), 3);
    let summary = ok(cf(&endpoint)
        .args(["ledger", "show", "--ledger"])
        .arg(&ledger));
    assert!(summary.contains("\"records\": 2"), "{summary}");
    let shown = ok(cf(&endpoint)
        .args(["ledger", "show", "--index", "1", "--ledger"])
        .arg(&ledger));
    assert!(
        shown.contains("upload.json") && shown.contains("landed"),
        "{shown}"
    );
}
