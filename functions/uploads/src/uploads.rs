//! Lambda function `uploads`: `POST /v2/<name>/blobs/uploads/` and the upload session (PATCH/PUT/GET/DELETE).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    wharf_lambda::run_signing(wharf::api::uploads::router).await
}
