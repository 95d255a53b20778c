//! GitHub's REST best practices for rate limits, as a pure decision: given a
//! response, is it final, or how long to wait before trying again?
//!
//! - mutative requests (PUT, DELETE) go one at a time with a pause between them;
//! - `retry-after` is honoured;
//! - `x-ratelimit-remaining: 0` waits until `x-ratelimit-reset`;
//! - a secondary rate limit without either header backs off exponentially;
//! - 5xx and dropped connections are retried a bounded number of times.
//!
//! This module sleeps only in [`Pacer`]; it makes no requests itself.

use std::time::{Duration, Instant};

use http::{HeaderMap, StatusCode};

/// The settings that govern retries and waits.
#[derive(Debug, Clone)]
pub struct Policy {
    pub pause: Duration,
    pub retries: u32,
    pub backoff: Duration,
    pub max_wait: Duration,
}

/// What to do with a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Final: hand the response to the caller (success or an error to report).
    Final,
    /// Wait, then send the same request again.
    Retry { wait: Duration, why: String },
    /// Rate limited, and waiting would take longer than allowed.
    GiveUp { why: String },
}

fn header_u64(h: &HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Whether a 403/429 is a rate limit rather than a refusal.
pub fn is_rate_limit(status: StatusCode, headers: &HeaderMap, message: &str) -> bool {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return true;
    }
    status == StatusCode::FORBIDDEN
        && (headers.contains_key("retry-after")
            || header_u64(headers, "x-ratelimit-remaining") == Some(0)
            || message.to_ascii_lowercase().contains("rate limit"))
}

impl Policy {
    /// Judges a response to attempt number `attempt` (0 = first try); `rate_limited`
    /// counts the rate-limit waits so far (for the exponential backoff); `now_epoch`
    /// is the current Unix time, for `x-ratelimit-reset`.
    pub fn judge(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        message: &str,
        attempt: u32,
        rate_limited: u32,
        now_epoch: i64,
    ) -> Verdict {
        if is_rate_limit(status, headers, message) {
            let (wait, why) = if let Some(secs) = header_u64(headers, "retry-after") {
                (Duration::from_secs(secs), format!("retry-after {secs}s"))
            } else if header_u64(headers, "x-ratelimit-remaining") == Some(0) {
                let reset = header_u64(headers, "x-ratelimit-reset").unwrap_or(0) as i64;
                let secs = (reset - now_epoch).max(0) as u64 + 1;
                (Duration::from_secs(secs), format!("rate limit exhausted until {reset}"))
            } else {
                let factor = 1u32 << rate_limited.min(10);
                (
                    self.backoff.checked_mul(factor).unwrap_or(Duration::MAX),
                    "secondary rate limit".to_string(),
                )
            };
            if wait > self.max_wait || rate_limited >= self.retries.max(1) * 2 {
                return Verdict::GiveUp {
                    why: format!(
                        "{why}: waiting {}s more is beyond github.max_wait_seconds ({}s) or the retry budget",
                        wait.as_secs(),
                        self.max_wait.as_secs()
                    ),
                };
            }
            return Verdict::Retry { wait, why };
        }
        if status.is_server_error() && attempt < self.retries {
            let wait = self.pause.min(Duration::from_secs(1)) * (attempt + 1);
            return Verdict::Retry { wait, why: format!("GitHub answered {}", status.as_u16()) };
        }
        Verdict::Final
    }

    /// How long to wait before the next request after a successful response that
    /// says the primary limit is used up.
    pub fn exhausted_wait(&self, headers: &HeaderMap, now_epoch: i64) -> Option<Duration> {
        if header_u64(headers, "x-ratelimit-remaining") != Some(0) {
            return None;
        }
        let reset = header_u64(headers, "x-ratelimit-reset")? as i64;
        Some(Duration::from_secs((reset - now_epoch).max(0) as u64 + 1).min(self.max_wait))
    }
}

/// Spaces mutative requests: at most one at a time, `pause` apart; and holds every
/// request back while the primary limit is exhausted.
#[derive(Debug, Default)]
pub struct Pacer {
    last_mutation: Option<Instant>,
    blocked_until: Option<Instant>,
}

impl Pacer {
    /// Sleeps as long as needed before a request.
    pub async fn before(&mut self, mutative: bool, pause: Duration) {
        let now = Instant::now();
        let mut until = self.blocked_until.filter(|t| *t > now);
        if mutative && let Some(last) = self.last_mutation {
            let next = last + pause;
            if next > now {
                until = Some(until.map_or(next, |u| u.max(next)));
            }
        }
        if let Some(t) = until {
            tokio::time::sleep_until(t.into()).await;
        }
    }

    /// Records that a request was sent (after it completes).
    pub fn after(&mut self, mutative: bool, exhausted: Option<Duration>) {
        if mutative {
            self.last_mutation = Some(Instant::now());
        }
        if let Some(w) = exhausted {
            self.blocked_until = Some(Instant::now() + w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            pause: Duration::from_secs(1),
            retries: 3,
            backoff: Duration::from_secs(60),
            max_wait: Duration::from_secs(900),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn retry_after_is_honoured() {
        let v = policy().judge(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "7")]),
            "",
            0,
            0,
            0,
        );
        assert!(matches!(v, Verdict::Retry { wait, .. } if wait == Duration::from_secs(7)));
    }

    #[test]
    fn exhausted_primary_limit_waits_until_reset() {
        let h = headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1000")]);
        let v = policy().judge(StatusCode::FORBIDDEN, &h, "API rate limit exceeded", 0, 0, 990);
        assert!(matches!(v, Verdict::Retry { wait, .. } if wait == Duration::from_secs(11)));
        assert_eq!(policy().exhausted_wait(&h, 990), Some(Duration::from_secs(11)));
    }

    #[test]
    fn secondary_limit_backs_off_exponentially() {
        let m = "You have exceeded a secondary rate limit";
        let p = policy();
        let w = |n| match p.judge(StatusCode::FORBIDDEN, &HeaderMap::new(), m, 0, n, 0) {
            Verdict::Retry { wait, .. } => wait,
            other => panic!("{other:?}"),
        };
        assert_eq!(w(0), Duration::from_secs(60));
        assert_eq!(w(1), Duration::from_secs(120));
        assert_eq!(w(2), Duration::from_secs(240));
        assert!(matches!(
            p.judge(StatusCode::FORBIDDEN, &HeaderMap::new(), m, 0, 4, 0),
            Verdict::GiveUp { .. }
        ));
    }

    #[test]
    fn a_permission_403_is_final() {
        let v = policy().judge(
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            "Resource not accessible by integration",
            0,
            0,
            0,
        );
        assert_eq!(v, Verdict::Final);
    }

    #[test]
    fn server_errors_are_retried_a_bounded_number_of_times() {
        let p = policy();
        for attempt in 0..3 {
            assert!(matches!(
                p.judge(StatusCode::BAD_GATEWAY, &HeaderMap::new(), "", attempt, 0, 0),
                Verdict::Retry { .. }
            ));
        }
        assert_eq!(
            p.judge(StatusCode::BAD_GATEWAY, &HeaderMap::new(), "", 3, 0, 0),
            Verdict::Final
        );
    }

    #[test]
    fn waits_beyond_the_limit_give_up() {
        let v = policy().judge(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "3600")]),
            "",
            0,
            0,
            0,
        );
        assert!(matches!(v, Verdict::GiveUp { .. }));
    }

    proptest::proptest! {
        /// Whatever GitHub sends, keyward never sleeps longer than allowed, and a
        /// request is retried only a bounded number of times.
        #[test]
        fn waits_are_bounded(
            status in 400u16..600,
            retry_after in proptest::option::of(0u64..100_000),
            remaining in proptest::option::of(0u64..3),
            reset in 0i64..2_000_000,
            attempt in 0u32..10,
            limited in 0u32..10,
        ) {
            let mut h = HeaderMap::new();
            if let Some(r) = retry_after {
                h.insert("retry-after", r.to_string().parse().unwrap());
            }
            if let Some(r) = remaining {
                h.insert("x-ratelimit-remaining", r.to_string().parse().unwrap());
                h.insert("x-ratelimit-reset", reset.to_string().parse().unwrap());
            }
            let p = policy();
            let status = StatusCode::from_u16(status).unwrap();
            match p.judge(status, &h, "You have exceeded a secondary rate limit", attempt, limited, 1_000_000) {
                Verdict::Retry { wait, .. } => {
                    proptest::prop_assert!(wait <= p.max_wait);
                    proptest::prop_assert!(limited < p.retries * 2 || attempt < p.retries);
                }
                Verdict::Final | Verdict::GiveUp { .. } => {}
            }
            if let Some(w) = p.exhausted_wait(&h, 1_000_000) {
                proptest::prop_assert!(w <= p.max_wait);
            }
        }
    }
}
