//! `keyward backup …` and `keyward restore …`.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

use super::Global;
use crate::{Error, Exit};

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// New X25519 identity (file mode 0600); prints its recipient
    Keygen {
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
        /// Encrypt with a passphrase (asked on the terminal)
        #[arg(short, long)]
        passphrase: bool,
        #[arg(long, value_enum, default_value_t = CipherArg::Age)]
        cipher: CipherArg,
        /// ASCII armor
        #[arg(short, long)]
        armor: bool,
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Input file, or - for stdin
        input: Option<PathBuf>,
    },
    /// Decrypt age or aes-256-gcm backups
    Decrypt {
        #[arg(short, long = "identity")]
        identities: Vec<PathBuf>,
        #[arg(short, long)]
        output: Option<PathBuf>,
        input: Option<PathBuf>,
    },
    /// Full authentication pass, no output
    Verify {
        #[arg(short, long = "identity")]
        identities: Vec<PathBuf>,
        input: PathBuf,
    },
    /// Encrypted DR export of keyward's own state to the DR recipients
    State {
        #[arg(short, long)]
        output: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum RestoreCommand {
    /// Restore a DR export on a fresh machine
    State {
        #[arg(short, long = "identity")]
        identities: Vec<PathBuf>,
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CipherArg {
    Age,
    #[value(name = "aes-256-gcm")]
    Aes256Gcm,
}

pub fn dispatch(cmd: BackupCommand, _global: &Global) -> Result<Exit, Error> {
    let name = match cmd {
        BackupCommand::Keygen { .. } => "backup keygen",
        BackupCommand::Encrypt { .. } => "backup encrypt",
        BackupCommand::Decrypt { .. } => "backup decrypt",
        BackupCommand::Verify { .. } => "backup verify",
        BackupCommand::State { .. } => "backup state",
    };
    Err(Error::NotImplemented(name))
}

pub fn dispatch_restore(cmd: RestoreCommand, _global: &Global) -> Result<Exit, Error> {
    match cmd {
        RestoreCommand::State { .. } => Err(Error::NotImplemented("restore state")),
    }
}
