//! The library's outer error: one variant per module error, each of which knows the
//! exit code of the contract it stands for.

use crate::Exit;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Ca(#[from] crate::ca::CaError),
    #[error(transparent)]
    Acme(#[from] crate::acme::AcmeError),
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
    #[error(transparent)]
    Github(#[from] crate::github::GithubError),
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    #[error(transparent)]
    Init(#[from] crate::init::InitError),
    /// A command of the contract that this version does not implement yet.
    #[error("'keyward {0}' is not implemented yet in this version of keyward")]
    NotImplemented(&'static str),
    /// Wrong use of the command line that clap cannot catch.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Output(String),
}

impl Error {
    pub fn exit(&self) -> Exit {
        match self {
            Error::Config(_) | Error::NotImplemented(_) | Error::Usage(_) => Exit::Usage,
            Error::Store(e) => e.exit(),
            Error::Audit(e) => e.exit(),
            Error::Ca(e) => e.exit(),
            Error::Acme(e) => e.exit(),
            Error::Secrets(e) => e.exit(),
            Error::Github(e) => e.exit(),
            Error::Backup(e) => e.exit(),
            Error::Init(e) => e.exit(),
            Error::Output(_) => Exit::Failed,
        }
    }
}
