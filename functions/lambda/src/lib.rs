//! What every Wharf Lambda function shares: build the state from the environment
//! ([`wharf::runtime::state_from_env`]) once per cold start, then hand one endpoint group's
//! router to the Lambda runtime. Each function crate under `functions/` is one call to [`run`].
//!
//! Layer rule: nothing here handles a request; the routers in `wharf::api` do, exactly as under
//! `wharf serve`.

use axum::Router;
use wharf::api::AppState;

/// Sets up logging and the state, then serves `group` until the runtime stops the process.
/// A setup error is returned (and so reported by the runtime as an init error) after being
/// logged; its text never holds a secret value.
pub async fn run(group: fn(AppState) -> Router) -> Result<(), lambda_http::Error> {
    let (config, state) = match wharf::runtime::state_from_env().await {
        Ok(ready) => ready,
        Err(e) => {
            wharf::runtime::init_logging(wharf::config::LogFormat::Json);
            tracing::error!(error = %e, "cold start failed");
            return Err(e.into());
        }
    };
    wharf::runtime::init_logging(config.log_format);
    lambda_http::run(group(state)).await
}
