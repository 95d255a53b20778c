//! The `[acme]` section of keyward.toml and its `[[acme.certificate]]` entries.
//!
//! Parsing and validation only: every rule an operator can break is checked here, before
//! anything talks to an ACME server or touches a file, and the error names the key.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{Config, ConfigError};
use crate::hooks::Hook;

/// Let's Encrypt production.
pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt staging (untrusted certificates, generous rate limits).
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

fn default_directory() -> String {
    "letsencrypt".into()
}
fn default_output() -> PathBuf {
    PathBuf::from("letsencrypt")
}
fn default_keep() -> usize {
    5
}
fn default_timeout() -> u64 {
    30
}
fn default_validation_timeout() -> u64 {
    120
}

/// `[acme]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// `letsencrypt`, `letsencrypt-staging`, or the directory URL of any ACME server.
    #[serde(default = "default_directory")]
    pub directory: String,
    /// A PEM file of extra CA certificates trusted for the directory's TLS (a private
    /// ACME server, Pebble in tests), on top of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Account contact addresses (`mailto:` is added when missing).
    #[serde(default)]
    pub contact: Vec<String>,
    /// External account binding: key id, and a file holding the base64url HMAC key.
    pub eab_kid: Option<String>,
    pub eab_hmac_file: Option<PathBuf>,
    /// Where the certbot layout (`live/`, `archive/`) goes unless a certificate says.
    #[serde(default = "default_output")]
    pub output_dir: PathBuf,
    /// How many versions `archive/NAME/` keeps (the live one included).
    #[serde(default = "default_keep")]
    pub archive_keep: usize,
    /// Seconds one HTTP request to the ACME server may take.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Seconds the server may take to validate challenges and issue.
    #[serde(default = "default_validation_timeout")]
    pub validation_timeout_seconds: u64,
    /// Further certificate files that `keyward status` watches (not renewed by keyward).
    #[serde(default)]
    pub monitor: Vec<PathBuf>,
    #[serde(default, rename = "certificate")]
    pub certificates: Vec<CertificateConfig>,
}

/// `[[acme.certificate]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// The lineage name (`live/NAME/`).
    pub name: String,
    pub domains: Vec<String>,
    pub challenge: ChallengeConfig,
    #[serde(default)]
    pub key_type: KeyType,
    /// Keep the private key across renewals (certbot's `reuse_key`); default: a new key
    /// per renewal.
    #[serde(default)]
    pub reuse_key: bool,
    /// An ACME profile the server offers (`classic`, `tlsserver`, `shortlived`, …).
    pub profile: Option<String>,
    /// Overrides `acme.output_dir`.
    pub output_dir: Option<PathBuf>,
    /// Overrides `acme.archive_keep`.
    pub archive_keep: Option<usize>,
    /// Group that may read `privkey.pem` (mode 0640), e.g. the group nginx's workers run
    /// as; default: 0600, owner only.
    pub key_group: Option<String>,
    /// Run after a real renewal only, with RENEWED_LINEAGE and RENEWED_DOMAINS set.
    #[serde(default)]
    pub deploy_hooks: Vec<Hook>,
}

/// How the server validates control of each domain.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ChallengeConfig {
    /// http-01: the token file goes into `WEBROOT/.well-known/acme-challenge/`, which a
    /// web server (nginx) serves on port 80.
    Webroot { webroot: PathBuf },
    /// http-01: keyward itself answers on `listen` (e.g. `0.0.0.0:80`) during validation.
    Standalone { listen: String },
    /// dns-01: `hook` publishes (and later removes) the TXT record.
    DnsHook {
        hook: Hook,
        /// Seconds to wait after the hook before asking the server to validate.
        #[serde(default)]
        propagation_seconds: u64,
    },
}

impl ChallengeConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            ChallengeConfig::Webroot { .. } => "http-01 webroot",
            ChallengeConfig::Standalone { .. } => "http-01 standalone",
            ChallengeConfig::DnsHook { .. } => "dns-01 hook",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyType {
    #[default]
    P256,
    P384,
}

impl KeyType {
    pub fn algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyType::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }
}

impl AcmeConfig {
    /// The directory URL, presets resolved.
    pub fn directory_url(&self) -> &str {
        match self.directory.as_str() {
            "letsencrypt" => LETSENCRYPT,
            "letsencrypt-staging" => LETSENCRYPT_STAGING,
            url => url,
        }
    }

    pub fn certificate(&self, name: &str) -> Option<&CertificateConfig> {
        self.certificates.iter().find(|c| c.name == name)
    }

    /// Checks what serde cannot: names, domains, addresses, URL schemes.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let url = self.directory_url();
        if !url.starts_with("https://") {
            return Err(ConfigError::invalid(
                path,
                "acme.directory",
                format!(
                    "{url:?} is neither a preset (letsencrypt, letsencrypt-staging) nor an https:// URL"
                ),
            ));
        }
        if self.eab_kid.is_some() != self.eab_hmac_file.is_some() {
            return Err(ConfigError::invalid(
                path,
                "acme.eab_kid",
                "external account binding needs both eab_kid and eab_hmac_file",
            ));
        }
        if self.archive_keep == 0 {
            return Err(ConfigError::invalid(path, "acme.archive_keep", "must be at least 1"));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, c) in self.certificates.iter().enumerate() {
            let key = |k: &str| format!("acme.certificate[{i}].{k}");
            if c.name.is_empty()
                || c.name.starts_with('.')
                || !c.name.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
            {
                return Err(ConfigError::invalid(
                    path,
                    key("name"),
                    format!(
                        "{:?} must be letters, digits, '-', '_' or '.' (it names a folder)",
                        c.name
                    ),
                ));
            }
            if !seen.insert(c.name.as_str()) {
                return Err(ConfigError::invalid(
                    path,
                    key("name"),
                    format!("certificate {:?} is defined twice", c.name),
                ));
            }
            if c.domains.is_empty() {
                return Err(ConfigError::invalid(
                    path,
                    key("domains"),
                    "needs at least one domain",
                ));
            }
            for d in &c.domains {
                let bare = d.strip_prefix("*.").unwrap_or(d);
                if bare.is_empty()
                    || !bare.contains('.')
                    || !bare.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '.')
                {
                    return Err(ConfigError::invalid(
                        path,
                        key("domains"),
                        format!("{d:?} is not a DNS name"),
                    ));
                }
                if d.starts_with("*.") && !matches!(c.challenge, ChallengeConfig::DnsHook { .. }) {
                    return Err(ConfigError::invalid(
                        path,
                        key("domains"),
                        format!(
                            "{d:?} is a wildcard, which only dns-01 can validate: use challenge.type = \"dns-hook\""
                        ),
                    ));
                }
            }
            if c.archive_keep == Some(0) {
                return Err(ConfigError::invalid(path, key("archive_keep"), "must be at least 1"));
            }
            match &c.challenge {
                ChallengeConfig::Standalone { listen }
                    if listen.parse::<std::net::SocketAddr>().is_err() =>
                {
                    return Err(ConfigError::invalid(
                        path,
                        key("challenge.listen"),
                        format!("{listen:?} is not an address:port such as 0.0.0.0:80"),
                    ));
                }
                ChallengeConfig::DnsHook { hook, .. } if hook.command.is_empty() => {
                    return Err(ConfigError::invalid(
                        path,
                        key("challenge.hook.command"),
                        "is empty; give the argv of the program that publishes the TXT record",
                    ));
                }
                _ => {}
            }
            if let Some(g) = &c.key_group
                && nix::unistd::Group::from_name(g).ok().flatten().is_none()
            {
                return Err(ConfigError::invalid(
                    path,
                    key("key_group"),
                    format!("there is no group {g:?} on this machine"),
                ));
            }
        }
        Ok(())
    }
}

impl CertificateConfig {
    /// The base folder of the certbot layout for this certificate.
    pub fn output_base(&self, acme: &AcmeConfig, config: &Config) -> PathBuf {
        config.resolve(self.output_dir.as_deref().unwrap_or(&acme.output_dir))
    }

    pub fn keep(&self, acme: &AcmeConfig) -> usize {
        self.archive_keep.unwrap_or(acme.archive_keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AcmeConfig, ConfigError> {
        let c: AcmeConfig = crate::config::parse_toml(Path::new("k.toml"), text)?;
        c.validate(Path::new("k.toml"))?;
        Ok(c)
    }

    #[test]
    fn presets_and_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.directory_url(), LETSENCRYPT);
        let c = parse("directory = \"letsencrypt-staging\"").unwrap();
        assert_eq!(c.directory_url(), LETSENCRYPT_STAGING);
        assert!(parse("directory = \"http://x/dir\"").is_err());
    }

    #[test]
    fn certificate_entries_are_checked() {
        let ok = r#"
[[certificate]]
name = "pazpaz.health"
domains = ["pazpaz.health", "www.pazpaz.health"]
challenge = { type = "webroot", webroot = "/var/www/acme" }
key_type = "p384"
"#;
        let c = parse(ok).unwrap();
        assert_eq!(c.certificates[0].key_type, KeyType::P384);
        let wildcard = ok.replace("www.pazpaz", "*.pazpaz");
        let e = parse(&wildcard).unwrap_err().to_string();
        assert!(e.contains("dns-hook"), "{e}");
        let bad_listen = ok.replace(
            "{ type = \"webroot\", webroot = \"/var/www/acme\" }",
            "{ type = \"standalone\", listen = \"port 80\" }",
        );
        assert!(parse(&bad_listen).unwrap_err().to_string().contains("challenge.listen"));
        let unknown = ok.replace("key_type", "key_typ");
        assert!(parse(&unknown).unwrap_err().to_string().contains("key_typ"));
        let twice = format!("{ok}{}", ok);
        assert!(parse(&twice).unwrap_err().to_string().contains("defined twice"));
    }
}
