//! Turning what instant-acme and the server report into operator errors with a fix.
//!
//! Problem documents keep the server's own `detail` (that is what tells an operator that
//! nginx did not serve the token or that the TXT record was not visible); transport
//! failures say whether the server was unreachable or slow; a rate limit carries the
//! time before which keyward will not ask again.

use chrono::{DateTime, Utc};

use super::AcmeError;
use super::directory::{AcmeDirectory, TimedOut, Unreachable};

/// How often one ACME request is re-sent after `badNonce`, on top of instant-acme's own
/// three attempts.
pub const NONCE_RETRIES: u32 = 5;

/// Re-evaluates an instant-acme future while the server answers `badNonce`.
macro_rules! retry_nonce {
    ($e:expr) => {{
        let mut attempt = 0u32;
        loop {
            match $e.await {
                Err(e)
                    if attempt < $crate::acme::fault::NONCE_RETRIES
                        && $crate::acme::fault::is_bad_nonce(&e) =>
                {
                    attempt += 1;
                    $crate::debug!("acme: the server rejected a nonce; retrying ({attempt})");
                }
                r => break r,
            }
        }
    }};
}
pub(crate) use retry_nonce;

pub fn is_bad_nonce(e: &instant_acme::Error) -> bool {
    matches!(e, instant_acme::Error::Api(p) if problem_kind(p) == "badNonce")
}

/// The last part of a problem type URN (`rateLimited`, `unauthorized`, …).
pub fn problem_kind(p: &instant_acme::Problem) -> &str {
    p.r#type.as_deref().map_or("", |t| t.rsplit(':').next().unwrap_or(t))
}

/// The problem's detail with its subproblems, on one line.
pub fn problem_detail(p: &instant_acme::Problem) -> String {
    let mut s = p.detail.clone().unwrap_or_else(|| p.r#type.clone().unwrap_or_default());
    for sub in &p.subproblems {
        if let Some(d) = &sub.detail
            && !s.contains(d.as_str())
        {
            s.push_str("; ");
            s.push_str(d);
        }
    }
    s
}

/// A rate limit's end: the server's Retry-After, else the time in Boulder's detail
/// ("retry after 2026-01-10 11:27:27 UTC"), else one hour.
pub fn rate_limit_until(
    detail: &str,
    retry_after: Option<std::time::SystemTime>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    if let Some(t) = retry_after {
        let t: DateTime<Utc> = t.into();
        if t > now {
            return t;
        }
    }
    let lower = detail.to_ascii_lowercase();
    if let Some(i) = lower.find("retry after ") {
        let rest = &detail[i + "retry after ".len()..];
        let stamp: String = rest.chars().take(19).collect();
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(&stamp, "%Y-%m-%d %H:%M:%S") {
            return t.and_utc();
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(rest.split_whitespace().next().unwrap_or("")) {
            return t.with_timezone(&Utc);
        }
    }
    now + chrono::Duration::hours(1)
}

/// Classifies an instant-acme error met while doing `op` against `dir`.
pub fn from_acme(dir: &dyn AcmeDirectory, op: &str, e: instant_acme::Error) -> AcmeError {
    let url = dir.url().to_string();
    let op = op.to_string();
    match e {
        instant_acme::Error::Api(p) => {
            let kind = problem_kind(&p).to_string();
            let detail = problem_detail(&p);
            match kind.as_str() {
                "rateLimited" => {
                    let until =
                        rate_limit_until(&detail, dir.last_retry_after(), crate::util::now());
                    AcmeError::RateLimited { url, op, detail, until: crate::util::fmt_time(until) }
                }
                "badNonce" => AcmeError::BadNonce { url, op },
                "accountDoesNotExist" | "unauthorized" if op.contains("account") => {
                    AcmeError::Problem { url, op, kind, detail }
                }
                _ => AcmeError::Problem { url, op, kind, detail },
            }
        }
        instant_acme::Error::Other(inner) => {
            if let Some(t) = inner.downcast_ref::<TimedOut>() {
                AcmeError::Timeout { url, op, secs: t.0 }
            } else if let Some(u) = inner.downcast_ref::<Unreachable>() {
                AcmeError::Unreachable { url, op, detail: u.0.clone() }
            } else {
                AcmeError::Protocol { url, op, detail: super::directory::error_chain(&*inner) }
            }
        }
        instant_acme::Error::Timeout(_) => AcmeError::ValidationTimeout { url, op },
        instant_acme::Error::Json(e) => AcmeError::Protocol {
            url,
            op,
            detail: format!(
                "the answer is not ACME JSON ({e}); is acme.directory an ACME directory URL?"
            ),
        },
        instant_acme::Error::Unsupported(what) => AcmeError::Unsupported { url, what },
        other => AcmeError::Protocol { url, op, detail: other.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_end_comes_from_header_then_detail() {
        let now = crate::util::parse_time("2026-12-04T10:00:00Z").unwrap();
        let d = "too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s, retry after 2026-12-05 11:27:27 UTC: see https://letsencrypt.org/docs/rate-limits/";
        assert_eq!(crate::util::fmt_time(rate_limit_until(d, None, now)), "2026-12-05T11:27:27Z");
        assert_eq!(
            crate::util::fmt_time(rate_limit_until("slow down", None, now)),
            "2026-12-04T11:00:00Z"
        );
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600 * 24 * 400);
        assert!(rate_limit_until(d, Some(later), now) > now + chrono::Duration::days(300));
    }

    #[test]
    fn problem_kinds() {
        let p: instant_acme::Problem = serde_json::from_str(
            r#"{"type":"urn:ietf:params:acme:error:badNonce","detail":"JWS has an invalid anti-replay nonce","status":400}"#,
        )
        .unwrap();
        assert_eq!(problem_kind(&p), "badNonce");
        assert!(is_bad_nonce(&instant_acme::Error::Api(p)));
    }
}
