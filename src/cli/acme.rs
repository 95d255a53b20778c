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
}

pub fn dispatch(cmd: AcmeCommand, _global: &Global) -> Result<Exit, Error> {
    let name = match cmd {
        AcmeCommand::Register { .. } => "acme register",
        AcmeCommand::Renew { .. } => "acme renew",
        AcmeCommand::List => "acme list",
    };
    Err(Error::NotImplemented(name))
}
