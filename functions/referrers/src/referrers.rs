//! Lambda function `referrers`: `GET /v2/<name>/referrers/<digest>` (read-only rights).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    wharf_lambda::run(wharf::api::referrers::router).await
}
