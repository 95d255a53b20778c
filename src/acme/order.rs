//! One certificate order, from new-order to the downloaded chain.
//!
//! Creates the order (with `replaces` for a renewal, and the configured profile), has
//! the [`Provisioner`] answer every authorization, waits for validation, finalizes
//! with a CSR for a fresh (or the reused) key and downloads the chain. The result is
//! checked — the leaf must carry our public key and exactly the configured names —
//! before anyone writes it anywhere. Nothing here touches the lineage.

use std::borrow::Cow;
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, Identifier, NewOrder, OrderStatus,
    RetryPolicy,
};

use super::AcmeError;
use super::challenge::Provisioner;
use super::config::CertificateConfig;
use super::directory::AcmeDirectory;
use super::fault::retry_nonce;
use super::fault::{from_acme, problem_detail};
use super::lineage::{CertInfo, parse_cert, split_chain};
use crate::secret::SecretString;

/// A certificate fresh from the server, checked, not yet installed.
pub struct Issued {
    pub cert: String,
    pub chain: String,
    pub fullchain: String,
    pub key: SecretString,
    pub info: CertInfo,
    pub replaced: Option<String>,
}

/// Orders and downloads one certificate.
pub async fn issue(
    dir: &dyn AcmeDirectory,
    account: &Account,
    cert: &CertificateConfig,
    replaces: Option<&str>,
    reuse: Option<SecretString>,
    validation_timeout: Duration,
) -> Result<Issued, AcmeError> {
    if let Some(p) = &cert.profile {
        let offered: Vec<String> = account.profiles().map(|m| m.name.to_string()).collect();
        if !offered.iter().any(|o| o == p) {
            return Err(AcmeError::Profile {
                name: cert.name.clone(),
                profile: p.clone(),
                offered: if offered.is_empty() { "none".into() } else { offered.join(", ") },
            });
        }
    }
    let ids: Vec<Identifier> = cert.domains.iter().map(|d| Identifier::Dns(d.clone())).collect();
    let replaces_id = replaces.and_then(|r| {
        let (aki, serial) = r.split_once('.')?;
        Some(CertificateIdentifier {
            authority_key_identifier: Cow::Owned(aki.to_string()),
            serial: Cow::Owned(serial.to_string()),
        })
    });
    let new_order = |with_replaces: bool| {
        let mut n = NewOrder::new(&ids);
        if with_replaces && let Some(r) = &replaces_id {
            n = n.replaces(r.clone());
        }
        if let Some(p) = &cert.profile {
            n = n.profile(p);
        }
        n
    };
    let mut replaced = replaces.map(String::from);
    let mut order = match retry_nonce!(account.new_order(&new_order(true))) {
        Ok(o) => o,
        // A server may refuse `replaces` (already replaced, another account's
        // certificate); the renewal matters more than the hint.
        Err(instant_acme::Error::Api(p)) if replaces_id.is_some() => {
            crate::warn!(
                "acme {}: the server refused the order with `replaces` ({}); ordering without it",
                cert.name,
                problem_detail(&p)
            );
            replaced = None;
            retry_nonce!(account.new_order(&new_order(false)))
                .map_err(|e| from_acme(dir, "create the order", e))?
        }
        Err(e) => return Err(from_acme(dir, "create the order", e)),
    };

    let mut prov = Provisioner::new(&cert.name, &cert.challenge).await?;
    let ty = prov.challenge_type();

    // Pass 1: publish every response. A badNonce while fetching an authorization
    // skips it in this stream, so the pass restarts (fetched ones are cached).
    let mut presented: Vec<String> = Vec::new();
    let mut restarts = 0;
    'pass: loop {
        let mut authzs = order.authorizations();
        while let Some(next) = authzs.next().await {
            let mut authz = match next {
                Ok(a) => a,
                Err(e)
                    if super::fault::is_bad_nonce(&e) && restarts < super::fault::NONCE_RETRIES =>
                {
                    restarts += 1;
                    continue 'pass;
                }
                Err(e) => return Err(from_acme(dir, "fetch an authorization", e)),
            };
            let domain = match authz.identifier().identifier {
                Identifier::Dns(d) => d.clone(),
                other => format!("{other:?}"),
            };
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                s => {
                    return Err(AcmeError::Challenge {
                        name: cert.name.clone(),
                        domain,
                        kind: cert.challenge.kind(),
                        detail: format!("the authorization is {s:?}"),
                        fix: prov.fix(""),
                    });
                }
            }
            if presented.contains(&domain) {
                continue;
            }
            let Some(ch) = authz.challenge(ty.clone()) else {
                return Err(AcmeError::Challenge {
                    name: cert.name.clone(),
                    domain,
                    kind: cert.challenge.kind(),
                    detail: "the server offers no challenge of this type for it".into(),
                    fix: "choose another challenge type for this certificate".into(),
                });
            };
            let ka = ch.key_authorization();
            prov.present(&domain, &ch.token, ka.as_str(), &ka.dns_value())?;
            presented.push(domain);
        }
        break;
    }
    prov.settle().await;

    // Pass 2: tell the server each response is ready (no fetches: states are cached).
    {
        let mut authzs = order.authorizations();
        while let Some(next) = authzs.next().await {
            let mut authz = next.map_err(|e| from_acme(dir, "fetch an authorization", e))?;
            if authz.status != AuthorizationStatus::Pending {
                continue;
            }
            let Some(mut ch) = authz.challenge(ty.clone()) else { continue };
            retry_nonce!(ch.set_ready()).map_err(|e| from_acme(dir, "start validation", e))?;
        }
    }

    let policy = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(validation_timeout);
    let status = retry_nonce!(order.poll_ready(&policy));
    let failed = match status {
        Ok(OrderStatus::Ready) => None,
        Ok(_) => Some(None),
        Err(instant_acme::Error::Api(p)) => Some(Some(problem_detail(&p))),
        Err(instant_acme::Error::Timeout(_)) => {
            return Err(AcmeError::ValidationTimeout {
                url: dir.url().to_string(),
                op: format!("validate {} ({})", cert.name, cert.challenge.kind()),
            });
        }
        Err(e) => return Err(from_acme(dir, "wait for validation", e)),
    };
    if let Some(order_detail) = failed {
        // Find the challenge the server rejected and show its problem document.
        let mut authzs = order.authorizations();
        while let Some(next) = authzs.next().await {
            let Ok(mut authz) = next else { continue };
            if retry_nonce!(authz.refresh()).is_err() {
                continue;
            }
            let domain = match authz.identifier().identifier {
                Identifier::Dns(d) => d.clone(),
                other => format!("{other:?}"),
            };
            if authz.status == AuthorizationStatus::Invalid {
                let detail = authz
                    .challenges
                    .iter()
                    .filter_map(|c| c.error.as_ref())
                    .map(problem_detail)
                    .next()
                    .or(order_detail.clone())
                    .unwrap_or_else(|| "the server marked the authorization invalid".into());
                return Err(AcmeError::Challenge {
                    name: cert.name.clone(),
                    fix: prov.fix(&domain),
                    domain,
                    kind: cert.challenge.kind(),
                    detail,
                });
            }
        }
        return Err(AcmeError::Challenge {
            name: cert.name.clone(),
            domain: cert.domains.join(", "),
            kind: cert.challenge.kind(),
            detail: order_detail.unwrap_or_else(|| "the order became invalid".into()),
            fix: prov.fix(&cert.domains[0]),
        });
    }
    prov.cleanup();

    let alg = cert.key_type.algorithm();
    let key = match reuse
        .as_ref()
        .and_then(|pem| rcgen::KeyPair::from_pem(pem.expose()).ok())
        .filter(|k| k.algorithm() == alg)
    {
        Some(k) => k,
        None => {
            if reuse.is_some() {
                crate::info!(
                    "acme {}: the previous key does not match key_type; making a new one",
                    cert.name
                );
            }
            rcgen::KeyPair::generate_for(alg).map_err(|e| AcmeError::Internal(e.to_string()))?
        }
    };
    let mut params = rcgen::CertificateParams::new(cert.domains.clone()).map_err(|e| {
        AcmeError::Certificate {
            name: cert.name.clone(),
            detail: format!("cannot build the CSR: {e}"),
        }
    })?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| AcmeError::Internal(format!("cannot sign the CSR: {e}")))?;
    retry_nonce!(order.finalize_csr(csr.der()))
        .map_err(|e| from_acme(dir, "finalize the order", e))?;
    let fullchain = retry_nonce!(order.poll_certificate(&policy))
        .map_err(|e| from_acme(dir, "download the certificate", e))?;

    let (leaf, chain) = split_chain(&fullchain)
        .map_err(|detail| AcmeError::Certificate { name: cert.name.clone(), detail })?;
    let info = parse_cert(&leaf)
        .map_err(|detail| AcmeError::Certificate { name: cert.name.clone(), detail })?;
    if info.spki != rcgen::PublicKeyData::subject_public_key_info(&key) {
        return Err(AcmeError::Certificate {
            name: cert.name.clone(),
            detail: "the issued certificate does not carry the key keyward sent".into(),
        });
    }
    let mut want = cert.domains.clone();
    let mut have = info.domains.clone();
    want.sort();
    have.sort();
    if want != have {
        return Err(AcmeError::Certificate {
            name: cert.name.clone(),
            detail: format!(
                "the issued certificate names {} instead of {}",
                have.join(", "),
                want.join(", ")
            ),
        });
    }
    Ok(Issued {
        fullchain: format!("{leaf}{chain}"),
        cert: leaf,
        chain,
        key: SecretString::new(key.serialize_pem()),
        info,
        replaced,
    })
}
