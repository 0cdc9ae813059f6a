//! A whole pipeline on AWS, against the moto server: landing, state, share and ledger are S3
//! buckets; the consumers' keys, the signer and the pipeline's own state key are KMS keys, all
//! named in `pipeline.toml` (`s3://...`, `kms:alias/...`) and opened by `AwsResolver`. A
//! consumer holding only `kms:Decrypt` pulls the table and gets the independent merge; the
//! ledger verifies. Interceptors count the KMS calls each side makes (moto evaluates no IAM,
//! so the calls made are what this test can show about least privilege).

mod common;

use std::sync::{Arc, Mutex};

use cipherflow_aws::aws_sdk_kms::Client as Kms;
use cipherflow_aws::aws_sdk_kms::config::interceptors::BeforeSerializationInterceptorContextRef;
use cipherflow_aws::aws_sdk_kms::config::{ConfigBag, Intercept};
use cipherflow_aws::aws_sdk_kms::error::BoxError;
use cipherflow_aws::aws_sdk_kms::operation::decrypt::DecryptInput;
use cipherflow_aws::aws_sdk_kms::operation::get_public_key::GetPublicKeyInput;
use cipherflow_aws::aws_sdk_kms::operation::sign::SignInput;
use cipherflow_aws::aws_sdk_kms::types::{KeySpec, KeyUsageType};
use cipherflow_aws::kms::{KmsDecrypt, KmsPublicKey, KmsSigner};
use cipherflow_aws::resolve::AwsResolver;
use cipherflow_aws::s3::{S3Options, S3Store};
use cipherflow_core::KeyWrapper;
use cipherflow_core::Verifier;
use cipherflow_core::cdc::{DmsOptions, KeySpec as TableKey, TableSchema, read_dms};
use cipherflow_core::ledger::{Ledger, TrustedKey, TrustedKeys};
use cipherflow_core::merge::MergeState;
use cipherflow_core::pipeline::{Consumer, Location, PipelineConfig};
use cipherflow_core::store::{ObjectKey, ObjectStore, PutMode};

/// Records every KMS operation a client sends: (operation, key named).
#[derive(Debug, Clone, Default)]
struct KmsCalls(Arc<Mutex<Vec<(&'static str, String)>>>);

impl KmsCalls {
    fn take(&self) -> Vec<(&'static str, String)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Intercept for KmsCalls {
    fn name(&self) -> &'static str {
        "KmsCalls"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input();
        let call = if let Some(i) = input.downcast_ref::<DecryptInput>() {
            ("Decrypt", i.key_id().unwrap_or_default().to_owned())
        } else if let Some(i) = input.downcast_ref::<GetPublicKeyInput>() {
            ("GetPublicKey", i.key_id().unwrap_or_default().to_owned())
        } else if let Some(i) = input.downcast_ref::<SignInput>() {
            ("Sign", i.key_id().unwrap_or_default().to_owned())
        } else {
            ("other", format!("{input:?}"))
        };
        self.0.lock().unwrap().push(call);
        Ok(())
    }
}

fn counted_kms(config: &cipherflow_aws::aws_config::SdkConfig) -> (Kms, KmsCalls) {
    let calls = KmsCalls::default();
    let conf = cipherflow_aws::aws_sdk_kms::config::Builder::from(config)
        .interceptor(calls.clone())
        .build();
    (Kms::from_conf(conf), calls)
}

async fn kms_key(kms: &Kms, spec: KeySpec, usage: KeyUsageType) -> String {
    let id = kms
        .create_key()
        .key_spec(spec)
        .key_usage(usage)
        .send()
        .await
        .expect("CreateKey")
        .key_metadata
        .expect("metadata")
        .key_id;
    let alias = format!("alias/{}", common::unique("pipeline"));
    kms.create_alias()
        .alias_name(&alias)
        .target_key_id(&id)
        .send()
        .await
        .expect("CreateAlias");
    alias
}

async fn bucket(config: &cipherflow_aws::aws_config::SdkConfig, stem: &str) -> String {
    let name = common::unique(stem).to_lowercase();
    let store = S3Store::new(
        config,
        &name,
        "",
        S3Options::default().force_path_style(true),
    );
    store
        .client()
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("CreateBucket");
    name
}

const LANDING_PREFIX: &str = "cdc in/customers+eu/";

fn schema() -> TableSchema {
    TableSchema::new(
        ["id", "name", "amount"].map(String::from).to_vec(),
        &TableKey::parse_list("id:int64").unwrap(),
    )
    .unwrap()
}

/// A full load and three CDC batches; the third is late (older sequence numbers).
fn batches() -> Vec<(String, String)> {
    let mut load = String::from("id,name,amount\n");
    for id in 1..=50 {
        load.push_str(&format!("{id},\"name {id}, x\",{id}.00\n"));
    }
    vec![
        ("LOAD 00000001.csv".into(), load),
        (
            "2026 11 27+01.csv".into(),
            "Op,seq,id,name,amount\nI,100,51,new,1\nU,101,5,five,7.00\nD,102,7,,\n".into(),
        ),
        (
            "2026 11 27+02.csv".into(),
            "Op,seq,id,name,amount\nD,300,51,,\nU,301,9,nine,9\n".into(),
        ),
        (
            "2026 11 26+late.csv".into(),
            "Op,seq,id,name,amount\nI,200,51,late,2\nU,201,9,older nine,0\n".into(),
        ),
    ]
}

fn expected(batches: &[(String, String)]) -> Vec<u8> {
    let options = DmsOptions {
        seq_column: Some("seq".into()),
        ..DmsOptions::default()
    };
    let mut state = MergeState::new(schema());
    for (name, text) in batches {
        let object = format!("{LANDING_PREFIX}{name}");
        state.apply(&read_dms(&object, text.as_bytes(), &schema(), &options).unwrap());
    }
    let mut out = Vec::new();
    state.write_snapshot(&mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_on_s3_and_kms_is_pulled_by_a_decrypt_only_consumer() {
    let config = common::sdk_config().await;
    let (setup, _) = counted_kms(&config);
    let alice = kms_key(&setup, KeySpec::Rsa3072, KeyUsageType::EncryptDecrypt).await;
    let bob = kms_key(&setup, KeySpec::Rsa2048, KeyUsageType::EncryptDecrypt).await;
    let state_key = kms_key(&setup, KeySpec::Rsa2048, KeyUsageType::EncryptDecrypt).await;
    let signer = kms_key(&setup, KeySpec::EccNistP256, KeyUsageType::SignVerify).await;
    let landing = bucket(&config, "landing").await;
    let state = bucket(&config, "state").await;
    let share = bucket(&config, "share").await;
    let ledger = bucket(&config, "ledger").await;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.toml");
    std::fs::write(
        &path,
        format!(
            r#"[table]
name = "customers"
columns = ["id", "name", "amount"]
key = "id:int64"
partitions = 4

[input]
prefix = "{LANDING_PREFIX}"
sequence_column = "seq"

[stores]
landing = "s3://{landing}"
state = "s3://{state}/private/"
share = "s3://{share}/"
ledger = "s3://{ledger}/audit"

[keys]
recipients = ["kms:{alice}", "kms:{bob}"]
state_public = "kms:{state_key}"
state_private = "kms:{state_key}"
signer = "kms:{signer}"

[compaction]
max_runs = 2
"#
        ),
    )
    .unwrap();

    // The pipeline: every name resolved through AWS; its KMS calls counted.
    let (producer_kms, producer_calls) = counted_kms(&config);
    let resolver = AwsResolver::new(&config).with_kms_client(producer_kms);
    let pipeline = PipelineConfig::load(&path)
        .unwrap()
        .pipeline(&path, Some(&resolver))
        .unwrap();
    assert_eq!(
        pipeline.stores.share.store.describe(),
        format!("s3://{share}/")
    );
    let setup_calls = producer_calls.take();
    assert_eq!(
        setup_calls
            .iter()
            .filter(|(op, _)| *op == "GetPublicKey")
            .count(),
        setup_calls.len(),
        "resolving the keys needs only GetPublicKey: {setup_calls:?}"
    );

    let landing_store = pipeline.stores.landing.store.clone();
    let all = batches();
    for (i, (name, text)) in all.iter().enumerate() {
        let key = ObjectKey::new(format!("{LANDING_PREFIX}{name}")).unwrap();
        landing_store
            .put(&key, text.clone().into_bytes().into(), PutMode::Create)
            .await
            .unwrap();
        let report = pipeline.run_once().await.unwrap();
        assert_eq!(report.generation, i as u64 + 1);
        assert_eq!(report.applied, vec![key.to_string()]);
    }
    // A duplicate notification's step finds nothing new.
    let again = pipeline.run_once().await.unwrap();
    assert_eq!((again.generation, again.applied.len()), (4, 0));
    // Compaction on request (what the Lambda's per-partition entry point runs).
    let runs = pipeline
        .stores
        .share
        .store
        .list("customers/runs/")
        .await
        .unwrap();
    let partition: u32 = runs[0]
        .key
        .as_str()
        .split('/')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    let compacted = pipeline.compact_partition(partition).await.unwrap();
    assert_eq!(
        (compacted.generation, compacted.compacted),
        (5, vec![partition])
    );

    // The pipeline's KMS calls: Sign with the signer, Decrypt only with its own state key.
    let calls = producer_calls.take();
    let state_arn = KmsPublicKey::fetch(&setup, &state_key).await.unwrap();
    let signer_arn = KmsSigner::new(&setup, &signer).await.unwrap();
    assert!(calls.iter().any(|(op, _)| *op == "Sign"));
    for (op, key) in &calls {
        match *op {
            "Sign" => assert_eq!(key, signer_arn.kms_key()),
            "Decrypt" => assert_eq!(key, state_arn.kms_key(), "Decrypt with a consumer key"),
            other => panic!("the pipeline called {other} on {key}"),
        }
    }
    println!(
        "pipeline KMS calls over 5 steps: {} Sign, {} Decrypt (state key), 0 others",
        calls.iter().filter(|(op, _)| *op == "Sign").count(),
        calls.iter().filter(|(op, _)| *op == "Decrypt").count()
    );

    // Consumers with kms:Decrypt only: the key id comes with their public key (published
    // out of band; fetched here by the test's set-up client), so pulling calls Decrypt alone.
    let verifier = Arc::new(signer_arn.verifying_key().clone()) as Arc<dyn Verifier>;
    let share_store: Arc<dyn ObjectStore> = Arc::new(S3Store::new(
        &config,
        &share,
        "",
        S3Options::default().force_path_style(true),
    ));
    for who in [&alice, &bob] {
        let key_id = KmsPublicKey::fetch(&setup, who).await.unwrap().key_id();
        let (consumer_kms, consumer_calls) = counted_kms(&config);
        let consumer = Consumer {
            share: Location::new(share_store.clone(), ""),
            key: Arc::new(KmsDecrypt::with_key_id(&consumer_kms, who.as_str(), key_id)),
            signer: Some(verifier.clone()),
        };
        let out = tempfile::tempdir().unwrap();
        let report = consumer.pull("customers", out.path()).await.unwrap();
        assert_eq!(report.generation, 5);
        assert_eq!(
            std::fs::read(out.path().join("customers.csv")).unwrap(),
            expected(&all),
            "{who}"
        );
        let calls = consumer_calls.take();
        assert!(!calls.is_empty());
        assert!(
            calls.iter().all(|(op, key)| *op == "Decrypt" && key == who),
            "{calls:?}"
        );
        println!(
            "consumer {who}: {} Decrypt calls, nothing else",
            calls.len()
        );
    }

    // The ledger verifies with the KMS signer's public key, and names S3 objects by bucket
    // and full key (the stores' typed names, prefix included).
    let ledger_store: Arc<dyn ObjectStore> = Arc::new(S3Store::new(
        &config,
        &ledger,
        "audit",
        S3Options::default().force_path_style(true),
    ));
    let trusted = TrustedKeys::new().with(TrustedKey::new(signer_arn.verifying_key().clone()));
    let verified = Ledger::verify(ledger_store.clone(), "", &trusted)
        .await
        .unwrap();
    assert_eq!(verified.signed_size, verified.records);
    let log = Ledger::open(ledger_store, "").await.unwrap();
    let records = log.records(0..log.len()).await.unwrap();
    let named = |bucket: &str, prefix: &str| {
        records.iter().any(|(r, _)| {
            r.object.store == "s3" && r.object.bucket == bucket && r.object.key.starts_with(prefix)
        })
    };
    assert!(named(&landing, LANDING_PREFIX));
    assert!(named(&state, "private/customers/"));
    assert!(named(&share, "customers/"));
    assert!(records.iter().all(|(r, _)| r.object.store == "s3"));
    println!(
        "ledger: {} records, {} checkpoints, verified",
        verified.records, verified.checkpoints
    );
}

/// `[input] schema = "s3://..."`: the resolver reads the record schema from S3, so a records
/// pipeline configured wholly in S3 (as the Lambda function's is) builds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_schema_named_by_s3_url_is_read_through_the_resolver() {
    use cipherflow_core::pipeline::Resolver;
    let config = common::sdk_config().await;
    let name = bucket(&config, "schema").await;
    let store = S3Store::new(
        &config,
        &name,
        "",
        S3Options::default().force_path_style(true),
    );
    let text = "name = \"readings\"\nkey = [\"id\"]\n[columns.id]\ntype = \"int64\"\n";
    store
        .put(
            &ObjectKey::new("schemas/readings.toml").unwrap(),
            text.as_bytes().to_vec().into(),
            PutMode::Overwrite,
        )
        .await
        .unwrap();
    let resolver =
        AwsResolver::new(&config).with_s3_options(S3Options::default().force_path_style(true));
    let url = format!("s3://{name}/schemas/readings.toml");
    let read = tokio::task::spawn_blocking(move || resolver.text(&url))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.as_deref(), Some(text));
    let resolver = AwsResolver::new(&config);
    assert_eq!(resolver.text("readings.toml").unwrap(), None);
}
