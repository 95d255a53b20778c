//! The CA's inventory: one small JSON index of every leaf (its profile, current
//! certificate facts, superseded serials, deployed generations, pending reloads), and
//! the leaf files it points at.
//!
//! `keyward run` decides what is due from this index alone, so a run with nothing due
//! reads a few small files and signs nothing. A leaf's certificate and key live
//! together in one 0600 file per serial (`state/ca/leaves/<name>.<serial>.pem`);
//! writing the index is what makes a new one current. The index never holds key bytes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::CaError;
use super::config::KeyType;
use super::issue::CertInfo;
use super::profile::LeafSpec;
use crate::secret::SecretBytes;
use crate::store::Store;

pub const INDEX: &str = "ca/index.json";
pub const LEAVES: &str = "ca/leaves";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Index {
    #[serde(default)]
    pub leaves: BTreeMap<String, LeafRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LeafRecord {
    pub profile: String,
    pub spec: LeafSpec,
    /// Issued with `ca issue PROFILE --name` rather than declared by the profile.
    #[serde(default)]
    pub adhoc: bool,
    /// SANs added with `ca issue --san`, kept across renewals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_sans: Vec<String>,
    pub issuer: String,
    pub key_type: KeyType,
    pub cert: CertInfo,
    /// The current certificate was revoked.
    #[serde(default)]
    pub revoked: bool,
    /// Revoked with `--no-reissue`: `keyward run` leaves it alone.
    #[serde(default)]
    pub hold: bool,
    /// Superseded certificates that have not expired (for `ca revoke SERIAL`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<PastCert>,
    /// Deployed targets by folder.
    #[serde(default)]
    pub targets: BTreeMap<String, TargetState>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PastCert {
    pub serial: String,
    pub issuer: String,
    pub fingerprint: String,
    pub not_after: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TargetState {
    /// What the deployed set was made from (serial, trusted CAs, CRL numbers, owner).
    pub key: String,
    /// The generation folder `..data` pointed at after the deploy.
    pub generation: String,
    /// A reload hook that must still run (it failed, or the run was interrupted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload_pending: Option<String>,
}

pub fn load(store: &Store) -> Result<Index, CaError> {
    Ok(store.read_json(INDEX)?.unwrap_or_default())
}

pub fn save(store: &Store, index: &Index) -> Result<(), CaError> {
    Ok(store.write_json(INDEX, index)?)
}

/// Path of a leaf's cert+key file.
pub fn leaf_file(store: &Store, name: &str, serial: &str) -> std::path::PathBuf {
    store.path(LEAVES).join(format!("{name}.{serial}.pem"))
}

/// A leaf's certificate (PEM) and key (PEM, secret).
pub struct LeafMaterial {
    pub cert_pem: String,
    pub key_pem: SecretBytes,
}

/// A leaf file to write: its path and content (key PEM, then certificate PEM).
pub struct LeafFile {
    pub path: std::path::PathBuf,
    pub bytes: SecretBytes,
}

/// Prepares a leaf's file (one 0600 file under a name no other certificate has) and
/// makes sure its folder exists; [`write_leaf_files`] writes it.
pub fn leaf_file_for(
    store: &Store,
    name: &str,
    serial: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<(LeafFile, Vec<std::path::PathBuf>), CaError> {
    let leaves = store.path(LEAVES);
    let mut changed = super::durable::mkdir_private(&leaves)?;
    let mut bytes = Vec::with_capacity(key_pem.len() + cert_pem.len());
    bytes.extend_from_slice(key_pem.as_bytes());
    bytes.extend_from_slice(cert_pem.as_bytes());
    changed.push(leaves);
    Ok((LeafFile { path: leaf_file(store, name, serial), bytes: SecretBytes::new(bytes) }, changed))
}

/// Writes leaf files concurrently (not yet fsynced).
pub fn write_leaf_files(files: &[LeafFile]) -> Result<(), CaError> {
    super::durable::parallel(files, |f| {
        let _ = std::fs::remove_file(&f.path);
        super::durable::create(&f.path, f.bytes.expose(), 0o600, None)
    })
    .into_iter()
    .collect()
}

/// Reads a leaf's file (refused when group or others can read it).
pub fn read_leaf(store: &Store, name: &str, serial: &str) -> Result<LeafMaterial, CaError> {
    let path = leaf_file(store, name, serial);
    let bytes = zeroize::Zeroizing::new(crate::store::read_private(&path)?);
    let corrupt =
        |detail: &str| CaError::Corrupt { path: path.clone(), detail: detail.to_string() };
    let text = std::str::from_utf8(&bytes).map_err(|_| corrupt("not PEM text"))?;
    // The file is written by `write_leaf`: the key's PEM, then the certificate's.
    let at = text.find("-----BEGIN CERTIFICATE-----").ok_or_else(|| corrupt("no certificate"))?;
    let (key, cert) = text.split_at(at);
    if !key.contains("PRIVATE KEY-----") {
        return Err(corrupt("no private key"));
    }
    Ok(LeafMaterial {
        cert_pem: cert.to_string(),
        key_pem: SecretBytes::from_slice(key.as_bytes()),
    })
}

/// Removes a leaf's files other than the one of serial `keep`.
pub fn prune_leaf_files(store: &Store, name: &str, keep: &str) {
    let dir = store.path(LEAVES);
    let prefix = format!("{name}.");
    let keep = format!("{name}.{keep}.pem");
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            // Serials are hex, so "NAME." is followed by hex and ".pem" only.
            let rest = n.strip_prefix(&prefix).and_then(|r| r.strip_suffix(".pem"));
            if n != keep && rest.is_some_and(|r| r.chars().all(|c| c.is_ascii_hexdigit())) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
