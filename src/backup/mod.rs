//! Backups: standard age v1 files and the keyward AES-256-GCM variant, encrypted and
//! decrypted on every core in constant memory, with optional Ed25519 provenance, and
//! the encrypted disaster-recovery export of keyward's own state.
//!
//! `header` parses and MACs the header, `stream` runs the parallel STREAM payload
//! through pipes, `positioned` runs it between two files,
//! `armor` transcodes ASCII armor, `keys` reads recipients, identities and passphrases,
//! `state` exports and restores keyward's state, `command` implements the CLI commands.
//! The server side of a backup holds only public keys (recipients) and, optionally, its
//! signing key; nothing here logs, prints or audits a key, passphrase or plaintext.

pub mod aead;
pub mod armor;
pub mod command;
pub mod header;
pub mod keys;
pub mod positioned;
pub mod state;
pub mod stream;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::Exit;
use header::{Header, HeaderError, Stanza, Version};
use keys::{Identity, PassphraseSource, Recipient, SigningKey};
pub use stream::Cipher;

/// The `[backup]` section of keyward.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// Extra files that the DR export carries besides the state folder and the config
    /// (for example the secret store's machine key when it lives elsewhere). Relative
    /// paths are relative to keyward.toml's folder.
    #[serde(default)]
    pub dr_include: Vec<PathBuf>,
    /// The Ed25519 key that signs backups (`--sign`, `backup state`). Default:
    /// `backup-signing.key` in the state folder.
    pub signing_key: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("cannot {op} {path}: {source}")]
    Io { op: String, path: PathBuf, source: io::Error },
    #[error("the backup header is invalid: {0}; the file is damaged or not a backup")]
    Header(String),
    #[error("invalid ASCII armor: {0}; the file is damaged")]
    Armor(String),
    #[error("{0}")]
    NoMatch(String),
    #[error(
        "the header MAC does not match: the header was tampered with after encryption; do not trust this file"
    )]
    HeaderMac,
    #[error("{what}{}", released_note(*released, to_stdout.as_ref()))]
    Payload { what: String, released: u64, to_stdout: Option<bool> },
    #[error("{0}")]
    Signature(String),
    #[error("{0}")]
    Crypto(String),
    #[error("{0}")]
    State(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

fn released_note(released: u64, to_stdout: Option<&bool>) -> String {
    match to_stdout {
        Some(true) if released > 0 => format!(
            "; {released} bytes were already written to stdout and MUST BE DISCARDED: they are not authenticated as a complete backup"
        ),
        Some(true) => "; nothing was written to stdout".into(),
        Some(false) => "; no output file was written".into(),
        None => String::new(),
    }
}

impl BackupError {
    pub fn exit(&self) -> Exit {
        match self {
            BackupError::Usage(_) | BackupError::Unsupported(_) | BackupError::Config(_) => {
                Exit::Usage
            }
            BackupError::Store(e) => e.exit(),
            BackupError::Audit(e) => e.exit(),
            _ => Exit::Failed,
        }
    }

    pub fn io(op: &str, path: &Path, source: io::Error) -> BackupError {
        BackupError::Io { op: op.to_string(), path: path.to_path_buf(), source }
    }

    /// The outcome class of the C2SP test vectors.
    pub fn category(&self) -> &'static str {
        match self {
            BackupError::Header(_) => "header failure",
            BackupError::Armor(_) => "armor failure",
            BackupError::NoMatch(_) => "no match",
            BackupError::HeaderMac => "HMAC failure",
            BackupError::Payload { .. } => "payload failure",
            BackupError::Unsupported(_) => "unsupported",
            _ => "other",
        }
    }
}

/// Tag of the provenance stanza.
pub const SIG_TAG: &str = "keyward-ed25519";
/// Domain separation for the provenance signature.
pub const SIG_CONTEXT: &[u8] = b"keyward backup header signature v1\0";
const LABEL_AGE: &[u8] = b"payload";
const LABEL_AES: &[u8] = b"keyward/v1-aes-256-gcm/payload";
/// Default scrypt cap on decryption (log2 N), as the Go reference implementation.
pub const DEFAULT_MAX_WORK_FACTOR: u8 = 22;
/// Default scrypt work factor on encryption (about a second on a server core).
pub const DEFAULT_WORK_FACTOR: u8 = 18;

fn random<const N: usize>() -> Result<[u8; N], BackupError> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| BackupError::Crypto("the system random generator failed".into()))?;
    Ok(b)
}

fn payload_key(version: Version, file_key: &[u8; 16], nonce: &[u8; 16]) -> [u8; 32] {
    let label = match version {
        Version::AgeV1 => LABEL_AGE,
        Version::Aes256Gcm => LABEL_AES,
    };
    age_core::primitives::hkdf(nonce, label, file_key)
}

fn cipher_of(v: Version) -> Cipher {
    match v {
        Version::AgeV1 => Cipher::ChaCha20Poly1305,
        Version::Aes256Gcm => Cipher::Aes256Gcm,
    }
}

/// What to encrypt to and how.
pub struct EncryptOptions<'a> {
    pub cipher: Cipher,
    pub recipients: Vec<Recipient>,
    pub armor: bool,
    pub signer: Option<&'a SigningKey>,
}

/// Facts about an encryption or decryption, for output and the audit log.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub format: &'static str,
    pub plaintext_bytes: u64,
    pub stanzas: Vec<String>,
    /// The provenance key of a signed backup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// Whether the signature was checked against a trusted key (`--signer`).
    pub signer_trusted: bool,
}

fn format_name(v: Version) -> &'static str {
    match v {
        Version::AgeV1 => "age-v1",
        Version::Aes256Gcm => "aes-256-gcm",
    }
}

fn to_core(s: &Stanza) -> age_core::format::Stanza {
    age_core::format::Stanza { tag: s.tag.clone(), args: s.args.clone(), body: s.body.clone() }
}

/// Builds the header for `opts` and returns it with the file key.
fn make_header(opts: &EncryptOptions<'_>) -> Result<(Header, [u8; 16]), BackupError> {
    use age::Recipient as _;
    if opts.recipients.is_empty() {
        return Err(BackupError::Usage(
            "no recipient: pass -r age1…, -R FILE or --passphrase".into(),
        ));
    }
    let passphrases = opts.recipients.iter().filter(|r| matches!(r, Recipient::Passphrase(..)));
    if passphrases.count() > 0 && (opts.recipients.len() > 1 || opts.signer.is_some()) {
        return Err(BackupError::Usage(
            "a passphrase backup has exactly one stanza: it cannot also have recipients or a signature (age requires the scrypt stanza to be alone)".into(),
        ));
    }
    let file_key_bytes = zeroize::Zeroizing::new(random::<16>()?);
    let file_key = age_core::format::FileKey::new(Box::new(*file_key_bytes));
    let mut stanzas = Vec::new();
    for r in &opts.recipients {
        let wrapped = match r {
            Recipient::X25519(x) => x.wrap_file_key(&file_key),
            Recipient::Passphrase(p, wf) => {
                let mut s = age::scrypt::Recipient::new(keys::age_secret(p));
                s.set_work_factor(*wf);
                s.wrap_file_key(&file_key)
            }
        }
        .map_err(|e| BackupError::Crypto(format!("cannot wrap the file key: {e}")))?;
        stanzas.extend(wrapped.0.into_iter().map(|s| Stanza {
            tag: s.tag,
            args: s.args,
            body: s.body,
        }));
    }
    let version = match opts.cipher {
        Cipher::ChaCha20Poly1305 => Version::AgeV1,
        Cipher::Aes256Gcm => Version::Aes256Gcm,
    };
    if let Some(key) = opts.signer {
        let (mut signed, _) = Header::encode_without_mac(version, &stanzas);
        signed.truncate(signed.len() - 3); // up to where the signature stanza starts
        let mut msg = SIG_CONTEXT.to_vec();
        msg.extend_from_slice(&signed);
        stanzas.push(Stanza {
            tag: SIG_TAG.into(),
            args: vec![header::encode_b64(&key.public())],
            body: key.sign(&msg),
        });
    }
    let fk: [u8; 16] = *file_key.expose_secret();
    Ok((Header::build(version, stanzas, &fk), fk))
}

/// A new backup's header, its payload nonce and payload key.
struct Sealing {
    header: Header,
    nonce: [u8; 16],
    key: zeroize::Zeroizing<[u8; 32]>,
}

impl Sealing {
    fn new(opts: &EncryptOptions<'_>) -> Result<Sealing, BackupError> {
        let (header, file_key) = make_header(opts)?;
        let file_key = zeroize::Zeroizing::new(file_key);
        let nonce = random::<16>()?;
        let key = zeroize::Zeroizing::new(payload_key(header.version, &file_key, &nonce));
        Ok(Sealing { header, nonce, key })
    }

    fn report(&self, opts: &EncryptOptions<'_>, plaintext_bytes: u64) -> Report {
        let signed_by = opts.signer.map(|k| keys::signer_string(&k.public()));
        report(&self.header, plaintext_bytes, signed_by, false)
    }
}

/// What a run did with a backup whose header is `header`.
fn report(
    header: &Header,
    plaintext_bytes: u64,
    signed_by: Option<String>,
    signer_trusted: bool,
) -> Report {
    Report {
        format: format_name(header.version),
        plaintext_bytes,
        stanzas: header.stanzas.iter().map(|s| s.tag.clone()).collect(),
        signed_by,
        signer_trusted,
    }
}

fn write_error(e: io::Error) -> BackupError {
    BackupError::Io { op: "write".into(), path: PathBuf::from("the output"), source: e }
}

/// Encrypts `input` to `output`. With armor, the output is PEM text.
pub fn encrypt_stream(
    opts: &EncryptOptions<'_>,
    input: &mut (dyn Read + Send),
    output: &mut dyn Write,
    progress: Option<stream::Progress<'_>>,
) -> Result<Report, BackupError> {
    let s = Sealing::new(opts)?;
    let mut run = |out: &mut dyn Write| -> Result<u64, BackupError> {
        out.write_all(&s.header.to_bytes()).map_err(write_error)?;
        out.write_all(&s.nonce).map_err(write_error)?;
        stream::encrypt(cipher_of(s.header.version), &s.key, input, out, progress)
            .map_err(|e| stream_error(e, None))
    };
    let n = if opts.armor {
        let mut w = armor::ArmorWriter::new(output).map_err(write_error)?;
        let n = run(&mut w)?;
        w.finish().map_err(write_error)?;
        n
    } else {
        run(output)?
    };
    Ok(s.report(opts, n))
}

/// Encrypts the file `input` (`size` bytes) to the file `output` on every core (see
/// [`positioned`]); the output is never armored.
pub fn encrypt_file(
    opts: &EncryptOptions<'_>,
    input: &File,
    size: u64,
    output: &File,
    durable: bool,
    progress: Option<stream::Progress<'_>>,
) -> Result<Report, BackupError> {
    use std::os::unix::fs::FileExt;
    let s = Sealing::new(opts)?;
    let mut head = s.header.to_bytes();
    head.extend_from_slice(&s.nonce);
    let chunks = size.div_ceil(stream::CHUNK as u64).max(1);
    positioned::preallocate(output, head.len() as u64 + size + chunks * stream::TAG as u64);
    output.write_all_at(&head, 0).map_err(write_error)?;
    let files = positioned::Files {
        input,
        input_at: 0,
        input_len: size,
        output: Some(output),
        output_at: head.len() as u64,
        durable,
    };
    let n = positioned::encrypt(cipher_of(s.header.version), &s.key, &files, progress)
        .map_err(|e| stream_error(e, None))?;
    Ok(s.report(opts, n))
}

fn stream_error(e: stream::StreamError, to_stdout: Option<bool>) -> BackupError {
    match e {
        stream::StreamError::Payload { what, released } => {
            BackupError::Payload { what, released, to_stdout }
        }
        stream::StreamError::Io { op, source, released } => match armor::armor_error(&source) {
            Some(a) => BackupError::Armor(a),
            None if source.kind() == io::ErrorKind::InvalidData => {
                BackupError::Payload { what: source.to_string(), released, to_stdout }
            }
            None => BackupError::Io { op: op.into(), path: PathBuf::from("the stream"), source },
        },
    }
}

/// How to open a backup.
pub struct DecryptOptions {
    pub identities: Vec<Identity>,
    pub passphrase: Option<PassphraseSource>,
    pub max_work_factor: u8,
    /// A trusted provenance key: the backup must carry a valid signature by it.
    pub signer: Option<[u8; 32]>,
    /// Whether plaintext goes to stdout (for the failure message).
    pub to_stdout: Option<bool>,
}

impl Default for DecryptOptions {
    fn default() -> Self {
        DecryptOptions {
            identities: Vec::new(),
            passphrase: None,
            max_work_factor: DEFAULT_MAX_WORK_FACTOR,
            signer: None,
            to_stdout: None,
        }
    }
}

/// Reads the header lines (through the MAC line) from `r`.
fn read_header(r: &mut dyn BufRead) -> Result<Vec<u8>, BackupError> {
    let mut buf = Vec::new();
    loop {
        let start = buf.len();
        let n = r
            .take((header::MAX_HEADER + 1 - buf.len().min(header::MAX_HEADER)) as u64)
            .read_until(b'\n', &mut buf)
            .map_err(read_error)?;
        if n == 0 || buf.len() > header::MAX_HEADER {
            // Let the parser say what is wrong with what there is.
            return Ok(buf);
        }
        if buf[start..].starts_with(b"---")
            || (start == 0 && !buf.starts_with(b"age") && !buf.starts_with(b"keyward"))
        {
            return Ok(buf);
        }
    }
}

fn read_error(e: io::Error) -> BackupError {
    match armor::armor_error(&e) {
        Some(a) => BackupError::Armor(a),
        None => BackupError::Io { op: "read".into(), path: PathBuf::from("the input"), source: e },
    }
}

/// An opened backup: header checked, file key unwrapped, ready for the payload.
pub struct Opened {
    pub header: Header,
    payload_key: zeroize::Zeroizing<[u8; 32]>,
    /// The payload: what the header reader had buffered, then the rest of the input.
    input: Box<dyn Read + Send>,
    /// Where the payload starts in the input, when the input is not armored.
    payload_at: Option<u64>,
    pub signed_by: Option<String>,
    pub signer_trusted: bool,
}

/// Opens a backup: armor detection, header, recipients, MAC, provenance, nonce.
pub fn open(input: Box<dyn Read + Send>, opts: &DecryptOptions) -> Result<Opened, BackupError> {
    let mut raw: BufReader<Box<dyn Read + Send>> = BufReader::with_capacity(64 << 10, input);
    let armored = armor::detect(&mut raw).map_err(read_error)?;
    let mut input: BufReader<Box<dyn Read + Send>> = if armored {
        BufReader::with_capacity(64 << 10, Box::new(armor::ArmorReader::new(raw)))
    } else {
        raw
    };
    let bytes = read_header(&mut input)?;
    let header = Header::parse(&bytes).map_err(|e| match e {
        HeaderError::Incomplete => {
            BackupError::Header("the input ends inside the header (truncated)".into())
        }
        HeaderError::Version(v) => BackupError::Header(format!(
            "unknown version line {v:?} (expected {:?} or {:?})",
            header::AGE_V1,
            header::KEYWARD_AES
        )),
        HeaderError::Invalid(m) => BackupError::Header(m),
    })?;
    let sig_index = check_signature_stanza(&header)?;
    let file_key = zeroize::Zeroizing::new(unwrap(&header, opts)?);
    if !header.verify_mac(&file_key) {
        return Err(BackupError::HeaderMac);
    }
    let (signed_by, signer_trusted) = check_signature(&header, sig_index, opts.signer)?;
    let mut nonce = [0u8; 16];
    input.read_exact(&mut nonce).map_err(|e| match armor::armor_error(&e) {
        Some(a) => BackupError::Armor(a),
        None => BackupError::Header("the file ends before the payload nonce (truncated)".into()),
    })?;
    let payload_key = zeroize::Zeroizing::new(payload_key(header.version, &file_key, &nonce));
    // Hand the payload reader the buffered bytes, then the input itself, so that payload
    // reads go straight to the file in large blocks.
    let buffered = std::io::Cursor::new(input.buffer().to_vec());
    let input: Box<dyn Read + Send> = Box::new(buffered.chain(input.into_inner()));
    let payload_at = (!armored).then_some(bytes.len() as u64 + 16);
    Ok(Opened { header, payload_key, input, payload_at, signed_by, signer_trusted })
}

impl Opened {
    /// Decrypts the payload to `output`, in order; plaintext that was written before an
    /// error is counted in the error.
    pub fn decrypt(
        mut self,
        output: &mut dyn Write,
        to_stdout: Option<bool>,
        progress: Option<stream::Progress<'_>>,
    ) -> Result<Report, BackupError> {
        let n = stream::decrypt(
            cipher_of(self.header.version),
            &self.payload_key,
            &mut self.input,
            output,
            progress,
        )
        .map_err(|e| stream_error(e, to_stdout))?;
        Ok(self.report(n))
    }

    /// Decrypts the payload of `input` (the file this was opened from, `size` bytes
    /// long) into `output` on every core, or only authenticates it when `output` is
    /// `None`; `durable`: the caller fsyncs the output. `None` when the input is
    /// armored: then use [`Opened::decrypt`].
    pub fn decrypt_file(
        &self,
        input: &File,
        size: u64,
        output: Option<&File>,
        durable: bool,
        progress: Option<stream::Progress<'_>>,
    ) -> Option<Result<Report, BackupError>> {
        let at = self.payload_at?;
        let len = size.saturating_sub(at);
        if let Some(out) = output {
            // The plaintext's size, when the payload is shaped right (else it fails).
            positioned::preallocate(out, positioned::plaintext_len(len));
        }
        let files = positioned::Files {
            input,
            input_at: at,
            input_len: len,
            output,
            output_at: 0,
            durable,
        };
        let n = positioned::decrypt(
            cipher_of(self.header.version),
            &self.payload_key,
            &files,
            progress,
        );
        Some(n.map(|n| self.report(n)).map_err(|e| stream_error(e, output.map(|_| false))))
    }

    fn report(&self, plaintext_bytes: u64) -> Report {
        report(&self.header, plaintext_bytes, self.signed_by.clone(), self.signer_trusted)
    }
}

/// Decrypts `input` to `output` with `opts`.
pub fn decrypt_stream(
    input: Box<dyn Read + Send>,
    output: &mut dyn Write,
    opts: &DecryptOptions,
    progress: Option<stream::Progress<'_>>,
) -> Result<Report, BackupError> {
    open(input, opts)?.decrypt(output, opts.to_stdout, progress)
}

fn check_signature_stanza(h: &Header) -> Result<Option<usize>, BackupError> {
    let sigs: Vec<usize> =
        h.stanzas.iter().enumerate().filter(|(_, s)| s.tag == SIG_TAG).map(|(i, _)| i).collect();
    match sigs.as_slice() {
        [] => Ok(None),
        [i] if *i + 1 == h.stanzas.len() && *i > 0 => {
            let s = &h.stanzas[*i];
            let ok = s.args.len() == 1
                && header::decode_b64(s.args[0].as_bytes()).is_some_and(|k| k.len() == 32)
                && s.body.len() == 64;
            if ok {
                Ok(Some(*i))
            } else {
                Err(BackupError::Header("malformed provenance signature stanza".into()))
            }
        }
        _ => Err(BackupError::Header(
            "a provenance signature stanza must be the single last stanza".into(),
        )),
    }
}

fn check_signature(
    h: &Header,
    index: Option<usize>,
    trusted: Option<[u8; 32]>,
) -> Result<(Option<String>, bool), BackupError> {
    let Some(i) = index else {
        return match trusted {
            Some(t) => Err(BackupError::Signature(format!(
                "this backup is not signed, but a signature by {} is required: it may be forged by anyone who knows the public recipient; do not restore it",
                keys::signer_string(&t)
            ))),
            None => Ok((None, false)),
        };
    };
    let s = &h.stanzas[i];
    let key: [u8; 32] = header::decode_b64(s.args[0].as_bytes())
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| BackupError::Header("malformed provenance signature stanza".into()))?;
    let mut msg = SIG_CONTEXT.to_vec();
    msg.extend_from_slice(&h.mac_input[..h.stanza_offsets[i]]);
    let valid = keys::verify_signature(&key, &msg, &s.body);
    let name = keys::signer_string(&key);
    if !valid {
        return Err(BackupError::Signature(format!(
            "the provenance signature (by {name}) does not verify: the header was forged or altered; do not restore it"
        )));
    }
    match trusted {
        Some(t) if t != key => Err(BackupError::Signature(format!(
            "this backup is signed by {name}, not by the trusted key {}: it is not from this server; do not restore it",
            keys::signer_string(&t)
        ))),
        Some(_) => Ok((Some(name), true)),
        None => Ok((Some(name), false)),
    }
}

/// Finds the file key: scrypt alone, X25519 identities, passphrase on demand.
fn unwrap(h: &Header, opts: &DecryptOptions) -> Result<[u8; 16], BackupError> {
    use age::Identity as _;
    let scrypt = h.stanzas.iter().filter(|s| s.tag == "scrypt").count();
    if scrypt > 0 && h.stanzas.len() != 1 {
        return Err(BackupError::Header(
            "a passphrase (scrypt) stanza must be the only stanza of a file".into(),
        ));
    }
    let stanzas: Vec<age_core::format::Stanza> = h.stanzas.iter().map(to_core).collect();
    let found = |r: Option<Result<age_core::format::FileKey, age::DecryptError>>| -> Result<Option<[u8; 16]>, BackupError> {
        match r {
            None => Ok(None),
            Some(Ok(k)) => Ok(Some(*k.expose_secret())),
            Some(Err(age::DecryptError::ExcessiveWork { required, .. })) => Err(BackupError::Header(format!(
                "the passphrase stanza asks for scrypt work factor {required}, above the cap {}: if you trust this file, pass --max-work-factor {required}",
                opts.max_work_factor
            ))),
            Some(Err(age::DecryptError::DecryptionFailed | age::DecryptError::KeyDecryptionFailed)) => {
                Err(BackupError::NoMatch("the passphrase is wrong".into()))
            }
            Some(Err(e)) => Err(BackupError::Header(format!("a recipient stanza is malformed ({e})"))),
        }
    };
    let mut passphrases: Vec<&crate::secret::SecretString> = opts
        .identities
        .iter()
        .filter_map(|i| match i {
            Identity::Passphrase(p) => Some(p),
            Identity::X25519(_) => None,
        })
        .collect();
    if scrypt == 1 {
        let asked;
        if passphrases.is_empty() {
            let Some(src) = &opts.passphrase else {
                return Err(BackupError::NoMatch(
                    "this backup is protected by a passphrase: pass --passphrase-file FILE, set $KEYWARD_PASSPHRASE, or run on a terminal".into(),
                ));
            };
            asked = src.read(false)?;
            passphrases.push(&asked);
        }
        let mut last_err = None;
        for p in passphrases {
            let mut id = age::scrypt::Identity::new(keys::age_secret(p));
            id.set_max_work_factor(opts.max_work_factor);
            match found(id.unwrap_stanza(&stanzas[0])) {
                Ok(Some(k)) => return Ok(k),
                Ok(None) => {}
                Err(e @ BackupError::NoMatch(_)) => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        return Err(last_err.unwrap_or_else(|| BackupError::NoMatch("no passphrase".into())));
    }
    let mut tried = 0;
    for s in &stanzas {
        for id in &opts.identities {
            if let Identity::X25519(x) = id {
                tried += 1;
                if let Some(k) = found(x.unwrap_stanza(s))? {
                    return Ok(k);
                }
            }
        }
    }
    let kinds: Vec<&str> = h.stanzas.iter().map(|s| s.tag.as_str()).collect();
    Err(BackupError::NoMatch(if tried == 0 && opts.identities.is_empty() {
        format!(
            "no identity given: this backup is for {} recipient stanza(s) ({}); pass -i IDENTITY_FILE",
            kinds.len(),
            kinds.join(", ")
        )
    } else {
        format!(
            "none of the identities given matches a recipient of this backup ({} stanza(s): {}); pass the identity it was encrypted to (-i FILE)",
            kinds.len(),
            kinds.join(", ")
        )
    }))
}
