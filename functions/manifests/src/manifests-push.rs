//! Lambda function `manifests-push`: `PUT/DELETE /v2/<name>/manifests/<reference>`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    wharf_lambda::run(wharf::api::manifests::push_router).await
}
