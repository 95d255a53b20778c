//! The `[ca]` section of keyward.toml: the CA's name, default key type, where the
//! profiles are, where targets go, ownership, CRL validity and the named reload hooks.
//!
//! This module only describes configuration; it reads no state and writes nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::hooks::Hook;

/// The key algorithms keyward issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// ECDSA P-256 with SHA-256 (the default: every PostgreSQL, MinIO and libpq speaks it).
    #[default]
    P256,
    /// ECDSA P-384 with SHA-384.
    P384,
    /// Ed25519 (TLS 1.3 peers only).
    Ed25519,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::P256 => "p256",
            KeyType::P384 => "p384",
            KeyType::Ed25519 => "ed25519",
        }
    }

    pub(crate) fn algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyType::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyType::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }
}

impl std::fmt::Display for KeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[ca]` in keyward.toml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    /// The CA's common name (a suffix tells generations apart).
    #[serde(default = "default_name")]
    pub name: String,
    /// Organisation in every subject.
    #[serde(default = "default_org")]
    pub organization: String,
    /// Key type of the CA and of leaves whose profile sets none.
    #[serde(default)]
    pub key_type: KeyType,
    /// The folder of profiles (`*.toml`), relative to keyward.toml.
    #[serde(default = "default_profiles")]
    pub profiles: PathBuf,
    /// Base of relative target folders in profiles.
    #[serde(default = "default_deploy_root")]
    pub deploy_root: PathBuf,
    /// Apply the owner and group that targets name. Off for an unprivileged start; a
    /// chown that is configured but impossible is an error, never a silent skip.
    #[serde(default)]
    pub chown: bool,
    /// Validity of the (single-tier) CA or of the intermediate.
    #[serde(default = "default_ca_days")]
    pub ca_validity_days: u32,
    /// Validity of the root of a two-tier CA (and of its CRL).
    #[serde(default = "default_root_days")]
    pub root_validity_days: u32,
    /// Validity of the CRLs that keyward signs with an online key; `keyward run`
    /// re-signs them when half of it has passed.
    #[serde(default = "default_crl_days")]
    pub crl_validity_days: u32,
    /// Reload hooks that targets refer to by name.
    #[serde(default)]
    pub hooks: BTreeMap<String, Hook>,
}

impl Default for CaConfig {
    fn default() -> Self {
        CaConfig {
            name: default_name(),
            organization: default_org(),
            key_type: KeyType::default(),
            profiles: default_profiles(),
            deploy_root: default_deploy_root(),
            chown: false,
            ca_validity_days: default_ca_days(),
            root_validity_days: default_root_days(),
            crl_validity_days: default_crl_days(),
            hooks: BTreeMap::new(),
        }
    }
}

fn default_name() -> String {
    "PazPaz Internal CA".into()
}
fn default_org() -> String {
    "PazPaz".into()
}
fn default_profiles() -> PathBuf {
    PathBuf::from("ca")
}
fn default_deploy_root() -> PathBuf {
    PathBuf::from("/opt/pazpaz")
}
fn default_ca_days() -> u32 {
    3650
}
fn default_root_days() -> u32 {
    7300
}
fn default_crl_days() -> u32 {
    30
}
