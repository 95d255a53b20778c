//! The secret store: every secret's versions, encrypted at rest.
//!
//! Metadata (version numbers, times, the phase of a rotation) lives in plain JSON,
//! `secrets/vault.json` in the state folder; values live only in age-encrypted blobs,
//! `secrets/blobs/NAME.vN.age`, encrypted to the machine's X25519 key. That key is kept
//! 0600 outside the state folder (or handed over by systemd as a credential), so a copy
//! of the state folder alone reveals nothing. Each blob's plaintext starts with the
//! secret's name and version, so blobs cannot be swapped between secrets unnoticed.
//! Every write goes through `crate::store` (temp file, fsync, rename). This module
//! never logs or formats a value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use age::secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::SecretsError;
use crate::secret::SecretBytes;
use crate::store::{FileMode, Store, StoreError};

pub const VAULT_FILE: &str = "secrets/vault.json";
pub const BLOB_DIR: &str = "secrets/blobs";
const BLOB_MAGIC: &[u8] = b"keyward-secret-v1\n";

/// What a version's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    Generated,
    Imported,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    pub version: u64,
    pub origin: Origin,
    /// When the value was made or imported.
    pub created: String,
    /// When it became current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted: Option<String>,
}

/// Why a pending version exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// A new generated value.
    Rotate,
    /// A value imported with `secrets set`.
    Set,
    /// The previous version becoming current again.
    Rollback,
}

/// The phases of a change, persisted before each one starts, so that the next run
/// knows whether to finish forward or roll back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The pending value is stored; no target has been touched.
    Staged,
    /// Targets are being changed; some may hold the pending value.
    Applying,
    /// Every target holds the pending value.
    Applied,
    /// Every target was checked with the pending value.
    Verified,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    pub version: Version,
    pub kind: ChangeKind,
    pub phase: Phase,
    pub started: String,
    /// Targets that were being changed or were changed, in order.
    #[serde(default)]
    pub touched: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Version>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Version>,
    /// The highest version number ever handed out.
    #[serde(default)]
    pub last_version: u64,
    /// The last failed attempt, for status (an error message, never a value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastError {
    pub time: String,
    pub error: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultFile {
    pub format: u32,
    #[serde(default)]
    pub secrets: BTreeMap<String, Entry>,
}

/// Where the machine key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A file, created 0600 on first use when the store is still empty.
    File(PathBuf),
    /// A systemd credential (`LoadCredentialEncrypted=`), read-only.
    Credential(PathBuf),
}

impl KeySource {
    pub fn path(&self) -> &Path {
        match self {
            KeySource::File(p) | KeySource::Credential(p) => p,
        }
    }
}

/// The folder of encrypted value blobs, relative to the state folder.
pub(crate) fn blob_dir() -> &'static str {
    BLOB_DIR
}

/// The opened store: metadata in memory, the key loaded on first use of a value.
pub struct Vault {
    store: Store,
    pub file: VaultFile,
    key: KeySource,
    identity: OnceLock<age::x25519::Identity>,
}

impl Vault {
    pub fn open(store: &Store, key: KeySource) -> Result<Vault, SecretsError> {
        let file: VaultFile =
            store.read_json(VAULT_FILE)?.unwrap_or(VaultFile { format: 1, ..Default::default() });
        if file.format != 1 {
            return Err(SecretsError::Store(StoreError::Corrupt {
                path: store.path(VAULT_FILE),
                detail: format!("format {} is not one this keyward reads (1)", file.format),
            }));
        }
        Ok(Vault { store: store.clone(), file, key, identity: OnceLock::new() })
    }

    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.file.secrets.get(name)
    }

    pub fn entry_mut(&mut self, name: &str) -> &mut Entry {
        self.file.secrets.entry(name.to_string()).or_default()
    }

    /// Writes the metadata atomically.
    pub fn save(&self) -> Result<(), SecretsError> {
        self.store.write_json(VAULT_FILE, &self.file)?;
        Ok(())
    }

    fn blob_path(&self, name: &str, version: u64) -> PathBuf {
        self.store.path(BLOB_DIR).join(format!("{name}.v{version}.age"))
    }

    fn has_blobs(&self) -> bool {
        std::fs::read_dir(self.store.path(BLOB_DIR))
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
            || self.file.secrets.values().any(|e| e.current.is_some())
    }

    fn identity(&self) -> Result<&age::x25519::Identity, SecretsError> {
        if let Some(i) = self.identity.get() {
            return Ok(i);
        }
        let identity = load_or_create_key(&self.key, self.has_blobs())?;
        Ok(self.identity.get_or_init(|| identity))
    }

    /// Encrypts and stores the value of `name` version `version`.
    pub fn put(&self, name: &str, version: u64, value: &SecretBytes) -> Result<(), SecretsError> {
        let identity = self.identity()?;
        let mut plain = zeroize::Zeroizing::new(Vec::with_capacity(value.len() + 64));
        plain.extend_from_slice(BLOB_MAGIC);
        plain.extend_from_slice(format!("{name}\n{version}\n").as_bytes());
        plain.extend_from_slice(value.expose());
        let sealed = age::encrypt(&identity.to_public(), &plain)
            .map_err(|e| SecretsError::Crypto { name: name.to_string(), detail: e.to_string() })?;
        let dir = self.store.path(BLOB_DIR);
        crate::store::ensure_private_dir(&dir)?;
        crate::store::atomic_write(&self.blob_path(name, version), &sealed, FileMode::PRIVATE)?;
        Ok(())
    }

    /// Decrypts the value of `name` version `version`.
    pub fn get(&self, name: &str, version: u64) -> Result<SecretBytes, SecretsError> {
        let path = self.blob_path(name, version);
        let sealed = crate::store::read_private(&path)?;
        let identity = self.identity()?;
        let plain = zeroize::Zeroizing::new(age::decrypt(identity, &sealed).map_err(|e| {
            SecretsError::Crypto {
                name: name.to_string(),
                detail: format!(
                    "{} cannot be decrypted with the machine key {} ({e}); was the key replaced? restore it, or the state, from the DR export",
                    path.display(),
                    self.key.path().display()
                ),
            }
        })?);
        let header = format!("{name}\n{version}\n");
        let rest = plain
            .strip_prefix(BLOB_MAGIC)
            .and_then(|r| r.strip_prefix(header.as_bytes()))
            .ok_or_else(|| SecretsError::Crypto {
                name: name.to_string(),
                detail: format!(
                    "{} holds another secret or version than its name says: the state folder was tampered with; restore it from the DR export",
                    path.display()
                ),
            })?;
        Ok(SecretBytes::from_slice(rest))
    }

    pub fn current_value(&self, name: &str) -> Result<Option<(u64, SecretBytes)>, SecretsError> {
        match self.entry(name).and_then(|e| e.current.as_ref()) {
            Some(v) => Ok(Some((v.version, self.get(name, v.version)?))),
            None => Ok(None),
        }
    }

    /// Deletes blobs of `name` that no version refers to any more.
    pub fn prune(&self, name: &str) -> Result<(), SecretsError> {
        let keep: Vec<u64> = match self.entry(name) {
            Some(e) => e
                .current
                .iter()
                .chain(e.previous.iter())
                .map(|v| v.version)
                .chain(e.pending.iter().map(|p| p.version.version))
                .collect(),
            None => Vec::new(),
        };
        let dir = self.store.path(BLOB_DIR);
        let Ok(rd) = std::fs::read_dir(&dir) else { return Ok(()) };
        let prefix = format!("{name}.v");
        let mut removed = false;
        for e in rd.flatten() {
            let file = e.file_name();
            let Some(f) = file.to_str() else { continue };
            let Some(v) = f.strip_prefix(&prefix).and_then(|r| r.strip_suffix(".age")) else {
                continue;
            };
            let Ok(v) = v.parse::<u64>() else { continue };
            if !keep.contains(&v) {
                std::fs::remove_file(e.path()).map_err(|source| StoreError::Io {
                    op: "remove",
                    path: e.path(),
                    source,
                })?;
                removed = true;
            }
        }
        if removed {
            crate::store::fsync_dir(&dir)?;
        }
        Ok(())
    }
}

/// Reads the machine key, creating it (0600) when it is a file that does not exist and
/// the store holds no value yet. A missing key with values in the store is an error,
/// never a reason to make a new one: that would orphan every stored value.
pub(crate) fn load_or_create_key(
    source: &KeySource,
    store_has_values: bool,
) -> Result<age::x25519::Identity, SecretsError> {
    let path = source.path();
    if !path.exists() {
        match source {
            KeySource::File(p) if !store_has_values => {
                let identity = age::x25519::Identity::generate();
                let text = zeroize::Zeroizing::new(format!(
                    "# keyward machine key: decrypts the secret store. Keep it 0600; back it up with the DR export.\n# public key: {}\n{}\n",
                    identity.to_public(),
                    identity.to_string().expose_secret()
                ));
                crate::store::atomic_write(p, text.as_bytes(), FileMode::PRIVATE)?;
                crate::info!("created the machine key {}", p.display());
                return Ok(identity);
            }
            _ => {
                return Err(SecretsError::MachineKeyMissing { path: path.to_path_buf() });
            }
        }
    }
    if matches!(source, KeySource::File(_)) {
        crate::store::check_private(path)?;
    }
    let bytes = zeroize::Zeroizing::new(std::fs::read(path).map_err(|source| StoreError::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    })?);
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| SecretsError::MachineKeyInvalid { path: path.to_path_buf() })?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .ok_or_else(|| SecretsError::MachineKeyInvalid { path: path.to_path_buf() })?;
    age::x25519::Identity::from_str(line)
        .map_err(|_| SecretsError::MachineKeyInvalid { path: path.to_path_buf() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault(dir: &Path) -> Vault {
        let store = Store::open(&dir.join("state")).unwrap();
        Vault::open(&store, KeySource::File(dir.join("machine.key"))).unwrap()
    }

    #[test]
    fn values_round_trip_encrypted_and_bound_to_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path());
        v.put("A", 1, &SecretBytes::from_slice(b"canary-vault-a")).unwrap();
        v.put("B", 1, &SecretBytes::from_slice(b"canary-vault-b")).unwrap();
        assert_eq!(v.get("A", 1).unwrap().expose(), b"canary-vault-a");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(dir.path().join("machine.key")).unwrap().mode() & 0o777,
            0o600
        );
        // No file of the state folder holds a value in plaintext.
        let mut stack = vec![dir.path().join("state")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap().flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    let b = std::fs::read(e.path()).unwrap();
                    assert!(!b.windows(6).any(|w| w == b"canary"), "{:?}", e.path());
                }
            }
        }
        let blob = std::fs::read(v.blob_path("A", 1)).unwrap();
        assert!(!blob.windows(6).any(|w| w == b"canary"));
        // A blob moved under another name is refused.
        std::fs::copy(v.blob_path("A", 1), v.blob_path("B", 1)).unwrap();
        let err = v.get("B", 1).unwrap_err().to_string();
        assert!(err.contains("tampered"), "{err}");
    }

    #[test]
    fn a_lost_key_is_never_silently_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path());
        v.put("A", 1, &SecretBytes::from_slice(b"x")).unwrap();
        std::fs::remove_file(dir.path().join("machine.key")).unwrap();
        let v = vault(dir.path());
        let err = v.get("A", 1).unwrap_err();
        assert!(matches!(err, SecretsError::MachineKeyMissing { .. }), "{err}");
        assert!(!dir.path().join("machine.key").exists());
    }

    #[test]
    fn prune_keeps_referenced_versions() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = vault(dir.path());
        for n in 1..=3 {
            v.put("A", n, &SecretBytes::from_slice(b"x")).unwrap();
        }
        let now = "2026-01-01T00:00:00Z".to_string();
        let ver = |n| Version {
            version: n,
            origin: Origin::Generated,
            created: now.clone(),
            promoted: None,
        };
        let e = v.entry_mut("A");
        e.current = Some(ver(3));
        e.previous = Some(ver(2));
        v.prune("A").unwrap();
        assert!(!v.blob_path("A", 1).exists());
        assert!(v.blob_path("A", 2).exists() && v.blob_path("A", 3).exists());
    }
}
