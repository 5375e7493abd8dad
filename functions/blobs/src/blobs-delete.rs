//! Lambda function `blobs-delete`: `DELETE /v2/<name>/blobs/<digest>`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    wharf_lambda::run(wharf::api::blobs::delete_router).await
}
