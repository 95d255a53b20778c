//! `keyward github …`: GitHub Actions secrets.

use clap::Subcommand;

use super::Global;
use crate::output::Format;
use crate::{Error, Exit};

#[derive(Debug, Subcommand)]
pub enum GithubCommand {
    /// Push changed secrets to their GitHub scopes
    Sync {
        /// List the creates, updates and deletes; change nothing
        #[arg(long)]
        dry_run: bool,
        /// Delete secrets keyward created there and no longer has
        #[arg(long)]
        prune: bool,
    },
    /// Per scope: names present, missing, unmanaged
    Status,
}

pub fn dispatch(cmd: GithubCommand, global: &Global) -> Result<Exit, Error> {
    match cmd {
        GithubCommand::Sync { dry_run, prune } => {
            global.require_format("github sync", &[Format::Human, Format::Json])?;
            let ctx = global.context("github sync")?;
            crate::github::sync_command(
                &ctx,
                crate::github::SyncOptions { dry_run, prune, ..Default::default() },
            )
        }
        GithubCommand::Status => {
            global.require_format("github status", &[Format::Human, Format::Json])?;
            let ctx = global.context("github status")?;
            crate::github::status_command(&ctx)
        }
    }
}
