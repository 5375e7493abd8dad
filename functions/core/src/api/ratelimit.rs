//! Rate limits: a token bucket per identity (OIDC issuer + subject of a verified registry token)
//! and per client address for everyone else (anonymous pulls, the token endpoint). A caller over
//! its limit gets `TOOMANYREQUESTS` (429) with `Retry-After`, before any handler or store runs.
//!
//! Layer rule: runs after `authz` (which put the [`Caller`] in the request extensions) and knows
//! nothing of handlers or storage. The client address comes from a [`ClientAddr`] extension that
//! the runtime inserts (the socket peer for `wharf serve`, the API Gateway source IP under
//! Lambda); `X-Forwarded-For` is never read, because any client can write it.
//!
//! The buckets live in the process. Under Lambda each instance counts for itself, so the limit a
//! caller sees is per instance; the API Gateway stage throttle bounds the total.

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

/// Buckets kept before idle, full ones are dropped: bounds memory whatever the number of
/// distinct callers (a full bucket carries no information, so dropping it changes no answer).
const MAX_TRACKED: usize = 100_000;

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
        if buckets.len() >= MAX_TRACKED {
            buckets.retain(|k, b| refill(b, rate_of(self, k), now) < rate_of(self, k).burst);
            // Mostly busy callers (or a spread of addresses): forget everyone rather than scan
            // the map again at each request.
            if buckets.len() >= MAX_TRACKED * 3 / 4 {
                tracing::warn!(tracked = buckets.len(), "rate limiter forgot every caller");
                buckets.clear();
            }
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

fn key_of(request: &Request) -> Key {
    if let Some(Caller::Token(claims)) = request.extensions().get::<Caller>()
        && !claims.sub.is_empty()
    {
        return Key::Identity {
            issuer: claims.idp.clone().unwrap_or_default(),
            subject: claims.sub.clone(),
        };
    }
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

/// The middleware: passes the request on, or answers 429 without running it.
pub(super) async fn limit(
    State(limiter): State<Option<Arc<RateLimiter>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(limiter) = limiter else {
        return next.run(request).await;
    };
    let key = key_of(&request);
    let rate = rate_of(&limiter, &key);
    match limiter.take(key, rate, Instant::now()) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            let seconds = wait.as_secs_f64().ceil().max(1.0);
            let retry_after = HeaderValue::from_str(&format!("{seconds}"))
                .unwrap_or(HeaderValue::from_static("1"));
            OciError::new(
                ErrorCode::TooManyRequests,
                format!("too many requests; retry after {seconds} s"),
            )
            .with_header(header::RETRY_AFTER, retry_after)
            .into_response()
        }
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
    fn memory_is_bounded_by_dropping_full_buckets() {
        let l = limiter(1_000, 1);
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED + 10) {
            let ip = IpAddr::from(u32::try_from(i).expect("fits").to_be_bytes());
            assert!(l.take(Key::Address(ip), l.anonymous, t0).is_ok());
        }
        let later = t0 + Duration::from_secs(1);
        assert!(l.take(addr(1), l.anonymous, later).is_ok());
        let tracked = l.buckets.lock().expect("lock").len();
        assert!(tracked < 100, "{tracked} buckets kept");
    }
}
