//! The `keyward backup …` commands: files and stdin/stdout, atomic output files,
//! progress on a terminal, output documents and audit records.
//!
//! Decrypting to `-o FILE` writes a temp file beside FILE and renames it only after the
//! final chunk authenticated, so a failure leaves nothing at FILE. These commands work
//! without a keyward configuration (like age); when one is found they append an audit
//! record naming the file, never a key or passphrase.

use std::fs::File;
use std::io::{self, IsTerminal, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::keys::{self, Identity, PassphraseSource, Recipient, SigningKey};
use super::{BackupError, Cipher, DecryptOptions, EncryptOptions, Report};
use crate::audit::{Object, Outcome};
use crate::output::{Format, Human};
use crate::{Context, Error, Exit};

/// What the CLI asked for, in library types.
pub struct Common {
    pub format: Format,
    pub verbosity: i8,
    /// The configuration, when one is found (for auditing and the signing key).
    pub context: Option<Context>,
}

impl Common {
    fn audit(&self, action: &str, name: &str, outcome: Outcome, detail: Option<&str>) {
        if let Some(ctx) = &self.context
            && let Err(e) = ctx.audit.append(action, Object::new("backup", name), outcome, detail)
        {
            crate::warn!("could not write the audit record: {e}");
        }
    }
}

/// The progress bar: on stderr, only when it is a terminal and the size is known.
struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    fn new(size: Option<u64>, verbosity: i8) -> Bar {
        let Some(size) = size else { return Bar(None) };
        if verbosity < 0 || !io::stderr().is_terminal() || size < 4 << 20 {
            return Bar(None);
        }
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(size),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style);
        }
        Bar(Some(bar))
    }

    fn tick(&self, consumed: u64) {
        if let Some(b) = &self.0 {
            b.set_position(consumed);
        }
    }

    fn shown(&self) -> bool {
        self.0.is_some()
    }

    fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// An opened input: the reader, its size when known, and its name for messages.
type OpenInput = (Box<dyn Read + Send>, Option<u64>, String);

/// A regular file and its size: an input that every core can read at its own offsets.
type Positioned = Option<(File, u64)>;

/// Input: a file (with its size) or stdin; and for a regular file, a second handle
/// for positioned reads.
fn open_input(input: &Option<PathBuf>) -> Result<(OpenInput, Positioned), BackupError> {
    match input {
        Some(p) if p.as_os_str() != "-" => {
            let f = File::open(p).map_err(|e| BackupError::io("open", p, e))?;
            let size = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
            let positioned = match size {
                Some(size) => {
                    Some((f.try_clone().map_err(|e| BackupError::io("open", p, e))?, size))
                }
                None => None,
            };
            Ok(((Box::new(f), size, p.display().to_string()), positioned))
        }
        _ => {
            // A duplicate of fd 0 as a File: large reads, no std buffering in between.
            use std::os::fd::AsFd;
            let f = io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| BackupError::io("use", Path::new("stdin"), e))?;
            Ok(((Box::new(File::from(f)), None, "stdin".into()), None))
        }
    }
}

/// stdout as a File (a duplicate of fd 1): large writes straight to the descriptor,
/// without the line buffering of `io::Stdout`.
fn stdout_file() -> Result<File, BackupError> {
    use std::os::fd::AsFd;
    io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(File::from)
        .map_err(|e| BackupError::io("use", Path::new("stdout"), e))
}

/// An output file written beside its final path and renamed into place on success.
struct AtomicOut {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
}

impl AtomicOut {
    fn create(path: &Path) -> Result<AtomicOut, BackupError> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(&dir)
            .map_err(|e| BackupError::io("create a temp file in", &dir, e))?;
        Ok(AtomicOut { tmp, path: path.to_path_buf() })
    }

    /// Renames into place; with `fsync`, the data and the rename are on disk first.
    fn commit(self, fsync: bool) -> Result<(), BackupError> {
        if fsync {
            self.tmp.as_file().sync_all().map_err(|e| BackupError::io("fsync", &self.path, e))?;
        }
        let path = self.path.clone();
        self.tmp
            .persist(&path)
            .map_err(|e| BackupError::io("rename into place", &path, e.error))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if fsync {
            crate::store::fsync_dir(&dir)?;
        }
        Ok(())
    }
}

/// `keyward backup keygen`.
pub fn keygen(common: &Common, output: Option<&Path>) -> Result<Exit, Error> {
    let (text, recipient) = keys::generate();
    #[derive(Serialize)]
    struct Made {
        recipient: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        file: Option<PathBuf>,
    }
    impl Human for Made {
        fn human(&self, out: &mut String) {
            out.push_str(&self.recipient);
            out.push('\n');
        }
    }
    match output {
        Some(path) => {
            if path.exists() {
                return Err(BackupError::Usage(format!(
                    "{} already exists; keygen never overwrites an identity: choose another -o",
                    path.display()
                ))
                .into());
            }
            crate::store::atomic_write(
                path,
                text.expose().as_bytes(),
                crate::store::FileMode::PRIVATE,
            )
            .map_err(BackupError::from)?;
            common.audit("keygen", &path.display().to_string(), Outcome::Ok, None);
            crate::output::emit(common.format, &Made { recipient, file: Some(path.to_path_buf()) })
        }
        None => {
            if common.format == Format::Json {
                return Err(BackupError::Usage(
                    "with --format json pass -o FILE: a secret identity is never part of a JSON document".into(),
                )
                .into());
            }
            if io::stdout().is_terminal() {
                return Err(BackupError::Usage(
                    "refusing to print a secret identity on the terminal: pass -o FILE (or redirect stdout)".into(),
                )
                .into());
            }
            crate::output::write_stdout(text.expose().as_bytes())?;
            eprintln!("public key: {recipient}");
            Ok(Exit::Ok)
        }
    }
}

pub struct EncryptArgs {
    pub recipients: Vec<String>,
    pub recipients_files: Vec<PathBuf>,
    pub passphrase: bool,
    pub passphrase_file: Option<PathBuf>,
    pub work_factor: u8,
    pub cipher: Cipher,
    pub armor: bool,
    pub sign: bool,
    /// fsync the output file before renaming it into place.
    pub fsync: bool,
    pub output: Option<PathBuf>,
    pub input: Option<PathBuf>,
}

#[derive(Serialize)]
struct Done {
    command: &'static str,
    #[serde(flatten)]
    report: Report,
    input: String,
    output: String,
}

impl Human for Done {
    fn human(&self, _out: &mut String) {}
}

/// Loads (creating on first use) the server's signing key.
pub fn signing_key(ctx: &Context, create: bool) -> Result<(SigningKey, PathBuf), BackupError> {
    let path = match ctx.config.file.backup.as_ref().and_then(|b| b.signing_key.as_ref()) {
        Some(p) => ctx.config.resolve(p),
        None => ctx.store.path("backup-signing.key"),
    };
    let (key, created) = SigningKey::load_or_create(&path, create)?;
    if created {
        ctx.audit.append(
            "create-signing-key",
            Object::new("backup-signing-key", path.display().to_string())
                .fingerprint(keys::signer_string(&key.public())),
            Outcome::Ok,
            None,
        )?;
        crate::info!("created the backup signing key {}", path.display());
    }
    Ok((key, path))
}

/// `keyward backup encrypt`.
pub fn encrypt(common: &Common, a: EncryptArgs) -> Result<Exit, Error> {
    let mut recipients: Vec<Recipient> = Vec::new();
    for r in &a.recipients {
        recipients.push(keys::parse_recipient(r, "-r")?);
    }
    for f in &a.recipients_files {
        recipients.extend(keys::recipients_file(f)?);
    }
    if a.passphrase || a.passphrase_file.is_some() {
        if !recipients.is_empty() {
            return Err(BackupError::Usage(
                "--passphrase cannot be combined with -r/-R: age requires a passphrase stanza to be alone".into(),
            )
            .into());
        }
        // Above the decryption cap of the reference implementations, stock age (and
        // keyward without --max-work-factor) would refuse the file.
        if !(10..=super::DEFAULT_MAX_WORK_FACTOR).contains(&a.work_factor) {
            return Err(BackupError::Usage(format!(
                "--work-factor {} is out of range (10–{}): above it, age refuses to decrypt the file",
                a.work_factor,
                super::DEFAULT_MAX_WORK_FACTOR
            ))
            .into());
        }
        let src = PassphraseSource { file: a.passphrase_file.clone() };
        recipients.push(Recipient::Passphrase(src.read(true)?, a.work_factor));
    }
    let signer = if a.sign {
        let ctx = common.context.as_ref().ok_or_else(|| {
            BackupError::Usage(
                "--sign needs keyward's configuration (the server's signing key lives in its state): pass -c keyward.toml".into(),
            )
        })?;
        Some(signing_key(ctx, true)?.0)
    } else {
        None
    };
    let to_terminal = a.output.is_none() && io::stdout().is_terminal();
    if to_terminal && !a.armor {
        return Err(BackupError::Usage(
            "refusing to write a binary backup to the terminal: pass -o FILE, redirect stdout, or use -a".into(),
        )
        .into());
    }
    let ((mut input, size, input_name), positioned) = open_input(&a.input)?;
    let bar = Bar::new(size, common.verbosity);
    let tick = |n: u64| bar.tick(n);
    let progress: Option<super::stream::Progress<'_>> = bar.shown().then_some(&tick);
    let opts =
        EncryptOptions { cipher: a.cipher, recipients, armor: a.armor, signer: signer.as_ref() };
    let output_name = a.output.as_ref().map_or("stdout".to_string(), |p| p.display().to_string());
    let result = match &a.output {
        Some(path) => {
            let mut out = AtomicOut::create(path)?;
            let r = match &positioned {
                // File to file: every core reads, seals and writes at its own offsets.
                Some((file, size)) if !a.armor => {
                    super::encrypt_file(&opts, file, *size, out.tmp.as_file(), a.fsync, progress)
                }
                _ => super::encrypt_stream(&opts, &mut input, out.tmp.as_file_mut(), progress),
            };
            match r {
                Ok(rep) => {
                    out.commit(a.fsync)?;
                    Ok(rep)
                }
                Err(e) => Err(e),
            }
        }
        None => {
            let mut out = stdout_file()?;
            super::encrypt_stream(&opts, &mut input, &mut out, progress)
        }
    };
    bar.finish();
    match result {
        Ok(report) => {
            common.audit(
                "encrypt",
                &output_name,
                Outcome::Ok,
                Some(&format!("{} to {} stanza(s)", report.format, report.stanzas.len())),
            );
            crate::info!(
                "encrypted {} bytes ({}) to {}",
                report.plaintext_bytes,
                report.format,
                output_name
            );
            emit_if_file(
                common,
                &a.output,
                Done { command: "encrypt", report, input: input_name, output: output_name },
            )
        }
        Err(e) => {
            common.audit("encrypt", &output_name, Outcome::Failed, Some(&e.to_string()));
            Err(e.into())
        }
    }
}

/// The JSON document goes to stdout only when stdout does not carry the data.
fn emit_if_file(common: &Common, output: &Option<PathBuf>, done: Done) -> Result<Exit, Error> {
    if output.is_some() && common.format == Format::Json {
        crate::output::emit(common.format, &done)
    } else {
        Ok(Exit::Ok)
    }
}

pub struct DecryptArgs {
    pub identities: Vec<PathBuf>,
    pub passphrase_file: Option<PathBuf>,
    pub max_work_factor: u8,
    pub signer: Option<String>,
    /// fsync the output file before renaming it into place.
    pub fsync: bool,
    pub output: Option<PathBuf>,
    pub input: Option<PathBuf>,
}

fn decrypt_options(
    a: &DecryptArgs,
    to_stdout: Option<bool>,
) -> Result<DecryptOptions, BackupError> {
    let mut identities: Vec<Identity> = Vec::new();
    for f in &a.identities {
        identities.extend(keys::identities_file(f)?);
    }
    let signer = a.signer.as_deref().map(keys::parse_signer).transpose()?;
    Ok(DecryptOptions {
        identities,
        passphrase: Some(PassphraseSource { file: a.passphrase_file.clone() }),
        max_work_factor: a.max_work_factor,
        signer,
        to_stdout,
    })
}

/// `keyward backup decrypt`.
pub fn decrypt(common: &Common, a: DecryptArgs) -> Result<Exit, Error> {
    let opts = decrypt_options(&a, Some(a.output.is_none()))?;
    let ((input, size, input_name), positioned) = open_input(&a.input)?;
    let output_name = a.output.as_ref().map_or("stdout".to_string(), |p| p.display().to_string());
    let bar = Bar::new(size, common.verbosity);
    let tick = |n: u64| bar.tick(n);
    let progress: Option<super::stream::Progress<'_>> = bar.shown().then_some(&tick);
    let result = (|| {
        let opened = super::open(input, &opts)?;
        match &a.output {
            Some(path) => {
                let mut out = AtomicOut::create(path)?;
                let positioned = positioned.as_ref().and_then(|(file, size)| {
                    opened.decrypt_file(file, *size, Some(out.tmp.as_file()), a.fsync, progress)
                });
                let rep = match positioned {
                    Some(r) => r?,
                    None => opened.decrypt(out.tmp.as_file_mut(), Some(false), progress)?,
                };
                out.commit(a.fsync)?;
                Ok(rep)
            }
            None => {
                let mut out = stdout_file()?;
                opened.decrypt(&mut out, Some(true), progress)
            }
        }
    })();
    bar.finish();
    match result {
        Ok(report) => {
            common.audit("decrypt", &input_name, Outcome::Ok, Some(report.format));
            if let Some(s) = &report.signed_by
                && !report.signer_trusted
            {
                crate::info!("signed by {s} (pass --signer to require it)");
            }
            emit_if_file(
                common,
                &a.output,
                Done { command: "decrypt", report, input: input_name, output: output_name },
            )
        }
        Err(e) => {
            common.audit("decrypt", &input_name, Outcome::Failed, Some(e.category()));
            Err(e.into())
        }
    }
}

#[derive(Serialize)]
struct Verified {
    ok: bool,
    input: String,
    #[serde(flatten)]
    report: Report,
}

impl Human for Verified {
    fn human(&self, out: &mut String) {
        out.push_str(&format!(
            "{}: authentic {} backup, {} bytes of plaintext",
            self.input, self.report.format, self.report.plaintext_bytes
        ));
        match (&self.report.signed_by, self.report.signer_trusted) {
            (Some(s), true) => out.push_str(&format!(", signed by the trusted key {s}\n")),
            (Some(s), false) => out.push_str(&format!(
                ", signed by {s} (not checked against a trusted key: pass --signer)\n"
            )),
            (None, _) => out.push_str(", unsigned\n"),
        }
    }
}

/// `keyward backup verify`: a full authentication pass, no plaintext output.
pub fn verify(common: &Common, a: DecryptArgs) -> Result<Exit, Error> {
    let opts = decrypt_options(&a, None)?;
    let ((input, size, input_name), positioned) = open_input(&a.input)?;
    let bar = Bar::new(size, common.verbosity);
    let tick = |n: u64| bar.tick(n);
    let progress: Option<super::stream::Progress<'_>> = bar.shown().then_some(&tick);
    let result = super::open(input, &opts).and_then(|opened| {
        match positioned
            .as_ref()
            .and_then(|(f, size)| opened.decrypt_file(f, *size, None, false, progress))
        {
            Some(r) => r,
            None => opened.decrypt(&mut io::sink(), None, progress),
        }
    });
    bar.finish();
    match result {
        Ok(report) => {
            common.audit("verify", &input_name, Outcome::Ok, Some(report.format));
            crate::output::emit(common.format, &Verified { ok: true, input: input_name, report })
        }
        Err(e) => {
            common.audit("verify", &input_name, Outcome::Failed, Some(e.category()));
            Err(e.into())
        }
    }
}

/// `keyward backup signer`: the server's provenance public key.
pub fn signer(ctx: &Context) -> Result<Exit, Error> {
    #[derive(Serialize)]
    struct Signer {
        signer: String,
        key_file: PathBuf,
    }
    impl Human for Signer {
        fn human(&self, out: &mut String) {
            out.push_str(&self.signer);
            out.push('\n');
        }
    }
    let (key, path) = signing_key(ctx, true)?;
    crate::output::emit(
        ctx.format,
        &Signer { signer: keys::signer_string(&key.public()), key_file: path },
    )
}
