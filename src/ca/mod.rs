//! The internal certificate authority (PRODUCT.md §1): the CA itself (single-tier, or
//! an encrypted root and an online intermediate), leaf profiles, issuance, renewal,
//! revocation and CRLs, regeneration with transition trust bundles, and deployment to
//! the folders PostgreSQL, libpq and MinIO read.
//!
//! The modules: [`config`] (the `[ca]` section), [`profile`] (`ca/*.toml`),
//! [`issue`] (certificate parameters and reading certificates back), [`authority`]
//! (CA folders and the manifest), [`crl`] (revocations), [`inventory`] (the leaf index),
//! [`deploy`] (atomic target sets), [`durable`] (batched fsync) and [`engine`] (the operations and `keyward run`'s
//! step). Every mutating operation runs under the run lock, which the caller takes,
//! and writes audit records naming the certificate (name, serial, SHA-256
//! fingerprint). Key bytes never reach output, logs or the audit log.

pub mod authority;
pub mod config;
pub mod crl;
pub mod deploy;
pub mod durable;
pub mod engine;
pub mod inventory;
pub mod issue;
pub mod profile;

use std::path::PathBuf;

pub use config::{CaConfig, KeyType};
pub use engine::{Ca, IssueRequest, Report};

use crate::Exit;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{path}:{line}:{column}: {key}: {message}")]
    Profile { path: PathBuf, line: usize, column: usize, key: String, message: String },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(
        "keyward.toml has no [ca] section: add one (see 'keyward init') to use the internal CA"
    )]
    NotConfigured,
    #[error("there is no CA yet: run 'keyward ca init' (or 'keyward run', which creates one)")]
    NoCa,
    #[error(
        "a CA already exists ({id}); 'ca init' never replaces it: use 'keyward ca regenerate --yes' to replace it"
    )]
    Exists { id: String },
    #[error("no profile {name:?} in {dir}; profiles: {known}")]
    UnknownProfile { name: String, dir: PathBuf, known: String },
    #[error("no leaf or serial {0:?} in the inventory: see 'keyward ca list'")]
    UnknownLeaf(String),
    #[error("{0}")]
    Invalid(String),
    #[error("certificate {serial} ({name}) is already revoked")]
    AlreadyRevoked { name: String, serial: String },
    #[error("'ca regenerate' replaces the CA and reissues every certificate: add --yes to confirm")]
    NotConfirmed,
    #[error(
        "a two-tier root key must be encrypted: set [dr] recipients (or recipients_file) in keyward.toml, or pass --root-passphrase-file FILE"
    )]
    NoRootProtection,
    #[error("cannot read the root passphrase from {path}: {source}")]
    Passphrase { path: PathBuf, source: std::io::Error },
    #[error("cannot encrypt the root key: {0}")]
    Age(String),
    #[error("cannot sign {what}: {message}")]
    Sign { what: String, message: String },
    #[error(
        "cannot give {path} owner {uid:?} group {gid:?}: {source}; run keyward as root, or set ca.chown = false where owners do not matter"
    )]
    Chown { path: PathBuf, uid: Option<u32>, gid: Option<u32>, source: std::io::Error },
    #[error("cannot {op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error(
        "{path} is damaged ({detail}); restore the state from the DR export ('keyward restore state')"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error("{0}")]
    Transition(String),
    /// A multi-step operation stopped part-way; re-running it finishes it.
    #[error("{0}")]
    Incomplete(String),
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
}

impl CaError {
    pub fn exit(&self) -> Exit {
        match self {
            CaError::Profile { .. }
            | CaError::Config(_)
            | CaError::NotConfigured
            | CaError::NoCa
            | CaError::Exists { .. }
            | CaError::UnknownProfile { .. }
            | CaError::UnknownLeaf(_)
            | CaError::Invalid(_)
            | CaError::AlreadyRevoked { .. }
            | CaError::NotConfirmed
            | CaError::NoRootProtection
            | CaError::Passphrase { .. }
            | CaError::Transition(_) => Exit::Usage,
            CaError::Store(e) => e.exit(),
            CaError::Audit(e) => e.exit(),
            CaError::Age(_)
            | CaError::Sign { .. }
            | CaError::Chown { .. }
            | CaError::Io { .. }
            | CaError::Corrupt { .. }
            | CaError::Hook(_)
            | CaError::Incomplete(_) => Exit::Failed,
        }
    }
}

/// Fault injection for the crash tests: when `KEYWARD_FAULT` is `POINT` or
/// `POINT:N`, the process kills itself with SIGKILL the N-th time (default 1st) it
/// reaches `POINT`, exactly as `kill -9` would. Unset in production; documented in
/// docs/cli.md. Points: regenerate-started, authority-written, manifest-switched,
/// bundles-deployed, leaf-issued, deploy-generation-written, deploy-data-swapped.
pub(crate) fn fault(point: &str) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static HITS: AtomicU32 = AtomicU32::new(0);
    let Ok(spec) = std::env::var("KEYWARD_FAULT") else { return };
    let (name, n) = match spec.split_once(':') {
        Some((p, n)) => (p.to_string(), n.parse::<u32>().unwrap_or(1)),
        None => (spec.clone(), 1),
    };
    if name == point && HITS.fetch_add(1, Ordering::SeqCst) + 1 == n {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// Checks the `[ca]` section and the profiles, so that `keyward run` stops with exit 2
/// before writing anything when they are wrong.
pub fn preflight(ctx: &crate::Context) -> Result<(), CaError> {
    if let Some(cfg) = &ctx.config.file.ca {
        profile::load(&ctx.config.resolve(&cfg.profiles), cfg)?;
    }
    Ok(())
}

/// The CA's part of `keyward run`.
pub fn run_due(ctx: &crate::Context, dry_run: bool) -> crate::run::Step {
    if ctx.config.file.ca.is_none() {
        return crate::run::Step::unconfigured("ca");
    }
    let mut step = crate::run::Step::new("ca");
    match Ca::open(ctx, dry_run) {
        Ok(mut ca) => {
            if let Err(e) = ca.reconcile() {
                ca.fail("ca", "run", "", &e);
            }
            step.actions = std::mem::take(&mut ca.actions);
        }
        Err(e) => step.actions.push(crate::run::Action {
            object: "ca".into(),
            action: "load".into(),
            reason: "configuration and state".into(),
            result: crate::run::ActionResult::Failed { error: e.to_string() },
        }),
    }
    step
}

/// The CA's lines of `keyward status`.
pub fn status(ctx: &crate::Context) -> Result<Vec<crate::status::Item>, crate::Error> {
    if ctx.config.file.ca.is_none() {
        return Ok(Vec::new());
    }
    let ca = Ca::open(ctx, true)?;
    Ok(ca.status_items())
}
