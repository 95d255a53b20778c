//! Recipients, identities, passphrases and the server's signing key.
//!
//! X25519 recipients and identities and the scrypt passphrase stanza come from the
//! `age` crate; this module reads them from arguments and files, reads passphrases from
//! a file, an environment variable or the terminal (never from argv), and keeps the
//! server's Ed25519 provenance key. It must never print or log a secret.

use std::path::{Path, PathBuf};

use age::secrecy::SecretString as AgeSecret;
use ring::signature::{self, Ed25519KeyPair, KeyPair};

use super::BackupError;
use crate::secret::SecretString;

/// A recipient to wrap the file key to.
pub enum Recipient {
    X25519(age::x25519::Recipient),
    Passphrase(SecretString, u8),
}

/// An identity to unwrap with.
pub enum Identity {
    X25519(Box<age::x25519::Identity>),
    Passphrase(SecretString),
}

/// Parses one `age1…` recipient.
pub fn parse_recipient(s: &str, origin: &str) -> Result<Recipient, BackupError> {
    let s = s.trim();
    if s.starts_with("age1pq1") {
        return Err(BackupError::Unsupported(format!(
            "{origin}: post-quantum recipients (age1pq1…) are not supported by this version of keyward; use an X25519 recipient (age1…)"
        )));
    }
    s.parse::<age::x25519::Recipient>().map(Recipient::X25519).map_err(|e| {
        BackupError::Usage(format!(
            "{origin}: {s:?} is not an age X25519 recipient ({e}); 'keyward backup keygen' makes one"
        ))
    })
}

/// Recipients from a file: one per line, `#` comments and blank lines ignored.
pub fn recipients_file(path: &Path) -> Result<Vec<Recipient>, BackupError> {
    let text = std::fs::read_to_string(path).map_err(|e| BackupError::io("read", path, e))?;
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        out.push(parse_recipient(l, &format!("{}:{}", path.display(), i + 1))?);
    }
    if out.is_empty() {
        return Err(BackupError::Usage(format!("{} holds no recipient", path.display())));
    }
    Ok(out)
}

/// Identities from a file (the format `age-keygen` and `keyward backup keygen` write).
pub fn identities_file(path: &Path) -> Result<Vec<Identity>, BackupError> {
    let text = std::fs::read_to_string(path).map_err(|e| BackupError::io("read", path, e))?;
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::MetadataExt;
        if meta.mode() & 0o077 != 0 {
            crate::warn!(
                "{} can be read by group or others (mode {:04o}); run 'chmod 600 {}'",
                path.display(),
                meta.mode() & 0o7777,
                path.display()
            );
        }
    }
    parse_identities(&text, &path.display().to_string())
}

/// Identities from text; errors name `origin` and the line, never the key.
pub fn parse_identities(text: &str, origin: &str) -> Result<Vec<Identity>, BackupError> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if l.starts_with("AGE-SECRET-KEY-PQ-") {
            return Err(BackupError::Unsupported(format!(
                "{origin}:{}: post-quantum identities (AGE-SECRET-KEY-PQ-1…) are not supported by this version of keyward; decrypt with age 1.3 or later",
                i + 1
            )));
        }
        if l.starts_with("AGE-PLUGIN-") {
            return Err(BackupError::Unsupported(format!(
                "{origin}:{}: age plugin identities are not supported",
                i + 1
            )));
        }
        let id = l.parse::<age::x25519::Identity>().map_err(|e| {
            BackupError::Usage(format!(
                "{origin}:{}: not an age identity (AGE-SECRET-KEY-1…): {e}",
                i + 1
            ))
        })?;
        out.push(Identity::X25519(Box::new(id)));
    }
    if out.is_empty() {
        return Err(BackupError::Usage(format!("{origin} holds no identity")));
    }
    Ok(out)
}

/// Where a passphrase comes from.
#[derive(Debug, Clone, Default)]
pub struct PassphraseSource {
    /// First line of this file (`/dev/fd/N` works for a descriptor).
    pub file: Option<PathBuf>,
}

/// The environment variable that may hold a passphrase (for automation).
pub const PASSPHRASE_ENV: &str = "KEYWARD_PASSPHRASE";

impl PassphraseSource {
    /// Reads the passphrase: file, then `$KEYWARD_PASSPHRASE`, then the terminal.
    pub fn read(&self, confirm: bool) -> Result<SecretString, BackupError> {
        if let Some(f) = &self.file {
            let bytes = zeroize::Zeroizing::new(
                std::fs::read(f).map_err(|e| BackupError::io("read the passphrase file", f, e))?,
            );
            let text = std::str::from_utf8(&bytes).map_err(|_| {
                BackupError::Usage(format!("the passphrase file {} is not UTF-8", f.display()))
            })?;
            let line = text.split('\n').next().unwrap_or("").trim_end_matches('\r');
            return non_empty(SecretString::new(line.to_string()));
        }
        if let Ok(v) = std::env::var(PASSPHRASE_ENV) {
            return non_empty(SecretString::new(v));
        }
        let tty_err = |e: std::io::Error| {
            BackupError::Usage(format!(
                "a passphrase is needed but there is no terminal to ask on ({e}): pass --passphrase-file FILE or set ${PASSPHRASE_ENV}"
            ))
        };
        let p = SecretString::new(rpassword::prompt_password("passphrase: ").map_err(tty_err)?);
        if confirm {
            let again = SecretString::new(
                rpassword::prompt_password("passphrase (again): ").map_err(tty_err)?,
            );
            if again.expose() != p.expose() {
                return Err(BackupError::Usage("the passphrases do not match".into()));
            }
        }
        non_empty(p)
    }
}

fn non_empty(p: SecretString) -> Result<SecretString, BackupError> {
    if p.is_empty() { Err(BackupError::Usage("the passphrase is empty".into())) } else { Ok(p) }
}

pub fn age_secret(p: &SecretString) -> AgeSecret {
    AgeSecret::from(p.expose().to_string())
}

/// A new X25519 identity file text and its recipient.
pub fn generate() -> (SecretString, String) {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let text = format!(
        "# created: {}\n# public key: {recipient}\n{}\n",
        crate::util::fmt_time(crate::util::now()),
        id.to_string().expose_secret()
    );
    (SecretString::new(text), recipient)
}

/// The text form of an Ed25519 provenance public key.
pub const SIGNER_PREFIX: &str = "keyward-ed25519:";

/// The server's Ed25519 key that signs backup headers.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// Loads the PKCS#8 key at `path`, creating it (mode 0600) when `create`.
    pub fn load_or_create(path: &Path, create: bool) -> Result<(SigningKey, bool), BackupError> {
        let created = match std::fs::metadata(path) {
            Ok(_) => false,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let rng = ring::rand::SystemRandom::new();
                let doc = Ed25519KeyPair::generate_pkcs8(&rng)
                    .map_err(|_| BackupError::Crypto("cannot generate an Ed25519 key".into()))?;
                crate::store::atomic_write(path, doc.as_ref(), crate::store::FileMode::PRIVATE)?;
                true
            }
            Err(e) => return Err(BackupError::io("inspect the signing key", path, e)),
        };
        let bytes = zeroize::Zeroizing::new(crate::store::read_private(path)?);
        let pair = Ed25519KeyPair::from_pkcs8(&bytes).map_err(|_| {
            BackupError::Usage(format!("{} is not an Ed25519 PKCS#8 key", path.display()))
        })?;
        Ok((SigningKey { pair }, created))
    }

    pub fn public(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.pair.sign(msg).as_ref().to_vec()
    }
}

/// `keyward-ed25519:BASE64` for a public key.
pub fn signer_string(public: &[u8; 32]) -> String {
    format!("{SIGNER_PREFIX}{}", super::header::encode_b64(public))
}

/// Parses `--signer`: the string itself, or a file holding it.
pub fn parse_signer(s: &str) -> Result<[u8; 32], BackupError> {
    let text = if s.starts_with(SIGNER_PREFIX) {
        s.to_string()
    } else {
        std::fs::read_to_string(s).map_err(|e| {
            BackupError::Usage(format!(
                "--signer {s:?} is neither '{SIGNER_PREFIX}…' nor a readable file: {e}"
            ))
        })?
    };
    let b64 = text.trim().strip_prefix(SIGNER_PREFIX).ok_or_else(|| {
        BackupError::Usage(format!("the signer {s:?} does not start with '{SIGNER_PREFIX}'"))
    })?;
    super::header::decode_b64(b64.as_bytes())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| BackupError::Usage(format!("the signer {s:?} is not a 32-byte key")))
}

pub fn verify_signature(public: &[u8; 32], msg: &[u8], sig: &[u8]) -> bool {
    signature::UnparsedPublicKey::new(&signature::ED25519, public).verify(msg, sig).is_ok()
}
