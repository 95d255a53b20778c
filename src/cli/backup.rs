//! `keyward backup …` and `keyward restore …`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::Global;
use crate::backup::command::{self, Common, DecryptArgs, EncryptArgs};
use crate::backup::{Cipher, DEFAULT_MAX_WORK_FACTOR, DEFAULT_WORK_FACTOR};
use crate::output::Format;
use crate::{Error, Exit};

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// New X25519 identity (file mode 0600); prints its recipient
    Keygen {
        /// Identity file to create (never overwritten); without it the identity goes to
        /// stdout, which must not be a terminal
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Encrypt (streaming, every core); age output is standard age v1
    Encrypt {
        /// Recipient (age1…)
        #[arg(short, long = "recipient")]
        recipients: Vec<String>,
        /// File of recipients, one per line
        #[arg(short = 'R', long = "recipients-file")]
        recipients_files: Vec<PathBuf>,
        /// Encrypt with a passphrase (asked on the terminal, or --passphrase-file, or
        /// $KEYWARD_PASSPHRASE)
        #[arg(short, long)]
        passphrase: bool,
        /// Read the passphrase from the first line of FILE (implies --passphrase;
        /// /dev/fd/N reads a descriptor)
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        /// scrypt work factor (log2 N) for --passphrase
        #[arg(long, default_value_t = DEFAULT_WORK_FACTOR, value_name = "LOG2N")]
        work_factor: u8,
        #[arg(long, value_enum, default_value_t = CipherArg::Age)]
        cipher: CipherArg,
        /// ASCII armor
        #[arg(short, long)]
        armor: bool,
        /// Sign the header with the server's Ed25519 key (provenance)
        #[arg(long)]
        sign: bool,
        /// Do not fsync OUT before renaming it into place (faster; not crash-safe)
        #[arg(long)]
        no_fsync: bool,
        /// Output file: written beside OUT and renamed into place when complete
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Input file, or - for stdin
        input: Option<PathBuf>,
    },
    /// Decrypt age or aes-256-gcm backups
    Decrypt {
        #[command(flatten)]
        open: OpenArgs,
        /// Do not fsync OUT before renaming it into place (faster; not crash-safe)
        #[arg(long)]
        no_fsync: bool,
        /// Output file: written only once the whole backup authenticated
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Input file, or - for stdin
        input: Option<PathBuf>,
    },
    /// Full authentication pass, no output
    Verify {
        #[command(flatten)]
        open: OpenArgs,
        /// The backup to check
        input: PathBuf,
    },
    /// The server's backup signing public key (created on first use)
    Signer,
    /// Encrypted DR export of keyward's own state to the DR recipients
    State {
        #[arg(short, long)]
        output: PathBuf,
    },
}

/// How to open a backup: identities, passphrase, scrypt cap, trusted signer.
#[derive(Debug, Args)]
pub struct OpenArgs {
    /// Identity file (AGE-SECRET-KEY-1…), repeatable
    #[arg(short, long = "identity")]
    identities: Vec<PathBuf>,
    /// Passphrase from the first line of FILE (else $KEYWARD_PASSPHRASE, else the terminal)
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Highest scrypt work factor (log2 N) accepted
    #[arg(long, default_value_t = DEFAULT_MAX_WORK_FACTOR, value_name = "LOG2N")]
    max_work_factor: u8,
    /// Require a valid signature by this key (keyward-ed25519:… or a file holding it)
    #[arg(long)]
    signer: Option<String>,
}

impl OpenArgs {
    fn into_args(
        self,
        fsync: bool,
        output: Option<PathBuf>,
        input: Option<PathBuf>,
    ) -> DecryptArgs {
        DecryptArgs {
            identities: self.identities,
            passphrase_file: self.passphrase_file,
            max_work_factor: self.max_work_factor,
            signer: self.signer,
            fsync,
            output,
            input,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum RestoreCommand {
    /// Restore a DR export on a fresh machine (to the --config path)
    State {
        #[arg(short, long = "identity")]
        identities: Vec<PathBuf>,
        /// Require a valid signature by this key (keyward-ed25519:… or a file holding it)
        #[arg(long)]
        signer: Option<String>,
        /// Replace an existing installation (its state folder is moved aside)
        #[arg(long)]
        force: bool,
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CipherArg {
    Age,
    #[value(name = "aes-256-gcm")]
    Aes256Gcm,
}

impl From<CipherArg> for Cipher {
    fn from(c: CipherArg) -> Self {
        match c {
            CipherArg::Age => Cipher::ChaCha20Poly1305,
            CipherArg::Aes256Gcm => Cipher::Aes256Gcm,
        }
    }
}

/// The configuration, when one exists: these commands also work without one.
fn optional_context(global: &Global, name: &str) -> Option<crate::Context> {
    let path =
        global.config.clone().unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_CONFIG));
    if !path.exists() {
        return None;
    }
    match global.context(name) {
        Ok(ctx) => Some(ctx),
        Err(e) => {
            crate::warn!("not auditing this command: {e}");
            None
        }
    }
}

pub fn dispatch(cmd: BackupCommand, global: &Global) -> Result<Exit, Error> {
    use Format::{Human, Json};
    global.require_format("backup", &[Human, Json])?;
    let common = |name: &str| Common {
        format: global.format,
        verbosity: global.verbosity,
        context: optional_context(global, name),
    };
    match cmd {
        BackupCommand::Keygen { output } => {
            command::keygen(&common("backup keygen"), output.as_deref())
        }
        BackupCommand::Encrypt {
            recipients,
            recipients_files,
            passphrase,
            passphrase_file,
            work_factor,
            cipher,
            armor,
            sign,
            no_fsync,
            output,
            input,
        } => command::encrypt(
            &common("backup encrypt"),
            EncryptArgs {
                recipients,
                recipients_files,
                passphrase,
                passphrase_file,
                work_factor,
                cipher: cipher.into(),
                armor,
                sign,
                fsync: !no_fsync,
                output,
                input,
            },
        ),
        BackupCommand::Decrypt { open, no_fsync, output, input } => {
            command::decrypt(&common("backup decrypt"), open.into_args(!no_fsync, output, input))
        }
        BackupCommand::Verify { open, input } => {
            command::verify(&common("backup verify"), open.into_args(false, None, Some(input)))
        }
        BackupCommand::Signer => {
            let ctx = global.context("backup signer")?;
            command::signer(&ctx)
        }
        BackupCommand::State { output } => {
            let ctx = global.context("backup state")?;
            crate::backup::state::export(&ctx, &output)
        }
    }
}

pub fn dispatch_restore(cmd: RestoreCommand, global: &Global) -> Result<Exit, Error> {
    use Format::{Human, Json};
    global.require_format("restore state", &[Human, Json])?;
    match cmd {
        RestoreCommand::State { identities, signer, force, file } => {
            crate::backup::state::restore(crate::backup::state::RestoreArgs {
                config: global
                    .config
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_CONFIG)),
                identities,
                signer,
                force,
                file,
                format: global.format,
            })
        }
    }
}
