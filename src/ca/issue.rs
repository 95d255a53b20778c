//! Signing: CA and leaf certificate parameters built explicitly (never rcgen's
//! defaults), random serials, and reading certificates back with x509-parser.
//!
//! Every certificate gets a random positive 128-bit serial from the system CSPRNG,
//! explicit notBefore/notAfter, SKI and (when issued by a CA) AKI. Leaves are
//! `CA:FALSE` with key usage and EKU from their profile; CAs carry a path length. This
//! module holds key material only in memory; it never writes files or logs.

use chrono::{DateTime, Duration, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};

use super::CaError;
use super::config::KeyType;
use super::profile::{KeyUsage, LeafSpec, Usage};
use crate::secret::SecretString;

/// Certificates are back-dated this much so that a peer with a slightly slow clock
/// accepts a fresh one.
const BACKDATE: Duration = Duration::minutes(5);

/// A new key pair and its PKCS#8 PEM (secret).
pub struct NewKey {
    pub pair: KeyPair,
    pub pem: SecretString,
}

pub fn generate_key(kt: KeyType) -> Result<NewKey, CaError> {
    let pair = KeyPair::generate_for(kt.algorithm())
        .map_err(|e| CaError::Sign { what: format!("a new {kt} key"), message: e.to_string() })?;
    let pem = SecretString::new(pair.serialize_pem());
    Ok(NewKey { pair, pem })
}

pub fn load_key(pem: &str, what: &str) -> Result<KeyPair, CaError> {
    KeyPair::from_pem(pem).map_err(|e| CaError::Sign {
        what: what.to_string(),
        message: format!("cannot read the key: {e}"),
    })
}

/// A random positive 128-bit serial.
pub fn random_serial() -> Result<SerialNumber, CaError> {
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut b).map_err(|_| CaError::Sign {
        what: "a serial number".into(),
        message: "the system random number generator failed".into(),
    })?;
    // rcgen encodes the bytes as an unsigned big integer, so the value is positive
    // whatever the top bit is; a zero first byte would only shorten it, so avoid it.
    if b[0] == 0 {
        b[0] = 1;
    }
    Ok(SerialNumber::from_slice(&b))
}

fn to_offset(t: DateTime<Utc>) -> time::OffsetDateTime {
    // A chrono time in the certificate range always fits.
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn dn(cn: &str, org: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::OrganizationName, org);
    d.push(DnType::CommonName, cn);
    d
}

/// Parameters of a CA certificate. `path_len` 0: signs leaves only.
pub fn ca_params(
    cn: &str,
    org: &str,
    now: DateTime<Utc>,
    days: u32,
    path_len: u8,
) -> Result<CertificateParams, CaError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn, org);
    p.not_before = to_offset(now - BACKDATE);
    p.not_after = to_offset(now + Duration::days(i64::from(days)));
    p.serial_number = Some(random_serial()?);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.extended_key_usages = Vec::new();
    p.use_authority_key_identifier_extension = true;
    p.key_identifier_method = KeyIdMethod::Sha256;
    Ok(p)
}

/// Parameters of a leaf certificate.
pub fn leaf_params(
    leaf: &LeafSpec,
    org: &str,
    usage: Usage,
    key_usage: &[KeyUsage],
    now: DateTime<Utc>,
    days: u32,
    ca_not_after: DateTime<Utc>,
) -> Result<CertificateParams, CaError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(&leaf.common_name, org);
    p.not_before = to_offset(now - BACKDATE);
    // A leaf never outlives its CA.
    p.not_after = to_offset((now + Duration::days(i64::from(days))).min(ca_not_after));
    p.serial_number = Some(random_serial()?);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = key_usage.iter().map(|k| k.rcgen()).collect();
    p.extended_key_usages = vec![match usage {
        Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    p.subject_alt_names = leaf
        .sans
        .iter()
        .map(|s| match s.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => s.as_str().try_into().map(SanType::DnsName).map_err(|e| CaError::Sign {
                what: format!("leaf {}", leaf.name),
                message: format!("SAN {s:?}: {e}"),
            }),
        })
        .collect::<Result<_, _>>()?;
    p.use_authority_key_identifier_extension = true;
    p.key_identifier_method = KeyIdMethod::Sha256;
    Ok(p)
}

/// An issuer from its certificate (PEM) and key: AKI comes from the certificate's SKI.
pub fn issuer<'a>(
    cert_pem: &str,
    key: &'a KeyPair,
    what: &str,
) -> Result<Issuer<'static, &'a KeyPair>, CaError> {
    Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| CaError::Sign {
        what: what.to_string(),
        message: format!("cannot use the CA certificate: {e}"),
    })
}

/// What keyward records about a certificate, read back from its DER.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertInfo {
    pub serial: String,
    pub fingerprint: String,
    pub subject: String,
    pub issuer: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sans: Vec<String>,
    pub is_ca: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ext_key_usage: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ski: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aki: Option<String>,
}

impl CertInfo {
    /// When 2/3 of the lifetime have passed.
    pub fn renew_at(&self) -> DateTime<Utc> {
        self.not_before + (self.not_after - self.not_before) * 2 / 3
    }
}

/// Reads a certificate back (x509-parser).
pub fn inspect(der: &[u8]) -> Result<CertInfo, String> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    let (_, c) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let ts = |t: x509_parser::time::ASN1Time| {
        DateTime::<Utc>::from_timestamp(t.timestamp(), 0).unwrap_or_default()
    };
    let mut sans = Vec::new();
    let mut eku = Vec::new();
    let mut ski = None;
    let mut aki = None;
    for ext in c.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for n in &san.general_names {
                    match n {
                        GeneralName::DNSName(d) => sans.push(d.to_string()),
                        GeneralName::IPAddress(ip) => {
                            let s = match ip.len() {
                                4 => {
                                    std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string()
                                }
                                16 => {
                                    let mut b = [0u8; 16];
                                    b.copy_from_slice(ip);
                                    std::net::Ipv6Addr::from(b).to_string()
                                }
                                _ => hex::encode(ip),
                            };
                            sans.push(s);
                        }
                        other => sans.push(other.to_string()),
                    }
                }
            }
            ParsedExtension::ExtendedKeyUsage(e) => {
                if e.server_auth {
                    eku.push("serverAuth".to_string());
                }
                if e.client_auth {
                    eku.push("clientAuth".to_string());
                }
            }
            ParsedExtension::SubjectKeyIdentifier(k) => ski = Some(hex::encode(k.0)),
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = a.key_identifier.as_ref().map(|k| hex::encode(k.0));
            }
            _ => {}
        }
    }
    Ok(CertInfo {
        serial: serial_hex(c.raw_serial()),
        fingerprint: crate::util::sha256_hex(der),
        subject: c.subject().to_string(),
        issuer: c.issuer().to_string(),
        not_before: ts(c.validity().not_before),
        not_after: ts(c.validity().not_after),
        sans,
        is_ca: c.is_ca(),
        ext_key_usage: eku,
        ski,
        aki,
    })
}

/// The DER of the first certificate in a PEM text.
pub fn pem_to_der(pem_text: &str) -> Result<Vec<u8>, String> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem_text.as_bytes())
        .map(|d| d.as_ref().to_vec())
        .map_err(|e| e.to_string())
}

/// A serial as keyward writes it: lower-case hex of the integer's bytes without
/// leading zero bytes.
pub fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len().saturating_sub(1));
    hex::encode(&raw[start..])
}

/// A serial typed by an operator (any case, with or without colons) in keyward's form.
pub fn normalise_serial(s: &str) -> String {
    let h: String =
        s.chars().filter(|c| c.is_ascii_hexdigit()).collect::<String>().to_ascii_lowercase();
    let t = h.trim_start_matches('0');
    if t.is_empty() {
        "00".into()
    } else if t.len() % 2 == 1 {
        format!("0{t}")
    } else {
        t.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_and_leaf_carry_explicit_extensions() {
        let now = Utc::now();
        let ca_key = generate_key(KeyType::P256).unwrap();
        let ca = ca_params("Test CA", "T", now, 365, 0).unwrap().self_signed(&ca_key.pair).unwrap();
        let info = inspect(ca.der()).unwrap();
        assert!(info.is_ca);
        assert!(info.ski.is_some());
        assert!(info.serial.len() >= 30, "{}", info.serial);
        let leaf = LeafSpec {
            name: "db".into(),
            common_name: "db".into(),
            sans: vec!["db".into(), "127.0.0.1".into()],
        };
        let key = generate_key(KeyType::P256).unwrap();
        let iss = issuer(&ca.pem(), &ca_key.pair, "ca").unwrap();
        let p = leaf_params(
            &leaf,
            "T",
            Usage::Server,
            &[KeyUsage::DigitalSignature],
            now,
            90,
            now + Duration::days(365),
        )
        .unwrap();
        let cert = p.signed_by(&key.pair, &iss).unwrap();
        let l = inspect(cert.der()).unwrap();
        assert!(!l.is_ca);
        assert_eq!(l.aki, info.ski);
        assert_eq!(l.sans, vec!["db".to_string(), "127.0.0.1".to_string()]);
        assert_eq!(l.ext_key_usage, vec!["serverAuth".to_string()]);
        assert!(l.not_before > now - Duration::hours(1));
        assert!((l.not_after - now - Duration::days(90)).num_seconds().abs() < 5);
        // Serials differ.
        let p2 = leaf_params(
            &leaf,
            "T",
            Usage::Server,
            &[KeyUsage::DigitalSignature],
            now,
            90,
            now + Duration::days(365),
        )
        .unwrap();
        assert_ne!(p.serial_number, p2.serial_number);
    }

    #[test]
    fn serials_normalise() {
        assert_eq!(normalise_serial("00:AB:cd"), "abcd");
        assert_eq!(normalise_serial("0ABC"), "0abc");
        assert_eq!(serial_hex(&[0, 0x9a, 1]), "9a01");
    }
}
