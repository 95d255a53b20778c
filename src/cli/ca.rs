//! `keyward ca …`: the internal certificate authority. Converts the clap arguments,
//! takes the run lock for mutating commands, and calls [`crate::ca`].

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

use super::Global;
use crate::ca::{Ca, IssueRequest, Report};
use crate::output;
use crate::secret::SecretString;
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

impl From<KeyTypeArg> for crate::ca::KeyType {
    fn from(k: KeyTypeArg) -> Self {
        match k {
            KeyTypeArg::P256 => crate::ca::KeyType::P256,
            KeyTypeArg::P384 => crate::ca::KeyType::P384,
            KeyTypeArg::Ed25519 => crate::ca::KeyType::Ed25519,
        }
    }
}

impl From<RevokeReasonArg> for crate::ca::crl::Reason {
    fn from(r: RevokeReasonArg) -> Self {
        use crate::ca::crl::Reason;
        match r {
            RevokeReasonArg::Unspecified => Reason::Unspecified,
            RevokeReasonArg::KeyCompromise => Reason::KeyCompromise,
            RevokeReasonArg::CaCompromise => Reason::CaCompromise,
            RevokeReasonArg::AffiliationChanged => Reason::AffiliationChanged,
            RevokeReasonArg::Superseded => Reason::Superseded,
            RevokeReasonArg::CessationOfOperation => Reason::CessationOfOperation,
        }
    }
}

/// Reads a passphrase file: the first line, without its line ending.
fn read_passphrase(path: &std::path::Path) -> Result<SecretString, Error> {
    let bytes =
        zeroize::Zeroizing::new(std::fs::read(path).map_err(|source| {
            crate::ca::CaError::Passphrase { path: path.to_path_buf(), source }
        })?);
    let text = String::from_utf8_lossy(&bytes);
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        return Err(Error::Usage(format!("{} holds no passphrase", path.display())));
    }
    Ok(SecretString::new(line))
}

pub fn dispatch(cmd: CaCommand, global: &Global) -> Result<Exit, Error> {
    use crate::output::Format::{Human, Json};
    let (command, mutating) = match &cmd {
        CaCommand::Init { .. } => ("ca init", true),
        CaCommand::Issue { .. } => ("ca issue", true),
        CaCommand::Renew { .. } => ("ca renew", true),
        CaCommand::Revoke { .. } => ("ca revoke", true),
        CaCommand::Regenerate { .. } => ("ca regenerate", true),
        CaCommand::RetirePrevious => ("ca retire-previous", true),
        CaCommand::List => ("ca list", false),
        CaCommand::Show { .. } => ("ca show", false),
    };
    global.require_format(command, &[Human, Json])?;
    let ctx = global.context(command)?;
    // Profiles and state are loaded (and checked) before the lock and before any write.
    let passphrase = match &cmd {
        CaCommand::Init { root_passphrase_file: Some(f), .. }
        | CaCommand::Regenerate { root_passphrase_file: Some(f), .. } => Some(read_passphrase(f)?),
        _ => None,
    };
    let mut ca = Ca::open(&ctx, false)?;
    let _lock = if mutating { Some(ctx.lock()?) } else { None };
    if mutating {
        // Another keyward may have changed the state while this one waited.
        ca = Ca::open(&ctx, false)?;
    }
    let note = match cmd {
        CaCommand::Init { key_type, two_tier, .. } => {
            ca.init(key_type.map(Into::into), two_tier, passphrase.as_ref())?;
            Some(
                "next: 'keyward run' issues and deploys every leaf the profiles declare"
                    .to_string(),
            )
        }
        CaCommand::Issue { profile, name, san } => {
            ca.issue(&IssueRequest { profile, name, sans: san })?;
            None
        }
        CaCommand::Renew { names, all: _, force } => {
            ca.renew(&names, force)?;
            None
        }
        CaCommand::Revoke { target, reason, no_reissue } => {
            ca.revoke(&target, reason.into(), no_reissue)?;
            None
        }
        CaCommand::Regenerate { yes, key_type, .. } => {
            ca.regenerate(yes, key_type.map(Into::into), passphrase.as_ref())?;
            Some(
                "the previous CA stays in every trust bundle until 'keyward ca retire-previous'"
                    .to_string(),
            )
        }
        CaCommand::RetirePrevious => ca.retire_previous()?,
        CaCommand::List => {
            let inv = ca.inventory()?;
            return output::emit(global.format, &inv);
        }
        CaCommand::Show { name } => {
            let d = ca.show(&name)?;
            return output::emit(global.format, &d);
        }
    };
    let report = Report { actions: std::mem::take(&mut ca.actions), note };
    output::emit(global.format, &report)
}
