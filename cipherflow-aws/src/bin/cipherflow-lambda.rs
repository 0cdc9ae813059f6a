//! `cipherflow-lambda`: the AWS Lambda function (see `cipherflow_aws::lambda` and the crate
//! README for configuration and deployment).
#![forbid(unsafe_code)]

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    cipherflow_aws::lambda::serve().await
}
