//! Small helpers shared by every module: the clock, the caller's identity, time
//! parsing and formatting.

use chrono::{DateTime, NaiveDate, Utc};

use crate::Error;

/// The current time. `KEYWARD_NOW` (RFC 3339) replaces the clock, for tests and for
/// drills that ask what would be due on a given day; it is recorded in the audit log.
pub fn now() -> DateTime<Utc> {
    match std::env::var("KEYWARD_NOW") {
        Ok(s) if !s.is_empty() => match DateTime::parse_from_rfc3339(&s) {
            Ok(t) => t.with_timezone(&Utc),
            Err(_) => Utc::now(),
        },
        _ => Utc::now(),
    }
}

/// Whether the clock is overridden by `KEYWARD_NOW`.
pub fn clock_overridden() -> bool {
    std::env::var_os("KEYWARD_NOW").is_some_and(|v| !v.is_empty())
}

/// Parses `--since` style times: RFC 3339 or a plain date (midnight UTC).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, Error> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Some(t) =
        NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0))
    {
        return Ok(t.and_utc());
    }
    Err(Error::Usage(format!(
        "cannot read the time {s:?}: use RFC 3339 (2026-12-04T09:00:00Z) or a date (2026-12-04)"
    )))
}

/// The real user id of the caller, for audit records and ownership checks.
pub fn uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// Days from `now` until `t`, rounded down (negative when past).
pub fn days_until(now: DateTime<Utc>, t: DateTime<Utc>) -> i64 {
    (t - now).num_seconds().div_euclid(86_400)
}

/// RFC 3339 with seconds, `Z` for UTC: the one time format of every output.
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_time_forms() {
        assert_eq!(fmt_time(parse_time("2026-12-04").unwrap()), "2026-12-04T00:00:00Z");
        assert_eq!(
            fmt_time(parse_time("2026-12-04T10:00:00+01:00").unwrap()),
            "2026-12-04T09:00:00Z"
        );
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn days_round_down() {
        let now = parse_time("2026-12-04T12:00:00Z").unwrap();
        assert_eq!(days_until(now, parse_time("2026-12-11T11:59:59Z").unwrap()), 6);
        assert_eq!(days_until(now, parse_time("2026-12-11T12:00:00Z").unwrap()), 7);
        assert_eq!(days_until(now, parse_time("2026-12-04T11:00:00Z").unwrap()), -1);
    }
}
