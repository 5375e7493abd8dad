//! Lambda function `token`: `GET/POST /token` and `GET /token/keys`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    wharf_lambda::run_signing(wharf::api::token::router).await
}
