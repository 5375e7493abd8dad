//! Contention: DynamoDB's optimistic concurrency control turns a write down when it touches an
//! item another transaction is touching, and applies nothing of it. A `TransactWriteItems` is
//! cancelled with a `TransactionCanceledException` whose reason for that item is
//! `TransactionConflict`; a single-item `PutItem`/`UpdateItem`/`DeleteItem` fails with
//! `TransactionConflictException` (DynamoDB API Reference: TransactWriteItems,
//! CancellationReason, PutItem "Errors"; Developer Guide, "Transaction conflict handling"). The
//! SDK retries neither. Every write of this backend goes through [`transact`] or [`write`],
//! which retry contention (and throttling reported as a cancellation reason) with jittered
//! exponential backoff, a bounded number of times; a failed condition is never retried here: it
//! is an answer, and means what the caller's condition says.
//!
//! Layer rule: reads SDK errors of `dynamodb/` only; hands back [`StorageError`]s and, for a
//! cancelled transaction, the indices of its failed conditions.

use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::TransactWriteItem;
use aws_sdk_dynamodb::types::error::TransactionCanceledException;

use super::DynamoMetaStore;
use crate::storage::StorageError;
use crate::storage::aws::{ErrorClass, HasStatus, classify, storage_error};

/// Attempts at a write turned down for contention, the first included. Contention clears as
/// soon as the other transaction commits (milliseconds), so with the backoff below a write is
/// turned down ten times in a row only under a conflict rate no real load reaches (even the
/// tests' stand-in, which cancels one transaction in five at random, fails one write in ten
/// million).
pub const CONTENTION_ATTEMPTS: u32 = 10;

/// Ceiling of the first pause; each further pause's ceiling doubles. About one DynamoDB write's
/// latency, so the first retry usually finds the other transaction committed.
pub const CONTENTION_BASE: Duration = Duration::from_millis(15);

/// Largest ceiling of one pause. With [`CONTENTION_ATTEMPTS`] the pauses of one write add up to
/// at most ≈3.9 s (≈2 s on average), far inside API Gateway's 30 s integration timeout, even
/// for a manifest PUT whose link checks and transaction both contend.
pub const CONTENTION_CAP: Duration = Duration::from_millis(1000);

/// Jittered exponential backoff ("full jitter": a uniform pause below a doubling ceiling, so
/// writers that collided once do not collide again in lockstep).
#[derive(Debug)]
pub(super) struct Backoff {
    attempt: u32,
}

impl Backoff {
    pub(super) fn new() -> Self {
        Backoff { attempt: 1 }
    }

    /// The ceiling of the pause before the next attempt, or `None` when attempts are spent.
    fn next_ceiling(&mut self) -> Option<Duration> {
        if self.attempt >= CONTENTION_ATTEMPTS {
            return None;
        }
        let ceiling = CONTENTION_BASE
            .saturating_mul(1 << (self.attempt - 1).min(16))
            .min(CONTENTION_CAP);
        self.attempt += 1;
        Some(ceiling)
    }

    /// Sleeps before the next attempt; false (at once) when attempts are spent.
    pub(super) async fn pause(&mut self) -> bool {
        match self.next_ceiling() {
            Some(ceiling) => {
                tokio::time::sleep(ceiling.mul_f64(rand::random::<f64>())).await;
                true
            }
            None => false,
        }
    }
}

/// Why DynamoDB cancelled a transaction, from its cancellation reasons (one per item, in the
/// order of the request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Cancellation {
    /// The conditions of these items failed (indices into the request, ascending). Decides
    /// over the other reasons: it is the answer to the caller's question, whatever else failed.
    Condition(Vec<usize>),
    /// Another transaction or write held an item; nothing was applied: try again.
    Contention,
    /// An item's throughput was exceeded: back off and try again.
    Throttled,
    /// A validation error, an item collection over its size limit, or a reason unknown to
    /// Wharf: retrying would not help.
    Other,
}

/// Classifies the reason codes of a cancelled transaction (`None` or `"None"`: that item was
/// fine). Codes as documented for `TransactionCanceledException`.
pub(super) fn cancellation(codes: &[Option<&str>]) -> Cancellation {
    let failed: Vec<usize> = codes
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == Some("ConditionalCheckFailed"))
        .map(|(i, _)| i)
        .collect();
    if !failed.is_empty() {
        return Cancellation::Condition(failed);
    }
    let mut verdict = Cancellation::Other;
    let mut any = false;
    for code in codes.iter().flatten() {
        match *code {
            "None" | "NONE" => {}
            "TransactionConflict" => {
                any = true;
                if verdict == Cancellation::Other {
                    verdict = Cancellation::Contention;
                }
            }
            "ProvisionedThroughputExceeded" | "ThrottlingError" => {
                any = true;
                verdict = Cancellation::Throttled;
            }
            // ItemCollectionSizeLimitExceeded, ValidationError, and anything new.
            _ => return Cancellation::Other,
        }
    }
    if any { verdict } else { Cancellation::Other }
}

/// The reason codes of `ex`: from its `CancellationReasons`, or, when a service leaves them out,
/// from the list its message ends with (`… specific reasons [None, TransactionConflict]`).
pub(super) fn reason_codes(ex: &TransactionCanceledException) -> Vec<Option<String>> {
    let reasons = ex.cancellation_reasons();
    if !reasons.is_empty() {
        return reasons
            .iter()
            .map(|r| r.code().map(str::to_owned))
            .collect();
    }
    let Some(list) = ex
        .message()
        .and_then(|m| m.rsplit_once('['))
        .and_then(|(_, tail)| tail.strip_suffix(']'))
    else {
        return Vec::new();
    };
    list.split(',')
        .map(|c| Some(c.trim().to_owned()).filter(|c| !c.is_empty()))
        .collect()
}

/// Why a [`transact`] did not commit.
#[derive(Debug)]
pub(super) enum TransactError {
    /// The conditions of these items failed (indices into the request): nothing was written.
    Condition(Vec<usize>),
    /// Contention that outlasted the retries ([`StorageError::Conflict`]), throttling
    /// ([`StorageError::Throttled`]), or any other failure.
    Storage(StorageError),
}

impl From<StorageError> for TransactError {
    fn from(e: StorageError) -> Self {
        TransactError::Storage(e)
    }
}

/// What a `TransactWriteItems` failure means.
fn verdict<R: HasStatus>(e: &SdkError<TransactWriteItemsError, R>) -> Cancellation {
    match e.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(ex)) => {
            let codes = reason_codes(ex);
            let codes: Vec<Option<&str>> = codes.iter().map(Option::as_deref).collect();
            cancellation(&codes)
        }
        // Another request with the same idempotency token is still running.
        Some(TransactWriteItemsError::TransactionInProgressException(_)) => {
            Cancellation::Contention
        }
        _ => match classify(e) {
            ErrorClass::Contended => Cancellation::Contention,
            ErrorClass::Throttled => Cancellation::Throttled,
            _ => Cancellation::Other,
        },
    }
}

/// Sends `items` as one `TransactWriteItems` (`what` names it for the log), retrying contention
/// and throttling with [`Backoff`].
pub(super) async fn transact(
    store: &DynamoMetaStore,
    what: &str,
    items: Vec<TransactWriteItem>,
) -> Result<(), TransactError> {
    let mut backoff = Backoff::new();
    loop {
        let sent = store
            .client
            .transact_write_items()
            .set_transact_items(Some(items.clone()))
            .send()
            .await;
        let Err(e) = sent else {
            return Ok(());
        };
        match verdict(&e) {
            Cancellation::Condition(failed) => return Err(TransactError::Condition(failed)),
            Cancellation::Contention | Cancellation::Throttled if backoff.pause().await => {}
            Cancellation::Contention => return Err(StorageError::Conflict.into()),
            Cancellation::Throttled => return Err(StorageError::Throttled.into()),
            Cancellation::Other => return Err(storage_error(what, e).into()),
        }
    }
}

/// Runs a single-item write (`send` builds and sends it afresh each time), retrying
/// `TransactionConflictException` with [`Backoff`]. Any other outcome, and contention that
/// outlasts the retries, is returned as is for the caller to map (contention maps to
/// [`StorageError::Conflict`]).
pub(super) async fn write<T, E, R, F, Fut>(mut send: F) -> Result<T, SdkError<E, R>>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
    R: HasStatus,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, R>>>,
{
    let mut backoff = Backoff::new();
    loop {
        match send().await {
            Err(e) if classify(&e) == ErrorClass::Contended && backoff.pause().await => {}
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use aws_sdk_dynamodb::config::http::HttpResponse;
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::put_item::PutItemError;
    use aws_sdk_dynamodb::types::CancellationReason;
    use aws_sdk_s3::primitives::SdkBody;

    use super::*;

    /// How DynamoDB's message of a cancelled transaction begins; the reason codes follow.
    const CANCELLED: &str =
        "Transaction cancelled, please refer cancellation reasons for specific reasons";

    fn bad_request() -> HttpResponse {
        HttpResponse::new(400.try_into().expect("status"), SdkBody::empty())
    }

    /// A `TransactWriteItems` failure as the SDK hands it over, with these reason codes.
    fn cancelled(codes: &[&str]) -> SdkError<TransactWriteItemsError, HttpResponse> {
        let mut ex = TransactionCanceledException::builder()
            .message(format!("{CANCELLED} [{}]", codes.join(", ")));
        for c in codes {
            ex = ex.cancellation_reasons(CancellationReason::builder().code(*c).build());
        }
        SdkError::service_error(
            TransactWriteItemsError::TransactionCanceledException(ex.build()),
            bad_request(),
        )
    }

    fn single(code: &str) -> SdkError<PutItemError, HttpResponse> {
        SdkError::service_error(
            PutItemError::generic(ErrorMetadata::builder().code(code).build()),
            bad_request(),
        )
    }

    #[test]
    fn sdk_transaction_errors_are_classified_by_their_reasons() {
        assert_eq!(
            verdict(&cancelled(&["None", "TransactionConflict"])),
            Cancellation::Contention
        );
        assert_eq!(
            verdict(&cancelled(&["None", "None", "ConditionalCheckFailed"])),
            Cancellation::Condition(vec![2])
        );
        assert_eq!(
            verdict(&cancelled(&["ValidationError"])),
            Cancellation::Other
        );
    }

    #[tokio::test]
    async fn single_writes_retry_contention_until_it_clears() {
        let calls = AtomicU32::new(0);
        let done = write(|| async {
            match calls.fetch_add(1, Ordering::Relaxed) {
                0..3 => Err(single("TransactionConflictException")),
                _ => Ok(()),
            }
        })
        .await;
        assert!(done.is_ok());
        assert_eq!(calls.load(Ordering::Relaxed), 4);
    }

    #[tokio::test]
    async fn single_writes_give_up_after_the_last_attempt_and_never_retry_conditions() {
        let calls = AtomicU32::new(0);
        let done: Result<(), _> = write(|| async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(single("TransactionConflictException"))
        })
        .await;
        assert_eq!(calls.load(Ordering::Relaxed), CONTENTION_ATTEMPTS);
        assert!(matches!(
            storage_error("PutItem", done.expect_err("contended")),
            StorageError::Conflict
        ));
        let calls = AtomicU32::new(0);
        let done: Result<(), _> = write(|| async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(single("ConditionalCheckFailedException"))
        })
        .await;
        assert_eq!(
            calls.load(Ordering::Relaxed),
            1,
            "a failed condition is an answer"
        );
        assert_eq!(
            classify(&done.expect_err("condition")),
            ErrorClass::ConditionFailed
        );
    }

    fn codes<'a>(c: &'a [&'a str]) -> Vec<Option<&'a str>> {
        c.iter().map(|c| Some(*c)).collect()
    }

    #[test]
    fn a_transaction_conflict_is_contention_and_retried() {
        assert_eq!(
            cancellation(&codes(&["None", "TransactionConflict", "None"])),
            Cancellation::Contention
        );
        assert_eq!(
            cancellation(&[None, Some("TransactionConflict")]),
            Cancellation::Contention
        );
    }

    #[test]
    fn a_failed_condition_keeps_its_meaning_and_names_its_items() {
        assert_eq!(
            cancellation(&codes(&["None", "ConditionalCheckFailed", "None"])),
            Cancellation::Condition(vec![1])
        );
        // Whatever else was wrong, a failed condition is the answer.
        assert_eq!(
            cancellation(&codes(&[
                "ConditionalCheckFailed",
                "TransactionConflict",
                "ConditionalCheckFailed"
            ])),
            Cancellation::Condition(vec![0, 2])
        );
    }

    #[test]
    fn throttling_reasons_are_retried_and_validation_errors_are_not() {
        assert_eq!(
            cancellation(&codes(&["ThrottlingError", "TransactionConflict"])),
            Cancellation::Throttled
        );
        assert_eq!(
            cancellation(&codes(&["ProvisionedThroughputExceeded"])),
            Cancellation::Throttled
        );
        for other in [
            "ValidationError",
            "ItemCollectionSizeLimitExceeded",
            "Novel",
        ] {
            assert_eq!(
                cancellation(&codes(&["TransactionConflict", other])),
                Cancellation::Other,
                "{other}"
            );
        }
        assert_eq!(cancellation(&codes(&["None", "None"])), Cancellation::Other);
        assert_eq!(cancellation(&[]), Cancellation::Other);
    }

    #[test]
    fn reason_codes_come_from_the_list_or_else_from_the_message() {
        let listed = TransactionCanceledException::builder()
            .message(format!("{CANCELLED} [None, TransactionConflict]"))
            .cancellation_reasons(CancellationReason::builder().code("None").build())
            .cancellation_reasons(
                CancellationReason::builder()
                    .code("TransactionConflict")
                    .message("Transaction is ongoing for the item")
                    .build(),
            )
            .build();
        assert_eq!(
            reason_codes(&listed),
            [
                Some("None".to_owned()),
                Some("TransactionConflict".to_owned())
            ]
        );
        let bare = TransactionCanceledException::builder()
            .message(format!("{CANCELLED} [ConditionalCheckFailed, None]"))
            .build();
        assert_eq!(
            reason_codes(&bare),
            [
                Some("ConditionalCheckFailed".to_owned()),
                Some("None".to_owned())
            ]
        );
        assert!(
            reason_codes(&TransactionCanceledException::builder().build()).is_empty(),
            "no reasons at all: classified Other, never retried blindly"
        );
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_stops_after_the_last_attempt() {
        let mut b = Backoff::new();
        let mut ceilings = Vec::new();
        while let Some(c) = b.next_ceiling() {
            ceilings.push(c);
        }
        assert_eq!(ceilings.len() as u32, CONTENTION_ATTEMPTS - 1);
        assert_eq!(ceilings[0], CONTENTION_BASE);
        assert_eq!(ceilings[1], CONTENTION_BASE * 2);
        assert!(ceilings.iter().all(|c| *c <= CONTENTION_CAP));
        let total: Duration = ceilings.iter().sum();
        assert!(total < Duration::from_secs(4), "{total:?}");
    }
}
