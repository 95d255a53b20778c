//! When to renew: ACME Renewal Information (RFC 9773) when the server offers it, else
//! when a third of the lifetime is left; and what keyward remembers between runs.
//!
//! The decision is a pure function of the clock, the live certificate and the stored
//! state, so a run with nothing due sends no request at all: the chosen renewal time
//! inside the server's window and the time the server said to ask again (Retry-After)
//! are kept in `state/acme/certificates/NAME.json`. This module does no I/O besides
//! that state file.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::lineage::CertInfo;
use crate::util::fmt_time;

/// Retry-After values are clamped to this range (RFC 9773 §4.3: clients clamp to a
/// reasonable range).
pub const MIN_RECHECK: Duration = Duration::minutes(1);
pub const MAX_RECHECK: Duration = Duration::hours(24);

/// Per-certificate state (never a key or other secret).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CertState {
    /// Account URL that obtained the live certificate (renewals carry `replaces` only
    /// for certificates of the same account).
    #[serde(default)]
    pub account: Option<String>,
    /// The live certificate's serial (hex) that `ari` belongs to.
    #[serde(default)]
    pub serial: Option<String>,
    #[serde(default)]
    pub ari: Option<AriState>,
    /// No request before this time (a rate limit).
    #[serde(default)]
    pub backoff_until: Option<String>,
    #[serde(default)]
    pub last_failure: Option<Failure>,
    /// A deploy hook failed after the last renewal; it is run again on the next run.
    #[serde(default)]
    pub deploy_pending: bool,
    #[serde(default)]
    pub last_renewed: Option<String>,
    #[serde(default)]
    pub imported_from: Option<String>,
    /// The server has no renewal information for this serial (it answered 404): the
    /// lifetime rule decides for this certificate.
    #[serde(default)]
    pub no_ari_serial: Option<String>,
    /// The directory that `ari` and `no_ari_serial` came from; another directory's
    /// answers do not count.
    #[serde(default)]
    pub ari_directory: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AriState {
    pub serial: String,
    pub window_start: String,
    pub window_end: String,
    /// The uniformly random time inside the window that keyward picked.
    pub renew_at: String,
    /// Do not ask the server again before this (its Retry-After, clamped).
    pub next_check: String,
    #[serde(default)]
    pub explanation_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    pub time: String,
    /// `renew`, `deploy`, `renewal-info`.
    pub stage: String,
    pub error: String,
}

/// What a directory offers, remembered so deciding needs no request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DirectoryInfo {
    pub renewal_info: bool,
    #[serde(default)]
    pub profiles: Vec<String>,
    pub checked: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Due(String),
    NotDue {
        next: DateTime<Utc>,
        reason: String,
    },
    /// The renewal information must be fetched (first time, or Retry-After passed).
    AskAri,
    Backoff(DateTime<Utc>),
}

fn parse(t: &Option<String>) -> Option<DateTime<Utc>> {
    t.as_deref().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc))
}

pub fn at(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// The 1/3-lifetime rule: renew once a third of the lifetime is left.
pub fn lifetime_renewal(info: &CertInfo) -> DateTime<Utc> {
    info.not_after - info.lifetime() / 3
}

/// Decides for one certificate. `ari` is whether the directory offers renewal
/// information (`None`: not known yet).
pub fn decide(
    now: DateTime<Utc>,
    info: Option<&CertInfo>,
    wanted_domains: &[String],
    state: &CertState,
    ari: Option<bool>,
    force: bool,
) -> Decision {
    if !force && let Some(until) = parse(&state.backoff_until).filter(|u| *u > now) {
        return Decision::Backoff(until);
    }
    let Some(info) = info else {
        return Decision::Due("no certificate yet".into());
    };
    if force {
        return Decision::Due("--force".into());
    }
    let mut have: Vec<&str> = info.domains.iter().map(String::as_str).collect();
    let mut want: Vec<&str> = wanted_domains.iter().map(String::as_str).collect();
    have.sort_unstable();
    want.sort_unstable();
    if have != want {
        return Decision::Due(format!(
            "the configured domains ({}) differ from the certificate's ({})",
            want.join(", "),
            have.join(", ")
        ));
    }
    if info.not_after <= now {
        return Decision::Due(format!("expired on {}", fmt_time(info.not_after)));
    }
    // Whatever the server says, do not let the last tenth of the lifetime pass.
    let floor = info.not_after - info.lifetime() / 10;
    if now >= floor {
        return Decision::Due(format!(
            "less than a tenth of the lifetime left (expires {})",
            fmt_time(info.not_after)
        ));
    }
    let ari = if state.no_ari_serial.as_deref() == Some(info.serial.as_str()) {
        Some(false)
    } else {
        ari
    };
    match ari {
        Some(false) => {
            let when = lifetime_renewal(info);
            if now >= when {
                Decision::Due(format!("a third of the lifetime left since {}", fmt_time(when)))
            } else {
                Decision::NotDue { next: when, reason: "1/3 of the lifetime left".into() }
            }
        }
        _ => match &state.ari {
            Some(a) if Some(&a.serial) == Some(&info.serial) => {
                let renew_at = at(&a.renew_at).unwrap_or(now);
                if renew_at <= now {
                    Decision::Due(format!(
                        "inside the server's renewal window ({} to {}), chosen time {}",
                        a.window_start, a.window_end, a.renew_at
                    ))
                } else if at(&a.next_check).is_none_or(|c| c <= now) {
                    Decision::AskAri
                } else {
                    Decision::NotDue { next: renew_at, reason: "renewal information".into() }
                }
            }
            _ => Decision::AskAri,
        },
    }
}

/// Records a fetched window: keeps the chosen time when the window did not change,
/// else picks a new uniformly random time inside it.
pub fn record_window(
    state: &mut CertState,
    serial: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    retry_after: std::time::Duration,
    explanation_url: Option<String>,
    now: DateTime<Utc>,
) {
    let (ws, we) = (fmt_time(start), fmt_time(end));
    let keep = state
        .ari
        .as_ref()
        .filter(|a| a.serial == serial && a.window_start == ws && a.window_end == we)
        .map(|a| a.renew_at.clone());
    let renew_at = keep.unwrap_or_else(|| {
        let span = (end - start).num_seconds().max(0) as u64;
        let offset = if span == 0 { 0 } else { random_u64() % (span + 1) };
        fmt_time(start + Duration::seconds(offset as i64))
    });
    let wait =
        Duration::from_std(retry_after).unwrap_or(MAX_RECHECK).clamp(MIN_RECHECK, MAX_RECHECK);
    state.serial = Some(serial.to_string());
    state.ari = Some(AriState {
        serial: serial.to_string(),
        window_start: ws,
        window_end: we,
        renew_at,
        next_check: fmt_time(now + wait),
        explanation_url,
    });
}

fn random_u64() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    // The system RNG failing is not recoverable in any useful way; the window start is
    // a correct (if less spread) choice.
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        return 0;
    }
    u64::from_le_bytes(b)
}

/// The next time keyward will act, for status and list.
pub fn next_action(now: DateTime<Utc>, d: &Decision) -> String {
    match d {
        Decision::Due(why) => format!("renew now ({why})"),
        Decision::NotDue { next, reason } => format!("renew at {} ({reason})", fmt_time(*next)),
        Decision::AskAri => format!("ask the server for renewal information at {}", fmt_time(now)),
        Decision::Backoff(t) => format!("rate limited: retry after {}", fmt_time(*t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        crate::util::parse_time(s).unwrap()
    }

    fn info() -> CertInfo {
        CertInfo {
            serial: "01".into(),
            not_before: t("2026-01-01T00:00:00Z"),
            not_after: t("2026-03-31T00:00:00Z"),
            domains: vec!["a.example".into()],
            issuer: "CN=x".into(),
            fingerprint: "f".into(),
            ari_id: Some("a.b".into()),
            spki: vec![],
        }
    }

    #[test]
    fn lifetime_rule_without_ari() {
        let d = vec!["a.example".to_string()];
        let s = CertState::default();
        let i = info();
        // 89 days; a third left from 2026-03-01T08:00.
        let before = decide(t("2026-02-28T00:00:00Z"), Some(&i), &d, &s, Some(false), false);
        assert!(matches!(before, Decision::NotDue { .. }), "{before:?}");
        let after = decide(t("2026-03-02T00:00:00Z"), Some(&i), &d, &s, Some(false), false);
        assert!(matches!(after, Decision::Due(_)), "{after:?}");
        assert!(matches!(
            decide(t("2026-01-02T00:00:00Z"), Some(&i), &d, &s, Some(false), true),
            Decision::Due(_)
        ));
        assert!(matches!(
            decide(t("2026-01-02T00:00:00Z"), None, &d, &s, Some(false), false),
            Decision::Due(_)
        ));
        let other = vec!["b.example".to_string()];
        assert!(matches!(
            decide(t("2026-01-02T00:00:00Z"), Some(&i), &other, &s, Some(false), false),
            Decision::Due(_)
        ));
    }

    #[test]
    fn ari_window_is_remembered_and_rechecked_after_retry_after() {
        let d = vec!["a.example".to_string()];
        let i = info();
        let now = t("2026-01-10T00:00:00Z");
        let mut s = CertState::default();
        assert_eq!(decide(now, Some(&i), &d, &s, Some(true), false), Decision::AskAri);
        record_window(
            &mut s,
            "01",
            t("2026-02-28T00:00:00Z"),
            t("2026-03-01T00:00:00Z"),
            std::time::Duration::from_secs(6 * 3600),
            None,
            now,
        );
        let chosen = at(&s.ari.as_ref().unwrap().renew_at).unwrap();
        assert!(chosen >= t("2026-02-28T00:00:00Z") && chosen <= t("2026-03-01T00:00:00Z"));
        // Within Retry-After: no request, not due.
        assert!(matches!(
            decide(now + Duration::hours(1), Some(&i), &d, &s, Some(true), false),
            Decision::NotDue { .. }
        ));
        // After Retry-After: ask again.
        assert_eq!(
            decide(now + Duration::hours(7), Some(&i), &d, &s, Some(true), false),
            Decision::AskAri
        );
        // Same window again: the chosen time is kept.
        let before = s.ari.clone().unwrap().renew_at;
        record_window(
            &mut s,
            "01",
            t("2026-02-28T00:00:00Z"),
            t("2026-03-01T00:00:00Z"),
            std::time::Duration::from_secs(60),
            None,
            now,
        );
        assert_eq!(s.ari.as_ref().unwrap().renew_at, before);
        // Past the chosen time: due without asking.
        assert!(matches!(
            decide(t("2026-03-01T00:00:01Z"), Some(&i), &d, &s, Some(true), false),
            Decision::Due(_)
        ));
        // A server that does not know the certificate: the lifetime rule decides.
        let mut unknown = CertState { no_ari_serial: Some("01".into()), ..CertState::default() };
        assert!(matches!(
            decide(now, Some(&i), &d, &unknown, Some(true), false),
            Decision::NotDue { .. }
        ));
        unknown.no_ari_serial = Some("02".into());
        assert_eq!(decide(now, Some(&i), &d, &unknown, Some(true), false), Decision::AskAri);
        // A rate limit holds everything but --force.
        s.backoff_until = Some("2026-03-02T00:00:00Z".into());
        assert!(matches!(
            decide(t("2026-03-01T12:00:00Z"), Some(&i), &d, &s, Some(true), false),
            Decision::Backoff(_)
        ));
    }

    #[test]
    fn retry_after_is_clamped() {
        let mut s = CertState::default();
        let now = t("2026-01-10T00:00:00Z");
        record_window(&mut s, "01", now, now, std::time::Duration::from_secs(0), None, now);
        assert_eq!(s.ari.as_ref().unwrap().next_check, "2026-01-10T00:01:00Z");
        record_window(&mut s, "01", now, now, std::time::Duration::from_secs(9 * 86400), None, now);
        assert_eq!(s.ari.as_ref().unwrap().next_check, "2026-01-11T00:00:00Z");
    }
}
