//! What keyward remembers about each secret it synced: a keyed hash of the value
//! (HMAC-SHA256 with a random per-installation key, never a plain hash), the
//! version, when GitHub stored it, and whether keyward created it there.
//!
//! Files in the state folder: `github/sync-state.json` and `github/hmac.key`
//! (32 random bytes), both 0600 and written atomically. The state never holds a value
//! or anything from which a value could be tested without the key.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use super::GithubError;
use super::scope::Target;
use crate::store::{FileMode, Store, StoreError};

pub const STATE_FILE: &str = "github/sync-state.json";
pub const KEY_FILE: &str = "github/hmac.key";

/// One secret in one scope, as keyward last synced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// HMAC-SHA256 (hex) of scope, name and value under the installation key.
    pub mac: String,
    /// The secret's version keyward sent.
    pub version: u64,
    /// GitHub's clock (the `Date` of the PUT's answer) when the value was stored;
    /// an `updated_at` after this means someone else changed it.
    pub synced_at: DateTime<Utc>,
    /// Whether keyward's PUT created the secret (201); only those may be pruned.
    pub created_by_keyward: bool,
    /// Organisation secrets: the visibility and selected repositories sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
}

/// Every entry of one scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeState {
    pub target: Target,
    #[serde(default)]
    pub secrets: BTreeMap<String, Entry>,
    /// When keyward last synced this scope (not a dry run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<DateTime<Utc>>,
    /// What failed in that sync, if anything (names and messages, never values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    format: u32,
    #[serde(default)]
    scopes: BTreeMap<String, ScopeState>,
}

/// The sync state with its MAC key.
pub struct SyncState {
    pub scopes: BTreeMap<String, ScopeState>,
    key: hmac::Key,
}

impl SyncState {
    /// Loads the state and the MAC key, creating the key (0600) on first use.
    /// Only a command holding the run lock may call this.
    pub fn load(store: &Store) -> Result<SyncState, GithubError> {
        Self::load_inner(store, true)
    }

    /// Loads the state without creating anything (status, dry runs, no lock): a
    /// missing key is replaced by a random one that is never saved.
    pub fn open(store: &Store) -> Result<SyncState, GithubError> {
        Self::load_inner(store, false)
    }

    fn load_inner(store: &Store, create: bool) -> Result<SyncState, GithubError> {
        let key_path = store.path(KEY_FILE);
        let key = if key_path.exists() {
            let bytes = crate::store::read_private(&key_path)?;
            if bytes.len() != 32 {
                return Err(GithubError::Store(StoreError::Corrupt {
                    path: key_path,
                    detail: "the GitHub sync key must be 32 bytes; remove it and run 'keyward github sync', which re-sends every value once".into(),
                }));
            }
            bytes
        } else {
            let mut bytes = vec![0u8; 32];
            SystemRandom::new().fill(&mut bytes).map_err(|_| GithubError::Random)?;
            if !create {
                let key = hmac::Key::new(hmac::HMAC_SHA256, &bytes);
                let file: StateFile = store.read_json(STATE_FILE)?.unwrap_or_default();
                return Ok(SyncState { scopes: file.scopes, key });
            }
            if let Some(dir) = key_path.parent() {
                crate::store::ensure_private_dir(dir)?;
            }
            crate::store::atomic_write(&key_path, &bytes, FileMode::PRIVATE)?;
            bytes
        };
        let key = hmac::Key::new(hmac::HMAC_SHA256, &key);
        let file: StateFile = store.read_json(STATE_FILE)?.unwrap_or_default();
        Ok(SyncState { scopes: file.scopes, key })
    }

    /// A state with a given key and nothing synced (tests, first runs).
    pub fn with_key(key: &[u8; 32]) -> SyncState {
        SyncState { scopes: BTreeMap::new(), key: hmac::Key::new(hmac::HMAC_SHA256, key) }
    }

    pub fn save(&self, store: &Store) -> Result<(), GithubError> {
        let file = StateFile { format: 1, scopes: self.scopes.clone() };
        store.write_json(STATE_FILE, &file)?;
        Ok(())
    }

    /// The keyed hash of a value in a scope: the scope and name are bound in, so the
    /// same value in two places gives unrelated MACs.
    pub fn mac(&self, target: &Target, name: &str, value: &[u8]) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [target.key().as_bytes(), name.as_bytes(), value] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        hex::encode(ctx.sign().as_ref())
    }

    pub fn entry(&self, target: &Target, name: &str) -> Option<&Entry> {
        self.scopes.get(&target.key())?.secrets.get(name)
    }

    pub fn record(&mut self, target: &Target, name: &str, entry: Entry) {
        self.scopes
            .entry(target.key())
            .or_insert_with(|| ScopeState {
                target: target.clone(),
                secrets: BTreeMap::new(),
                last_sync: None,
                last_error: None,
            })
            .secrets
            .insert(name.to_string(), entry);
    }

    /// Records how a sync of a scope ended, for `keyward status`.
    pub fn note_sync(&mut self, target: &Target, at: DateTime<Utc>, error: Option<String>) {
        if error.is_none() && !self.scopes.contains_key(&target.key()) {
            return;
        }
        let s = self.scopes.entry(target.key()).or_insert_with(|| ScopeState {
            target: target.clone(),
            secrets: BTreeMap::new(),
            last_sync: None,
            last_error: None,
        });
        s.last_sync = Some(at);
        s.last_error = error;
        if s.last_error.is_none() && s.secrets.is_empty() {
            self.scopes.remove(&target.key());
        }
    }

    pub fn forget(&mut self, target: &Target, name: &str) {
        if let Some(s) = self.scopes.get_mut(&target.key()) {
            s.secrets.remove(name);
            if s.secrets.is_empty() && s.last_error.is_none() {
                self.scopes.remove(&target.key());
            }
        }
    }

    /// Nothing recorded: no secret synced and no failure waiting to be cleared.
    pub fn is_empty(&self) -> bool {
        self.scopes.values().all(|s| s.secrets.is_empty() && s.last_error.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        let t = Target::Repository { owner: "o".into(), repo: "r".into() };
        let a = SyncState::load(&store).unwrap().mac(&t, "A", b"v");
        let b = SyncState::load(&store).unwrap().mac(&t, "A", b"v");
        assert_eq!(a, b);
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(store.path(KEY_FILE)).unwrap().mode() & 0o777, 0o600);
        // Not a plain hash, and bound to the name.
        assert_ne!(a, crate::util::sha256_hex(b"v"));
        assert_ne!(a, SyncState::load(&store).unwrap().mac(&t, "B", b"v"));
    }

    #[test]
    fn open_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        let s = SyncState::open(&store).unwrap();
        assert!(s.is_empty());
        assert!(!store.path(KEY_FILE).exists());
    }
}
