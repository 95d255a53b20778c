//! GitHub Actions secrets: keyward pushes each secret's current value to the
//! repository, environment and organisation scopes its policy names, and nothing
//! else.
//!
//! - [`scope`]: the policy's [`GithubScope`] and the concrete [`Target`];
//! - [`config`]: the `[github]` section;
//! - [`auth`]: token from the environment or GitHub App installation token;
//! - [`api`]: the [`SecretsApi`] trait and its octocrab implementation;
//! - [`ratelimit`]: GitHub's rate-limit rules as a pure policy;
//! - [`seal`]: libsodium-compatible sealed boxes;
//! - [`state`]: keyed hashes and ownership of what was synced;
//! - [`sync`]: the no-drift, no-waste engine.
//!
//! This module wires them to the commands (`github sync`, `github status`), to
//! `keyward run` and to the presence report. Values come only from
//! [`crate::secrets::github_items`]; they are sealed before they leave and never
//! appear in output, logs, errors, state or the audit log.

pub mod api;
pub mod auth;
pub mod config;
pub mod ratelimit;
pub mod scope;
pub mod seal;
pub mod state;
pub mod sync;

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Serialize;

pub use api::{ApiError, OctocrabApi, SecretsApi};
pub use config::GithubConfig;
pub use scope::{GithubScope, Target, Visibility};
pub use state::SyncState;
pub use sync::{SyncOptions, SyncReport};

use crate::audit::{Object, Outcome as AuditOutcome};
use crate::output::{Human, Table};
use crate::run::{Action, ActionResult, Step};
use crate::store::StoreError;
use crate::{Context, Error, Exit};

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error(
        "keyward.toml has no [github] section: add one with owner, repository and the token settings (see docs/cli.md, 'keyward github')"
    )]
    NotConfigured,
    #[error("keyward.toml: {key}: {message}")]
    Config { key: String, message: String },
    #[error(
        "${var} is not set: export a GitHub token with the \"Secrets\" and \"Environments\" (read and write) permissions in ${var}, set github.token_env to the variable that holds one, or configure [github.app]"
    )]
    NoToken { var: String },
    #[error("cannot use the GitHub App private key {path}: {detail}")]
    AppKey { path: PathBuf, detail: String },
    /// A repository, environment or organisation that GitHub does not have.
    #[error("{message}")]
    Missing { message: String },
    #[error("cannot set up the GitHub client: {detail}")]
    Client { detail: String },
    #[error("the system random generator failed; keyward cannot create the GitHub sync key")]
    Random,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Api(Box<ApiError>),
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

impl From<ApiError> for GithubError {
    fn from(e: ApiError) -> Self {
        GithubError::Api(Box::new(e))
    }
}

impl From<std::io::Error> for GithubError {
    fn from(e: std::io::Error) -> Self {
        GithubError::Client { detail: format!("cannot start the network runtime: {e}") }
    }
}

impl GithubError {
    pub fn exit(&self) -> Exit {
        match self {
            GithubError::NotConfigured
            | GithubError::Config { .. }
            | GithubError::NoToken { .. }
            | GithubError::AppKey { .. } => Exit::Usage,
            GithubError::Store(e) => e.exit(),
            GithubError::Secrets(e) => e.exit(),
            GithubError::Audit(e) => e.exit(),
            GithubError::Client { .. }
            | GithubError::Random
            | GithubError::Api(_)
            | GithubError::Missing { .. } => Exit::Failed,
        }
    }
}

fn config(ctx: &Context) -> Result<&GithubConfig, GithubError> {
    ctx.config.file.github.as_ref().ok_or(GithubError::NotConfigured)
}

/// The octocrab-backed API for the configuration.
pub fn connect(ctx: &Context) -> Result<OctocrabApi, GithubError> {
    let config = config(ctx)?;
    let cred = auth::credential(config, &ctx.config.dir)?;
    connect_with(config, &cred)
}

/// The octocrab-backed API for a configuration and a credential.
pub fn connect_with(
    config: &GithubConfig,
    cred: &auth::Credential,
) -> Result<OctocrabApi, GithubError> {
    // rustls needs one process-wide crypto provider; a second install is a no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let policy = ratelimit::Policy {
        pause: config.pause(),
        retries: config.retries,
        backoff: config.backoff(),
        max_wait: config.max_wait(),
    };
    OctocrabApi::new(|| auth::client(config, cred), policy, config.timeout())
}

/// Syncs every secret a policy sends to GitHub. Saves the state and audits every
/// write, also when some failed.
pub fn sync_all(ctx: &Context, opts: SyncOptions) -> Result<SyncReport, GithubError> {
    let config = config(ctx)?;
    let items = crate::secrets::github_items(ctx)?;
    let mut state =
        if opts.dry_run { SyncState::open(&ctx.store)? } else { SyncState::load(&ctx.store)? };
    let (targets, errors) = sync::plan_targets(&items, config);
    if let Some(e) = errors.first() {
        return Err(GithubError::Config { key: "github".into(), message: e.clone() });
    }
    if targets.is_empty() && state.is_empty() {
        return Ok(SyncReport {
            dry_run: opts.dry_run,
            prune: opts.prune,
            scopes: Vec::new(),
            warnings: Vec::new(),
            requests: 0,
        });
    }
    let api = connect(ctx)?;
    let opts = SyncOptions { drift_check: config.drift_check, ..opts };
    let report = sync::sync(&api, &targets, &mut state, opts);
    if !opts.dry_run {
        state.save(&ctx.store)?;
        audit_report(&ctx.audit, &report)?;
    }
    Ok(report)
}

/// One audit record per write (done or failed) and per failed scope.
pub fn audit_report(
    audit: &crate::audit::AuditLog,
    report: &SyncReport,
) -> Result<(), crate::audit::AuditError> {
    for s in &report.scopes {
        if let Some(e) = &s.error {
            audit.append(
                "github-sync",
                Object::new("github-scope", &s.key),
                AuditOutcome::Failed,
                Some(e),
            )?;
        }
        for r in &s.secrets {
            let Some(verb) = r.change.verb() else { continue };
            let action = format!("github-{verb}");
            let outcome = match r.outcome {
                sync::Outcome::Done => AuditOutcome::Ok,
                sync::Outcome::Failed => AuditOutcome::Failed,
                _ => continue,
            };
            let mut obj = Object::new("github-secret", format!("{}/{}", s.key, r.name));
            if let Some(v) = r.version {
                obj = obj.version(v);
            }
            audit.append(&action, obj, outcome, r.error.as_deref().or(Some(&r.reason)))?;
        }
    }
    Ok(())
}

/// `keyward github sync [--dry-run] [--prune]`.
pub fn sync_command(ctx: &Context, opts: SyncOptions) -> Result<Exit, Error> {
    let _lock = if opts.dry_run { None } else { Some(ctx.lock()?) };
    let report = sync_all(ctx, opts)?;
    if report.scopes.is_empty() {
        crate::info!("no policy sends a secret to GitHub; nothing to sync");
    }
    crate::output::emit(ctx.format, &report)
}

/// GitHub's part of `keyward run`: sync (never prune) after the rotations.
pub fn run_due(ctx: &Context, dry_run: bool) -> Step {
    if ctx.config.file.github.is_none() {
        return Step::unconfigured("github");
    }
    let mut step = Step::new("github");
    match sync_all(ctx, SyncOptions { dry_run, ..SyncOptions::default() }) {
        Err(e) => step.actions.push(Action {
            object: "github".into(),
            action: "sync".into(),
            reason: "secrets are synced after every run".into(),
            result: ActionResult::Failed { error: e.to_string() },
        }),
        Ok(report) => {
            for s in &report.scopes {
                if let Some(e) = &s.error {
                    step.actions.push(Action {
                        object: s.scope.clone(),
                        action: "sync".into(),
                        reason: "secrets are synced after every run".into(),
                        result: ActionResult::Failed { error: e.clone() },
                    });
                    continue;
                }
                for r in &s.secrets {
                    let Some(verb) = r.change.verb() else { continue };
                    let result = match r.outcome {
                        sync::Outcome::Done => ActionResult::Done,
                        sync::Outcome::Planned => ActionResult::Planned,
                        sync::Outcome::Failed => {
                            ActionResult::Failed { error: r.error.clone().unwrap_or_default() }
                        }
                        sync::Outcome::Skipped => continue,
                    };
                    step.actions.push(Action {
                        object: format!("{}/{}", s.key, r.name),
                        action: format!("github-{verb}"),
                        reason: r.reason.clone(),
                        result,
                    });
                }
            }
        }
    }
    step
}

/// The names GitHub holds in one scope, with each one's `updated_at` (RFC 3339), for
/// `keyward report presence --source github`. Never a value (GitHub returns none).
pub fn present_names(
    ctx: &Context,
    scope: &GithubScope,
) -> Result<Vec<(String, Option<String>)>, GithubError> {
    let target = Target::resolve(scope, config(ctx)?)?;
    let api = connect(ctx)?;
    let list = match api.list(&target) {
        Ok(l) => l,
        Err(e) if matches!(e.kind, api::ApiErrorKind::NotFound { .. }) => {
            return Err(GithubError::Missing {
                message: sync::explain_not_found(&api, &target, e),
            });
        }
        Err(e) => return Err(e.into()),
    };
    Ok(list.into_iter().map(|s| (s.name, Some(crate::util::fmt_time(s.updated_at)))).collect())
}

/// One scope in `keyward github status`.
#[derive(Debug, Serialize)]
pub struct ScopeStatus {
    pub scope: String,
    pub key: String,
    /// Wanted by a policy and present on GitHub.
    pub present: Vec<String>,
    /// Wanted by a policy and absent on GitHub.
    pub missing: Vec<String>,
    /// On GitHub, and no policy sends it (keyward never touches these).
    pub unmanaged: Vec<String>,
    /// keyward created it, no policy wants it any more (`sync --prune` deletes it).
    pub prunable: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct GithubStatus {
    pub scopes: Vec<ScopeStatus>,
    pub requests: u64,
}

impl Human for GithubStatus {
    fn human(&self, out: &mut String) {
        if self.scopes.is_empty() {
            out.push_str("no policy sends a secret to GitHub\n");
            return;
        }
        let mut t = Table::new(["SCOPE", "PRESENT", "MISSING", "UNMANAGED", "PRUNABLE"]);
        let list = |v: &Vec<String>| if v.is_empty() { "-".to_string() } else { v.join(" ") };
        for s in &self.scopes {
            match &s.error {
                Some(e) => t.row([
                    s.scope.clone(),
                    format!("FAILED: {e}"),
                    String::new(),
                    String::new(),
                    String::new(),
                ]),
                None => t.row([
                    s.scope.clone(),
                    list(&s.present),
                    list(&s.missing),
                    list(&s.unmanaged),
                    list(&s.prunable),
                ]),
            }
        }
        t.render(out);
    }

    fn exit(&self) -> Exit {
        if self.scopes.iter().any(|s| s.error.is_some()) {
            Exit::Failed
        } else if self.scopes.iter().any(|s| !s.missing.is_empty()) {
            Exit::Attention
        } else {
            Exit::Ok
        }
    }
}

/// Computes `github status` from the items, the state and one list per scope.
pub fn status_of<A: SecretsApi>(
    api: &A,
    targets: &sync::Targets<'_>,
    state: &SyncState,
) -> GithubStatus {
    let start = api.requests();
    let mut all: BTreeSet<Target> = targets.keys().cloned().collect();
    all.extend(state.scopes.values().map(|s| s.target.clone()));
    let mut scopes = Vec::new();
    for target in all {
        let wanted: BTreeSet<&str> = targets
            .get(&target)
            .map(|v| v.iter().map(|(i, _)| i.name.as_str()).collect())
            .unwrap_or_default();
        let owned: BTreeSet<&str> = state
            .scopes
            .get(&target.key())
            .map(|s| {
                s.secrets
                    .iter()
                    .filter(|(_, e)| e.created_by_keyward)
                    .map(|(n, _)| n.as_str())
                    .collect()
            })
            .unwrap_or_default();
        let mut st = ScopeStatus {
            scope: target.to_string(),
            key: target.key(),
            present: Vec::new(),
            missing: Vec::new(),
            unmanaged: Vec::new(),
            prunable: Vec::new(),
            error: None,
        };
        match api.list(&target) {
            Err(e) => st.error = Some(e.to_string()),
            Ok(list) => {
                let have: BTreeSet<&str> = list.iter().map(|s| s.name.as_str()).collect();
                for w in &wanted {
                    if have.contains(w) {
                        st.present.push(w.to_string());
                    } else {
                        st.missing.push(w.to_string());
                    }
                }
                for h in &have {
                    if wanted.contains(h) {
                        continue;
                    }
                    if owned.contains(h) {
                        st.prunable.push(h.to_string());
                    } else {
                        st.unmanaged.push(h.to_string());
                    }
                }
            }
        }
        scopes.push(st);
    }
    GithubStatus { scopes, requests: api.requests() - start }
}

/// `keyward github status`.
pub fn status_command(ctx: &Context) -> Result<Exit, Error> {
    let config = config(ctx)?;
    let items = crate::secrets::github_items(ctx).map_err(GithubError::from)?;
    let state = SyncState::open(&ctx.store)?;
    let (targets, errors) = sync::plan_targets(&items, config);
    if let Some(e) = errors.first() {
        return Err(GithubError::Config { key: "github".into(), message: e.clone() }.into());
    }
    let status = if targets.is_empty() && state.is_empty() {
        GithubStatus { scopes: Vec::new(), requests: 0 }
    } else {
        status_of(&connect(ctx)?, &targets, &state)
    };
    crate::output::emit(ctx.format, &status)
}

/// GitHub's lines of `keyward status`, from the sync state only (no request): one
/// per scope keyward has written to.
pub fn status(ctx: &Context) -> Result<Vec<crate::status::Item>, Error> {
    if ctx.config.file.github.is_none() {
        return Ok(Vec::new());
    }
    let state = SyncState::open(&ctx.store)?;
    Ok(state
        .scopes
        .values()
        .map(|s| {
            let owned = s.secrets.values().filter(|e| e.created_by_keyward).count();
            let last = s.secrets.values().map(|e| e.synced_at).max();
            let (health, failed) = match &s.last_error {
                Some(e) => (crate::status::Health::Failing, format!("; last sync FAILED: {e}")),
                None => (crate::status::Health::Healthy, String::new()),
            };
            crate::status::Item {
                kind: "github",
                name: s.target.to_string(),
                health,
                not_after: None,
                days_left: None,
                next_action: None,
                version: None,
                last_rotated: None,
                note: format!(
                    "{} secret(s) synced ({owned} created by keyward), last write {}{failed}",
                    s.secrets.len(),
                    last.map_or_else(|| "-".to_string(), crate::util::fmt_time)
                ),
            }
        })
        .collect())
}
