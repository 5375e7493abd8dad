//! Lambda function `catalog`: rebuilds the public catalog after pushes (a DynamoDB Streams event
//! source on the table, filtered to tag, referrer and policy items) and on a schedule. It has
//! read-only rights on the table; it writes only to the public catalog bucket.

use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use serde_json::Value;
use wharf_fn_catalog::Catalog;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (_, catalog) = wharf::runtime::start_logging(Catalog::from_env().await)?;
    let catalog = &catalog;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        catalog.handle(&event.payload).await.map_err(|e| {
            // A failed invocation makes Lambda retry the stream batch (bounded by the
            // event source mapping); the next schedule catches up in any case.
            tracing::error!(error = %e, "catalog rebuild failed");
            lambda_runtime::Error::from(e)
        })
    }))
    .await
}
