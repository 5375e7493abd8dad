//! Lambda function `base`: `GET /v2/`, and every route no other function owns (answered with the OCI error).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    wharf_lambda::run(wharf::api::base::router).await
}
