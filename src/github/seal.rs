//! libsodium-compatible sealed boxes (`crypto_box_seal`): what GitHub expects in
//! `encrypted_value`.
//!
//! A sealed box encrypts to the scope's X25519 public key with a fresh ephemeral key,
//! so only GitHub can open it. This module never logs or returns the plaintext; the
//! ciphertext it returns is safe to send.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use crypto_box::aead::OsRng;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the public key GitHub returned is not base64 of 32 bytes")]
    BadKey,
    #[error("sealing failed")]
    Seal,
}

/// A scope's public key as GitHub returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeKey {
    pub key_id: String,
    key: crypto_box::PublicKey,
}

impl ScopeKey {
    /// Parses GitHub's base64 `key`.
    pub fn parse(key_id: &str, key_b64: &str) -> Result<ScopeKey, SealError> {
        let bytes = STANDARD.decode(key_b64.trim()).map_err(|_| SealError::BadKey)?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| SealError::BadKey)?;
        Ok(ScopeKey { key_id: key_id.to_string(), key: crypto_box::PublicKey::from(arr) })
    }

    /// `crypto_box_seal(value, key)`, base64: GitHub's `encrypted_value`.
    pub fn seal(&self, value: &[u8]) -> Result<String, SealError> {
        let sealed = self.key.seal(&mut OsRng, value).map_err(|_| SealError::Seal)?;
        Ok(STANDARD.encode(sealed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_box_opens_with_the_secret_key_only() {
        let sk = crypto_box::SecretKey::generate(&mut OsRng);
        let pk = STANDARD.encode(sk.public_key().as_bytes());
        let key = ScopeKey::parse("42", &pk).unwrap();
        let a = key.seal(b"canary-value").unwrap();
        let b = key.seal(b"canary-value").unwrap();
        assert_ne!(a, b, "every seal uses a fresh ephemeral key");
        let opened = sk.unseal(&STANDARD.decode(&a).unwrap()).unwrap();
        assert_eq!(opened, b"canary-value");
        // 32-byte ephemeral key + 16-byte tag + message.
        assert_eq!(STANDARD.decode(&a).unwrap().len(), 48 + 12);
        let other = crypto_box::SecretKey::generate(&mut OsRng);
        assert!(other.unseal(&STANDARD.decode(&a).unwrap()).is_err());
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(ScopeKey::parse("1", "not base64!").is_err());
        assert!(ScopeKey::parse("1", &STANDARD.encode([0u8; 31])).is_err());
    }
}
