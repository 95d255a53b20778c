//! Secrets: policies, generation, the encrypted versioned store, rotation into every
//! target, and the commands over them (`keyward secrets …`).
//!
//! [`policy`] reads `policies/*.toml`; [`generate`] makes values; [`vault`] keeps them
//! encrypted to the machine key with current, pending and previous versions;
//! [`rotate`] drives the crash-safe change of a value through its targets
//! ([`envfile`], [`postgres`], hook commands); [`docs`] writes the reference document.
//! Values stay in [`SecretBytes`]; nothing in this module logs, formats or audits one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::ConfigError;
use crate::github::GithubScope;
use crate::hooks::Hook;
use crate::secret::SecretBytes;
use crate::store::StoreError;
use crate::{Context, Exit};

pub mod commands;
pub mod docs;
pub mod envfile;
pub mod generate;
pub mod policy;
pub mod postgres;
pub mod rotate;
pub mod vault;

pub use policy::{Policies, Policy};

/// Where the machine key lives when keyward.toml names none.
pub const DEFAULT_MACHINE_KEY: &str = "/etc/keyward/machine.key";

/// The `[secrets]` section of keyward.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// The folder of policy files. Default: `policies` next to keyward.toml.
    #[serde(default)]
    pub policies: Option<PathBuf>,
    /// The age X25519 identity that encrypts the store (mode 0600, outside the state
    /// folder); created on first use. Default: /etc/keyward/machine.key.
    #[serde(default)]
    pub machine_key: Option<PathBuf>,
    /// The name of a systemd credential holding the machine key; used instead of
    /// `machine_key` when `$CREDENTIALS_DIRECTORY` is set.
    #[serde(default)]
    pub machine_key_credential: Option<String>,
    /// The environment this machine serves (`production`); the default of
    /// `report presence --environment`.
    #[serde(default)]
    pub environment: Option<String>,
    /// Env files that policies name in `env = [{ file = "NAME" }]`.
    #[serde(default)]
    pub env_files: BTreeMap<String, PathBuf>,
    /// PostgreSQL servers that policies name in `postgres = { connection = "NAME" }`.
    #[serde(default)]
    pub postgres: BTreeMap<String, postgres::PostgresConnection>,
    /// Commands that policies name in `hooks = ["NAME"]`; the value arrives on stdin.
    #[serde(default)]
    pub hooks: BTreeMap<String, Hook>,
    /// Days before the due date from which status shows "due soon".
    #[serde(default = "default_warn_days")]
    pub warn_days: u32,
}

fn default_warn_days() -> u32 {
    14
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "keyward.toml has no [secrets] section: add one (see 'keyward init' for PazPaz's defaults)"
    )]
    NotConfigured,
    #[error("no policy folder at {dir}: create it with policies/*.toml, or set secrets.policies")]
    NoPolicies { dir: PathBuf },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("no policy defines the secret {0:?}: 'keyward secrets list' shows the names")]
    Unknown(String),
    #[error(
        "the machine key {path} is missing but the store holds values encrypted to it; restore the key (or the state) from the DR export. keyward never replaces it while values depend on it"
    )]
    MachineKeyMissing { path: PathBuf },
    #[error("{path} is not an age X25519 identity (AGE-SECRET-KEY-1…)")]
    MachineKeyInvalid { path: PathBuf },
    #[error("secret {name}: {detail}")]
    Crypto { name: String, detail: String },
    #[error(transparent)]
    Generate(#[from] generate::GenerateError),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Rotation(String),
    #[error("{0}")]
    Io(String),
}

impl SecretsError {
    pub fn exit(&self) -> Exit {
        match self {
            SecretsError::NotConfigured
            | SecretsError::NoPolicies { .. }
            | SecretsError::Config(_)
            | SecretsError::Unknown(_)
            | SecretsError::MachineKeyInvalid { .. }
            | SecretsError::Refused(_) => Exit::Usage,
            SecretsError::Store(e) => e.exit(),
            SecretsError::Generate(generate::GenerateError::Imported(_)) => Exit::Usage,
            _ => Exit::Failed,
        }
    }
}

/// The secrets of one configuration: policies, the store and the configured targets.
pub struct Secrets<'a> {
    pub ctx: &'a Context,
    pub config: &'a SecretsConfig,
    pub policies: Policies,
    pub vault: vault::Vault,
}

impl<'a> Secrets<'a> {
    pub fn open(ctx: &'a Context) -> Result<Secrets<'a>, SecretsError> {
        let config = ctx.config.file.secrets.as_ref().ok_or(SecretsError::NotConfigured)?;
        let policies = Policies::load_dir(&policy_dir(ctx, config))?;
        let key = key_source(ctx, config)?;
        let vault = vault::Vault::open(&ctx.store, key)?;
        Ok(Secrets { ctx, config, policies, vault })
    }

    pub fn policy(&self, name: &str) -> Result<&Policy, SecretsError> {
        self.policies.get(name).ok_or_else(|| SecretsError::Unknown(name.to_string()))
    }
}

/// The policy folder of a configuration.
pub fn policy_dir(ctx: &Context, config: &SecretsConfig) -> PathBuf {
    ctx.config
        .resolve(config.policies.as_deref().unwrap_or_else(|| std::path::Path::new("policies")))
}

/// The machine key: the one X25519 identity that decrypts this machine's state at rest
/// (the secret store, the ACME account key). `in_use` says whether the caller already
/// holds something encrypted to it; then, as when the secret store holds values, a
/// missing key is an error and never replaced by a new one.
pub fn machine_identity(
    ctx: &Context,
    in_use: bool,
) -> Result<age::x25519::Identity, SecretsError> {
    let default = SecretsConfig::default();
    let config = ctx.config.file.secrets.as_ref().unwrap_or(&default);
    let source = key_source(ctx, config)?;
    let vault_in_use = std::fs::read_dir(ctx.store.path(vault::blob_dir()))
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    vault::load_or_create_key(&source, in_use || vault_in_use)
}

/// Where the machine key is read from (for the DR export).
pub fn machine_key_path(ctx: &Context) -> Result<PathBuf, SecretsError> {
    let default = SecretsConfig::default();
    let config = ctx.config.file.secrets.as_ref().unwrap_or(&default);
    Ok(key_source(ctx, config)?.path().to_path_buf())
}

fn key_source(ctx: &Context, config: &SecretsConfig) -> Result<vault::KeySource, SecretsError> {
    if let (Some(name), Some(dir)) =
        (&config.machine_key_credential, std::env::var_os("CREDENTIALS_DIRECTORY"))
    {
        return Ok(vault::KeySource::Credential(PathBuf::from(dir).join(name)));
    }
    let path = ctx.config.resolve(
        config.machine_key.as_deref().unwrap_or_else(|| std::path::Path::new(DEFAULT_MACHINE_KEY)),
    );
    let state = ctx.store.root();
    let inside = match (path.parent().and_then(|p| p.canonicalize().ok()), state.canonicalize()) {
        (Some(p), Ok(s)) => p.starts_with(&s),
        _ => path.starts_with(state),
    };
    if inside {
        return Err(ConfigError::invalid(
            &ctx.config.path,
            "secrets.machine_key",
            format!(
                "{} is inside the state folder {}; keep the key that decrypts the store elsewhere (e.g. /etc/keyward/machine.key)",
                path.display(),
                state.display()
            ),
        )
        .into());
    }
    Ok(vault::KeySource::File(path))
}

/// A secret's current value and the GitHub scopes its policy sends it to.
/// The GitHub sync reads these; it never sees pending or previous versions.
pub struct GithubItem {
    pub name: String,
    pub version: u64,
    pub scopes: Vec<GithubScope>,
    pub value: SecretBytes,
}

/// Every secret whose policy names GitHub scopes, with its current value. Secrets
/// without a current value yet (never generated, imported but not set) are left out.
pub fn github_items(ctx: &Context) -> Result<Vec<GithubItem>, SecretsError> {
    if ctx.config.file.secrets.is_none() {
        return Ok(Vec::new());
    }
    let s = Secrets::open(ctx)?;
    let mut out = Vec::new();
    for p in s.policies.iter().filter(|p| !p.github.is_empty()) {
        if let Some((version, value)) = s.vault.current_value(&p.name)? {
            out.push(GithubItem { name: p.name.clone(), version, scopes: p.github.clone(), value });
        }
    }
    Ok(out)
}

pub use commands::{run_due, status};
