//! Per-session locks: two requests on one upload session never interleave their writes within
//! this process (across processes, the session's version check refuses the loser).
//!
//! A request takes its session's lock only once the session was loaded and the caller was
//! authorized for it, so a caller can only ever queue behind requests on a session it may write
//! itself, and it waits at most [`SESSION_LOCK_WAIT`]. A lock lives only while a request holds
//! or waits for it: the map holds weak handles, removed when the last request lets go, and swept
//! whenever it doubles, so it is bounded by the requests in flight.
//!
//! Layer rule: knows nothing of storage or HTTP beyond the error it answers on a timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::http::{HeaderValue, header};
use tokio::sync::OwnedMutexGuard;

use crate::oci::{ErrorCode, OciError};

/// How long a request waits for another request on the same session to finish. Clients send
/// one request per session at a time; a second one arrives only as a retry of a request the
/// client gave up on, and the first then ends within the body idle and pace limits. Bounding
/// the wait keeps such a retry from piling up connections behind a slow request.
pub const SESSION_LOCK_WAIT: Duration = Duration::from_secs(10);

/// Smallest map size at which dead handles are swept.
const MIN_SWEEP: usize = 64;

#[derive(Debug)]
struct Handles {
    by_id: HashMap<String, Weak<tokio::sync::Mutex<()>>>,
    /// Map size at which the next sweep of dead handles runs.
    sweep_at: usize,
}

/// The locks of one process, keyed by upload session id.
#[derive(Debug)]
pub(crate) struct SessionLocks {
    handles: Mutex<Handles>,
}

impl Default for SessionLocks {
    fn default() -> Self {
        SessionLocks {
            handles: Mutex::new(Handles {
                by_id: HashMap::new(),
                sweep_at: MIN_SWEEP,
            }),
        }
    }
}

/// A held session lock; released (and its map entry dropped when nobody waits) on drop.
#[derive(Debug)]
pub(crate) struct SessionGuard<'a> {
    locks: &'a SessionLocks,
    id: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.locks.forget_if_unused(&self.id);
    }
}

/// The answer to a request that waited [`SESSION_LOCK_WAIT`] in vain: `TOOMANYREQUESTS` (429)
/// with `Retry-After`, which the spec's clients treat as "retry later".
fn busy() -> OciError {
    OciError::new(
        ErrorCode::TooManyRequests,
        "another request on this upload session is still running; retry later",
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
}

impl SessionLocks {
    /// Takes session `id`'s lock, waiting at most `wait`.
    pub(crate) async fn lock(
        &self,
        id: &str,
        wait: Duration,
    ) -> Result<SessionGuard<'_>, OciError> {
        let mutex = self.handle(id);
        let taken = tokio::time::timeout(wait, mutex.lock_owned()).await;
        match taken {
            Ok(guard) => Ok(SessionGuard {
                locks: self,
                id: id.to_owned(),
                guard: Some(guard),
            }),
            Err(_) => {
                self.forget_if_unused(id);
                Err(busy())
            }
        }
    }

    /// The live mutex of `id`, or a new one.
    fn handle(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(live) = handles.by_id.get(id).and_then(Weak::upgrade) {
            return live;
        }
        // A request cancelled while it was being handed the lock leaves a dead handle behind:
        // sweep them whenever the map has doubled since the last sweep, so its size stays within
        // twice the live locks.
        if handles.by_id.len() >= handles.sweep_at {
            handles.by_id.retain(|_, h| h.strong_count() > 0);
            handles.sweep_at = (handles.by_id.len() * 2).max(MIN_SWEEP);
        }
        let mutex = Arc::new(tokio::sync::Mutex::new(()));
        handles.by_id.insert(id.to_owned(), Arc::downgrade(&mutex));
        mutex
    }

    fn forget_if_unused(&self, id: &str) {
        let mut handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        if handles.by_id.get(id).is_some_and(|h| h.strong_count() == 0) {
            handles.by_id.remove(id);
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.handles
            .lock()
            .map(|h| h.by_id.len())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_session_lock_serializes_its_session_only_and_leaves_nothing_behind() {
        let locks = SessionLocks::default();
        let held = locks.lock("aa", SESSION_LOCK_WAIT).await.expect("free");
        // Another session is not held up.
        let other = locks
            .lock("bb", Duration::from_millis(1))
            .await
            .expect("another session's lock is free");
        drop(other);
        // The same session waits, and gives up with a retryable answer.
        let waited = locks.lock("aa", Duration::from_millis(20)).await;
        let e = waited.expect_err("held");
        assert_eq!(e.code(), ErrorCode::TooManyRequests);
        drop(held);
        assert!(locks.lock("aa", Duration::from_millis(1)).await.is_ok());
        assert_eq!(locks.tracked(), 0, "no lock outlives its requests");
    }

    #[tokio::test]
    async fn cancelled_waiters_do_not_grow_the_map_without_bound() {
        let locks = SessionLocks::default();
        for i in 0..10_000 {
            let id = format!("{i:032x}");
            let guard = locks.lock(&id, SESSION_LOCK_WAIT).await.expect("free");
            // A waiter queues, is handed the lock when the holder lets go, and is dropped (its
            // client went away) before it runs again: nobody is left to remove the entry.
            let mut waiting = Box::pin(locks.lock(&id, SESSION_LOCK_WAIT));
            assert!(futures_util::FutureExt::now_or_never(&mut waiting).is_none());
            drop(guard);
            drop(waiting);
        }
        assert!(locks.tracked() <= 2 * MIN_SWEEP, "{}", locks.tracked());
    }
}
