//! `keyward audit …`: show and verify the audit log.

use clap::Subcommand;

use super::Global;
use crate::output::Format;
use crate::{Error, Exit};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The log, human or JSON
    Show {
        /// Only records at or after this time (RFC 3339, or a date YYYY-MM-DD)
        #[arg(long)]
        since: Option<String>,
    },
    /// Check the hash chain; exit 1 and the first bad record on any edit, deletion or reordering
    Verify,
}

pub fn dispatch(cmd: AuditCommand, global: &Global) -> Result<Exit, Error> {
    global.require_format("audit", &[Format::Human, Format::Json])?;
    let ctx = global.context("audit")?;
    match cmd {
        AuditCommand::Show { since } => {
            let since = since.as_deref().map(crate::util::parse_time).transpose()?;
            crate::audit::show(&ctx, since)
        }
        AuditCommand::Verify => crate::audit::verify_command(&ctx),
    }
}
