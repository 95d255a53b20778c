//! The C2SP CCTV age test vectors (`tests/data/age-cctv`): every vector's
//! outcome class and the SHA-256 of the plaintext released must match. Post-quantum
//! identities are answered as unsupported, with a clear error.

use std::io::Read;
use std::path::PathBuf;

use keyward::backup::keys::{Identity, parse_identities};
use keyward::backup::{DecryptOptions, decrypt_stream};
use keyward::secret::SecretString;

fn vectors_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/age-cctv");
    assert!(
        dir.join("README.txt").is_file(),
        "the age CCTV vectors are missing: expected them at {} (part of the repository: restore them with git checkout)",
        dir.display()
    );
    dir
}

#[derive(Clone)]
struct Vector {
    name: String,
    expect: String,
    payload: Option<String>,
    identities: Vec<String>,
    passphrases: Vec<String>,
    body: Vec<u8>,
}

/// Every vector file, sorted by name.
fn vector_paths() -> Vec<PathBuf> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(vectors_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "README.txt")
        .collect();
    names.sort();
    names
}

fn load(path: &std::path::Path) -> Vector {
    let raw = std::fs::read(path).unwrap();
    let split = raw.windows(2).position(|w| w == b"\n\n").expect("header/body separator");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut v = Vector {
        name: path.file_name().unwrap().to_string_lossy().into_owned(),
        expect: String::new(),
        payload: None,
        identities: Vec::new(),
        passphrases: Vec::new(),
        body: raw[split + 2..].to_vec(),
    };
    let mut compressed = false;
    for line in head.lines() {
        let (k, val) = line.split_once(": ").expect("key: value");
        match k {
            "expect" => v.expect = val.to_string(),
            "payload" => v.payload = Some(val.to_string()),
            "identity" => v.identities.push(val.to_string()),
            "passphrase" => v.passphrases.push(val.to_string()),
            "compressed" => compressed = val == "zlib",
            _ => {}
        }
    }
    if compressed {
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(&v.body[..]).read_to_end(&mut out).unwrap();
        v.body = out;
    }
    v
}

fn sha256(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b))
}

/// Runs one vector; returns the outcome class and the released plaintext.
fn run(v: &Vector) -> (String, Vec<u8>, String) {
    let mut ids: Vec<Identity> = Vec::new();
    if !v.identities.is_empty() {
        match parse_identities(&v.identities.join("\n"), &v.name) {
            Ok(i) => ids.extend(i),
            Err(e) => return (e.category().to_string(), Vec::new(), e.to_string()),
        }
    }
    ids.extend(v.passphrases.iter().map(|p| Identity::Passphrase(SecretString::new(p.clone()))));
    let opts = DecryptOptions { identities: ids, ..DecryptOptions::default() };
    let mut out = Vec::new();
    match decrypt_stream(Box::new(std::io::Cursor::new(v.body.clone())), &mut out, &opts, None) {
        Ok(_) => ("success".into(), out, String::new()),
        Err(e) => (e.category().to_string(), out, e.to_string()),
    }
}

#[test]
fn every_cctv_vector() {
    let names = vector_paths();
    assert_eq!(names.len(), 143, "the CCTV folder should hold 143 vectors");
    let mut failures = Vec::new();
    let (mut passed, mut unsupported) = (0, 0);
    for path in &names {
        let v = load(path);
        let pq = v.identities.iter().any(|i| i.starts_with("AGE-SECRET-KEY-PQ-"));
        let (got, released, msg) = run(&v);
        if pq {
            if got == "unsupported" && msg.contains("post-quantum") {
                unsupported += 1;
            } else {
                failures.push(format!(
                    "{}: PQ identity not answered as unsupported: {got} {msg}",
                    v.name
                ));
            }
            continue;
        }
        if got != v.expect {
            failures.push(format!("{}: expected {:?}, got {got:?} ({msg})", v.name, v.expect));
            continue;
        }
        if let Some(p) = &v.payload {
            if &sha256(&released) != p {
                failures.push(format!(
                    "{}: released plaintext ({} bytes) does not hash to the payload",
                    v.name,
                    released.len()
                ));
                continue;
            }
        } else if v.expect != "success" && !released.is_empty() && v.expect != "payload failure" {
            failures.push(format!("{}: released plaintext on {}", v.name, v.expect));
            continue;
        }
        passed += 1;
    }
    assert!(failures.is_empty(), "{} vector(s) failed:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(unsupported, 19, "post-quantum vectors");
    assert_eq!(passed, 124);
}

/// Runs one vector from a file to a file, the way `backup decrypt -o` does (every core
/// at its own offsets); armored vectors take the streaming path there. Returns the
/// outcome class and, on success, the plaintext.
fn run_file_to_file(v: &Vector) -> (String, Vec<u8>) {
    use std::io::{Seek, Write};
    let mut ids: Vec<Identity> = Vec::new();
    if !v.identities.is_empty() {
        match parse_identities(&v.identities.join("\n"), &v.name) {
            Ok(i) => ids.extend(i),
            Err(e) => return (e.category().to_string(), Vec::new()),
        }
    }
    ids.extend(v.passphrases.iter().map(|p| Identity::Passphrase(SecretString::new(p.clone()))));
    let opts = DecryptOptions { identities: ids, ..DecryptOptions::default() };
    let mut input = tempfile::tempfile().unwrap();
    input.write_all(&v.body).unwrap();
    input.rewind().unwrap();
    let mut output = tempfile::tempfile().unwrap();
    let reader = Box::new(input.try_clone().unwrap());
    let result = keyward::backup::open(reader, &opts).and_then(|opened| {
        match opened.decrypt_file(&input, v.body.len() as u64, Some(&output), false, None) {
            Some(r) => r,
            None => opened.decrypt(&mut output, Some(false), None),
        }
    });
    match result {
        Ok(_) => {
            let mut out = Vec::new();
            output.rewind().unwrap();
            output.read_to_end(&mut out).unwrap();
            ("success".into(), out)
        }
        Err(e) => (e.category().to_string(), Vec::new()),
    }
}

/// Every vector again from a file to a file: the same outcome, and on success the same
/// plaintext, as the streaming path.
#[test]
fn every_cctv_vector_file_to_file() {
    let mut checked = 0;
    for path in vector_paths() {
        let v = load(&path);
        if v.identities.iter().any(|i| i.starts_with("AGE-SECRET-KEY-PQ-")) {
            continue;
        }
        let (got, plain) = run_file_to_file(&v);
        assert_eq!(got, v.expect, "{}", v.name);
        if got == "success" {
            assert_eq!(Some(sha256(&plain)), v.payload, "{}", v.name);
        }
        checked += 1;
    }
    assert_eq!(checked, 124);
}

/// The AES-256-GCM variant built by hand from docs/backup-format.md (same stanzas and
/// file key as each binary success vector, the variant's version line, MAC and payload
/// label) decrypts to the same plaintext.
#[test]
fn success_vectors_rebuilt_as_the_aes_variant() {
    use keyward::backup::header::{Header, KEYWARD_AES, Version};
    use keyward::backup::stream::{Cipher, encrypt};
    let mut rebuilt = 0;
    for path in vector_paths() {
        let v = load(&path);
        let raw = std::fs::read_to_string(&path).unwrap_or_default();
        if v.expect != "success"
            || raw.contains("armored: yes")
            || v.identities.iter().any(|i| i.starts_with("AGE-SECRET-KEY-PQ-"))
        {
            continue;
        }
        let (_, plain, _) = run(&v);
        let fk: [u8; 16] =
            hex::decode("59454c4c4f57205355424d4152494e45").unwrap().try_into().unwrap();
        let h = Header::parse(&v.body).unwrap();
        let aes = Header::build(Version::Aes256Gcm, h.stanzas.clone(), &fk);
        let mut file = aes.to_bytes();
        assert!(file.starts_with(format!("{KEYWARD_AES}\n").as_bytes()));
        let nonce = [0x42u8; 16];
        file.extend_from_slice(&nonce);
        let key = age_core::primitives::hkdf(&nonce, b"keyward/v1-aes-256-gcm/payload", &fk);
        encrypt(Cipher::Aes256Gcm, &key, &mut &plain[..], &mut file, None).unwrap();
        let variant = Vector { body: file, ..v };
        let (got, out, msg) = run(&variant);
        assert_eq!(got, "success", "{}: {msg}", variant.name);
        assert!(out == plain, "{}", variant.name);
        rebuilt += 1;
    }
    assert!(rebuilt >= 15, "only {rebuilt} vectors rebuilt");
}

/// The rules implementations commonly get wrong, by name, with the message an operator
/// sees.
#[test]
fn the_rules_implementations_get_wrong() {
    let dir = vectors_dir();
    let cases: &[(&str, &str, &str)] = &[
        ("stream_last_chunk_full", "success", ""),
        ("stream_empty_payload", "success", ""),
        ("stream_trailing_garbage_short", "payload failure", "data follows it"),
        ("stream_trailing_garbage_long", "payload failure", "data follows it"),
        ("stream_no_final", "payload failure", "without a final chunk"),
        ("stream_last_chunk_empty", "payload failure", "empty after data"),
        ("stream_two_final_chunks", "payload failure", "data follows it"),
        ("stanza_not_canonical", "header failure", "canonical"),
        ("x25519_not_canonical_share", "header failure", "malformed"),
        ("armor_not_canonical", "armor failure", "canonical"),
        ("x25519_low_order", "header failure", "malformed"),
        ("scrypt_and_x25519", "header failure", "only stanza"),
        ("scrypt_double", "header failure", "only stanza"),
        ("scrypt_work_factor_23", "header failure", "--max-work-factor 23"),
        ("stanza_missing_final_line", "header failure", ""),
        ("hmac_bad", "HMAC failure", "tampered"),
    ];
    for (name, expect, message) in cases {
        let v = load(&dir.join(name));
        assert_eq!(&v.expect, expect, "{name}: the vector's own expectation");
        let (got, _, msg) = run(&v);
        assert_eq!(&got, expect, "{name}: {msg}");
        assert!(msg.contains(message), "{name}: {msg:?} should mention {message:?}");
    }
}
