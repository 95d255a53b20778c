//! `keyward acme …`: certificates from Let's Encrypt (or any ACME server).

use std::path::PathBuf;

use clap::Subcommand;

use super::Global;
use crate::{Error, Exit};

#[derive(Debug, Subcommand)]
pub enum AcmeCommand {
    /// Create or load the ACME account
    Register {
        #[arg(long)]
        email: Option<String>,
        /// External account binding key id
        #[arg(long, requires = "eab_hmac_file")]
        eab_kid: Option<String>,
        /// File holding the base64url EAB HMAC key
        #[arg(long, value_name = "FILE", requires = "eab_kid")]
        eab_hmac_file: Option<PathBuf>,
    },
    /// Renew what ARI (or the 1/3-lifetime rule) says is due
    Renew {
        names: Vec<String>,
        #[arg(long, conflicts_with = "names")]
        all: bool,
        #[arg(long)]
        force: bool,
    },
    /// Inventory of ACME certificates
    List,
    /// Take over an existing certbot lineage (live/NAME and renewal/NAME.conf)
    Import {
        /// The lineage name (certbot's live/NAME)
        name: String,
        /// certbot's configuration folder
        #[arg(long, value_name = "DIR", default_value = "/etc/letsencrypt")]
        certbot_dir: PathBuf,
        /// Leave certbot's renewal/NAME.conf in place (certbot would keep renewing it)
        #[arg(long)]
        keep_certbot: bool,
    },
}

pub fn dispatch(cmd: AcmeCommand, global: &Global) -> Result<Exit, Error> {
    use crate::output::Format::{Human, Json};
    match cmd {
        AcmeCommand::Register { email, eab_kid, eab_hmac_file } => {
            global.require_format("acme register", &[Human, Json])?;
            let ctx = global.context("acme register")?;
            let eab = eab_kid.zip(eab_hmac_file);
            crate::acme::register(&ctx, email, eab)
        }
        AcmeCommand::Renew { names, all: _, force } => {
            global.require_format("acme renew", &[Human, Json])?;
            let ctx = global.context("acme renew")?;
            // No names means every configured certificate, like --all.
            crate::acme::renew(&ctx, &names, force)
        }
        AcmeCommand::List => {
            global.require_format("acme list", &[Human, Json])?;
            let ctx = global.context("acme list")?;
            crate::acme::list(&ctx)
        }
        AcmeCommand::Import { name, certbot_dir, keep_certbot } => {
            global.require_format("acme import", &[Human, Json])?;
            let ctx = global.context("acme import")?;
            crate::acme::import(&ctx, &name, &certbot_dir, keep_certbot)
        }
    }
}
