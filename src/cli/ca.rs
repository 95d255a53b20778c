//! `keyward ca …`: the internal certificate authority.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

use super::Global;
use crate::{Error, Exit};

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create the CA; refuses if one exists
    Init {
        #[arg(long, value_enum)]
        key_type: Option<KeyTypeArg>,
        /// A root kept encrypted to the DR recipients (or a passphrase) and an online intermediate
        #[arg(long)]
        two_tier: bool,
        /// Encrypt the root key with the passphrase in this file instead of the DR recipients
        #[arg(long, value_name = "FILE", requires = "two_tier")]
        root_passphrase_file: Option<PathBuf>,
    },
    /// Issue a leaf from a profile in ca/ and deploy it to the profile's targets
    Issue {
        profile: String,
        /// Leaf name (default: the profile's own leaf)
        #[arg(long)]
        name: Option<String>,
        /// Extra subject alternative names (DNS names or IP addresses)
        #[arg(long, value_delimiter = ',')]
        san: Vec<String>,
    },
    /// Renew leaves past 2/3 of their lifetime (all named ones with --force)
    Renew {
        names: Vec<String>,
        #[arg(long, conflicts_with = "names")]
        all: bool,
        #[arg(long)]
        force: bool,
    },
    /// Revoke a leaf, regenerate and deploy the CRL
    Revoke {
        /// Leaf name or serial (hex)
        target: String,
        #[arg(long, value_enum, default_value_t = RevokeReasonArg::Unspecified)]
        reason: RevokeReasonArg,
        /// Do not issue a replacement for a leaf the profiles declare
        #[arg(long)]
        no_reissue: bool,
    },
    /// Disaster recovery: new CA, transition trust bundle (old + new), reissue every leaf
    Regenerate {
        /// Confirm: this replaces the CA
        #[arg(long)]
        yes: bool,
        #[arg(long, value_enum)]
        key_type: Option<KeyTypeArg>,
        #[arg(long, value_name = "FILE")]
        root_passphrase_file: Option<PathBuf>,
    },
    /// Drop the previous CA from every trust bundle
    RetirePrevious,
    /// Inventory of the CA and its leaves
    List,
    /// One leaf (or "ca") in detail
    Show { name: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyTypeArg {
    P256,
    P384,
    Ed25519,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RevokeReasonArg {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
}

pub fn dispatch(cmd: CaCommand, _global: &Global) -> Result<Exit, Error> {
    let name = match cmd {
        CaCommand::Init { .. } => "ca init",
        CaCommand::Issue { .. } => "ca issue",
        CaCommand::Renew { .. } => "ca renew",
        CaCommand::Revoke { .. } => "ca revoke",
        CaCommand::Regenerate { .. } => "ca regenerate",
        CaCommand::RetirePrevious => "ca retire-previous",
        CaCommand::List => "ca list",
        CaCommand::Show { .. } => "ca show",
    };
    Err(Error::NotImplemented(name))
}
