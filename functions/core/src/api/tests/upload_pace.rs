//! One pusher cannot stall others: upload sessions are locked one by one (not in shared
//! stripes), only once the session was found in the caller's repository, with a bounded wait;
//! and a request body must keep a minimum pace, not just deliver a byte before the idle timeout.
//!
//! These tests run on paused time (`start_paused`): a trickle of minutes takes milliseconds,
//! and a request that would wait shows up as a bounded `timeout` expiring.
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::*;
use crate::api::limits::{BODY_PACE_GRACE, MIN_BODY_BYTES_PER_SEC};

type Chunk = Result<bytes::Bytes, std::io::Error>;

/// Far longer than any request here needs, far shorter than the body idle timeout (60 s) that
/// would end a stalled trickle and let a request queued behind it through.
const PROMPT: Duration = Duration::from_secs(5);

/// A body fed by hand: each `send` is one chunk; dropping the sender ends it.
fn hand_fed() -> (mpsc::Sender<Chunk>, Body) {
    let (tx, rx) = mpsc::channel::<Chunk>(1);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    (tx, Body::from_stream(stream))
}

/// `n` one-byte chunks, one every `every`.
fn trickle(n: usize, every: Duration) -> Body {
    Body::from_stream(futures_util::stream::iter(0..n).then(move |_| async move {
        tokio::time::sleep(every).await;
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"x"))
    }))
}

async fn open(app: &App, repo: &str) -> String {
    let r = app
        .call(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    r.header("location").to_owned()
}

/// The stripe the 64-stripe session lock (which this replaced) put a session id in.
fn old_stripe(location: &str) -> usize {
    let id = location.rsplit('/').next().unwrap_or_default();
    id.bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
        % 64
}

/// Starts a PATCH on `location` whose body has delivered one byte and stays open; returns once
/// the handler has read that byte, so it holds the session.
async fn start_trickler(
    app: &App,
    location: &str,
) -> (
    mpsc::Sender<Chunk>,
    tokio::task::JoinHandle<axum::response::Response>,
) {
    let (tx, body) = hand_fed();
    let req = Request::patch(location).body(body).expect("request");
    let router = app.router.clone();
    let task = tokio::spawn(async move { router.oneshot(req).await.expect("infallible") });
    tx.send(Ok(bytes::Bytes::from_static(b"a")))
        .await
        .expect("send");
    // The channel holds one chunk: this send returns once the handler took the first.
    tx.send(Ok(bytes::Bytes::from_static(b"b")))
        .await
        .expect("send");
    (tx, task)
}

#[tokio::test(start_paused = true)]
async fn a_trickling_upload_does_not_stall_another_sessions_patch() {
    let app = App::new().await;
    let slow = open(&app, "slow/app").await;
    // A session the old striped lock would have queued behind the slow one.
    let mut other = open(&app, "other/app").await;
    while old_stripe(&other) != old_stripe(&slow) {
        other = open(&app, "other/app").await;
    }
    let (tx, trickler) = start_trickler(&app, &slow).await;
    let r = tokio::time::timeout(
        PROMPT,
        app.call(Method::PATCH, &other, &[], b"prompt".to_vec()),
    )
    .await
    .expect("the other session's PATCH completes while the trickle is open");
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(r.header("range"), "0-5");
    // Nor does a request naming the slow session's id under a repository it is not in wait for
    // its lock: it is refused at once.
    let id = slow.rsplit('/').next().expect("id");
    let r = tokio::time::timeout(
        PROMPT,
        app.call(
            Method::PATCH,
            &format!("/v2/other/app/blobs/uploads/{id}"),
            &[],
            b"x".to_vec(),
        ),
    )
    .await
    .expect("refused without waiting");
    assert_eq!(r.error_code(), "BLOB_UPLOAD_UNKNOWN");
    assert!(!trickler.is_finished(), "the trickle was still open");
    drop(tx);
    let res = trickler.await.expect("task");
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(app.get(&slow).await.header("range"), "0-1");
}

#[tokio::test(start_paused = true)]
async fn a_second_request_on_a_busy_session_gets_a_retryable_answer_not_a_hang() {
    let app = App::new().await;
    let slow = open(&app, "slow/app").await;
    let (tx, trickler) = start_trickler(&app, &slow).await;
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        app.call(Method::PATCH, &slow, &[], b"x".to_vec()),
    )
    .await
    .expect("the wait for the session's lock is bounded");
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", r.body);
    assert_eq!(r.error_code(), "TOOMANYREQUESTS");
    assert!(!r.header("retry-after").is_empty());
    assert!(!trickler.is_finished());
    drop(tx);
    assert_eq!(trickler.await.expect("task").status(), StatusCode::ACCEPTED);
    assert_eq!(
        app.get(&slow).await.header("range"),
        "0-1",
        "the refused request wrote nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn a_body_trickled_below_the_minimum_pace_is_cut_off_and_the_session_is_unchanged() {
    let app = App::new().await;
    let loc = open(&app, "a").await;
    let r = app.call(Method::PATCH, &loc, &[], b"hello".to_vec()).await;
    assert_eq!(r.header("range"), "0-4");
    // A byte every 5 s never trips the 60 s idle timeout; it would take 1000 s to finish.
    let started = tokio::time::Instant::now();
    let r = app
        .call(
            Method::PATCH,
            &loc,
            &[],
            trickle(200, Duration::from_secs(5)),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert_eq!(r.error_code(), "BLOB_UPLOAD_INVALID");
    assert!(
        started.elapsed() < BODY_PACE_GRACE * 4,
        "cut off soon after the grace period: {:?}",
        started.elapsed()
    );
    assert_eq!(
        app.get(&loc).await.header("range"),
        "0-4",
        "nothing committed"
    );
    // The session goes on from its committed offset.
    let r = app
        .call(Method::PATCH, &loc, &[], b", world".to_vec())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), "0-11");
}

#[tokio::test(start_paused = true)]
async fn a_slow_but_steady_body_above_the_minimum_pace_is_taken() {
    let app = App::new().await;
    let loc = open(&app, "a").await;
    // Twice the minimum pace, for four times the grace period.
    let chunk = usize::try_from(2 * MIN_BODY_BYTES_PER_SEC).expect("fits");
    let seconds = 4 * BODY_PACE_GRACE.as_secs();
    let body = Body::from_stream(futures_util::stream::iter(0..seconds).then(
        move |_| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![7u8; chunk]))
        },
    ));
    let r = app.call(Method::PATCH, &loc, &[], body).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let total = chunk as u64 * seconds;
    assert_eq!(r.header("range"), format!("0-{}", total - 1));
}
