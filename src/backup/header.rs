//! The age v1 header: strict parsing, canonical writing, and the header MAC.
//!
//! The header is untrusted input: this parser accepts exactly the grammar of
//! age-encryption.org/v1 (C2SP) — one version line, one or more stanzas whose bodies are
//! canonical unpadded base64 in 64-column lines ending with a short line, and the MAC
//! line — and nothing else (no CRLF, no legacy body encoding, no padding). The same
//! grammar carries the keyward AES-256-GCM variant under its own version line. This
//! module never sees key material beyond the file key it MACs with, and it must not
//! interpret stanzas: the recipient types in `keys` do.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ring::hmac;

/// The version line of standard age v1 files.
pub const AGE_V1: &str = "age-encryption.org/v1";
/// The version line of the keyward AES-256-GCM variant (docs/backup-format.md).
pub const KEYWARD_AES: &str = "keyward.pazpaz/backup/v1-aes-256-gcm";
/// Largest header accepted, so a hostile file cannot make the reader buffer forever.
pub const MAX_HEADER: usize = 1 << 20;

/// Which payload format a header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// age v1: ChaCha20-Poly1305 STREAM.
    AgeV1,
    /// keyward: AES-256-GCM STREAM, same header grammar.
    Aes256Gcm,
}

impl Version {
    pub fn line(self) -> &'static str {
        match self {
            Version::AgeV1 => AGE_V1,
            Version::Aes256Gcm => KEYWARD_AES,
        }
    }
}

/// One recipient stanza as it appears in the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stanza {
    pub tag: String,
    pub args: Vec<String>,
    pub body: Vec<u8>,
}

/// A parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: Version,
    pub stanzas: Vec<Stanza>,
    /// The bytes the MAC covers: everything up to and including `---`.
    pub mac_input: Vec<u8>,
    /// Offset in `mac_input` where each stanza starts (for signatures).
    pub stanza_offsets: Vec<usize>,
    pub mac: [u8; 32],
    /// Length of the whole header including the MAC line.
    pub len: usize,
}

/// Why a header was refused. `Incomplete` means more input could still make it valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the input ends inside the header")]
    Incomplete,
    #[error("{0}")]
    Invalid(String),
    #[error("unsupported version line {0:?}")]
    Version(String),
}

fn bad(msg: impl Into<String>) -> HeaderError {
    HeaderError::Invalid(msg.into())
}

/// `1*VCHAR`.
fn is_arbitrary_string(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| (0x21..=0x7e).contains(&b))
}

/// Canonical unpadded standard base64, or `None`.
pub fn decode_b64(s: &[u8]) -> Option<Vec<u8>> {
    if s.iter().any(|&b| b == b'=' || b == b'\r' || b == b'\n') {
        return None;
    }
    // The engine rejects non-zero trailing bits (non-canonical encodings).
    STANDARD_NO_PAD.decode(s).ok()
}

pub fn encode_b64(bytes: &[u8]) -> String {
    STANDARD_NO_PAD.encode(bytes)
}

/// Splits off one LF-terminated line.
fn line(buf: &[u8], pos: usize) -> Result<(&[u8], usize), HeaderError> {
    match buf[pos..].iter().position(|&b| b == b'\n') {
        Some(n) => Ok((&buf[pos..pos + n], pos + n + 1)),
        None if buf.len() - pos > MAX_HEADER => Err(bad("a header line is too long")),
        None => Err(HeaderError::Incomplete),
    }
}

impl Header {
    /// Parses a header at the start of `buf`. Bytes after the MAC line are not looked at.
    pub fn parse(buf: &[u8]) -> Result<Header, HeaderError> {
        let (first, mut pos) = match line(buf, 0) {
            Ok(v) => v,
            Err(HeaderError::Incomplete) if !buf.is_empty() && !buf.starts_with(b"age") => {
                return Err(bad("not an age file (no version line)"));
            }
            Err(e) => return Err(e),
        };
        let version = if first == AGE_V1.as_bytes() {
            Version::AgeV1
        } else if first == KEYWARD_AES.as_bytes() {
            Version::Aes256Gcm
        } else {
            return Err(HeaderError::Version(
                String::from_utf8_lossy(&first[..first.len().min(64)]).into_owned(),
            ));
        };
        let mut stanzas = Vec::new();
        let mut offsets = Vec::new();
        loop {
            let start = pos;
            let (l, next) = line(buf, pos)?;
            if let Some(rest) = l.strip_prefix(b"---") {
                if stanzas.is_empty() {
                    return Err(bad("the header has no recipient stanza"));
                }
                let mac_b64 = rest.strip_prefix(b" ").ok_or_else(|| bad("malformed MAC line"))?;
                if mac_b64.len() != 43 {
                    return Err(bad("malformed MAC line"));
                }
                let mac = decode_b64(mac_b64).ok_or_else(|| bad("malformed MAC line"))?;
                let mac: [u8; 32] = mac.try_into().map_err(|_| bad("malformed MAC line"))?;
                let mac_input = buf[..start + 3].to_vec();
                return Ok(Header {
                    version,
                    stanzas,
                    mac_input,
                    stanza_offsets: offsets,
                    mac,
                    len: next,
                });
            }
            let args =
                l.strip_prefix(b"-> ").ok_or_else(|| bad("expected a stanza or the MAC line"))?;
            let mut parts = Vec::new();
            for a in args.split(|&b| b == b' ') {
                if !is_arbitrary_string(a) {
                    return Err(bad("a stanza argument is empty or has invalid characters"));
                }
                // is_arbitrary_string admits only ASCII.
                parts.push(String::from_utf8_lossy(a).into_owned());
            }
            pos = next;
            let mut body = Vec::new();
            loop {
                let (l, next) = line(buf, pos)?;
                pos = next;
                if l.len() > 64 {
                    return Err(bad("a stanza body line is longer than 64 columns"));
                }
                let bytes = decode_b64(l)
                    .ok_or_else(|| bad("a stanza body is not canonical unpadded base64"))?;
                body.extend_from_slice(&bytes);
                if l.len() < 64 {
                    break;
                }
            }
            let tag = parts.remove(0);
            offsets.push(start);
            stanzas.push(Stanza { tag, args: parts, body });
            if pos > MAX_HEADER {
                return Err(bad("the header is larger than 1 MiB"));
            }
        }
    }

    /// The canonical encoding of a header: the bytes up to `---` (MAC input).
    pub fn encode_without_mac(version: Version, stanzas: &[Stanza]) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut offsets = Vec::new();
        out.extend_from_slice(version.line().as_bytes());
        out.push(b'\n');
        for s in stanzas {
            offsets.push(out.len());
            out.extend_from_slice(b"-> ");
            out.extend_from_slice(s.tag.as_bytes());
            for a in &s.args {
                out.push(b' ');
                out.extend_from_slice(a.as_bytes());
            }
            out.push(b'\n');
            let b64 = encode_b64(&s.body);
            let mut chunks = b64.as_bytes().chunks(64).peekable();
            let mut last_len = 0;
            while let Some(c) = chunks.next() {
                out.extend_from_slice(c);
                out.push(b'\n');
                last_len = c.len();
                if chunks.peek().is_none() {
                    break;
                }
            }
            if last_len == 64 || b64.is_empty() {
                out.push(b'\n');
            }
        }
        out.extend_from_slice(b"---");
        (out, offsets)
    }

    /// Builds and MACs a header for `stanzas` under `file_key`.
    pub fn build(version: Version, stanzas: Vec<Stanza>, file_key: &[u8; 16]) -> Header {
        let (mac_input, offsets) = Header::encode_without_mac(version, &stanzas);
        let mac = compute_mac(file_key, &mac_input);
        let len = mac_input.len() + 1 + 43 + 1;
        Header { version, stanzas, mac_input, stanza_offsets: offsets, mac, len }
    }

    /// The complete header bytes (with the MAC line).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.mac_input.clone();
        out.push(b' ');
        out.extend_from_slice(encode_b64(&self.mac).as_bytes());
        out.push(b'\n');
        out
    }

    /// Checks the MAC in constant time.
    pub fn verify_mac(&self, file_key: &[u8; 16]) -> bool {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &mac_key(file_key));
        hmac::verify(&key, &self.mac_input, &self.mac).is_ok()
    }
}

fn mac_key(file_key: &[u8; 16]) -> [u8; 32] {
    age_core::primitives::hkdf(&[], b"header", file_key)
}

/// HMAC-SHA-256 over the header under HKDF(file key, "header").
pub fn compute_mac(file_key: &[u8; 16], mac_input: &[u8]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &mac_key(file_key));
    let tag = hmac::sign(&key, mac_input);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Fuzz and property entry point: any header that parses re-encodes to the same bytes.
pub fn check_round_trip(data: &[u8]) {
    if let Ok(h) = Header::parse(data) {
        let (enc, offsets) = Header::encode_without_mac(h.version, &h.stanzas);
        assert_eq!(enc, h.mac_input, "a parsed header re-encodes to its own bytes");
        assert_eq!(offsets, h.stanza_offsets);
        assert_eq!(&h.to_bytes()[..], &data[..h.len]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(body_len: usize) -> Header {
        let st = Stanza {
            tag: "X25519".into(),
            args: vec!["abc".into()],
            body: (0..body_len).map(|i| i as u8).collect(),
        };
        Header::build(Version::AgeV1, vec![st], &[7u8; 16])
    }

    #[test]
    fn bodies_of_every_boundary_length_round_trip() {
        for n in [0, 1, 47, 48, 49, 96, 200] {
            let h = sample(n);
            let bytes = h.to_bytes();
            let p = Header::parse(&bytes).unwrap();
            assert_eq!(p, h, "{n}");
            assert!(p.verify_mac(&[7u8; 16]));
            assert!(!p.verify_mac(&[8u8; 16]));
        }
    }

    #[test]
    fn refuses_what_implementations_get_wrong() {
        let good = String::from_utf8(sample(32).to_bytes()).unwrap();
        // Missing final short line after a full 64-column line.
        let full = String::from_utf8(sample(48).to_bytes()).unwrap();
        let no_final = full.replacen("\n\n---", "\n---", 1);
        assert!(Header::parse(no_final.as_bytes()).is_err());
        // Padding, CRLF, no stanza, trailing space on the MAC.
        assert!(Header::parse(good.replace("\n---", "==\n---").as_bytes()).is_err());
        assert!(Header::parse(good.replace('\n', "\r\n").as_bytes()).is_err());
        let mac_line = good.lines().last().unwrap();
        let empty = format!("{AGE_V1}\n{mac_line}\n");
        assert!(Header::parse(empty.as_bytes()).is_err());
        assert!(Header::parse(format!("{}x\n", good.trim_end()).as_bytes()).is_err());
        assert_eq!(Header::parse(&good.as_bytes()[..20]), Err(HeaderError::Incomplete));
    }

    #[test]
    fn non_canonical_base64_is_refused() {
        // "AB" decodes to one byte with non-zero trailing bits.
        assert!(decode_b64(b"AB").is_none());
        assert!(decode_b64(b"AA").is_some());
        assert!(decode_b64(b"AA==").is_none());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            check_round_trip(&data);
        }

        #[test]
        fn mutated_headers_never_panic(pos in 0usize..200, byte in any::<u8>(), n in 0usize..100) {
            let mut bytes = sample(n).to_bytes();
            let p = pos % bytes.len();
            bytes[p] = byte;
            check_round_trip(&bytes);
        }

        #[test]
        fn built_headers_parse_back(args in proptest::collection::vec("[!-~]{1,20}", 0..4),
                                    body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let st = Stanza { tag: "t".into(), args, body };
            let h = Header::build(Version::Aes256Gcm, vec![st], &[1u8; 16]);
            let bytes = h.to_bytes();
            prop_assert_eq!(Header::parse(&bytes).unwrap(), h);
            check_round_trip(&bytes);
        }
    }
}
