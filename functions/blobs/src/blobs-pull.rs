//! Lambda function `blobs-pull`: `GET/HEAD /v2/<name>/blobs/<digest>` (GET answers 307 to a presigned URL), deployed with read-only rights.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    wharf_lambda::run(wharf::api::blobs::pull_router).await
}
