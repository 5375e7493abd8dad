//! What the S3 and DynamoDB backends share: the SDK configuration (endpoint, region,
//! credentials, retries, a rustls-over-ring HTTP client) and the classification of SDK errors.
//!
//! Layer rule: AWS SDK types live in this module and in `s3/` and `dynamodb/` only; everything
//! they return to the rest of Wharf is a [`StorageError`] or a Wharf type.

use std::fmt;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::Credentials;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

use super::StorageError;

/// Attempts per SDK call (the first try included). The SDK backs off exponentially with jitter
/// between them; throttling still present after the last one becomes [`StorageError::Throttled`]
/// so the client is told to slow down instead of seeing an internal error.
pub const MAX_ATTEMPTS: u32 = 5;

/// Region used when neither the backend URL nor the environment names one. S3-compatible
/// servers ignore it, and Cloudflare R2 documents `auto`; AWS itself needs the real region.
pub const FALLBACK_REGION: &str = "us-east-1";

/// Static credentials, for tests and tools that must not depend on the process environment.
/// Deployments take credentials from the standard AWS chain (environment, profile, web
/// identity, container or instance role).
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Where an AWS-style service is and who Wharf is to it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoint {
    /// A custom endpoint (`https://<account>.r2.cloudflarestorage.com`, `http://127.0.0.1:9000`);
    /// `None` for the AWS default of the region.
    pub url: Option<String>,
    /// Region; `None` takes it from the environment, then [`FALLBACK_REGION`].
    pub region: Option<String>,
    /// Fixed credentials instead of the standard chain.
    pub credentials: Option<StaticCredentials>,
}

/// Loads the SDK configuration for `endpoint`.
pub async fn sdk_config(endpoint: &Endpoint) -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS));
    if let Some(region) = &endpoint.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &endpoint.url {
        loader = loader.endpoint_url(url);
    }
    if let Some(c) = &endpoint.credentials {
        loader = loader.credentials_provider(Credentials::new(
            &c.access_key_id,
            &c.secret_access_key,
            None,
            None,
            "wharf-static",
        ));
    }
    let sdk = loader.load().await;
    if sdk.region().is_some() {
        return sdk;
    }
    sdk.into_builder()
        .region(Region::from_static(FALLBACK_REGION))
        .build()
}

/// What an SDK error means to Wharf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The object, item, bucket or upload does not exist.
    NotFound,
    /// A condition on the request failed (`If-None-Match`, a DynamoDB condition).
    ConditionFailed,
    /// The service asked us to slow down, and the retries did not help.
    Throttled,
    /// DynamoDB turned a write down because an ongoing transaction holds the item
    /// (`TransactionConflictException`); nothing was applied, and a retry may succeed. The
    /// cancellation reasons of a `TransactWriteItems` are read by `dynamodb::retry`.
    Contended,
    /// Anything else.
    Other,
}

/// Error codes services use for "slow down".
const THROTTLING_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "RequestThrottled",
    "RequestThrottledException",
];

/// Error codes meaning "no such thing".
const NOT_FOUND_CODES: &[&str] = &[
    "NoSuchKey",
    "NotFound",
    "NoSuchUpload",
    "NoSuchBucket",
    "ResourceNotFoundException",
];

/// Error codes of a write turned down for an ongoing transaction on the same item.
const CONTENTION_CODES: &[&str] = &["TransactionConflictException"];

/// Error codes of a failed condition.
const CONDITION_CODES: &[&str] = &[
    "PreconditionFailed",
    "ConditionalCheckFailedException",
    "ConditionalRequestConflict",
];

/// Classifies an SDK error by its service error code, then by its HTTP status.
pub fn classify<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> ErrorClass
where
    R: HasStatus,
{
    if let Some(code) = e.code() {
        if THROTTLING_CODES.contains(&code) {
            return ErrorClass::Throttled;
        }
        if NOT_FOUND_CODES.contains(&code) {
            return ErrorClass::NotFound;
        }
        if CONDITION_CODES.contains(&code) {
            return ErrorClass::ConditionFailed;
        }
        if CONTENTION_CODES.contains(&code) {
            return ErrorClass::Contended;
        }
    }
    match e.raw_response().map(HasStatus::status) {
        Some(404) => ErrorClass::NotFound,
        Some(412) => ErrorClass::ConditionFailed,
        Some(429) | Some(503) => ErrorClass::Throttled,
        _ => ErrorClass::Other,
    }
}

/// A raw response with an HTTP status.
pub trait HasStatus {
    /// The status code.
    fn status(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status(&self) -> u16 {
        aws_sdk_s3::config::http::HttpResponse::status(self).as_u16()
    }
}

/// Maps an SDK error to a [`StorageError`] (`what` names the operation for the log).
pub fn storage_error<E, R>(what: &str, e: SdkError<E, R>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: HasStatus + fmt::Debug + Send + Sync + 'static,
{
    match classify(&e) {
        ErrorClass::Throttled => StorageError::Throttled,
        ErrorClass::ConditionFailed | ErrorClass::Contended => StorageError::Conflict,
        _ => StorageError::Backend(Box::new(SdkFailure {
            what: what.to_owned(),
            detail: aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
            source: Box::new(e),
        })),
    }
}

/// A failed SDK call: the operation, the SDK's whole error chain as one line (service code,
/// message, request id: what an operator needs from the log), and the SDK error itself.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {detail}")]
struct SdkFailure {
    what: String,
    detail: String,
    #[source]
    source: super::BoxError,
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::config::http::HttpResponse;
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_sdk_s3::primitives::SdkBody;

    use super::*;

    fn sdk_error(code: Option<&str>, status: u16) -> SdkError<GetObjectError, HttpResponse> {
        let mut meta = ErrorMetadata::builder();
        if let Some(code) = code {
            meta = meta.code(code);
        }
        let raw = HttpResponse::new(status.try_into().expect("status"), SdkBody::empty());
        SdkError::service_error(GetObjectError::generic(meta.build()), raw)
    }

    #[test]
    fn sdk_errors_map_to_storage_errors() {
        for code in [
            "SlowDown",
            "ThrottlingException",
            "ProvisionedThroughputExceededException",
        ] {
            assert!(matches!(
                storage_error("op", sdk_error(Some(code), 503)),
                StorageError::Throttled
            ));
        }
        assert!(matches!(
            storage_error("op", sdk_error(None, 429)),
            StorageError::Throttled
        ));
        assert!(matches!(
            storage_error(
                "op",
                sdk_error(Some("ConditionalCheckFailedException"), 400)
            ),
            StorageError::Conflict
        ));
        assert!(matches!(
            storage_error("op", sdk_error(None, 412)),
            StorageError::Conflict
        ));
        assert_eq!(
            classify(&sdk_error(Some("NoSuchKey"), 404)),
            ErrorClass::NotFound
        );
        assert_eq!(classify(&sdk_error(None, 404)), ErrorClass::NotFound);
        // DynamoDB's contention answer is a 400 like a validation error: only the code tells.
        assert_eq!(
            classify(&sdk_error(Some("TransactionConflictException"), 400)),
            ErrorClass::Contended
        );
        assert_eq!(classify(&sdk_error(None, 400)), ErrorClass::Other);
        assert!(matches!(
            storage_error("op", sdk_error(Some("TransactionConflictException"), 400)),
            StorageError::Conflict
        ));
        assert!(matches!(
            storage_error("op", sdk_error(Some("InternalError"), 500)),
            StorageError::Backend(_)
        ));
    }

    /// The log's cause is the error's `Display`: a failed call keeps the operation and the
    /// service's code there, and the SDK error itself under it, for code that asks.
    #[test]
    fn a_backend_failure_keeps_the_sdk_error_as_its_source() {
        let e = storage_error("GetObject", sdk_error(Some("InternalError"), 500));
        let text = e.to_string();
        assert!(text.starts_with("storage backend: GetObject: "), "{text}");
        assert!(text.contains("InternalError"), "{text}");
        let failure = std::error::Error::source(&e).expect("the failed call");
        let sdk = failure.source().expect("the SDK error");
        assert!(
            sdk.downcast_ref::<SdkError<GetObjectError, HttpResponse>>()
                .is_some()
        );
    }

    #[test]
    fn a_wrapped_error_is_the_source_and_its_message_stays_in_the_text() {
        let io = std::io::Error::other("disk on fire");
        let e = StorageError::backend(io);
        assert_eq!(e.to_string(), "storage backend: disk on fire");
        let source = std::error::Error::source(&e).expect("source");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
    }
}
