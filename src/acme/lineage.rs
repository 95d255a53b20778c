//! certbot's on-disk layout, so nginx configurations keep working unchanged.
//!
//! `archive/NAME/{cert,chain,fullchain,privkey}N.pem` hold every kept version;
//! `live/NAME/*.pem` are relative symlinks to the current one, replaced atomically
//! (a new link renamed over the old). A version's files are all written and synced
//! before any live link moves, so a failure leaves the live certificate untouched.
//! This module also reads an existing certbot lineage (`renewal/NAME.conf`) for
//! `keyward acme import`, and parses certificates for status and ARI. It never prints
//! a private key.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::AcmeError;
use crate::secret::SecretString;
use crate::store::{FileMode, atomic_write, fsync_dir};

/// The four files of a version, as certbot names them.
pub const FILES: [&str; 4] = ["cert", "chain", "fullchain", "privkey"];

/// A lineage: `BASE/live/NAME` and `BASE/archive/NAME`.
#[derive(Debug, Clone)]
pub struct Lineage {
    pub base: PathBuf,
    pub name: String,
}

/// The PEM texts of a new version.
pub struct Version<'a> {
    pub cert: &'a str,
    pub chain: &'a str,
    pub fullchain: &'a str,
    pub privkey: &'a SecretString,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> AcmeError + 'a {
    move |source| AcmeError::Io { op, path: path.to_path_buf(), source }
}

impl Lineage {
    pub fn new(base: PathBuf, name: &str) -> Lineage {
        Lineage { base, name: name.to_string() }
    }

    pub fn live(&self) -> PathBuf {
        self.base.join("live").join(&self.name)
    }

    pub fn archive(&self) -> PathBuf {
        self.base.join("archive").join(&self.name)
    }

    pub fn live_file(&self, kind: &str) -> PathBuf {
        self.live().join(format!("{kind}.pem"))
    }

    /// The version `live/NAME/cert.pem` points at, if the lineage exists.
    pub fn current_version(&self) -> Option<u32> {
        let target = fs::read_link(self.live_file("cert")).ok()?;
        version_of(target.file_name()?.to_str()?, "cert")
    }

    /// Every version present in `archive/NAME/`, ascending.
    pub fn archived_versions(&self) -> Vec<u32> {
        let mut v: Vec<u32> = fs::read_dir(self.archive())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| version_of(e.file_name().to_str()?, "cert"))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The live certificate (leaf first), if any.
    pub fn read_cert(&self) -> Option<String> {
        fs::read_to_string(self.live_file("cert")).ok()
    }

    /// The live private key.
    pub fn read_key(&self) -> Result<SecretString, AcmeError> {
        let path = self.live_file("privkey");
        let bytes = fs::read(&path).map_err(io("read", &path))?;
        String::from_utf8(bytes).map(SecretString::new).map_err(|_| AcmeError::Certificate {
            name: self.name.clone(),
            detail: format!("{} is not PEM", path.display()),
        })
    }

    /// Writes version `max+1` into the archive, then moves the live links to it, then
    /// drops versions beyond `keep`. Returns the new version number.
    pub fn install(
        &self,
        v: &Version<'_>,
        key_mode: FileMode,
        keep: usize,
    ) -> Result<u32, AcmeError> {
        let archive = self.archive();
        let live = self.live();
        for d in [self.base.join("archive"), self.base.join("live"), archive.clone(), live.clone()]
        {
            if !d.exists() {
                fs::create_dir_all(&d).map_err(io("create folder", &d))?;
                fs::set_permissions(&d, fs::Permissions::from_mode(0o755))
                    .map_err(io("set the mode of", &d))?;
            }
        }
        let n = self.archived_versions().last().copied().unwrap_or(0) + 1;
        let texts: [(&str, &[u8], FileMode); 4] = [
            ("cert", v.cert.as_bytes(), FileMode::PUBLIC),
            ("chain", v.chain.as_bytes(), FileMode::PUBLIC),
            ("fullchain", v.fullchain.as_bytes(), FileMode::PUBLIC),
            ("privkey", v.privkey.expose().as_bytes(), key_mode),
        ];
        for (kind, bytes, mode) in texts {
            atomic_write(&archive.join(format!("{kind}{n}.pem")), bytes, mode)?;
        }
        for kind in FILES {
            let link = live.join(format!("{kind}.pem"));
            let tmp = live.join(format!(".{kind}.pem.keyward-new"));
            let _ = fs::remove_file(&tmp);
            let target = Path::new("../../archive").join(&self.name).join(format!("{kind}{n}.pem"));
            std::os::unix::fs::symlink(&target, &tmp).map_err(io("create the link", &tmp))?;
            fs::rename(&tmp, &link).map_err(io("replace the link", &link))?;
        }
        fsync_dir(&live)?;
        self.prune(n, keep)?;
        Ok(n)
    }

    fn prune(&self, current: u32, keep: usize) -> Result<(), AcmeError> {
        let keep = keep.max(1) as u32;
        for old in self.archived_versions() {
            if old + keep <= current {
                for kind in FILES {
                    let p = self.archive().join(format!("{kind}{old}.pem"));
                    match fs::remove_file(&p) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(AcmeError::Io { op: "remove", path: p, source: e }),
                    }
                }
            }
        }
        Ok(fsync_dir(&self.archive())?)
    }
}

fn version_of(file: &str, kind: &str) -> Option<u32> {
    file.strip_prefix(kind)?.strip_suffix(".pem")?.parse().ok()
}

/// What keyward needs to know about a certificate.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CertInfo {
    pub serial: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub domains: Vec<String>,
    pub issuer: String,
    /// SHA-256 of the DER.
    pub fingerprint: String,
    /// RFC 9773 certificate identifier (`base64url(AKI).base64url(serial)`), when the
    /// certificate has an authority key identifier.
    pub ari_id: Option<String>,
    /// DER SubjectPublicKeyInfo, to match the certificate with its key.
    #[serde(skip)]
    pub spki: Vec<u8>,
}

impl CertInfo {
    pub fn lifetime(&self) -> chrono::Duration {
        self.not_after - self.not_before
    }
}

/// Parses the first certificate of a PEM text.
pub fn parse_cert(pem_text: &str) -> Result<CertInfo, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes())
        .map_err(|e| format!("not a PEM certificate ({e})"))?;
    parse_der(&pem.contents)
}

pub fn parse_der(der: &[u8]) -> Result<CertInfo, String> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not an X.509 certificate ({e})"))?;
    let ts = |t: x509_parser::time::ASN1Time| {
        DateTime::<Utc>::from_timestamp(t.timestamp(), 0).unwrap_or_default()
    };
    let mut domains = Vec::new();
    let mut aki = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for n in &san.general_names {
                    if let GeneralName::DNSName(d) = n {
                        domains.push(d.to_string());
                    }
                }
            }
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = a.key_identifier.as_ref().map(|k| k.0.to_vec());
            }
            _ => {}
        }
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let ari_id =
        aki.map(|a| format!("{}.{}", b64.encode(a), b64.encode(cert.tbs_certificate.raw_serial())));
    Ok(CertInfo {
        serial: hex::encode(cert.tbs_certificate.raw_serial()),
        not_before: ts(cert.validity().not_before),
        not_after: ts(cert.validity().not_after),
        domains,
        issuer: cert.issuer().to_string(),
        fingerprint: crate::util::sha256_hex(der),
        ari_id,
        spki: cert.tbs_certificate.subject_pki.raw.to_vec(),
    })
}

/// Splits a PEM chain from the server into (leaf, rest).
pub fn split_chain(fullchain: &str) -> Result<(String, String), String> {
    let blocks: Vec<String> = pem_blocks(fullchain);
    if blocks.is_empty() {
        return Err("the server sent no certificate".into());
    }
    Ok((blocks[0].clone(), blocks[1..].concat()))
}

fn pem_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut inside = false;
    for line in text.lines() {
        let l = line.trim();
        if l == "-----BEGIN CERTIFICATE-----" {
            inside = true;
            cur.clear();
        }
        if inside {
            cur.push_str(l);
            cur.push('\n');
        }
        if l == "-----END CERTIFICATE-----" && inside {
            inside = false;
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

/// A certbot renewal configuration (`renewal/NAME.conf`), the parts keyward uses.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CertbotRenewal {
    pub cert: Option<PathBuf>,
    pub privkey: Option<PathBuf>,
    pub chain: Option<PathBuf>,
    pub fullchain: Option<PathBuf>,
    pub archive_dir: Option<PathBuf>,
    pub server: Option<String>,
    pub authenticator: Option<String>,
    pub webroot_path: Vec<String>,
    pub webroot_map: BTreeMap<String, String>,
    pub key_type: Option<String>,
    pub elliptic_curve: Option<String>,
    pub reuse_key: bool,
}

/// Parses certbot's renewal file (configobj: `key = value`, `[section]`, `[[sub]]`).
pub fn parse_certbot_renewal(text: &str) -> CertbotRenewal {
    let mut r = CertbotRenewal::default();
    let mut section = String::new();
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if l.starts_with('[') {
            section = l.trim_matches(|c| c == '[' || c == ']').to_string();
            continue;
        }
        let Some((k, v)) = l.split_once('=') else { continue };
        let (k, v) = (k.trim(), v.trim().trim_matches('"'));
        match (section.as_str(), k) {
            ("", "cert") => r.cert = Some(v.into()),
            ("", "privkey") => r.privkey = Some(v.into()),
            ("", "chain") => r.chain = Some(v.into()),
            ("", "fullchain") => r.fullchain = Some(v.into()),
            ("", "archive_dir") => r.archive_dir = Some(v.into()),
            ("renewalparams", "server") => r.server = Some(v.into()),
            ("renewalparams", "authenticator") => r.authenticator = Some(v.into()),
            ("renewalparams", "webroot_path") => {
                r.webroot_path = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }
            ("renewalparams", "key_type") => r.key_type = Some(v.into()),
            ("renewalparams", "elliptic_curve") => r.elliptic_curve = Some(v.into()),
            ("renewalparams", "reuse_key") => r.reuse_key = v.eq_ignore_ascii_case("true"),
            ("webroot_map", d) => {
                r.webroot_map.insert(d.to_string(), v.trim_end_matches(',').to_string());
            }
            _ => {}
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(domains: &[&str]) -> (String, SecretString) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(
            domains.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), SecretString::new(key.serialize_pem()))
    }

    #[test]
    fn install_links_live_to_archive_and_keeps_n() {
        let dir = tempfile::tempdir().unwrap();
        let l = Lineage::new(dir.path().to_path_buf(), "example.org");
        assert_eq!(l.current_version(), None);
        for i in 1..=4u32 {
            let (cert, key) = self_signed(&["example.org"]);
            let full = cert.clone();
            let v = Version { cert: &cert, chain: "", fullchain: &full, privkey: &key };
            assert_eq!(l.install(&v, FileMode::PRIVATE, 2).unwrap(), i);
            assert_eq!(l.current_version(), Some(i));
            assert_eq!(fs::read_to_string(l.live_file("cert")).unwrap(), cert);
        }
        assert_eq!(l.archived_versions(), vec![3, 4]);
        let link = fs::read_link(l.live_file("privkey")).unwrap();
        assert_eq!(link, Path::new("../../archive/example.org/privkey4.pem"));
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(l.archive().join("privkey4.pem")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600);
        let m = fs::metadata(l.archive().join("cert4.pem")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o644);
    }

    #[test]
    fn parses_cert_and_chain() {
        let (a, _) = self_signed(&["a.example", "b.example"]);
        let (b, _) = self_signed(&["ca.example"]);
        let (leaf, rest) = split_chain(&format!("{a}{b}")).unwrap();
        assert_eq!(leaf, a);
        assert_eq!(rest, b);
        let info = parse_cert(&leaf).unwrap();
        assert_eq!(info.domains, vec!["a.example", "b.example"]);
        assert!(info.not_after > info.not_before);
    }

    #[test]
    fn parses_certbot_renewal_conf() {
        let text = "# renew_before_expiry = 30 days\nversion = 2.1.0\narchive_dir = /etc/letsencrypt/archive/pazpaz.health\ncert = /etc/letsencrypt/live/pazpaz.health/cert.pem\nprivkey = /etc/letsencrypt/live/pazpaz.health/privkey.pem\nchain = /etc/letsencrypt/live/pazpaz.health/chain.pem\nfullchain = /etc/letsencrypt/live/pazpaz.health/fullchain.pem\n\n# Options used in the renewal process\n[renewalparams]\naccount = 0123\nauthenticator = webroot\nwebroot_path = /var/www/certbot,\nserver = https://acme-v02.api.letsencrypt.org/directory\nkey_type = ecdsa\nelliptic_curve = secp384r1\nreuse_key = True\n[[webroot_map]]\npazpaz.health = /var/www/certbot\n";
        let r = parse_certbot_renewal(text);
        assert_eq!(r.authenticator.as_deref(), Some("webroot"));
        assert_eq!(r.webroot_path, vec!["/var/www/certbot"]);
        assert_eq!(r.webroot_map["pazpaz.health"], "/var/www/certbot");
        assert_eq!(r.elliptic_curve.as_deref(), Some("secp384r1"));
        assert!(r.reuse_key);
        assert_eq!(r.cert.unwrap(), Path::new("/etc/letsencrypt/live/pazpaz.health/cert.pem"));
    }
}
