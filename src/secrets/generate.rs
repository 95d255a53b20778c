//! Generators: how a new value of a secret is made.
//!
//! All randomness comes from the operating system through `ring::rand::SystemRandom`.
//! Passwords are drawn from their alphabet by rejection sampling, so every character is
//! equally likely. This module returns values only as [`SecretBytes`]; it never
//! formats or logs one.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::secret::SecretBytes;

/// A policy's `generator = { kind = …, … }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Generator {
    /// Random bytes, standard base64 with padding: `openssl rand -base64 N`.
    Base64 { bytes: usize },
    /// Random bytes, lower-case hex: `openssl rand -hex N`.
    Hex { bytes: usize },
    /// Random bytes, URL-safe base64 without padding.
    Base64url { bytes: usize },
    /// A password of `length` characters drawn uniformly from `alphabet`.
    Password {
        length: usize,
        #[serde(default)]
        alphabet: Alphabet,
    },
    /// A Fernet key: 32 random bytes, URL-safe base64 with padding (44 characters).
    Fernet,
    /// A value keyward cannot make (an SMTP password, a Sentry DSN): imported with
    /// `keyward secrets set`.
    Imported,
}

/// A password alphabet: a named set or the characters themselves.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Alphabet {
    Named(NamedAlphabet),
    Custom { characters: String },
}

impl Default for Alphabet {
    fn default() -> Self {
        Alphabet::Named(NamedAlphabet::Alphanumeric)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NamedAlphabet {
    /// A-Z a-z 0-9.
    Alphanumeric,
    /// a-z 0-9 (user names, bucket-safe identifiers).
    LowerAlphanumeric,
    /// A-Z a-z 0-9 and `-_.~` (safe in URLs, shells and env files).
    UrlSafe,
    /// 0-9 a-f.
    Hex,
}

impl Alphabet {
    pub fn characters(&self) -> Vec<u8> {
        let mut v: Vec<u8> = match self {
            Alphabet::Named(NamedAlphabet::Alphanumeric) => {
                (b'A'..=b'Z').chain(b'a'..=b'z').chain(b'0'..=b'9').collect()
            }
            Alphabet::Named(NamedAlphabet::LowerAlphanumeric) => {
                (b'a'..=b'z').chain(b'0'..=b'9').collect()
            }
            Alphabet::Named(NamedAlphabet::UrlSafe) => {
                (b'A'..=b'Z').chain(b'a'..=b'z').chain(b'0'..=b'9').chain(*b"-_.~").collect()
            }
            Alphabet::Named(NamedAlphabet::Hex) => (b'0'..=b'9').chain(b'a'..=b'f').collect(),
            Alphabet::Custom { characters } => characters.bytes().collect(),
        };
        v.sort_unstable();
        v.dedup();
        v
    }

    pub fn describe(&self) -> String {
        match self {
            Alphabet::Named(NamedAlphabet::Alphanumeric) => "A-Z a-z 0-9".into(),
            Alphabet::Named(NamedAlphabet::LowerAlphanumeric) => "a-z 0-9".into(),
            Alphabet::Named(NamedAlphabet::UrlSafe) => "A-Z a-z 0-9 - _ . ~".into(),
            Alphabet::Named(NamedAlphabet::Hex) => "0-9 a-f".into(),
            Alphabet::Custom { .. } => format!("{} chosen characters", self.characters().len()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("the operating system's random number generator failed; nothing was generated")]
    Random,
    #[error(
        "{0} is imported, not generated: import it with 'keyward secrets set {0}' (value on stdin)"
    )]
    Imported(String),
}

impl Generator {
    /// Checks the parameters; the message is for a policy error.
    pub fn validate(&self) -> Result<(), String> {
        let bytes_ok = |n: usize| {
            if (16..=1024).contains(&n) {
                Ok(())
            } else {
                Err(format!(
                    "bytes = {n}: use 16 to 1024 (32 is the `openssl rand -base64 32` default)"
                ))
            }
        };
        match self {
            Generator::Base64 { bytes }
            | Generator::Hex { bytes }
            | Generator::Base64url { bytes } => bytes_ok(*bytes),
            Generator::Password { length, alphabet } => {
                let chars = alphabet.characters();
                if let Alphabet::Custom { characters } = alphabet {
                    if !characters.is_ascii() {
                        return Err("alphabet characters must be ASCII".into());
                    }
                    if let Some(c) = characters.chars().find(|c| {
                        c.is_ascii_whitespace()
                            || c.is_ascii_control()
                            || matches!(c, '\'' | '"' | '\\' | '`' | '$')
                    }) {
                        return Err(format!(
                            "the alphabet contains {c:?}, which env files, shells and connection strings treat specially; leave it out"
                        ));
                    }
                }
                if chars.len() < 10 {
                    return Err(format!(
                        "the alphabet has {} distinct characters; use at least 10",
                        chars.len()
                    ));
                }
                if !(12..=256).contains(length) {
                    return Err(format!("length = {length}: use 12 to 256"));
                }
                // At least 100 bits of entropy (an S3 access key's 20 of [A-Z0-9] is 103).
                let bits = *length as f64 * (chars.len() as f64).log2();
                if bits < 100.0 {
                    return Err(format!(
                        "length {length} over {} characters gives {bits:.0} bits; make it long enough for at least 100",
                        chars.len()
                    ));
                }
                Ok(())
            }
            Generator::Fernet | Generator::Imported => Ok(()),
        }
    }

    pub fn is_imported(&self) -> bool {
        matches!(self, Generator::Imported)
    }

    /// One line for docs and listings.
    pub fn describe(&self) -> String {
        match self {
            Generator::Base64 { bytes } => format!("{bytes} random bytes, base64"),
            Generator::Hex { bytes } => format!("{bytes} random bytes, hex"),
            Generator::Base64url { bytes } => format!("{bytes} random bytes, URL-safe base64"),
            Generator::Password { length, alphabet } => {
                format!("password, {length} characters of {}", alphabet.describe())
            }
            Generator::Fernet => "Fernet key (32 random bytes, URL-safe base64)".into(),
            Generator::Imported => "imported (third-party; set with 'keyward secrets set')".into(),
        }
    }

    /// Makes a new value.
    pub fn generate(&self, name: &str) -> Result<SecretBytes, GenerateError> {
        let rng = SystemRandom::new();
        let random = |n: usize| -> Result<Zeroizing<Vec<u8>>, GenerateError> {
            let mut buf = Zeroizing::new(vec![0u8; n]);
            rng.fill(&mut buf).map_err(|_| GenerateError::Random)?;
            Ok(buf)
        };
        let text = match self {
            Generator::Base64 { bytes } => STANDARD.encode(&*random(*bytes)?),
            Generator::Hex { bytes } => hex::encode(&*random(*bytes)?),
            Generator::Base64url { bytes } => URL_SAFE_NO_PAD.encode(&*random(*bytes)?),
            Generator::Fernet => URL_SAFE.encode(&*random(32)?),
            Generator::Password { length, alphabet } => {
                return password(&rng, &alphabet.characters(), *length);
            }
            Generator::Imported => return Err(GenerateError::Imported(name.to_string())),
        };
        Ok(SecretBytes::from(text))
    }
}

/// `length` characters drawn uniformly from `alphabet` (at most 256 characters):
/// bytes at or above the largest multiple of the alphabet size are thrown away, so no
/// character is more likely than another.
fn password(
    rng: &SystemRandom,
    alphabet: &[u8],
    length: usize,
) -> Result<SecretBytes, GenerateError> {
    let n = alphabet.len();
    debug_assert!((2..=256).contains(&n));
    let limit = 256 - (256 % n);
    let mut out = Vec::with_capacity(length);
    let mut buf = Zeroizing::new([0u8; 64]);
    while out.len() < length {
        rng.fill(&mut *buf).map_err(|_| GenerateError::Random)?;
        for &b in buf.iter() {
            if (b as usize) < limit && out.len() < length {
                out.push(alphabet[b as usize % n]);
            }
        }
    }
    Ok(SecretBytes::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_generators_have_the_right_shape() {
        let v = Generator::Base64 { bytes: 32 }.generate("X").unwrap();
        assert_eq!(v.len(), 44);
        assert_eq!(STANDARD.decode(v.expose()).unwrap().len(), 32);
        let v = Generator::Hex { bytes: 32 }.generate("X").unwrap();
        assert_eq!(v.len(), 64);
        assert!(v.expose().iter().all(u8::is_ascii_hexdigit));
        let v = Generator::Base64url { bytes: 32 }.generate("X").unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(v.expose()).unwrap().len(), 32);
        let v = Generator::Fernet.generate("X").unwrap();
        assert_eq!(v.len(), 44);
        assert_eq!(URL_SAFE.decode(v.expose()).unwrap().len(), 32);
        assert_ne!(
            Generator::Fernet.generate("X").unwrap(),
            Generator::Fernet.generate("X").unwrap()
        );
    }

    #[test]
    fn passwords_use_only_their_alphabet_uniformly() {
        let alphabet = Alphabet::Custom { characters: "abcdefghijk".into() }; // 11: 256 % 11 != 0
        let g = Generator::Password { length: 256, alphabet: alphabet.clone() };
        g.validate().unwrap();
        let mut counts = [0u32; 11];
        for _ in 0..200 {
            let v = g.generate("X").unwrap();
            assert_eq!(v.len(), 256);
            for &b in v.expose() {
                counts[(b - b'a') as usize] += 1;
            }
        }
        // 51,200 draws, expected 4,654 each; modulo bias without rejection would push
        // the first 3 letters ~9% above the rest. Allow 5% either way.
        let expected = 51_200.0 / 11.0;
        for c in counts {
            assert!((c as f64 - expected).abs() < expected * 0.05, "{counts:?}");
        }
    }

    #[test]
    fn weak_or_unsafe_generators_are_refused() {
        assert!(Generator::Base64 { bytes: 8 }.validate().is_err());
        assert!(
            Generator::Password { length: 12, alphabet: Alphabet::Named(NamedAlphabet::Hex) }
                .validate()
                .is_err()
        );
        assert!(
            Generator::Password {
                length: 40,
                alphabet: Alphabet::Custom { characters: "abcdefghij'".into() }
            }
            .validate()
            .is_err()
        );
        assert!(
            Generator::Password { length: 32, alphabet: Alphabet::default() }.validate().is_ok()
        );
    }

    #[test]
    fn imported_is_never_fabricated() {
        assert!(matches!(
            Generator::Imported.generate("SMTP_PASSWORD"),
            Err(GenerateError::Imported(_))
        ));
    }
}
