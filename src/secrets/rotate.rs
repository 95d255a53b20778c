//! The crash-safe change of a secret's value: rotation, import and rollback.
//!
//! Every change walks the same persisted phases: **stage** (the new value is stored
//! encrypted as *pending*) → **apply** to every target (PostgreSQL first, then env
//! files, then hook commands, which typically restart the services that read them) →
//! **verify** (log in with the new password, read the env file back) → **promote**
//! (pending becomes current, current becomes previous). The phase is written to the
//! store before each step, so after a crash the next run knows what to do: a change
//! that had not finished applying is rolled back to the current value in every target
//! it touched; one that had finished applying is verified and promoted. A secret that
//! has no current value yet can only go forward. At every point each target holds
//! either the current or the pending value, and the store holds both.
//!
//! `KEYWARD_FAULT=rotate:POINT` aborts the process at POINT (`after-stage`,
//! `after-apply-postgres`, `after-apply-env`, `after-apply-hook`, `after-apply`,
//! `after-verify`, `after-promote`), as `kill -9` would. It exists for the crash tests
//! and the recovery drill in docs; it never changes what a normal run does.

use std::path::PathBuf;

use super::policy::Policy;
use super::postgres::Server;
use super::vault::{ChangeKind, Origin, Pending, Phase, Version};
use super::{Secrets, SecretsError};
use crate::audit::{Object, Outcome};
use crate::hooks::Hook;
use crate::secret::SecretBytes;

/// One place a secret's value goes.
pub struct Target {
    /// `postgres:CONNECTION/ROLE`, `env:FILE/KEY`, `hook:NAME`.
    pub id: String,
    pub kind: TargetKind,
}

pub enum TargetKind {
    Postgres { server: Server, role: String },
    Env { path: PathBuf, key: String },
    Hook { name: String, hook: Hook },
}

/// The targets of `policy` that keyward.toml configures on this machine, in apply
/// order, and a note for each one it does not.
pub fn targets(s: &Secrets, p: &Policy) -> (Vec<Target>, Vec<String>) {
    let mut out = Vec::new();
    let mut inactive = Vec::new();
    if let Some(pg) = &p.postgres {
        match s.config.postgres.get(&pg.connection) {
            Some(conn) => {
                let mut conn = conn.clone();
                conn.admin_password_file =
                    conn.admin_password_file.map(|f| s.ctx.config.resolve(&f));
                conn.ssl_ca_file = conn.ssl_ca_file.map(|f| s.ctx.config.resolve(&f));
                out.push(Target {
                    id: format!("postgres:{}/{}", pg.connection, pg.role),
                    kind: TargetKind::Postgres {
                        server: Server { name: pg.connection.clone(), conn },
                        role: pg.role.clone(),
                    },
                });
            }
            None => inactive.push(format!(
                "PostgreSQL connection '{}' is not configured here ([secrets.postgres.{}])",
                pg.connection, pg.connection
            )),
        }
    }
    for e in &p.env {
        let key = p.env_key(e).to_string();
        match s.config.env_files.get(&e.file) {
            Some(path) => out.push(Target {
                id: format!("env:{}/{}", e.file, key),
                kind: TargetKind::Env { path: s.ctx.config.resolve(path), key },
            }),
            None => inactive.push(format!(
                "env file '{}' is not configured here ([secrets.env_files] {} = …)",
                e.file, e.file
            )),
        }
    }
    for h in &p.hooks {
        match s.config.hooks.get(h) {
            Some(hook) => out.push(Target {
                id: format!("hook:{h}"),
                kind: TargetKind::Hook { name: h.clone(), hook: hook.clone() },
            }),
            None => {
                inactive.push(format!("hook '{h}' is not configured here ([secrets.hooks.{h}])"))
            }
        }
    }
    (out, inactive)
}

/// Aborts at `point` when `KEYWARD_FAULT=rotate:POINT` (crash tests only).
pub fn fault(point: &str) {
    if let Some(v) = std::env::var_os("KEYWARD_FAULT")
        && v.to_str().and_then(|v| v.strip_prefix("rotate:")) == Some(point)
    {
        eprintln!("keyward: KEYWARD_FAULT: aborting at rotate:{point}");
        std::process::abort();
    }
}

fn fault_after(t: &Target) {
    fault(match t.kind {
        TargetKind::Postgres { .. } => "after-apply-postgres",
        TargetKind::Env { .. } => "after-apply-env",
        TargetKind::Hook { .. } => "after-apply-hook",
    });
}

/// Why a target could not be changed, and whether it may have changed anyway.
struct ApplyError {
    message: String,
    /// False when the target certainly still holds its old value (PostgreSQL refused
    /// the login or the statement; an atomic env-file write failed).
    maybe_changed: bool,
}

/// Puts `value` into target `t`. `other` is the value the target may hold now
/// (PostgreSQL tries it to log in).
fn apply(
    t: &Target,
    name: &str,
    version: u64,
    value: &SecretBytes,
    other: Option<&SecretBytes>,
    phase: &str,
) -> Result<(), ApplyError> {
    match &t.kind {
        TargetKind::Postgres { server, role } => {
            let mut candidates: Vec<&SecretBytes> = other.into_iter().collect();
            candidates.push(value);
            server.set_password(role, &candidates, value).map_err(|e| ApplyError {
                maybe_changed: matches!(e, super::postgres::PgError::AlterLost { .. }),
                message: e.to_string(),
            })
        }
        TargetKind::Env { path, key } => {
            super::envfile::set(path, key, value).map_err(|e| ApplyError {
                message: format!("cannot write {key} to {}: {e}", path.display()),
                maybe_changed: false,
            })
        }
        TargetKind::Hook { name: hook_name, hook } => crate::hooks::run(
            hook_name,
            hook,
            crate::hooks::Input {
                stdin: Some(value),
                env: vec![
                    ("KEYWARD_SECRET".into(), name.to_string()),
                    ("KEYWARD_SECRET_VERSION".into(), version.to_string()),
                    ("KEYWARD_PHASE".into(), phase.to_string()),
                ],
            },
        )
        .map_err(|e| ApplyError { message: e.to_string(), maybe_changed: true }),
    }
}

/// Checks that target `t` works with `value`.
fn verify(t: &Target, value: &SecretBytes) -> Result<(), String> {
    match &t.kind {
        TargetKind::Postgres { server, role } => server
            .check_login(role, value)
            .map_err(|e| format!("the new password does not work: {e}")),
        TargetKind::Env { path, key } => {
            let file = super::envfile::read(path).map_err(|e| e.to_string())?;
            match file.get(key) {
                Some(v) if v == *value => Ok(()),
                Some(_) => Err(format!(
                    "{} holds another value for {key} than the one written",
                    path.display()
                )),
                None => Err(format!("{} has no {key} after writing it", path.display())),
            }
        }
        TargetKind::Hook { .. } => Ok(()),
    }
}

fn what(t: &Target) -> String {
    match &t.kind {
        TargetKind::Postgres { server, role } => {
            format!("PostgreSQL role \"{role}\" at {}", server.describe())
        }
        TargetKind::Env { path, key } => format!("{key} in {}", path.display()),
        TargetKind::Hook { name, .. } => format!("hook '{name}'"),
    }
}

fn now(s: &Secrets) -> String {
    crate::util::fmt_time(s.ctx.now)
}

fn audit(
    s: &Secrets,
    action: &str,
    name: &str,
    version: u64,
    outcome: Outcome,
    detail: Option<&str>,
) {
    let object = Object::new("secret", name).version(version);
    if let Err(e) = s.ctx.audit.append(action, object, outcome, detail) {
        crate::warn!("{name}: could not write the audit record: {e}");
    }
}

/// What a finished change did.
#[derive(Debug, Clone)]
pub struct Done {
    pub version: u64,
    /// Set when an interrupted change was finished or rolled back first.
    pub recovered: Option<String>,
}

/// Rotates (`Rotate`), imports (`Set`, with `imported`) or rolls back (`Rollback`)
/// the secret `name`, finishing or rolling back an interrupted change first.
pub fn change(
    s: &mut Secrets,
    name: &str,
    kind: ChangeKind,
    imported: Option<SecretBytes>,
) -> Result<Done, SecretsError> {
    let policy = s.policy(name)?.clone();
    let recovered = if s.vault.entry(name).and_then(|e| e.pending.as_ref()).is_some() {
        Some(recover(s, &policy)?)
    } else {
        None
    };
    let first = s.vault.entry(name).and_then(|e| e.current.as_ref()).is_none();
    let action = match kind {
        ChangeKind::Rotate if first => "secret-create",
        ChangeKind::Rotate => "secret-rotate",
        ChangeKind::Set => "secret-set",
        ChangeKind::Rollback => "secret-rollback",
    };
    let entry = s.vault.entry(name).cloned().unwrap_or_default();
    // Stage.
    let new_version = |origin| Version {
        version: entry.last_version + 1,
        origin,
        created: crate::util::fmt_time(s.ctx.now),
        promoted: None,
    };
    let (version, value) = match kind {
        ChangeKind::Rotate => (new_version(Origin::Generated), policy.generator.generate(name)?),
        ChangeKind::Set => (
            new_version(Origin::Imported),
            imported.ok_or_else(|| SecretsError::Refused("no value given".into()))?,
        ),
        ChangeKind::Rollback => {
            let Some(prev) = entry.previous.clone() else {
                return Err(SecretsError::Refused(format!(
                    "{name} has no previous version to roll back to ('keyward secrets list' shows its versions)"
                )));
            };
            let value = s.vault.get(name, prev.version)?;
            (prev, value)
        }
    };
    if kind != ChangeKind::Rollback {
        s.vault.put(name, version.version, &value)?;
    }
    {
        let e = s.vault.entry_mut(name);
        e.last_version = e.last_version.max(version.version);
        e.pending = Some(Pending {
            version: version.clone(),
            kind,
            phase: Phase::Staged,
            started: crate::util::fmt_time(s.ctx.now),
            touched: Vec::new(),
        });
    }
    s.vault.save()?;
    fault("after-stage");
    match drive(s, &policy, &value, Vec::new()) {
        Ok(()) => {
            audit(s, action, name, version.version, Outcome::Ok, None);
            fault("after-promote");
            s.vault.prune(name)?;
            Ok(Done { version: version.version, recovered })
        }
        Err(msg) => {
            audit(s, action, name, version.version, Outcome::Failed, Some(&msg));
            Err(SecretsError::Rotation(msg))
        }
    }
}

/// Apply → verify → promote for the staged pending value `value`. On failure, rolls
/// the touched targets back to the current value (or, with no current value, keeps
/// the pending one for the next run to finish) and returns the operator's message.
fn drive(
    s: &mut Secrets,
    policy: &Policy,
    value: &SecretBytes,
    skip: Vec<String>,
) -> Result<(), String> {
    let name = policy.name.clone();
    let pending =
        s.vault.entry(&name).and_then(|e| e.pending.clone()).ok_or("no pending version")?;
    let version = pending.version.version;
    let current = match s.vault.entry(&name).and_then(|e| e.current.clone()) {
        Some(c) => Some((c.version, s.vault.get(&name, c.version).map_err(|e| e.to_string())?)),
        None => None,
    };
    let (targets, _) = targets(s, policy);
    set_phase(s, &name, Phase::Applying, None).map_err(|e| e.to_string())?;
    let mut failure = None;
    // The failed target, when it certainly kept its old value.
    let mut untouched: Option<String> = None;
    for t in &targets {
        if skip.contains(&t.id) {
            continue;
        }
        set_phase(s, &name, Phase::Applying, Some(&t.id)).map_err(|e| e.to_string())?;
        if let Err(e) = apply(t, &name, version, value, current.as_ref().map(|c| &c.1), "apply") {
            if !e.maybe_changed {
                untouched = Some(t.id.clone());
            }
            failure = Some((t, e.message));
            break;
        }
        fault_after(t);
    }
    if failure.is_none() {
        set_phase(s, &name, Phase::Applied, None).map_err(|e| e.to_string())?;
        fault("after-apply");
        for t in &targets {
            if let Err(e) = verify(t, value) {
                failure = Some((t, e));
                break;
            }
        }
    }
    if let Some((t, err)) = failure {
        let headline = format!("{name}: {} failed: {err}", what(t));
        return Err(match current {
            Some((cur_version, cur)) => {
                let mut touched = s
                    .vault
                    .entry(&name)
                    .and_then(|e| e.pending.as_ref())
                    .map(|p| p.touched.clone())
                    .unwrap_or_default();
                touched.retain(|t| Some(t) != untouched.as_ref());
                match roll_back(policy, &targets, &touched, &cur, cur_version, value) {
                    Ok(()) => {
                        let _ = discard(s, &name, Some(&headline));
                        format!(
                            "{headline}; version {cur_version} is still current in every target — run 'keyward secrets rotate {name}' again after fixing the cause"
                        )
                    }
                    Err(rb) => {
                        let _ = record_error(s, &name, &headline);
                        format!(
                            "{headline}; restoring version {cur_version} also failed ({rb}): version {version} stays pending and the next 'keyward run' retries the rollback — check the targets now"
                        )
                    }
                }
            }
            None => {
                let _ = record_error(s, &name, &headline);
                format!(
                    "{headline}; {name} had no value before, so version {version} stays pending and the next 'keyward run' (or 'keyward secrets rotate {name}') finishes it after the cause is fixed"
                )
            }
        });
    }
    set_phase(s, &name, Phase::Verified, None).map_err(|e| e.to_string())?;
    fault("after-verify");
    promote(s, &name).map_err(|e| e.to_string())
}

/// Puts the current value back into every touched target, last first.
fn roll_back(
    policy: &Policy,
    targets: &[Target],
    touched: &[String],
    current: &SecretBytes,
    current_version: u64,
    pending: &SecretBytes,
) -> Result<(), String> {
    let mut errors = Vec::new();
    for t in targets.iter().rev().filter(|t| touched.contains(&t.id)) {
        let r = apply(t, &policy.name, current_version, current, Some(pending), "rollback")
            .map_err(|e| e.message)
            .and_then(|()| verify(t, current));
        if let Err(e) = r {
            errors.push(format!("{}: {e}", what(t)));
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
}

fn set_phase(
    s: &mut Secrets,
    name: &str,
    phase: Phase,
    touched: Option<&str>,
) -> Result<(), SecretsError> {
    if let Some(p) = s.vault.entry_mut(name).pending.as_mut() {
        p.phase = phase;
        if let Some(t) = touched
            && !p.touched.iter().any(|x| x == t)
        {
            p.touched.push(t.to_string());
        }
    }
    s.vault.save()
}

fn promote(s: &mut Secrets, name: &str) -> Result<(), SecretsError> {
    let at = now(s);
    let e = s.vault.entry_mut(name);
    if let Some(p) = e.pending.take() {
        let mut v = p.version;
        v.promoted = Some(at);
        let old = e.current.replace(v);
        if old.as_ref().map(|o| o.version) != e.current.as_ref().map(|c| c.version) {
            e.previous = old;
        }
        e.last_error = None;
    }
    s.vault.save()
}

fn discard(s: &mut Secrets, name: &str, error: Option<&str>) -> Result<(), SecretsError> {
    let at = now(s);
    let e = s.vault.entry_mut(name);
    e.pending = None;
    if let Some(err) = error {
        e.last_error = Some(super::vault::LastError { time: at, error: err.to_string() });
    }
    s.vault.save()?;
    s.vault.prune(name)
}

fn record_error(s: &mut Secrets, name: &str, err: &str) -> Result<(), SecretsError> {
    let at = now(s);
    s.vault.entry_mut(name).last_error =
        Some(super::vault::LastError { time: at, error: err.to_string() });
    s.vault.save()
}

/// Finishes or rolls back an interrupted change of `policy`'s secret; returns what it did.
pub fn recover(s: &mut Secrets, policy: &Policy) -> Result<String, SecretsError> {
    let name = policy.name.clone();
    let Some(pending) = s.vault.entry(&name).and_then(|e| e.pending.clone()) else {
        return Ok("nothing to recover".into());
    };
    let version = pending.version.version;
    let has_current = s.vault.entry(&name).and_then(|e| e.current.as_ref()).is_some();
    let forward = pending.phase >= Phase::Applied || !has_current;
    let value = s.vault.get(&name, version)?;
    if pending.phase == Phase::Staged && has_current {
        discard(s, &name, None)?;
        let msg = format!(
            "discarded version {version}, staged by an interrupted run before any target was changed"
        );
        audit(s, "secret-recover", &name, version, Outcome::Ok, Some(&msg));
        return Ok(msg);
    }
    if forward {
        // Every target already holds the pending value (or the secret had none):
        // make sure of it, then promote.
        let (targets, _) = targets(s, policy);
        let already_ok: Vec<String> = if pending.phase >= Phase::Applied {
            targets.iter().filter(|t| verify(t, &value).is_ok()).map(|t| t.id.clone()).collect()
        } else {
            Vec::new()
        };
        return match drive(s, policy, &value, already_ok) {
            Ok(()) => {
                let msg = format!(
                    "finished version {version}, left {:?} by an interrupted run",
                    pending.phase
                );
                audit(s, "secret-recover", &name, version, Outcome::Ok, Some(&msg));
                s.vault.prune(&name)?;
                Ok(msg)
            }
            Err(e) => {
                audit(s, "secret-recover", &name, version, Outcome::Failed, Some(&e));
                Err(SecretsError::Rotation(e))
            }
        };
    }
    // Interrupted while applying: put the current value back where it may be gone.
    let cur = s.vault.entry(&name).and_then(|e| e.current.clone()).map(|c| c.version).unwrap_or(0);
    let current = s.vault.get(&name, cur)?;
    let (targets, _) = targets(s, policy);
    match roll_back(policy, &targets, &pending.touched, &current, cur, &value) {
        Ok(()) => {
            discard(s, &name, None)?;
            let msg = format!(
                "rolled back version {version}, interrupted while applying; version {cur} is current in every target"
            );
            audit(s, "secret-recover", &name, version, Outcome::Ok, Some(&msg));
            Ok(msg)
        }
        Err(e) => {
            let msg = format!(
                "{name}: an interrupted change (version {version}) could not be rolled back: {e}; version {version} stays pending and the next run retries — check the targets now"
            );
            record_error(s, &name, &msg)?;
            audit(s, "secret-recover", &name, version, Outcome::Failed, Some(&msg));
            Err(SecretsError::Rotation(msg))
        }
    }
}
