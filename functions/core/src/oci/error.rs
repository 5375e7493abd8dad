//! The OCI error codes, their HTTP status, and the spec's JSON error body.
//!
//! This is the one place where a code maps to a status. An [`OciError`] carries what the client
//! may see (code, message, detail) apart from what only the log may see (`cause`): converting it
//! into a response never puts the cause in the body; the logging middleware reads it from the
//! response extensions.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// The error codes of the OCI distribution spec, plus `UNKNOWN` for internal failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// Blob unknown to registry.
    BlobUnknown,
    /// Blob upload invalid.
    BlobUploadInvalid,
    /// Blob upload unknown to registry.
    BlobUploadUnknown,
    /// Provided digest did not match uploaded content.
    DigestInvalid,
    /// Manifest references a manifest or blob unknown to registry.
    ManifestBlobUnknown,
    /// Manifest invalid.
    ManifestInvalid,
    /// Manifest unknown to registry.
    ManifestUnknown,
    /// Invalid repository name.
    NameInvalid,
    /// Invalid tag: a legacy Docker code the spec lets clients meet ("Legacy Docker support
    /// error codes"), answered for a write under a name that is not a valid tag.
    TagInvalid,
    /// Repository name not known to registry.
    NameUnknown,
    /// Provided length did not match content length.
    SizeInvalid,
    /// Authentication required.
    Unauthorized,
    /// Requested access to the resource is denied.
    Denied,
    /// The operation is unsupported.
    Unsupported,
    /// Too many requests.
    #[serde(rename = "TOOMANYREQUESTS")]
    TooManyRequests,
    /// An internal failure; details are only in the server log.
    Unknown,
}

impl ErrorCode {
    /// The HTTP status this code is answered with, unless an endpoint's rule says otherwise
    /// (see [`OciError::with_status`]).
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BlobUnknown
            | ErrorCode::BlobUploadUnknown
            | ErrorCode::ManifestUnknown
            | ErrorCode::NameUnknown => StatusCode::NOT_FOUND,
            ErrorCode::BlobUploadInvalid
            | ErrorCode::DigestInvalid
            | ErrorCode::ManifestBlobUnknown
            | ErrorCode::ManifestInvalid
            | ErrorCode::NameInvalid
            | ErrorCode::TagInvalid
            | ErrorCode::SizeInvalid => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Denied => StatusCode::FORBIDDEN,
            ErrorCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// One entry of the `errors` array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// The error code.
    pub code: ErrorCode,
    /// A human-readable message.
    pub message: String,
    /// Optional structured detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// The error body: `{"errors":[{"code","message","detail"}]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The errors.
    pub errors: Vec<ErrorInfo>,
}

/// What the log middleware records about a failed request. Never sent to the client.
#[derive(Debug, Clone)]
pub struct ErrorLog {
    /// The error code sent.
    pub code: ErrorCode,
    /// The client-visible message.
    pub message: String,
    /// The internal cause, if any.
    pub cause: Option<String>,
}

/// An error answered to an OCI client.
#[derive(Debug, Clone)]
pub struct OciError {
    code: ErrorCode,
    status: StatusCode,
    message: String,
    detail: Option<serde_json::Value>,
    cause: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl OciError {
    /// An error with the code's status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        OciError {
            code,
            status: code.status(),
            message: message.into(),
            detail: None,
            cause: None,
            headers: Vec::new(),
        }
    }

    /// An internal failure: the client sees `UNKNOWN`/500, the cause goes to the log only.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        OciError::new(ErrorCode::Unknown, "internal error").with_cause(cause)
    }

    /// Overrides the status where an endpoint rule demands it (413 for an oversized manifest,
    /// 416 for an out-of-order chunk).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Adds structured detail to the body.
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }

    /// Records an internal cause for the log.
    pub fn with_cause(mut self, cause: impl std::fmt::Display) -> Self {
        self.cause = Some(cause.to_string());
        self
    }

    /// Adds a response header (e.g. `Range` on a 416).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The error code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The client-visible message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            errors: vec![ErrorInfo {
                code: self.code,
                message: self.message.clone(),
                detail: self.detail.clone(),
            }],
        }
    }
}

impl std::fmt::Display for OciError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)?;
        if let Some(cause) = &self.cause {
            write!(f, " ({cause})")?;
        }
        Ok(())
    }
}

impl std::error::Error for OciError {}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        let body = self.body();
        let log = ErrorLog {
            code: self.code,
            message: self.message,
            cause: self.cause,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response.extensions_mut().insert(log);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_the_spec_spells_them() {
        let cases = [
            (ErrorCode::BlobUnknown, "BLOB_UNKNOWN", 404),
            (ErrorCode::BlobUploadInvalid, "BLOB_UPLOAD_INVALID", 400),
            (ErrorCode::BlobUploadUnknown, "BLOB_UPLOAD_UNKNOWN", 404),
            (ErrorCode::DigestInvalid, "DIGEST_INVALID", 400),
            (ErrorCode::ManifestBlobUnknown, "MANIFEST_BLOB_UNKNOWN", 400),
            (ErrorCode::ManifestInvalid, "MANIFEST_INVALID", 400),
            (ErrorCode::ManifestUnknown, "MANIFEST_UNKNOWN", 404),
            (ErrorCode::NameInvalid, "NAME_INVALID", 400),
            (ErrorCode::NameUnknown, "NAME_UNKNOWN", 404),
            (ErrorCode::TagInvalid, "TAG_INVALID", 400),
            (ErrorCode::SizeInvalid, "SIZE_INVALID", 400),
            (ErrorCode::Unauthorized, "UNAUTHORIZED", 401),
            (ErrorCode::Denied, "DENIED", 403),
            (ErrorCode::Unsupported, "UNSUPPORTED", 405),
            (ErrorCode::TooManyRequests, "TOOMANYREQUESTS", 429),
            (ErrorCode::Unknown, "UNKNOWN", 500),
        ];
        for (code, text, status) in cases {
            let json = serde_json::to_string(&code).expect("serializes");
            assert_eq!(json, format!("\"{text}\""));
            let back: ErrorCode = serde_json::from_str(&json).expect("deserializes");
            assert_eq!(back, code);
            assert_eq!(code.status().as_u16(), status, "{text}");
        }
    }

    #[test]
    fn body_round_trips_against_literal_json() {
        let literal = r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry","detail":{"digest":"sha256:x"}}]}"#;
        let parsed: ErrorBody = serde_json::from_str(literal).expect("parses");
        assert_eq!(parsed.errors[0].code, ErrorCode::BlobUnknown);
        assert_eq!(serde_json::to_string(&parsed).expect("serializes"), literal);
        let err = OciError::new(ErrorCode::BlobUnknown, "blob unknown to registry")
            .with_detail(serde_json::json!({"digest": "sha256:x"}));
        assert_eq!(err.body(), parsed);
    }

    #[test]
    fn internal_cause_stays_out_of_the_body() {
        let err = OciError::internal("disk on fire at /var/secret");
        let body = serde_json::to_string(&err.body()).expect("serializes");
        assert!(!body.contains("secret"));
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let log = response
            .extensions()
            .get::<ErrorLog>()
            .expect("log attached");
        assert!(
            log.cause
                .as_deref()
                .is_some_and(|c| c.contains("disk on fire"))
        );
    }
}
