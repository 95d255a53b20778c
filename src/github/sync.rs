//! The no-drift, no-waste sync: decides per scope and secret what to create,
//! update or delete, and does it.
//!
//! Per scope: one list request (drift check); when anything must be written, one
//! public-key request; then one PUT per changed secret, serially. A value is re-sent
//! only when its keyed hash differs from the one recorded, when GitHub no longer has
//! it, or when GitHub's `updated_at` is newer than keyward's last write (changed
//! behind keyward's back: warned, then re-sent). Deletes happen only with `prune`,
//! and only of secrets whose creation keyward recorded. A failed write is never
//! recorded as synced, and one failed secret or scope does not stop the others.
//!
//! The engine takes the items and the state as arguments and returns a report; it
//! writes no file (the caller saves the state) and never puts a value in the report.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use serde::Serialize;

use super::api::{ApiError, ApiErrorKind, OrgAccess, RemoteSecret, Sealed, SecretsApi, Written};
use super::scope::{GithubScope, Target, Visibility};
use super::seal::ScopeKey;
use super::state::{Entry, SyncState};
use crate::output::{Human, Table};
use crate::secrets::GithubItem;
use crate::{Exit, warn};

/// GitHub's limit on one secret's value.
pub const MAX_VALUE_BYTES: usize = 48 * 1024;

#[derive(Debug, Clone, Copy, Default)]
pub struct SyncOptions {
    /// List what would change; write nothing (no public key is fetched either).
    pub dry_run: bool,
    /// Delete secrets keyward created in a scope and no policy sends there any more.
    pub prune: bool,
    /// When the list request (the drift check) is made.
    pub drift_check: super::config::DriftCheck,
}

/// What happens to one secret in one scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    Create,
    Update,
    Delete,
    Unchanged,
    /// keyward created it, no policy wants it, and `--prune` was not given.
    Prunable,
}

impl Change {
    fn label(self) -> &'static str {
        match self {
            Change::Create => "create",
            Change::Update => "update",
            Change::Delete => "delete",
            Change::Unchanged => "unchanged",
            Change::Prunable => "prunable",
        }
    }
    fn writes(self) -> bool {
        self.verb().is_some()
    }

    /// The write's verb, for the audit log and `keyward run`; `None` for no write.
    pub fn verb(self) -> Option<&'static str> {
        match self {
            Change::Create => Some("create"),
            Change::Update => Some("update"),
            Change::Delete => Some("delete"),
            Change::Unchanged | Change::Prunable => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Planned,
    Done,
    Failed,
    Skipped,
}

/// One line of the report. Never holds a value.
#[derive(Debug, Clone, Serialize)]
pub struct SecretReport {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    pub change: Change,
    pub reason: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScopeReport {
    pub scope: String,
    pub key: String,
    /// Why the whole scope failed (list or public key), when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub secrets: Vec<SecretReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub dry_run: bool,
    pub prune: bool,
    pub scopes: Vec<ScopeReport>,
    pub warnings: Vec<String>,
    /// HTTP requests sent to GitHub during the sync.
    pub requests: u64,
}

impl SyncReport {
    pub fn failed(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.scopes {
            if let Some(e) = &s.error {
                out.push(format!("{}: {e}", s.scope));
            }
            for r in s.secrets.iter().filter(|r| r.outcome == Outcome::Failed) {
                out.push(format!("{} in {}", r.name, s.scope));
            }
        }
        out
    }

    pub fn count(&self, change: Change, outcome: Outcome) -> usize {
        self.scopes
            .iter()
            .flat_map(|s| &s.secrets)
            .filter(|r| r.change == change && r.outcome == outcome)
            .count()
    }
}

impl Human for SyncReport {
    fn human(&self, out: &mut String) {
        let mut t = Table::new(["SCOPE", "SECRET", "CHANGE", "RESULT", "WHY"]);
        let mut failures = Vec::new();
        for s in &self.scopes {
            if let Some(e) = &s.error {
                failures.push(format!("{}: {e}", s.scope));
            }
            for r in &s.secrets {
                if r.change == Change::Unchanged && r.outcome != Outcome::Failed {
                    continue;
                }
                let result = match r.outcome {
                    Outcome::Failed => "FAILED",
                    Outcome::Planned => "planned",
                    Outcome::Done => "done",
                    Outcome::Skipped => "-",
                };
                if let Some(e) = &r.error
                    && s.error.as_deref() != Some(e.as_str())
                {
                    failures.push(format!("{} in {}: {e}", r.name, s.scope));
                }
                t.row([
                    s.scope.clone(),
                    r.name.clone(),
                    r.change.label().into(),
                    result.into(),
                    r.reason.clone(),
                ]);
            }
        }
        if !t.is_empty() {
            t.render(out);
        }
        let unchanged = self.count(Change::Unchanged, Outcome::Skipped);
        let verb = if self.dry_run { "would be" } else { "were" };
        let done = if self.dry_run { Outcome::Planned } else { Outcome::Done };
        out.push_str(&format!(
            "{} scope(s): {} {verb} created, {} updated, {} deleted; {unchanged} unchanged; {} request(s) to GitHub\n",
            self.scopes.len(),
            self.count(Change::Create, done.clone()),
            self.count(Change::Update, done.clone()),
            self.count(Change::Delete, done),
            self.requests
        ));
        let prunable = self.count(Change::Prunable, Outcome::Skipped);
        if prunable > 0 {
            out.push_str(&format!(
                "{prunable} secret(s) keyward created are no longer wanted: 'keyward github sync --prune' deletes them\n"
            ));
        }
        for f in failures {
            out.push_str(&format!("FAILED: {f}\n"));
        }
    }

    fn exit(&self) -> Exit {
        if self.failed().is_empty() { Exit::Ok } else { Exit::Failed }
    }
}

/// Whether GitHub accepts `name` as a secret name.
pub fn name_problem(name: &str) -> Option<&'static str> {
    let first = name.chars().next()?;
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Some("secret names may hold only letters, digits and underscores");
    }
    if first.is_ascii_digit() {
        return Some("secret names must not start with a digit");
    }
    if name.to_ascii_uppercase().starts_with("GITHUB_") {
        return Some("secret names must not start with GITHUB_ (reserved by GitHub)");
    }
    None
}

/// One secret wanted in one scope.
struct Want<'a> {
    item: &'a GithubItem,
    access: Option<(Visibility, Vec<String>)>,
}

fn access_sig(access: &Option<(Visibility, Vec<String>)>) -> Option<String> {
    access.as_ref().map(|(v, repos)| {
        let mut repos = repos.clone();
        repos.sort();
        if *v == Visibility::Selected {
            format!("{}:{}", v.as_str(), repos.join(","))
        } else {
            v.as_str().to_string()
        }
    })
}

/// Items by resolved scope, each with the policy scope that sent it there.
pub type Targets<'a> = BTreeMap<Target, Vec<(&'a GithubItem, &'a GithubScope)>>;

/// Groups items by resolved scope. Scopes that cannot be resolved (missing config)
/// become errors of their own.
pub fn plan_targets<'a>(
    items: &'a [GithubItem],
    config: &super::config::GithubConfig,
) -> (Targets<'a>, Vec<String>) {
    let mut out: BTreeMap<Target, Vec<(&GithubItem, &GithubScope)>> = BTreeMap::new();
    let mut errors = Vec::new();
    for item in items {
        for scope in &item.scopes {
            match Target::resolve(scope, config) {
                Ok(t) => out.entry(t).or_default().push((item, scope)),
                Err(e) => {
                    let msg = format!("{}: {e}", item.name);
                    if !errors.contains(&msg) {
                        errors.push(msg);
                    }
                }
            }
        }
    }
    (out, errors)
}

/// Runs the sync of `items` (each with its resolved scopes) against `api`.
pub fn sync<A: SecretsApi>(
    api: &A,
    targets: &Targets<'_>,
    state: &mut SyncState,
    opts: SyncOptions,
) -> SyncReport {
    let start = api.requests();
    let mut report = SyncReport {
        dry_run: opts.dry_run,
        prune: opts.prune,
        scopes: Vec::new(),
        warnings: Vec::new(),
        requests: 0,
    };
    // Scopes keyward wrote before but no policy names now: only pruning concerns them.
    let mut all: BTreeSet<Target> = targets.keys().cloned().collect();
    for s in state.scopes.values() {
        if s.secrets.values().any(|e| e.created_by_keyward) || opts.prune {
            all.insert(s.target.clone());
        }
    }
    let mut repo_ids: BTreeMap<(String, String), Result<Option<u64>, ApiError>> = BTreeMap::new();
    for target in all {
        let empty = Vec::new();
        let wanted = targets.get(&target).unwrap_or(&empty);
        let r = sync_scope(api, &target, wanted, state, opts, &mut repo_ids, &mut report.warnings);
        if !opts.dry_run {
            let failed: Vec<&str> = r
                .secrets
                .iter()
                .filter(|x| x.outcome == Outcome::Failed)
                .map(|x| x.name.as_str())
                .collect();
            let error = match (&r.error, failed.is_empty()) {
                (Some(e), _) => Some(e.clone()),
                (None, false) => Some(format!("failed: {}", failed.join(", "))),
                (None, true) => None,
            };
            state.note_sync(&target, Utc::now(), error);
        }
        report.scopes.push(r);
    }
    report.requests = api.requests() - start;
    report
}

fn sync_scope<A: SecretsApi>(
    api: &A,
    target: &Target,
    wanted: &[(&GithubItem, &GithubScope)],
    state: &mut SyncState,
    opts: SyncOptions,
    repo_ids: &mut BTreeMap<(String, String), Result<Option<u64>, ApiError>>,
    warnings: &mut Vec<String>,
) -> ScopeReport {
    let mut rep = ScopeReport {
        scope: target.to_string(),
        key: target.key(),
        error: None,
        secrets: Vec::new(),
    };
    let mut wants: BTreeMap<&str, Want<'_>> = BTreeMap::new();
    let mut bad: BTreeMap<String, (Option<u64>, String)> = BTreeMap::new();
    for (item, scope) in wanted {
        let access = match scope {
            GithubScope::Organization { visibility, selected_repositories } => {
                Some((*visibility, selected_repositories.clone()))
            }
            _ => None,
        };
        if let Some(prev) = wants.get(item.name.as_str()) {
            if !std::ptr::eq(prev.item, *item) || prev.access != access {
                bad.insert(
                    item.name.clone(),
                    (
                        Some(item.version),
                        format!(
                            "two policies send {} to {target} differently; keep one",
                            item.name
                        ),
                    ),
                );
            }
            continue;
        }
        if let Some(p) = name_problem(&item.name) {
            bad.insert(
                item.name.clone(),
                (
                    Some(item.version),
                    format!("GitHub would refuse the name: {p}; rename the secret in its policy"),
                ),
            );
            continue;
        }
        if item.value.len() > MAX_VALUE_BYTES {
            bad.insert(
                item.name.clone(),
                (
                    Some(item.version),
                    format!(
                        "the value is {} bytes; GitHub stores at most 48 KB (49152 bytes) per secret: store a smaller value (for example a key that decrypts a file kept elsewhere)",
                        item.value.len()
                    ),
                ),
            );
            continue;
        }
        if let Some((Visibility::Selected, repos)) = &access
            && repos.is_empty()
        {
            bad.insert(
                item.name.clone(),
                (
                    Some(item.version),
                    "visibility \"selected\" needs selected_repositories in the policy".into(),
                ),
            );
            continue;
        }
        wants.insert(item.name.as_str(), Want { item, access });
    }
    for (name, (version, error)) in &bad {
        wants.remove(name.as_str());
        rep.secrets.push(SecretReport {
            name: name.clone(),
            version: *version,
            change: if state.entry(target, name).is_some() {
                Change::Update
            } else {
                Change::Create
            },
            reason: "refused before sending".into(),
            outcome: Outcome::Failed,
            error: Some(error.clone()),
        });
    }

    // Whether anything must be written, judged from the state alone.
    let owned_unwanted = state.scopes.get(&target.key()).is_some_and(|sc| {
        sc.secrets.iter().any(|(n, e)| {
            e.created_by_keyward && !wants.contains_key(n.as_str()) && !bad.contains_key(n)
        })
    });
    let writes_due = wants.iter().any(|(name, w)| match state.entry(target, name) {
        None => true,
        Some(e) => {
            e.mac != state.mac(target, name, w.item.value.expose())
                || e.access != access_sig(&w.access)
        }
    });
    // A delete is always checked against what GitHub holds first, and so is a scope
    // keyward has never synced (it may hold secrets keyward does not know of).
    let prune_due = opts.prune && owned_unwanted;
    let first_sync = !state.scopes.contains_key(&target.key());
    let checked = opts.drift_check == super::config::DriftCheck::Always
        || !writes_due
        || prune_due
        || first_sync;

    // The drift check: what GitHub holds now.
    let listed = if checked {
        match api.list(target) {
            Ok(r) => r,
            Err(e) => {
                let e = explain_not_found(api, target, e);
                fail_all(
                    &mut rep,
                    wants.values().map(|w| (w.item.name.clone(), Some(w.item.version))),
                    &e,
                );
                rep.error = Some(e);
                return rep;
            }
        }
    } else {
        Vec::new()
    };
    let remote: BTreeMap<&str, &RemoteSecret> =
        listed.iter().map(|r| (r.name.as_str(), r)).collect();
    let again = if opts.dry_run { "would send it again" } else { "sending it again" };

    struct Planned<'a> {
        want: &'a Want<'a>,
        change: Change,
        reason: String,
        mac: String,
        access: Option<String>,
    }
    let mut plan: Vec<Planned<'_>> = Vec::new();
    for (name, want) in &wants {
        let mac = state.mac(target, name, want.item.value.expose());
        let access = access_sig(&want.access);
        let entry = state.entry(target, name);
        let (change, reason) = if !checked {
            // Only the state to go by (github.drift_check = "when-unchanged").
            match entry {
                None => (Change::Create, "not sent yet".to_string()),
                Some(e) if e.mac != mac => (
                    Change::Update,
                    format!("value changed (version {} → {})", e.version, want.item.version),
                ),
                Some(e) if e.access != access => {
                    (Change::Update, "visibility or selected repositories changed".into())
                }
                Some(e) => (
                    Change::Unchanged,
                    format!("version {} is current (not checked on GitHub this time)", e.version),
                ),
            }
        } else {
            match (remote.get(name), entry) {
            (None, None) => (Change::Create, "new".to_string()),
            (None, Some(_)) => {
                let w = format!("{name} was deleted from {target} behind keyward's back; {again}");
                warn!("{w}");
                warnings.push(w);
                (Change::Create, "deleted on GitHub".into())
            }
            (Some(_), None) => (
                Change::Update,
                "exists on GitHub but keyward has no record of sending it; sending the policy's value".into(),
            ),
            (Some(r), Some(e)) => {
                let behind = |also: &str, then: &str| {
                    format!(
                        "{name} in {target} was {also}changed on GitHub at {} (keyward last wrote it at {}), behind keyward's back; {then}",
                        crate::util::fmt_time(r.updated_at),
                        crate::util::fmt_time(e.synced_at)
                    )
                };
                if e.mac != mac {
                    if r.updated_at > e.synced_at {
                        let w = behind("also ", "the new version replaces it");
                        warn!("{w}");
                        warnings.push(w);
                    }
                    (Change::Update, format!("value changed (version {} → {})", e.version, want.item.version))
                } else if r.updated_at > e.synced_at {
                    let w = behind("", again);
                    warn!("{w}");
                    warnings.push(w);
                    (Change::Update, "changed on GitHub behind keyward's back".into())
                } else if e.access != access
                    || (want.access.is_some() && r.visibility.is_some() && r.visibility != want.access.as_ref().map(|a| a.0))
                {
                    (Change::Update, "visibility or selected repositories changed".into())
                } else {
                    (Change::Unchanged, format!("version {} is current", e.version))
                }
            }
        }
        };
        plan.push(Planned { want, change, reason, mac, access });
    }

    // Pruning: only what keyward created and no policy wants here any more.
    let mut deletes: Vec<(String, u64)> = Vec::new();
    if let Some(s) = state.scopes.get(&target.key()) {
        for (name, e) in &s.secrets {
            if wants.contains_key(name.as_str()) || bad.contains_key(name) {
                continue;
            }
            if !e.created_by_keyward {
                continue;
            }
            if !checked || remote.contains_key(name.as_str()) {
                deletes.push((name.clone(), e.version));
            }
        }
    }
    if opts.prune {
        // Records of secrets that are gone or that keyward never owned are dropped.
        let forget: Vec<String> = state
            .scopes
            .get(&target.key())
            .map(|s| {
                s.secrets
                    .iter()
                    .filter(|(n, e)| {
                        !wants.contains_key(n.as_str())
                            && !bad.contains_key(*n)
                            && (!e.created_by_keyward
                                || (checked && !remote.contains_key(n.as_str())))
                    })
                    .map(|(n, _)| n.clone())
                    .collect()
            })
            .unwrap_or_default();
        if !opts.dry_run {
            for n in forget {
                state.forget(target, &n);
            }
        }
    }

    // GitHub's limit on secrets per scope: the creates that do not fit fail.
    let present = if checked {
        remote.len()
    } else {
        state.scopes.get(&target.key()).map_or(0, |sc| sc.secrets.len())
    };
    let mut room = target.max_secrets().saturating_sub(present);
    let mut too_many = BTreeSet::new();
    for p in plan.iter().filter(|p| p.change == Change::Create) {
        if room == 0 {
            too_many.insert(p.want.item.name.clone());
        } else {
            room -= 1;
        }
    }

    let needs_key = plan.iter().any(|p| p.change.writes() && !too_many.contains(&p.want.item.name));
    let key = if needs_key && !opts.dry_run {
        match api.public_key(target).map_err(|e| explain_not_found(api, target, e)).and_then(|k| {
            ScopeKey::parse(&k.key_id, &k.key)
                .map_err(|e| format!("{e} for {target}; run again, and report it if it persists"))
        }) {
            Ok(k) => Some(k),
            Err(e) => {
                let names = plan
                    .iter()
                    .filter(|p| p.change.writes())
                    .map(|p| (p.want.item.name.clone(), Some(p.want.item.version)));
                fail_all(&mut rep, names, &e);
                for p in plan.iter().filter(|p| !p.change.writes()) {
                    rep.secrets.push(line(
                        p.want.item,
                        p.change,
                        &p.reason,
                        Outcome::Skipped,
                        None,
                    ));
                }
                rep.error = Some(e);
                return rep;
            }
        }
    } else {
        None
    };

    for p in &plan {
        let item = p.want.item;
        if !p.change.writes() {
            rep.secrets.push(line(item, p.change, &p.reason, Outcome::Skipped, None));
            continue;
        }
        if too_many.contains(&item.name) {
            let e = format!(
                "{target} already holds {} secrets, GitHub's limit is {}: delete unused ones there (or move some to an environment or the organisation) and run again",
                present,
                target.max_secrets()
            );
            rep.secrets.push(line(item, p.change, &p.reason, Outcome::Failed, Some(e)));
            continue;
        }
        let Some(key) = &key else {
            rep.secrets.push(line(item, p.change, &p.reason, Outcome::Planned, None));
            continue;
        };
        let access = match &p.want.access {
            None => None,
            Some((visibility, repos)) => {
                match org_access(api, target, *visibility, repos, repo_ids) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        rep.secrets.push(line(item, p.change, &p.reason, Outcome::Failed, Some(e)));
                        continue;
                    }
                }
            }
        };
        let sealed = match key.seal(item.value.expose()) {
            Ok(v) => Sealed { encrypted_value: v, key_id: key.key_id.clone() },
            Err(e) => {
                rep.secrets.push(line(
                    item,
                    p.change,
                    &p.reason,
                    Outcome::Failed,
                    Some(e.to_string()),
                ));
                continue;
            }
        };
        match api.put(target, &item.name, &sealed, access.as_ref()) {
            Ok(reply) => {
                let before = state.entry(target, &item.name).map(|e| e.created_by_keyward);
                state.record(
                    target,
                    &item.name,
                    Entry {
                        mac: p.mac.clone(),
                        version: item.version,
                        synced_at: reply.date.unwrap_or_else(Utc::now),
                        created_by_keyward: reply.written == Written::Created
                            || before.unwrap_or(false),
                        access: p.access.clone(),
                    },
                );
                let change =
                    if reply.written == Written::Created { Change::Create } else { Change::Update };
                rep.secrets.push(line(item, change, &p.reason, Outcome::Done, None));
            }
            Err(e) => {
                rep.secrets.push(line(
                    item,
                    p.change,
                    &p.reason,
                    Outcome::Failed,
                    Some(e.to_string()),
                ));
            }
        }
    }

    // Deletes last, and only when every write of the scope went through: a renamed
    // secret's old name goes only once the new one is in place.
    let write_failed = rep.secrets.iter().any(|r| r.outcome == Outcome::Failed);
    for (name, version) in deletes {
        let reason = "keyward created it; no policy sends it here any more".to_string();
        let mk = |outcome, error| SecretReport {
            name: name.clone(),
            version: Some(version),
            change: if opts.prune { Change::Delete } else { Change::Prunable },
            reason: reason.clone(),
            outcome,
            error,
        };
        if !opts.prune {
            rep.secrets.push(mk(Outcome::Skipped, None));
        } else if write_failed && !opts.dry_run {
            rep.secrets.push(SecretReport {
                reason: "not deleted: another secret of this scope failed to sync; run again once it is fixed".into(),
                ..mk(Outcome::Skipped, None)
            });
        } else if opts.dry_run {
            rep.secrets.push(mk(Outcome::Planned, None));
        } else {
            match api.delete(target, &name) {
                Ok(()) => {
                    state.forget(target, &name);
                    rep.secrets.push(mk(Outcome::Done, None));
                }
                Err(e) => rep.secrets.push(mk(Outcome::Failed, Some(e.to_string()))),
            }
        }
    }
    if opts.dry_run {
        for s in rep.secrets.iter_mut() {
            if s.change.writes() && s.outcome == Outcome::Skipped {
                s.outcome = Outcome::Planned;
            }
        }
    }
    rep
}

fn line(
    item: &GithubItem,
    change: Change,
    reason: &str,
    outcome: Outcome,
    error: Option<String>,
) -> SecretReport {
    SecretReport {
        name: item.name.clone(),
        version: Some(item.version),
        change,
        reason: reason.to_string(),
        outcome,
        error,
    }
}

fn fail_all(
    rep: &mut ScopeReport,
    names: impl Iterator<Item = (String, Option<u64>)>,
    error: &str,
) {
    for (name, version) in names {
        rep.secrets.push(SecretReport {
            name,
            version,
            change: Change::Update,
            reason: "scope failed".into(),
            outcome: Outcome::Failed,
            error: Some(error.to_string()),
        });
    }
}

/// A 404 on an environment is either a missing environment or a missing
/// repository; one more request tells which, so the fix-it line is right.
pub(crate) fn explain_not_found<A: SecretsApi>(api: &A, target: &Target, e: ApiError) -> String {
    if !matches!(e.kind, ApiErrorKind::NotFound { .. }) {
        return e.to_string();
    }
    match target {
        Target::Environment { owner, repo, environment } => match api.repository_id(owner, repo) {
            Ok(Some(_)) => format!(
                "the environment {environment:?} does not exist in {owner}/{repo}; keyward never creates environments: create it in the repository's Settings → Environments (or fix the policy's environment name), then run again"
            ),
            Ok(None) => format!(
                "the repository {owner}/{repo} does not exist or {} cannot see it: check github.owner and github.repository in keyward.toml and the token's repository access",
                e.auth.describe()
            ),
            Err(_) => e.to_string(),
        },
        Target::Repository { owner, repo } => format!(
            "the repository {owner}/{repo} does not exist or {} cannot see it (404): check github.owner and github.repository in keyward.toml and the token's repository access",
            e.auth.describe()
        ),
        Target::Organization { org } => format!(
            "the organisation {org} does not exist or {} cannot manage its secrets (404): check github.organization in keyward.toml",
            e.auth.describe()
        ),
    }
}

fn org_access<A: SecretsApi>(
    api: &A,
    target: &Target,
    visibility: Visibility,
    repos: &[String],
    cache: &mut BTreeMap<(String, String), Result<Option<u64>, ApiError>>,
) -> Result<OrgAccess, String> {
    let Target::Organization { org } = target else {
        return Err("organisation access on a repository scope".into());
    };
    let mut ids = Vec::new();
    if visibility == Visibility::Selected {
        for r in repos {
            let key = (org.clone(), r.clone());
            let res = cache.entry(key).or_insert_with(|| api.repository_id(org, r));
            match res {
                Ok(Some(id)) => ids.push(*id),
                Ok(None) => {
                    return Err(format!(
                        "selected repository {org}/{r} does not exist (or the token cannot see it): fix selected_repositories in the policy"
                    ));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        ids.sort_unstable();
    }
    Ok(OrgAccess { visibility, selected_repository_ids: ids })
}
