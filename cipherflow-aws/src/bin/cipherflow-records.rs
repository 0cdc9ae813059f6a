//! `cipherflow-records`: the records ingestion Lambda function (S3 uploads and
//! `POST /records`; see `cipherflow_aws::records_lambda` and `docs/RECORDS.md`).
#![forbid(unsafe_code)]

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    cipherflow_aws::records_lambda::serve().await
}
