//! Lambda function `tags`: `GET /v2/<name>/tags/list` and `GET /v2/_catalog` (read-only rights).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    wharf_lambda::run(wharf::api::tags::router).await
}
