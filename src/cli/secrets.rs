//! `keyward secrets …` and `keyward report …`.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

use super::Global;
use crate::{Error, Exit};

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Names, versions, last rotated, due date (no values)
    List,
    /// Two-phase rotation: stage, apply, verify, promote
    Rotate {
        names: Vec<String>,
        /// Every secret whose rotation is due
        #[arg(long, conflicts_with = "names")]
        due: bool,
        #[arg(long)]
        dry_run: bool,
    },
    /// Make the previous version current again and re-apply it to every target
    Rollback { name: String },
    /// Import a value from stdin (third-party keys keyward cannot generate)
    Set { name: String },
    /// Print the current value (refuses on a terminal without --reveal)
    Get {
        name: String,
        #[arg(long)]
        reveal: bool,
    },
    /// Markdown reference of every secret (no values)
    Docs {
        /// Write to this file instead of stdout
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Is every required secret present? (never prints a value)
    Presence {
        #[arg(long, value_enum)]
        source: SourceArg,
        #[arg(long)]
        environment: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SourceArg {
    Env,
    Github,
    State,
}

pub fn dispatch(cmd: SecretsCommand, _global: &Global) -> Result<Exit, Error> {
    let name = match cmd {
        SecretsCommand::List => "secrets list",
        SecretsCommand::Rotate { .. } => "secrets rotate",
        SecretsCommand::Rollback { .. } => "secrets rollback",
        SecretsCommand::Set { .. } => "secrets set",
        SecretsCommand::Get { .. } => "secrets get",
        SecretsCommand::Docs { .. } => "secrets docs",
    };
    Err(Error::NotImplemented(name))
}

pub fn dispatch_report(cmd: ReportCommand, _global: &Global) -> Result<Exit, Error> {
    match cmd {
        ReportCommand::Presence { .. } => Err(Error::NotImplemented("report presence")),
    }
}
