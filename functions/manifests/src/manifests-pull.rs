//! Lambda function `manifests-pull`: `GET/HEAD /v2/<name>/manifests/<reference>`, deployed with read-only rights.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    wharf_lambda::run(wharf::api::manifests::pull_router).await
}
