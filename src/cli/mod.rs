//! The command line: clap types and their conversion into library calls.
//!
//! clap types stay in this module. Each command group has its own file with its
//! arguments and a `dispatch` function that turns them into the library's own types
//! and calls the library. Nothing here reads state or writes files itself.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::output::{self, Format};
use crate::{Error, Exit};

pub mod acme;
pub mod audit;
pub mod backup;
pub mod ca;
pub mod github;
pub mod secrets;

/// keyward: PazPaz's secrets and certificates, audited.
#[derive(Debug, Parser)]
#[command(name = "keyward", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Configuration file [default: $KEYWARD_CONFIG, else /etc/keyward/keyward.toml]
    #[arg(short, long, global = true, value_name = "PATH", env = "KEYWARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Output format (prometheus: `status` only; github: `report presence` only)
    #[arg(long, global = true, value_enum, default_value_t = FormatArg::Human)]
    pub format: FormatArg,
    /// More detail on stderr (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Human,
    Json,
    Prometheus,
    Github,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Human => Format::Human,
            FormatArg::Json => Format::Json,
            FormatArg::Prometheus => Format::Prometheus,
            FormatArg::Github => Format::Github,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a working starter config (keyward.toml, policies/, ca/) with PazPaz's defaults
    Init {
        /// Folder to write into; state and outputs go under it too
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Everything due, in order: CA leaves, ACME certificates, rotations, GitHub sync, metrics
    Run {
        /// Print the plan and change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Same as `run --dry-run`
    Plan,
    /// Every certificate and secret with its due date; exit 3 when attention is needed
    Status,
    /// The internal certificate authority
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Let's Encrypt and other ACME certificates
    #[command(subcommand)]
    Acme(acme::AcmeCommand),
    /// Generated and imported secrets
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// Reports for CI
    #[command(subcommand)]
    Report(secrets::ReportCommand),
    /// GitHub Actions secrets
    #[command(subcommand)]
    Github(github::GithubCommand),
    /// Encrypted backups (age v1, AES-256-GCM)
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Restore from an encrypted disaster-recovery export
    #[command(subcommand)]
    Restore(backup::RestoreCommand),
    /// The tamper-evident audit log
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Shell completions on stdout
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The man page (roff) on stdout
    Man,
}

/// Parses `args` and runs the command.
pub fn main<I, T>(args: I) -> Result<Exit, Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help and version itself; both are successes.
            let exit = match err.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => Exit::Ok,
                _ => Exit::Usage,
            };
            let _ = err.print();
            return Ok(exit);
        }
    };
    let global = Global::from(&cli.global);
    output::init(global.format, global.verbosity);
    dispatch(cli.command, &global)
}

/// The global options, converted.
#[derive(Debug, Clone)]
pub struct Global {
    pub config: Option<PathBuf>,
    pub format: Format,
    pub verbosity: i8,
}

impl From<&GlobalArgs> for Global {
    fn from(g: &GlobalArgs) -> Self {
        Global {
            config: g.config.clone(),
            format: g.format.into(),
            verbosity: if g.quiet { -1 } else { g.verbose.min(3) as i8 },
        }
    }
}

impl Global {
    /// Loads the configuration and opens the state store.
    pub fn context(&self, command: &str) -> Result<crate::Context, Error> {
        crate::Context::load(self.config.as_deref(), self.format, command)
    }

    /// Refuses formats that a command does not produce.
    pub fn require_format(&self, command: &str, allowed: &[Format]) -> Result<(), Error> {
        if allowed.contains(&self.format) {
            Ok(())
        } else {
            Err(Error::Usage(format!(
                "'keyward {command}' does not support --format {}; use one of: {}",
                self.format,
                allowed.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(", ")
            )))
        }
    }
}

fn dispatch(command: Command, global: &Global) -> Result<Exit, Error> {
    use Format::{Human, Json, Prometheus};
    match command {
        Command::Init { dir } => {
            global.require_format("init", &[Human, Json])?;
            let written = crate::init::init(&dir)?;
            output::emit(global.format, &written)
        }
        Command::Run { dry_run } => {
            global.require_format("run", &[Human, Json])?;
            let ctx = global.context("run")?;
            crate::run::run(&ctx, dry_run)
        }
        Command::Plan => {
            global.require_format("plan", &[Human, Json])?;
            let ctx = global.context("plan")?;
            crate::run::run(&ctx, true)
        }
        Command::Status => {
            global.require_format("status", &[Human, Json, Prometheus])?;
            let ctx = global.context("status")?;
            crate::status::command(&ctx)
        }
        Command::Ca(cmd) => ca::dispatch(cmd, global),
        Command::Acme(cmd) => acme::dispatch(cmd, global),
        Command::Secrets(cmd) => secrets::dispatch(cmd, global),
        Command::Report(cmd) => secrets::dispatch_report(cmd, global),
        Command::Github(cmd) => github::dispatch(cmd, global),
        Command::Backup(cmd) => backup::dispatch(cmd, global),
        Command::Restore(cmd) => backup::dispatch_restore(cmd, global),
        Command::Audit(cmd) => audit::dispatch(cmd, global),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "keyward", &mut std::io::stdout());
            Ok(Exit::Ok)
        }
        Command::Man => {
            let man = clap_mangen::Man::new(Cli::command());
            man.render(&mut std::io::stdout()).map_err(|e| Error::Output(e.to_string()))?;
            Ok(Exit::Ok)
        }
    }
}

/// The clap command, for documentation generators and tests.
pub fn command() -> clap::Command {
    Cli::command()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_tree_is_valid() {
        Cli::command().debug_assert();
    }
}
