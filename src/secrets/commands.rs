//! The secrets commands (`list`, `rotate`, `rollback`, `set`, `get`, `docs`) and the
//! secrets part of `keyward run` and `keyward status`.
//!
//! Results are built as plain data (names, versions, times) and handed to
//! `crate::output`; values are only ever written raw to stdout by `secrets get`.

use std::io::{IsTerminal, Read};
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::policy::Policy;
use super::vault::{ChangeKind, Entry};
use super::{Secrets, SecretsError};
use crate::audit::{Object, Outcome};
use crate::output::{Human, Table};
use crate::run::{Action, ActionResult, Step};
use crate::secret::SecretBytes;
use crate::status::{Health, Item};
use crate::{Context, Error, Exit};

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// When the current value of `p` becomes due, if it ever does.
pub fn due_at(p: &Policy, e: Option<&Entry>) -> Option<DateTime<Utc>> {
    let cur = e?.current.as_ref()?;
    if !p.rotates() {
        return None;
    }
    let since = parse_time(cur.promoted.as_deref().unwrap_or(&cur.created))?;
    Some(since + Duration::days(i64::from(p.rotation_days)))
}

pub fn last_rotated(e: Option<&Entry>) -> Option<String> {
    let cur = e?.current.as_ref()?;
    Some(cur.promoted.clone().unwrap_or_else(|| cur.created.clone()))
}

/// What `keyward run` would do for `p`, and why.
pub fn due(p: &Policy, e: Option<&Entry>, now: DateTime<Utc>) -> Option<(&'static str, String)> {
    if let Some(pending) = e.and_then(|e| e.pending.as_ref()) {
        return Some((
            "recover",
            format!(
                "version {} was left {} by a run started {}",
                pending.version.version,
                serde_json::to_value(pending.phase)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                pending.started
            ),
        ));
    }
    if p.generator.is_imported() {
        return None;
    }
    if e.and_then(|e| e.current.as_ref()).is_none() {
        return Some(("create", "no value yet".into()));
    }
    let at = due_at(p, e)?;
    if at <= now {
        Some((
            "rotate",
            format!(
                "last rotated {}; every {} days, due {}",
                last_rotated(e).unwrap_or_default(),
                p.rotation_days,
                crate::util::fmt_time(at)
            ),
        ))
    } else {
        None
    }
}

/// The secrets part of `keyward run`: finish or roll back interrupted changes, then
/// create and rotate what is due. One failed secret does not stop the others.
pub fn run_due(ctx: &Context, dry_run: bool) -> Step {
    if ctx.config.file.secrets.is_none() {
        return Step::unconfigured("secrets");
    }
    let mut step = Step::new("secrets");
    let mut s = match Secrets::open(ctx) {
        Ok(s) => s,
        Err(e) => {
            step.actions.push(Action {
                object: "policies".into(),
                action: "load".into(),
                reason: "secrets are configured".into(),
                result: ActionResult::Failed { error: e.to_string() },
            });
            return step;
        }
    };
    let policies: Vec<Policy> = s.policies.iter().cloned().collect();
    for p in &policies {
        let Some((action, reason)) = due(p, s.vault.entry(&p.name), ctx.now) else { continue };
        if dry_run {
            step.actions.push(Action {
                object: p.name.clone(),
                action: action.into(),
                reason,
                result: ActionResult::Planned,
            });
            continue;
        }
        let mut result = ActionResult::Done;
        let mut action = action.to_string();
        let mut reason = reason;
        if action == "recover" {
            match super::rotate::recover(&mut s, p) {
                Ok(msg) => {
                    reason = msg;
                    // Still due after a rollback (or never created): rotate now.
                    if let Some((a, why)) = due(p, s.vault.entry(&p.name), ctx.now) {
                        action = format!("recover+{a}");
                        reason = format!("{reason}; {why}");
                        if let Err(e) =
                            super::rotate::change(&mut s, &p.name, ChangeKind::Rotate, None)
                        {
                            result = ActionResult::Failed { error: e.to_string() };
                        }
                    }
                }
                Err(e) => result = ActionResult::Failed { error: e.to_string() },
            }
        } else if let Err(e) = super::rotate::change(&mut s, &p.name, ChangeKind::Rotate, None) {
            result = ActionResult::Failed { error: e.to_string() };
        }
        if let ActionResult::Failed { error } = &result {
            crate::warn!("{error}");
        }
        step.actions.push(Action { object: p.name.clone(), action, reason, result });
    }
    step
}

/// The secrets lines of `keyward status`.
pub fn status(ctx: &Context) -> Result<Vec<Item>, Error> {
    let Some(config) = ctx.config.file.secrets.as_ref() else { return Ok(Vec::new()) };
    let s = Secrets::open(ctx)?;
    let here = config.environment.as_deref();
    let mut items = Vec::with_capacity(s.policies.len());
    for p in s.policies.iter() {
        let e = s.vault.entry(&p.name);
        let current = e.and_then(|e| e.current.as_ref());
        let due = due_at(p, e);
        let warn = Duration::days(i64::from(config.warn_days));
        let (mut health, mut note) = match (current, due) {
            (None, _) if p.generator.is_imported() => {
                if p.required(here) || here.is_none() && !p.required_in.is_empty() {
                    (
                        Health::DueSoon,
                        format!("missing: import it with 'keyward secrets set {}'", p.name),
                    )
                } else {
                    (Health::Healthy, "not set (not required here)".into())
                }
            }
            (None, _) => (Health::DueSoon, "not generated yet: 'keyward run' creates it".into()),
            (Some(_), None) => (Health::Healthy, "never rotated automatically".into()),
            (Some(_), Some(d)) if d <= ctx.now => (
                Health::Overdue,
                if p.generator.is_imported() {
                    format!("overdue: re-import it with 'keyward secrets set {}'", p.name)
                } else {
                    format!("overdue: 'keyward secrets rotate {}'", p.name)
                },
            ),
            (Some(_), Some(d)) if d - warn <= ctx.now => {
                (Health::DueSoon, "rotation due soon".into())
            }
            (Some(_), Some(_)) => (Health::Healthy, String::new()),
        };
        if let Some(pending) = e.and_then(|e| e.pending.as_ref()) {
            health = health.max(Health::DueSoon);
            note = format!(
                "version {} interrupted; the next run finishes or rolls it back",
                pending.version.version
            );
        }
        if let Some(err) = e.and_then(|e| e.last_error.as_ref()) {
            health = Health::Failing;
            note = format!("last attempt {} failed: {}", err.time, err.error);
        }
        // The human table has no version or age column: say them in the note.
        if let Some(c) = current {
            let age = last_rotated(e)
                .and_then(|t| parse_time(&t))
                .map(|t| (ctx.now - t).num_days())
                .unwrap_or(0);
            let head = format!("v{}, {age} days old", c.version);
            note = if note.is_empty() { head } else { format!("{head}; {note}") };
        }
        items.push(Item {
            kind: "secret",
            name: p.name.clone(),
            health,
            not_after: None,
            days_left: None,
            next_action: due.map(crate::util::fmt_time),
            version: current.map(|c| c.version),
            last_rotated: last_rotated(e),
            note,
        });
    }
    Ok(items)
}

// ---------------------------------------------------------------- secrets list

#[derive(Debug, Serialize)]
pub struct ListRow {
    pub name: String,
    pub generator: String,
    pub version: Option<u64>,
    pub previous: Option<u64>,
    pub pending: Option<u64>,
    pub last_rotated: Option<String>,
    pub due: Option<String>,
    pub targets: Vec<String>,
    pub inactive_targets: Vec<String>,
    pub required_in: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct List {
    pub secrets: Vec<ListRow>,
}

impl Human for List {
    fn human(&self, out: &mut String) {
        let mut t = Table::new(["NAME", "VERSION", "LAST ROTATED", "DUE", "TARGETS"]);
        for r in &self.secrets {
            let mut version = r.version.map_or_else(|| "-".into(), |v| format!("v{v}"));
            if let Some(p) = r.pending {
                version.push_str(&format!(" (v{p} pending)"));
            }
            let mut targets = r.targets.join(", ");
            if !r.inactive_targets.is_empty() {
                if !targets.is_empty() {
                    targets.push_str(", ");
                }
                targets.push_str(&format!("{} not configured here", r.inactive_targets.len()));
            }
            t.row([
                r.name.clone(),
                version,
                r.last_rotated.clone().unwrap_or_else(|| "-".into()),
                r.due.clone().unwrap_or_else(|| "-".into()),
                if targets.is_empty() { "-".into() } else { targets },
            ]);
        }
        if t.is_empty() {
            out.push_str("no secret policies\n");
        } else {
            t.render(out);
        }
    }
}

pub fn list(ctx: &Context) -> Result<Exit, Error> {
    let s = Secrets::open(ctx)?;
    let mut rows = Vec::new();
    for p in s.policies.iter() {
        let e = s.vault.entry(&p.name);
        let (targets, inactive) = super::rotate::targets(&s, p);
        rows.push(ListRow {
            name: p.name.clone(),
            generator: p.generator.describe(),
            version: e.and_then(|e| e.current.as_ref()).map(|v| v.version),
            previous: e.and_then(|e| e.previous.as_ref()).map(|v| v.version),
            pending: e.and_then(|e| e.pending.as_ref()).map(|v| v.version.version),
            last_rotated: last_rotated(e),
            due: due_at(p, e).map(crate::util::fmt_time),
            targets: targets.into_iter().map(|t| t.id).collect(),
            inactive_targets: inactive,
            required_in: p.required_in.clone(),
        });
    }
    crate::output::emit(ctx.format, &List { secrets: rows })
}

// ---------------------------------------------------------------- rotate / rollback / set

#[derive(Debug, Serialize)]
pub struct ChangeRow {
    pub name: String,
    pub action: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(flatten)]
    pub result: ActionResult,
}

#[derive(Debug, Serialize)]
pub struct Changes {
    pub dry_run: bool,
    pub changes: Vec<ChangeRow>,
}

impl Human for Changes {
    fn human(&self, out: &mut String) {
        if self.changes.is_empty() {
            out.push_str("nothing to do\n");
            return;
        }
        let mut t = Table::new(["NAME", "ACTION", "RESULT", "WHY"]);
        for c in &self.changes {
            let result = match &c.result {
                ActionResult::Planned => "planned".to_string(),
                ActionResult::Done => match c.version {
                    Some(v) => format!("done: v{v} current"),
                    None => "done".into(),
                },
                ActionResult::Failed { error } => format!("FAILED: {error}"),
            };
            t.row([c.name.clone(), c.action.clone(), result, c.reason.clone()]);
        }
        t.render(out);
    }

    fn exit(&self) -> Exit {
        if self.changes.iter().any(|c| matches!(c.result, ActionResult::Failed { .. })) {
            Exit::Failed
        } else {
            Exit::Ok
        }
    }
}

/// `keyward secrets rotate [NAME…|--due] [--dry-run]`.
pub fn rotate(
    ctx: &Context,
    names: &[String],
    only_due: bool,
    dry_run: bool,
) -> Result<Exit, Error> {
    if names.is_empty() && !only_due {
        return Err(Error::Usage(
            "name the secrets to rotate ('keyward secrets rotate SECRET_KEY …') or pass --due"
                .into(),
        ));
    }
    let _lock = if dry_run { None } else { Some(ctx.lock()?) };
    let mut s = Secrets::open(ctx)?;
    let selected: Vec<Policy> = if only_due {
        s.policies
            .iter()
            .filter(|p| due(p, s.vault.entry(&p.name), ctx.now).is_some())
            .cloned()
            .collect()
    } else {
        let mut v = Vec::new();
        for n in names {
            let p = s.policy(n)?;
            if p.generator.is_imported() {
                return Err(SecretsError::Refused(format!(
                    "{n} is imported, keyward cannot generate it: set the new value with 'keyward secrets set {n}' (value on stdin)"
                ))
                .into());
            }
            v.push(p.clone());
        }
        v
    };
    let mut changes = Vec::new();
    for p in &selected {
        let reason = due(p, s.vault.entry(&p.name), ctx.now)
            .map(|(_, why)| why)
            .unwrap_or_else(|| "asked for".into());
        if dry_run {
            changes.push(ChangeRow {
                name: p.name.clone(),
                action: "rotate".into(),
                reason,
                version: None,
                result: ActionResult::Planned,
            });
            continue;
        }
        let mut reason = reason;
        let before = s.vault.entry(&p.name).and_then(|e| e.current.as_ref()).map(|c| c.version);
        let had_pending = s.vault.entry(&p.name).and_then(|e| e.pending.as_ref()).is_some();
        let mut result = ActionResult::Done;
        if had_pending {
            match super::rotate::recover(&mut s, p) {
                Ok(msg) => reason = msg,
                Err(e) => {
                    changes.push(ChangeRow {
                        name: p.name.clone(),
                        action: "recover".into(),
                        reason,
                        version: None,
                        result: ActionResult::Failed { error: e.to_string() },
                    });
                    continue;
                }
            }
        }
        let after = s.vault.entry(&p.name).and_then(|e| e.current.as_ref()).map(|c| c.version);
        // An interrupted rotation that was just finished is the rotation asked for.
        let version = if had_pending && after != before {
            after
        } else {
            match super::rotate::change(&mut s, &p.name, ChangeKind::Rotate, None) {
                Ok(d) => Some(d.version),
                Err(e) => {
                    result = ActionResult::Failed { error: e.to_string() };
                    None
                }
            }
        };
        changes.push(ChangeRow {
            name: p.name.clone(),
            action: "rotate".into(),
            reason,
            version,
            result,
        });
    }
    crate::output::emit(ctx.format, &Changes { dry_run, changes })
}

/// `keyward secrets rollback NAME`.
pub fn rollback(ctx: &Context, name: &str) -> Result<Exit, Error> {
    let _lock = ctx.lock()?;
    let mut s = Secrets::open(ctx)?;
    s.policy(name)?;
    let row = match super::rotate::change(&mut s, name, ChangeKind::Rollback, None) {
        Ok(d) => ChangeRow {
            name: name.into(),
            action: "rollback".into(),
            reason: d.recovered.unwrap_or_else(|| "asked for".into()),
            version: Some(d.version),
            result: ActionResult::Done,
        },
        Err(e @ SecretsError::Refused(_)) => return Err(e.into()),
        Err(e) => ChangeRow {
            name: name.into(),
            action: "rollback".into(),
            reason: "asked for".into(),
            version: None,
            result: ActionResult::Failed { error: e.to_string() },
        },
    };
    crate::output::emit(ctx.format, &Changes { dry_run: false, changes: vec![row] })
}

/// Reads a value from stdin: all of it, minus one final line break.
fn read_value(stdin: &mut dyn Read) -> Result<SecretBytes, SecretsError> {
    let mut buf = zeroize::Zeroizing::new(Vec::new());
    stdin
        .read_to_end(&mut buf)
        .map_err(|e| SecretsError::Io(format!("cannot read the value from stdin: {e}")))?;
    let mut v = buf.to_vec();
    if v.ends_with(b"\r\n") {
        v.truncate(v.len() - 2);
    } else if v.ends_with(b"\n") {
        v.truncate(v.len() - 1);
    }
    let v = SecretBytes::new(v);
    if v.is_empty() {
        return Err(SecretsError::Refused(
            "stdin was empty: pipe the value in, e.g. 'keyward secrets set NAME < file'".into(),
        ));
    }
    Ok(v)
}

/// `keyward secrets set NAME` (value on stdin).
pub fn set(ctx: &Context, name: &str) -> Result<Exit, Error> {
    if std::io::stdin().is_terminal() {
        return Err(SecretsError::Refused(format!(
            "'keyward secrets set {name}' reads the value from stdin and does not take it from a terminal (it would echo): pipe it in, e.g. 'keyward secrets set {name} < value-file'"
        ))
        .into());
    }
    let value = read_value(&mut std::io::stdin().lock())?;
    let _lock = ctx.lock()?;
    let mut s = Secrets::open(ctx)?;
    s.policy(name)?;
    let row = match super::rotate::change(&mut s, name, ChangeKind::Set, Some(value)) {
        Ok(d) => ChangeRow {
            name: name.into(),
            action: "set".into(),
            reason: "imported from stdin".into(),
            version: Some(d.version),
            result: ActionResult::Done,
        },
        Err(e) => ChangeRow {
            name: name.into(),
            action: "set".into(),
            reason: "imported from stdin".into(),
            version: None,
            result: ActionResult::Failed { error: e.to_string() },
        },
    };
    crate::output::emit(ctx.format, &Changes { dry_run: false, changes: vec![row] })
}

/// `keyward secrets get NAME [--reveal]`: the value, raw, on stdout.
pub fn get(ctx: &Context, name: &str, reveal: bool) -> Result<Exit, Error> {
    let terminal = std::io::stdout().is_terminal();
    if terminal && !reveal {
        return Err(SecretsError::Refused(format!(
            "stdout is a terminal: 'keyward secrets get {name}' prints the value only with --reveal (or into a pipe or file)"
        ))
        .into());
    }
    let s = Secrets::open(ctx)?;
    s.policy(name)?;
    let Some((version, value)) = s.vault.current_value(name)? else {
        return Err(SecretsError::Refused(format!(
            "{name} has no value yet: {}",
            if s.policy(name)?.generator.is_imported() {
                format!("import it with 'keyward secrets set {name}'")
            } else {
                "'keyward run' creates it".into()
            }
        ))
        .into());
    };
    ctx.audit.append(
        "secret-reveal",
        Object::new("secret", name).version(version),
        Outcome::Ok,
        Some(if terminal {
            "printed to a terminal (--reveal)"
        } else {
            "written to a pipe or file"
        }),
    )?;
    let mut out = value.expose().to_vec();
    if terminal {
        out.push(b'\n');
    }
    let out = SecretBytes::new(out);
    crate::output::write_stdout(out.expose())?;
    Ok(Exit::Ok)
}

// ---------------------------------------------------------------- docs

#[derive(Debug, Serialize)]
pub struct DocsWritten {
    pub path: String,
    pub secrets: usize,
}

impl Human for DocsWritten {
    fn human(&self, out: &mut String) {
        out.push_str(&format!("wrote {} ({} secrets)\n", self.path, self.secrets));
    }
}

/// `keyward secrets docs [-o FILE]` over the policies of `dir`.
pub fn docs(
    policy_dir: &Path,
    output: Option<&Path>,
    format: crate::output::Format,
) -> Result<Exit, Error> {
    let policies = super::Policies::load_dir(policy_dir)?;
    let text = super::docs::render(&policies);
    match output {
        Some(path) => {
            crate::store::atomic_write(path, text.as_bytes(), crate::store::FileMode::PUBLIC)?;
            crate::output::emit(
                format,
                &DocsWritten { path: path.display().to_string(), secrets: policies.len() },
            )
        }
        None => {
            crate::output::write_stdout(text.as_bytes())?;
            Ok(Exit::Ok)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_value_loses_one_line_break_only() {
        assert_eq!(read_value(&mut &b"abc\n"[..]).unwrap().expose(), b"abc");
        assert_eq!(read_value(&mut &b"abc\r\n"[..]).unwrap().expose(), b"abc");
        assert_eq!(read_value(&mut &b"abc\n\n"[..]).unwrap().expose(), b"abc\n");
        assert!(read_value(&mut &b"\n"[..]).is_err());
    }
}
