//! Certificate authorities: creation (single-tier, or a root kept encrypted plus an
//! online intermediate), their immutable folders in the state store, and the manifest
//! that says which one is current, which previous ones are still trusted, and whether a
//! regeneration is under way.
//!
//! An authority folder is written completely under a temporary name and renamed into
//! place, so it either exists whole or not at all; it is never changed afterwards. The
//! manifest is one atomic JSON file. Keys are read only through `store::read_private`.
//! A two-tier root key is written only age-encrypted and is never decrypted by keyward.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::CaError;
use super::config::{CaConfig, KeyType};
use super::issue::{self, CertInfo};
use crate::store::{self, Store};

pub const MANIFEST: &str = "ca/manifest.json";
pub const AUTHORITIES: &str = "ca/authorities";

/// Which authorities exist and what role they play.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The authority that signs new leaves.
    pub current: Option<String>,
    /// Authorities still in every trust bundle (after `ca regenerate`), newest first.
    #[serde(default)]
    pub previous: Vec<String>,
    /// Authorities dropped by `ca retire-previous`.
    #[serde(default)]
    pub retired: Vec<String>,
    /// An unfinished `ca regenerate`.
    #[serde(default)]
    pub transition: Option<Transition>,
}

impl Manifest {
    /// Current first, then previous: the authorities every bundle holds.
    pub fn trusted(&self) -> Vec<String> {
        self.current.iter().chain(self.previous.iter()).cloned().collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    /// The new authority's id.
    pub new: String,
    pub phase: Phase,
    pub plan: CreatePlan,
    pub started: DateTime<Utc>,
}

/// The steps of `ca regenerate`, in order. Each is safe to repeat.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The new authority is being created (it may not exist yet).
    Creating,
    /// Every target gets trust bundles with the old and the new CA.
    Bundles,
    /// Every leaf is reissued by the new CA and deployed.
    Leaves,
}

/// How to make an authority.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CreatePlan {
    pub key_type: KeyType,
    pub two_tier: bool,
    /// Two-tier: root key encrypted to a passphrase (else to the DR recipients).
    #[serde(default)]
    pub passphrase: bool,
}

/// How a two-tier root key is protected.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum RootProtection {
    Recipients { recipients: Vec<String> },
    Passphrase,
}

/// `authority.json`: public facts about one authority.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuthorityMeta {
    pub id: String,
    pub key_type: KeyType,
    pub two_tier: bool,
    pub created: DateTime<Utc>,
    /// The certificate that signs leaves and CRLs (the CA, or the intermediate).
    pub signing: CertInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<CertInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_protection: Option<RootProtection>,
}

/// A loaded authority: its facts and public PEMs. Keys stay on disk until needed.
#[derive(Debug, Clone)]
pub struct Authority {
    pub meta: AuthorityMeta,
    pub dir: PathBuf,
    pub cert_pem: String,
    pub root_pem: Option<String>,
    pub root_crl_pem: Option<String>,
}

impl Authority {
    /// The trust anchors this authority contributes to a bundle.
    pub fn bundle_pem(&self) -> String {
        let mut s = String::new();
        if let Some(r) = &self.root_pem {
            s.push_str(r);
        }
        s.push_str(&self.cert_pem);
        s
    }

    /// Certificates a leaf presents after itself.
    pub fn chain_pem(&self) -> &str {
        if self.root_pem.is_some() { &self.cert_pem } else { "" }
    }

    /// The signing key (refused when group or others can read it).
    pub fn signing_key(&self) -> Result<rcgen::KeyPair, CaError> {
        let bytes = store::read_private(&self.dir.join("ca.key"))?;
        let text = zeroize::Zeroizing::new(String::from_utf8(bytes).map_err(|_| {
            CaError::Corrupt { path: self.dir.join("ca.key"), detail: "not PEM text".into() }
        })?);
        issue::load_key(&text, &format!("the key of CA {}", self.meta.id))
    }

    pub fn label(&self) -> String {
        format!("{} ({})", self.meta.id, self.meta.signing.subject)
    }
}

pub fn load_manifest(store: &Store) -> Result<Manifest, CaError> {
    Ok(store.read_json(MANIFEST)?.unwrap_or_default())
}

pub fn write_manifest(store: &Store, m: &Manifest) -> Result<(), CaError> {
    Ok(store.write_json(MANIFEST, m)?)
}

pub fn dir_of(store: &Store, id: &str) -> PathBuf {
    store.path(AUTHORITIES).join(id)
}

pub fn exists(store: &Store, id: &str) -> bool {
    dir_of(store, id).join("authority.json").is_file()
}

pub fn load(store: &Store, id: &str) -> Result<Authority, CaError> {
    let dir = dir_of(store, id);
    let meta: AuthorityMeta = store
        .read_json(Path::new(AUTHORITIES).join(id).join("authority.json"))?
        .ok_or_else(|| CaError::Corrupt {
            path: dir.join("authority.json"),
            detail: "the manifest names this authority but its folder is missing".into(),
        })?;
    let read = |name: &str| -> Result<Option<String>, CaError> {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CaError::Io { op: "read", path: dir.join(name), source }),
        }
    };
    let cert_pem = read("ca.crt")?
        .ok_or_else(|| CaError::Corrupt { path: dir.join("ca.crt"), detail: "missing".into() })?;
    Ok(Authority {
        root_pem: read("root.crt")?,
        root_crl_pem: read("root.crl")?,
        meta,
        dir,
        cert_pem,
    })
}

/// A fresh authority id: creation time and a random tag.
pub fn new_id(now: DateTime<Utc>) -> Result<String, CaError> {
    let serial = issue::random_serial()?;
    let tag = hex::encode(&serial.to_bytes()[..3]);
    Ok(format!("{}-{tag}", now.format("%Y%m%dT%H%M%SZ")))
}

/// How to protect a new root key.
pub enum RootKeyTo<'a> {
    Recipients(Vec<String>),
    Passphrase(&'a crate::secret::SecretString),
}

/// Creates authority `id`: writes its folder under a temporary name, which the caller
/// fsyncs and renames into place at its next commit point, so the folder exists whole
/// or not at all. An existing complete authority is returned as it is.
pub fn create(
    store: &Store,
    cfg: &CaConfig,
    id: &str,
    plan: &CreatePlan,
    root_to: Option<RootKeyTo<'_>>,
    now: DateTime<Utc>,
) -> Result<Created, CaError> {
    if exists(store, id) {
        return Ok(Created { authority: load(store, id)?, key: None, pending: None });
    }
    let base = store.path(AUTHORITIES);
    let mut new_dirs = super::durable::mkdir_private(&base)?;
    let tmp = base.join(format!(".{id}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|source| CaError::Io {
            op: "remove",
            path: tmp.clone(),
            source,
        })?;
    }
    new_dirs.extend(super::durable::mkdir_private(&tmp)?);
    let tag = id.rsplit('-').next().unwrap_or(id);
    let key = issue::generate_key(plan.key_type)?;
    let what = format!("CA {id}");
    let sign_err = |e: rcgen::Error| CaError::Sign { what: what.clone(), message: e.to_string() };
    let mut root_pems = None;
    let (cert_pem, root, protection) = if plan.two_tier {
        let root_key = issue::generate_key(plan.key_type)?;
        let root_params = issue::ca_params(
            &format!("{} Root {} {tag}", cfg.name, now.format("%Y-%m-%d")),
            &cfg.organization,
            now,
            cfg.root_validity_days.max(cfg.ca_validity_days),
            1,
        )?;
        let root_cert = root_params.self_signed(&root_key.pair).map_err(sign_err)?;
        let root_issuer = issue::issuer(&root_cert.pem(), &root_key.pair, &what)?;
        let inter = issue::ca_params(
            &format!("{} {} {tag}", cfg.name, now.format("%Y-%m-%d")),
            &cfg.organization,
            now,
            cfg.ca_validity_days,
            0,
        )?
        .signed_by(&key.pair, &root_issuer)
        .map_err(sign_err)?;
        // The root's own CRL lives as long as the root: PostgreSQL checks a CRL for
        // every CA in the chain, and this key is offline.
        let root_info = issue::inspect(root_cert.der())
            .map_err(|d| CaError::Corrupt { path: tmp.join("root.crt"), detail: d })?;
        let root_crl = super::crl::sign(
            &root_cert.pem(),
            &root_key.pair,
            &root_info,
            1,
            &[],
            now,
            root_info.not_after,
        )?;
        let (armored, protection) = encrypt_root_key(&root_key.pem, root_to)?;
        write_new(&tmp.join("root.key.age"), armored.as_bytes(), 0o600)?;
        write_new(&tmp.join("root.crt"), root_cert.pem().as_bytes(), 0o644)?;
        write_new(&tmp.join("root.crl"), root_crl.as_bytes(), 0o644)?;
        root_pems = Some((root_cert.pem(), root_crl));
        (inter.pem(), Some(root_info), Some(protection))
    } else {
        let cert = issue::ca_params(
            &format!("{} {} {tag}", cfg.name, now.format("%Y-%m-%d")),
            &cfg.organization,
            now,
            cfg.ca_validity_days,
            0,
        )?
        .self_signed(&key.pair)
        .map_err(sign_err)?;
        (cert.pem(), None, None)
    };
    write_new(&tmp.join("ca.key"), key.pem.expose().as_bytes(), 0o600)?;
    write_new(&tmp.join("ca.crt"), cert_pem.as_bytes(), 0o644)?;
    let der = issue::pem_to_der(&cert_pem)
        .map_err(|d| CaError::Corrupt { path: tmp.join("ca.crt"), detail: d })?;
    let signing = issue::inspect(&der)
        .map_err(|d| CaError::Corrupt { path: tmp.join("ca.crt"), detail: d })?;
    let meta = AuthorityMeta {
        id: id.to_string(),
        key_type: plan.key_type,
        two_tier: plan.two_tier,
        created: now,
        signing,
        root,
        root_protection: protection,
    };
    let mut json = serde_json::to_vec_pretty(&meta).map_err(|e| CaError::Corrupt {
        path: tmp.join("authority.json"),
        detail: e.to_string(),
    })?;
    json.push(b'\n');
    write_new(&tmp.join("authority.json"), &json, 0o600)?;
    let mut to_sync: Vec<PathBuf> =
        ["ca.key", "ca.crt", "authority.json", "root.key.age", "root.crt", "root.crl"]
            .iter()
            .map(|n| tmp.join(n))
            .filter(|p| p.exists())
            .collect();
    to_sync.push(tmp.clone());
    to_sync.extend(new_dirs);
    let dest = dir_of(store, id);
    let (root_pem, root_crl_pem) = match root_pems {
        Some((c, l)) => (Some(c), Some(l)),
        None => (None, None),
    };
    Ok(Created {
        authority: Authority { meta, dir: dest.clone(), cert_pem, root_pem, root_crl_pem },
        key: Some(key.pair),
        pending: Some(PendingDir { tmp, dest, to_sync }),
    })
}

/// A new authority, written under a temporary name.
pub struct Created {
    pub authority: Authority,
    /// The signing key of a new authority (so it need not be read back).
    pub key: Option<rcgen::KeyPair>,
    /// The folder to fsync (`to_sync`) and rename from `tmp` to `dest` at the next
    /// commit point; `None` when the authority existed already.
    pub pending: Option<PendingDir>,
}

pub struct PendingDir {
    pub tmp: PathBuf,
    pub dest: PathBuf,
    pub to_sync: Vec<PathBuf>,
}

fn encrypt_root_key(
    pem: &crate::secret::SecretString,
    to: Option<RootKeyTo<'_>>,
) -> Result<(String, RootProtection), CaError> {
    let to = to.ok_or(CaError::NoRootProtection)?;
    let (encryptor, protection) = match to {
        RootKeyTo::Recipients(rs) => {
            if rs.is_empty() {
                return Err(CaError::NoRootProtection);
            }
            let parsed: Vec<age::x25519::Recipient> = rs
                .iter()
                .map(|r| {
                    r.parse::<age::x25519::Recipient>()
                        .map_err(|e| CaError::Age(format!("DR recipient {r:?}: {e}")))
                })
                .collect::<Result<_, _>>()?;
            let enc =
                age::Encryptor::with_recipients(parsed.iter().map(|r| r as &dyn age::Recipient))
                    .map_err(|e| CaError::Age(e.to_string()))?;
            (enc, RootProtection::Recipients { recipients: rs })
        }
        RootKeyTo::Passphrase(p) => {
            let secret = age::secrecy::SecretString::from(p.expose().to_string());
            (age::Encryptor::with_user_passphrase(secret), RootProtection::Passphrase)
        }
    };
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|e| CaError::Age(e.to_string()))?;
    let mut w = encryptor.wrap_output(armor).map_err(|e| CaError::Age(e.to_string()))?;
    w.write_all(pem.expose().as_bytes()).map_err(|e| CaError::Age(e.to_string()))?;
    w.finish().and_then(|a| a.finish()).map_err(|e| CaError::Age(e.to_string()))?;
    Ok((String::from_utf8_lossy(&out).into_owned(), protection))
}

/// Creates a new file (never replacing one) with `mode`, writes and fsyncs it.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    super::durable::create(path, bytes, mode, None)?;
    super::durable::sync_all(&[path.to_path_buf()])
}
