//! The uploads group's body limit and its advertised chunk size.
//!
//! A Lambda function sees at most ≈4.4 MB of raw body (6 MB of base64 in its event, ARCHITECTURE.md
//! §6); past that the platform answers with an opaque gateway error. A deployment therefore sets
//! [`super::AppState::max_upload_body`] under that, and a body over it is refused here with an OCI
//! error that names the limit and the ways around it: checked from `Content-Length` before a byte
//! is read, and counted while streaming when there is none.
//!
//! A body must also keep a pace: the idle timeout ([`super::AppState::body_idle_timeout`])
//! alone lets a client trickle one byte every few seconds for ever, holding its connection and
//! its upload session. [`PacedBody`] fails a body that falls below [`MIN_BODY_BYTES_PER_SEC`]
//! once [`BODY_PACE_GRACE`] is over (the rule of Apache's `mod_reqtimeout`: each
//! `MIN_BODY_BYTES_PER_SEC` bytes received buys one more second).
//!
//! Layer rule: pure request checks; nothing here touches storage.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use super::AppState;
use crate::oci::{ErrorCode, OciError};

/// The refusal of a body over `limit` bytes: `SIZE_INVALID` with 413, saying what to do instead.
pub(super) fn too_large(limit: u64) -> OciError {
    OciError::new(
        ErrorCode::SizeInvalid,
        format!(
            "request body is over this registry's limit of {limit} bytes per request: send the \
             blob in chunks (PATCH) of at most {limit} bytes, push with `wharf cp`, or push \
             through the registry's upload lane"
        ),
    )
    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    .with_detail(serde_json::json!({ "limit": limit }))
}

/// Refuses a request whose declared `Content-Length` is over the limit, before reading it.
pub(super) fn check_declared(state: &AppState, headers: &HeaderMap) -> Result<(), OciError> {
    let Some(limit) = state.max_upload_body else {
        return Ok(());
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit => Err(too_large(limit)),
        _ => Ok(()),
    }
}

/// The chunk size advertised in `OCI-Chunk-Min-Length`: the blob store's part size, never
/// above the body limit (a client honouring it must still fit in one request).
pub(super) fn chunk_min_length(state: &AppState) -> Option<u64> {
    let part = state.blobs.chunk_min_length()?;
    Some(match state.max_upload_body {
        Some(limit) => part.min(limit),
        None => part,
    })
}

/// Counts the bytes of one streamed body and fails the stream past the limit.
#[derive(Debug)]
pub(super) struct BodyMeter {
    limit: Option<u64>,
    seen: u64,
    over: Arc<AtomicBool>,
}

impl BodyMeter {
    /// A meter for `limit` bytes (`None`: counts nothing).
    pub(super) fn new(limit: Option<u64>) -> Self {
        BodyMeter {
            limit,
            seen: 0,
            over: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Set once the limit was passed: the stream's error then means "too large".
    pub(super) fn tripped(&self) -> Arc<AtomicBool> {
        self.over.clone()
    }

    /// Counts `n` more bytes; an error once past the limit.
    pub(super) fn count(&mut self, n: usize) -> std::io::Result<()> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        self.seen = self.seen.saturating_add(n as u64);
        if self.seen > limit {
            self.over.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other(format!(
                "request body over the limit of {limit} bytes"
            )));
        }
        Ok(())
    }
}

/// The slowest a request body may arrive on average, once [`BODY_PACE_GRACE`] is over: a
/// thousandth of a slow home uplink, so no working client comes near it, while a body trickled
/// to hold a connection and its upload session is cut off within a minute.
pub const MIN_BODY_BYTES_PER_SEC: u64 = 1024;

/// How long a body may take before it must keep [`MIN_BODY_BYTES_PER_SEC`]: covers a slow
/// start (TCP slow start, a client reading its source file) without letting a trickle live long.
pub const BODY_PACE_GRACE: Duration = Duration::from_secs(30);

/// Why a body was cut off for arriving too slowly.
#[derive(Debug, thiserror::Error)]
#[error(
    "request body arrived slower than {MIN_BODY_BYTES_PER_SEC} bytes/s ({received} bytes in \
     {elapsed:?})"
)]
pub struct BodyTooSlow {
    received: u64,
    elapsed: Duration,
}

/// A request body held to [`MIN_BODY_BYTES_PER_SEC`]: its deadline is the first poll plus
/// [`BODY_PACE_GRACE`], pushed back one second for every `MIN_BODY_BYTES_PER_SEC` bytes
/// received. Past the deadline the stream fails, so nothing of the request is committed.
pub(super) struct PacedBody<S> {
    inner: S,
    received: u64,
    started: Option<Instant>,
    deadline: Option<Pin<Box<Sleep>>>,
    failed: bool,
}

impl<S> PacedBody<S> {
    /// Holds `inner` to the pace; the clock starts when the body is first read.
    pub(super) fn new(inner: S) -> Self {
        PacedBody {
            inner,
            received: 0,
            started: None,
            deadline: None,
            failed: false,
        }
    }

    fn deadline_after(started: Instant, received: u64) -> Instant {
        let earned = Duration::from_millis(received.saturating_mul(1000) / MIN_BODY_BYTES_PER_SEC);
        started + BODY_PACE_GRACE + earned
    }
}

impl<S, E> Stream for PacedBody<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<axum::BoxError>,
{
    type Item = Result<Bytes, axum::BoxError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        let started = *this.started.get_or_insert_with(Instant::now);
        let deadline = this.deadline.get_or_insert_with(|| {
            Box::pin(tokio::time::sleep_until(Self::deadline_after(started, 0)))
        });
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.received = this.received.saturating_add(chunk.len() as u64);
                deadline
                    .as_mut()
                    .reset(Self::deadline_after(started, this.received));
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.failed = true;
                    Poll::Ready(Some(Err(Box::new(BodyTooSlow {
                        received: this.received,
                        elapsed: started.elapsed(),
                    }))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_trips_just_past_the_limit() {
        let mut m = BodyMeter::new(Some(10));
        let over = m.tripped();
        assert!(m.count(6).is_ok());
        assert!(m.count(4).is_ok(), "exactly the limit is fine");
        assert!(!over.load(Ordering::Relaxed));
        assert!(m.count(1).is_err());
        assert!(over.load(Ordering::Relaxed));
        let mut unlimited = BodyMeter::new(None);
        assert!(unlimited.count(usize::MAX).is_ok());
    }

    #[test]
    fn the_refusal_names_the_limit_and_the_ways_around_it() {
        let e = too_large(4_000_000);
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(e.code(), ErrorCode::SizeInvalid);
        for needle in ["4000000 bytes", "chunks", "wharf cp", "upload lane"] {
            assert!(e.message().contains(needle), "{needle}: {}", e.message());
        }
    }
}
