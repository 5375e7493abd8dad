//! Rate limits: a token bucket per identity (OIDC issuer + subject of a verified registry token)
//! and per client address (IPv6 by /64). A caller over its limit gets `TOOMANYREQUESTS` (429)
//! with `Retry-After`, before any handler or store runs.
//!
//! Two layers: [`limit_address`] runs before authorization (and before path parsing), so a
//! flood of refused requests is limited too and stops costing token verification and log lines;
//! [`limit`] runs after `authz` put the [`Caller`] in the request extensions. Every request is
//! charged to its address first; a request that turns out to carry a verified identity gets that
//! token back and is charged to the identity's (larger) bucket instead, so a CI fleet behind one
//! address is limited as its identities, while anyone else at that address is limited as it.
//!
//! Layer rule: knows nothing of handlers or storage. The client address comes from a
//! [`ClientAddr`] extension that the runtime inserts (the socket peer for `wharf serve`, the API
//! Gateway source IP under Lambda); `X-Forwarded-For` is never read, because any client can
//! write it.
//!
//! The buckets live in the process. Under Lambda each instance counts for itself, so the limit a
//! caller sees is per instance; the API Gateway stage throttle bounds the total. Their number is
//! bounded by [`MAX_TRACKED`]: past it, full buckets go first (they carry no information), then
//! the fullest, least recently used ones. A bucket someone emptied is the last to go, so nobody
//! resets their own limit by making up many new addresses.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::Caller;
use crate::config::RateLimitConfig;
use crate::oci::{ErrorCode, OciError};

/// The address of the client that sent a request, as the runtime saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Buckets kept at most: bounds memory whatever the number of distinct callers. Past it, buckets
/// are evicted down to [`TRACKED_AFTER_EVICTION`].
const MAX_TRACKED: usize = 100_000;

/// Buckets kept after an eviction: a tenth of the table is freed at once, so the scan an eviction
/// costs is paid once per ten thousand new callers, not at every request.
const TRACKED_AFTER_EVICTION: usize = MAX_TRACKED / 10 * 9;

/// The charge [`limit_address`] put on a request's address, for [`limit`] to give back when the
/// request turns out to carry a verified identity.
#[derive(Debug, Clone)]
struct AddressCharge(Key);

/// Who a bucket belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Identity {
        issuer: String,
        subject: String,
    },
    Address(IpAddr),
    /// No identity and no address known (a runtime that gives neither): one shared bucket.
    Unknown,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A limit: sustained rate and burst.
#[derive(Debug, Clone, Copy)]
struct Rate {
    per_second: f64,
    burst: f64,
}

/// The limiter shared by every request of one process.
#[derive(Debug)]
pub struct RateLimiter {
    identity: Rate,
    anonymous: Rate,
    buckets: Mutex<HashMap<Key, Bucket>>,
}

impl RateLimiter {
    /// A limiter with the configured rates.
    pub fn new(config: &RateLimitConfig) -> Self {
        let rate = |per_second: u32, burst: u32| Rate {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
        };
        RateLimiter {
            identity: rate(config.identity_per_second, config.identity_burst),
            anonymous: rate(config.anonymous_per_second, config.anonymous_burst),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `key`'s bucket at `now`: `Ok` if allowed, else how long until it
    /// would be.
    fn take(&self, key: Key, rate: Rate, now: Instant) -> Result<(), Duration> {
        let Ok(mut buckets) = self.buckets.lock() else {
            // A poisoned lock means a panic elsewhere mid-update; limiting is not worth failing
            // every request for.
            return Ok(());
        };
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&key) {
            self.evict(&mut buckets, now);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: rate.burst,
            at: now,
        });
        bucket.tokens = refill(bucket, rate, now);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / rate.per_second,
            ))
        }
    }
}

impl RateLimiter {
    /// Gives back one request to `key`'s bucket (never above its burst).
    fn refund(&self, key: &Key, now: Instant) {
        let rate = rate_of(self, key);
        if let Ok(mut buckets) = self.buckets.lock()
            && let Some(bucket) = buckets.get_mut(key)
        {
            bucket.tokens = (refill(bucket, rate, now) + 1.0).min(rate.burst);
            bucket.at = now;
        }
    }

    /// Frees room in a full table: drops every full bucket (forgetting it changes no answer),
    /// then, if that was not enough, the buckets closest to full (forgetting them gives their
    /// owners back the least), the least recently used first among equals.
    fn evict(&self, buckets: &mut HashMap<Key, Bucket>, now: Instant) {
        let fullness = |k: &Key, b: &Bucket| {
            let rate = rate_of(self, k);
            refill(b, rate, now) / rate.burst
        };
        buckets.retain(|k, b| fullness(k, b) < 1.0);
        let excess = buckets.len().saturating_sub(TRACKED_AFTER_EVICTION);
        if excess == 0 {
            return;
        }
        let mut ranked: Vec<(f64, Instant, Key)> = buckets
            .iter()
            .map(|(k, b)| (fullness(k, b), b.at, k.clone()))
            .collect();
        // Fullest first; among equally full, the least recently used first.
        ranked.select_nth_unstable_by(excess - 1, |a, b| {
            b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1))
        });
        for (_, _, key) in ranked.into_iter().take(excess) {
            buckets.remove(&key);
        }
        tracing::warn!(
            evicted = excess,
            tracked = buckets.len(),
            "rate limiter table full: forgot the fullest buckets"
        );
    }
}

fn rate_of(limiter: &RateLimiter, key: &Key) -> Rate {
    match key {
        Key::Identity { .. } => limiter.identity,
        Key::Address(_) | Key::Unknown => limiter.anonymous,
    }
}

fn refill(bucket: &Bucket, rate: Rate, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    (bucket.tokens + elapsed * rate.per_second).min(rate.burst)
}

/// The verified identity of a request, once `authz` ran.
fn identity_of(request: &Request) -> Option<Key> {
    match request.extensions().get::<Caller>() {
        Some(Caller::Token(claims)) if !claims.sub.is_empty() => Some(Key::Identity {
            issuer: claims.idp.clone().unwrap_or_default(),
            subject: claims.sub.clone(),
        }),
        _ => None,
    }
}

/// The address a request came from, as the runtime saw it.
fn address_of(request: &Request) -> Key {
    let extensions = request.extensions();
    match (
        extensions.get::<ClientAddr>(),
        extensions.get::<ConnectInfo<SocketAddr>>(),
    ) {
        (Some(ClientAddr(ip)), _) => Key::Address(network_of(*ip)),
        (None, Some(ConnectInfo(addr))) => Key::Address(network_of(addr.ip())),
        (None, None) => Key::Unknown,
    }
}

/// The unit an address is limited as: itself for IPv4, its /64 for IPv6 (one host commonly holds a
/// whole /64, so per-address buckets would let it multiply its limit at will).
fn network_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

/// The answer to a request over its limit, with how long to wait.
fn too_many(wait: Duration) -> Response {
    let seconds = wait.as_secs_f64().ceil().max(1.0);
    let retry_after =
        HeaderValue::from_str(&format!("{seconds}")).unwrap_or(HeaderValue::from_static("1"));
    OciError::new(
        ErrorCode::TooManyRequests,
        format!("too many requests; retry after {seconds} s"),
    )
    .with_header(header::RETRY_AFTER, retry_after)
    .into_response()
}

/// The layer before authorization: charges the request to its address, or answers 429 without
/// verifying, authorizing or routing it.
pub(super) async fn limit_address(
    State(limiter): State<Option<Arc<RateLimiter>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(limiter) = limiter else {
        return next.run(request).await;
    };
    let key = address_of(&request);
    match limiter.take(key.clone(), limiter.anonymous, Instant::now()) {
        Ok(()) => {
            request.extensions_mut().insert(AddressCharge(key));
            next.run(request).await
        }
        Err(wait) => too_many(wait),
    }
}

/// The layer after authorization: moves the charge of a request with a verified identity from
/// its address to the identity, or answers 429 without running it.
pub(super) async fn limit(
    State(limiter): State<Option<Arc<RateLimiter>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(limiter) = limiter else {
        return next.run(request).await;
    };
    let Some(identity) = identity_of(&request) else {
        // Charged to its address already (a router without the address layer charges here).
        if request.extensions().get::<AddressCharge>().is_none() {
            let key = address_of(&request);
            if let Err(wait) = limiter.take(key, limiter.anonymous, Instant::now()) {
                return too_many(wait);
            }
        }
        return next.run(request).await;
    };
    let now = Instant::now();
    if let Some(AddressCharge(address)) = request.extensions().get::<AddressCharge>() {
        limiter.refund(address, now);
    }
    match limiter.take(identity, limiter.identity, now) {
        Ok(()) => next.run(request).await,
        Err(wait) => too_many(wait),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: u32, burst: u32) -> RateLimiter {
        RateLimiter::new(&RateLimitConfig {
            enabled: Some(true),
            identity_per_second: per_second * 10,
            identity_burst: burst * 10,
            anonymous_per_second: per_second,
            anonymous_burst: burst,
        })
    }

    fn addr(last: u8) -> Key {
        Key::Address(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn burst_then_refusal_then_refill() {
        let l = limiter(2, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take(addr(1), l.anonymous, t0).is_ok());
        }
        let wait = l
            .take(addr(1), l.anonymous, t0)
            .expect_err("over the burst");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        // Another address has its own bucket.
        assert!(l.take(addr(2), l.anonymous, t0).is_ok());
        // Half a second later one request (2/s) is allowed again, and only one.
        let t1 = t0 + Duration::from_millis(500);
        assert!(l.take(addr(1), l.anonymous, t1).is_ok());
        assert!(l.take(addr(1), l.anonymous, t1).is_err());
    }

    #[test]
    fn identities_get_their_own_larger_limit() {
        let l = limiter(1, 1);
        let t0 = Instant::now();
        let who = Key::Identity {
            issuer: "https://token.actions.githubusercontent.com".into(),
            subject: "repo:acme/app:ref:refs/heads/main".into(),
        };
        for _ in 0..10 {
            assert!(l.take(who.clone(), l.identity, t0).is_ok());
        }
        assert!(l.take(who, l.identity, t0).is_err());
        assert!(l.take(addr(1), l.anonymous, t0).is_ok());
        assert!(l.take(addr(1), l.anonymous, t0).is_err());
    }

    #[test]
    fn ipv6_hosts_are_limited_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(network_of(a), network_of(b));
        assert_ne!(network_of(a), network_of(c));
        let v4: IpAddr = "192.0.2.7".parse().expect("ip");
        assert_eq!(network_of(v4), v4);
    }

    #[test]
    fn a_refund_gives_back_one_request_and_never_more_than_the_burst() {
        let l = limiter(1, 2);
        let t0 = Instant::now();
        assert!(l.take(addr(1), l.anonymous, t0).is_ok());
        assert!(l.take(addr(1), l.anonymous, t0).is_ok());
        l.refund(&addr(1), t0);
        assert!(l.take(addr(1), l.anonymous, t0).is_ok(), "refunded");
        assert!(l.take(addr(1), l.anonymous, t0).is_err());
        for _ in 0..5 {
            l.refund(&addr(1), t0);
        }
        assert!(l.take(addr(1), l.anonymous, t0).is_ok());
        assert!(l.take(addr(1), l.anonymous, t0).is_ok());
        assert!(
            l.take(addr(1), l.anonymous, t0).is_err(),
            "capped at the burst"
        );
    }

    #[test]
    fn memory_is_bounded_and_full_buckets_go_first() {
        let l = limiter(1_000, 1);
        let t0 = Instant::now();
        for i in 0..(2 * MAX_TRACKED) {
            let ip = IpAddr::from(u32::try_from(i).expect("fits").to_be_bytes());
            assert!(l.take(Key::Address(ip), l.anonymous, t0).is_ok());
        }
        let tracked = l.buckets.lock().expect("lock").len();
        assert!(tracked <= MAX_TRACKED, "{tracked} buckets kept");
        // A second later every bucket is full again: the next eviction forgets them all.
        let later = t0 + Duration::from_secs(1);
        let mut buckets = l.buckets.lock().expect("lock");
        l.evict(&mut buckets, later);
        assert!(buckets.is_empty(), "{} full buckets kept", buckets.len());
    }

    #[test]
    fn filling_the_table_from_an_ipv6_block_does_not_reset_an_exhausted_bucket() {
        // The attack: empty your bucket, then send one request from each /64 of a /47 (any
        // IPv6 host can), until the table is full; before, the limiter then forgot everyone.
        let l = limiter(1, 5);
        let t0 = Instant::now();
        let flooder = addr(1);
        while l.take(flooder.clone(), l.anonymous, t0).is_ok() {}
        let mut t = t0;
        for i in 0..(2 * MAX_TRACKED) {
            let net = 0x2001_0db8_0000_0000u64 | u64::try_from(i).expect("fits");
            let ip = IpAddr::V6((u128::from(net) << 64 | 1).into());
            t = t0 + Duration::from_micros(i as u64);
            let _ = l.take(Key::Address(network_of(ip)), l.anonymous, t);
        }
        assert!(
            l.take(flooder, l.anonymous, t).is_err(),
            "the emptied bucket was forgotten"
        );
        assert!(l.buckets.lock().expect("lock").len() <= MAX_TRACKED);
    }
}
