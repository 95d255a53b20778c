//! Types that hold secret values: key material, passwords, tokens.
//!
//! They zeroize their memory on drop and print as `[redacted]` through both `Debug`
//! and `Display`, so a value cannot reach a log line or an error message by accident.
//! Getting at the bytes takes an explicit `expose()` call, which is easy to grep for.

use std::fmt;
use zeroize::{Zeroize, Zeroizing};

/// Secret bytes (a key, a password, a token). Never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(bytes))
    }

    pub fn from_slice(bytes: &[u8]) -> Self {
        SecretBytes::new(bytes.to_vec())
    }

    /// The value itself. Callers must not log, format or copy it into a non-secret type.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value as UTF-8 text, or `None` when it is not text.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(bytes: Vec<u8>) -> Self {
        SecretBytes::new(bytes)
    }
}

impl From<String> for SecretBytes {
    fn from(s: String) -> Self {
        SecretBytes::new(s.into_bytes())
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Zeroize for SecretBytes {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

/// A secret that is text (a password, a PEM private key). Never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    pub fn new(s: String) -> Self {
        SecretString(Zeroizing::new(s))
    }

    /// The value itself. Callers must not log, format or copy it into a non-secret type.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        SecretString::new(s)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let b = SecretBytes::from_slice(b"canary-7f3a");
        let s = SecretString::new("canary-7f3a".into());
        for shown in [
            format!("{b:?}"),
            format!("{b}"),
            format!("{s:?}"),
            format!("{s}"),
            format!("{:?}", Some(&b)),
        ] {
            assert!(!shown.contains("canary"), "{shown}");
            assert!(shown.contains("[redacted]"));
        }
        assert_eq!(b.expose(), b"canary-7f3a");
        assert_eq!(s.expose(), "canary-7f3a");
    }
}
