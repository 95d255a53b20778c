//! `keyward github …`: GitHub Actions secrets.

use clap::Subcommand;

use super::Global;
use crate::{Error, Exit};

#[derive(Debug, Subcommand)]
pub enum GithubCommand {
    /// Push changed secrets to their GitHub scopes
    Sync {
        #[arg(long)]
        dry_run: bool,
        /// Delete secrets keyward created there and no longer has
        #[arg(long)]
        prune: bool,
    },
    /// Per scope: names present, missing, unmanaged
    Status,
}

pub fn dispatch(cmd: GithubCommand, _global: &Global) -> Result<Exit, Error> {
    let name = match cmd {
        GithubCommand::Sync { .. } => "github sync",
        GithubCommand::Status => "github status",
    };
    Err(Error::NotImplemented(name))
}
