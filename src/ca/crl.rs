//! Revocations and certificate revocation lists, one list per authority.
//!
//! `state/ca/revocations/<id>.json` holds what was revoked (serial, name, time,
//! reason) and the CRL's number and validity; `state/ca/crl/<id>.pem` the signed CRL.
//! The CRL number only grows. This module signs in memory; the caller writes files.

use chrono::{DateTime, Utc};
use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, KeyPair, RevocationReason, RevokedCertParams,
    SerialNumber,
};
use serde::{Deserialize, Serialize};

use super::CaError;
use super::issue::CertInfo;

/// Why a certificate was revoked (RFC 5280 §5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
}

impl Reason {
    fn rcgen(self) -> RevocationReason {
        match self {
            Reason::Unspecified => RevocationReason::Unspecified,
            Reason::KeyCompromise => RevocationReason::KeyCompromise,
            Reason::CaCompromise => RevocationReason::CaCompromise,
            Reason::AffiliationChanged => RevocationReason::AffiliationChanged,
            Reason::Superseded => RevocationReason::Superseded,
            Reason::CessationOfOperation => RevocationReason::CessationOfOperation,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoked {
    pub serial: String,
    pub name: String,
    pub time: DateTime<Utc>,
    pub reason: Reason,
    pub not_after: DateTime<Utc>,
}

/// The revocation state of one authority.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocations {
    pub crl_number: u64,
    pub this_update: Option<DateTime<Utc>>,
    pub next_update: Option<DateTime<Utc>>,
    #[serde(default)]
    pub revoked: Vec<Revoked>,
}

impl Revocations {
    /// Whether the CRL must be re-signed at `now`: none yet, or half its validity passed.
    pub fn due(&self, now: DateTime<Utc>) -> Option<String> {
        match (self.this_update, self.next_update) {
            (Some(t), Some(n)) => {
                let half = t + (n - t) / 2;
                (now >= half).then(|| {
                    format!("half of its validity passed on {}", crate::util::fmt_time(half))
                })
            }
            _ => Some("no CRL yet".into()),
        }
    }

    pub fn is_revoked(&self, serial: &str) -> bool {
        self.revoked.iter().any(|r| r.serial == serial)
    }
}

fn to_offset(t: DateTime<Utc>) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// Signs a CRL with `key` for the CA certificate `ca_pem`; returns PEM.
pub fn sign(
    ca_pem: &str,
    key: &KeyPair,
    ca: &CertInfo,
    number: u64,
    revoked: &[Revoked],
    this_update: DateTime<Utc>,
    next_update: DateTime<Utc>,
) -> Result<String, CaError> {
    let what = format!("the CRL of {}", ca.subject);
    let issuer = super::issue::issuer(ca_pem, key, &what)?;
    let ski = ca.ski.as_deref().and_then(|s| hex::decode(s).ok()).unwrap_or_default();
    let params = CertificateRevocationListParams {
        this_update: to_offset(this_update),
        next_update: to_offset(next_update),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .filter_map(|r| {
                hex::decode(&r.serial).ok().map(|b| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&b),
                    revocation_time: to_offset(r.time),
                    reason_code: Some(r.reason.rcgen()),
                    invalidity_date: None,
                })
            })
            .collect(),
        key_identifier_method: KeyIdMethod::PreSpecified(ski),
    };
    let crl = params
        .signed_by(&issuer)
        .map_err(|e| CaError::Sign { what: what.clone(), message: e.to_string() })?;
    crl.pem().map_err(|e| CaError::Sign { what, message: e.to_string() })
}
