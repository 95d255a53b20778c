//! Reports for CI: the secret-presence report (`keyward report presence`).
//!
//! For each secret the policies define, a [`Source`] says whether it exists there and,
//! when the source knows, since when. Sources: `env` (GitHub Actions maps secrets to
//! environment variables; an unset secret arrives empty), `state` (keyward's own
//! store), and `github` (the GitHub API listing, provided by the GitHub module). The
//! report is names, scopes, required-by, present/missing, age and due date — it never
//! holds a value or any part of one (not its length, not a prefix), and a source never
//! hands one over: [`Observation`] has no field that could carry it.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::output::{Format, Human, Table};
use crate::secrets::{Policies, Policy};
use crate::{Error, Exit};

/// The JSON document's `schema` value; docs/report-presence.md describes it.
pub const SCHEMA: &str = "keyward.presence/1";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot append the step summary to {path}: {source}")]
    Summary { path: PathBuf, source: std::io::Error },
}

impl ReportError {
    pub fn exit(&self) -> Exit {
        Exit::Failed
    }
}

/// What a source knows about one secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    pub present: bool,
    /// When the source says it was last set (RFC 3339), if it knows.
    pub updated_at: Option<String>,
}

/// A place where secrets are expected to exist.
pub trait Source {
    /// `env`, `state`, `github`.
    fn name(&self) -> &'static str;
    /// One observation per name, in order.
    fn observe(&self, names: &[&str]) -> Result<Vec<Observation>, Error>;
}

/// The process environment: what a GitHub Actions job sees of its secrets.
pub struct EnvSource;

impl Source for EnvSource {
    fn name(&self) -> &'static str {
        "env"
    }
    fn observe(&self, names: &[&str]) -> Result<Vec<Observation>, Error> {
        // One pass over the environment (each `var_os` call would scan all of it),
        // marking the names asked for; nothing of a value is kept but whether it is
        // empty. GitHub passes an unset secret as an empty string, which is missing.
        let mut present: foldhash::HashMap<&std::ffi::OsStr, bool> =
            names.iter().map(|n| (std::ffi::OsStr::new(*n), false)).collect();
        for (k, v) in std::env::vars_os() {
            if let Some(p) = present.get_mut(k.as_os_str()) {
                *p |= !v.is_empty();
            }
        }
        Ok(names
            .iter()
            .map(|n| Observation { present: present[std::ffi::OsStr::new(*n)], updated_at: None })
            .collect())
    }
}

/// keyward's own store: a secret is present when it has a current version.
pub struct StateSource {
    /// name → when the current version became current.
    pub current: HashMap<String, String>,
}

impl StateSource {
    pub fn load(ctx: &crate::Context) -> Result<StateSource, Error> {
        let file: crate::secrets::vault::VaultFile =
            ctx.store.read_json(crate::secrets::vault::VAULT_FILE)?.unwrap_or_default();
        let current = file
            .secrets
            .into_iter()
            .filter_map(|(n, e)| e.current.map(|c| (n, c.promoted.unwrap_or(c.created))))
            .collect();
        Ok(StateSource { current })
    }
}

impl Source for StateSource {
    fn name(&self) -> &'static str {
        "state"
    }
    fn observe(&self, names: &[&str]) -> Result<Vec<Observation>, Error> {
        Ok(names
            .iter()
            .map(|n| match self.current.get(*n) {
                Some(t) => Observation { present: true, updated_at: Some(t.clone()) },
                None => Observation::default(),
            })
            .collect())
    }
}

/// GitHub: a secret is present when a scope its policy names holds it. With
/// `--environment ENV` the scopes are those a job in ENV sees: the repository, the
/// organisation and ENV's own environment. Only names and `updated_at` come back from
/// GitHub (it never returns values).
pub struct GithubSource {
    /// name → the newest `updated_at` among the scopes that hold it.
    found: HashMap<String, Option<String>>,
}

impl GithubSource {
    pub fn load(
        ctx: &crate::Context,
        policies: &Policies,
        environment: Option<&str>,
    ) -> Result<GithubSource, Error> {
        use crate::github::GithubScope;
        let applies = |s: &GithubScope| match s {
            GithubScope::Environment { environment: e } => environment.is_none_or(|env| env == e),
            GithubScope::Repository | GithubScope::Organization { .. } => true,
        };
        let mut listed: HashMap<GithubScope, HashMap<String, Option<String>>> = HashMap::new();
        for scope in policies.iter().flat_map(|p| p.github.iter()).filter(|s| applies(s)) {
            if !listed.contains_key(scope) {
                let names = crate::github::present_names(ctx, scope)?;
                listed.insert(scope.clone(), names.into_iter().collect());
            }
        }
        let mut found: HashMap<String, Option<String>> = HashMap::new();
        for p in policies.iter() {
            for scope in p.github.iter().filter(|s| applies(s)) {
                if let Some(updated) = listed.get(scope).and_then(|names| names.get(&p.name)) {
                    let slot = found.entry(p.name.clone()).or_default();
                    if updated.as_deref() > slot.as_deref() {
                        *slot = updated.clone();
                    }
                }
            }
        }
        Ok(GithubSource { found })
    }
}

impl Source for GithubSource {
    fn name(&self) -> &'static str {
        "github"
    }
    fn observe(&self, names: &[&str]) -> Result<Vec<Observation>, Error> {
        Ok(names
            .iter()
            .map(|n| match self.found.get(*n) {
                Some(t) => Observation { present: true, updated_at: t.clone() },
                None => Observation::default(),
            })
            .collect())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Present,
    Missing,
    /// Not present, and not required in the environment asked about.
    Absent,
}

/// One secret's line of the report. It borrows from its policy: a report over
/// thousands of secrets copies none of their names or descriptions.
#[derive(Debug, Serialize)]
pub struct Row<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub required: bool,
    pub required_in: &'a [String],
    pub github_scopes: Scopes<'a>,
    pub state: State,
    pub updated_at: Option<String>,
    pub age_days: Option<i64>,
    pub rotation_days: u32,
    pub due: Option<String>,
    pub overdue: bool,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub secrets: usize,
    pub required: usize,
    pub present: usize,
    pub missing: usize,
    pub overdue: usize,
}

#[derive(Debug, Serialize)]
pub struct Presence<'a> {
    pub schema: &'static str,
    pub source: &'static str,
    pub environment: Option<String>,
    pub checked_at: String,
    pub summary: Summary,
    pub secrets: Vec<Row<'a>>,
}

/// A policy's GitHub scopes, serialized as their descriptions
/// (`environment \`production\``).
#[derive(Debug, Clone, Copy)]
pub struct Scopes<'a>(pub &'a [crate::github::GithubScope]);

impl Scopes<'_> {
    pub fn describe(&self) -> Vec<String> {
        self.0.iter().map(crate::secrets::docs::scope).collect()
    }
}

impl Serialize for Scopes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(crate::secrets::docs::scope))
    }
}

fn parse(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&Utc))
}

/// Builds the report for `environment` (every environment any policy names, when
/// `None`) from `source`.
pub fn presence<'a>(
    policies: &'a Policies,
    environment: Option<&str>,
    source: &dyn Source,
    now: DateTime<Utc>,
) -> Result<Presence<'a>, Error> {
    let list: Vec<&'a Policy> = policies.iter().collect();
    let names: Vec<&str> = list.iter().map(|p| p.name.as_str()).collect();
    let seen = source.observe(&names)?;
    let mut rows = Vec::with_capacity(list.len());
    for (p, o) in list.iter().zip(seen) {
        let required = p.required(environment);
        let state = match (o.present, required) {
            (true, _) => State::Present,
            (false, true) => State::Missing,
            (false, false) => State::Absent,
        };
        let updated = o.updated_at.as_deref().and_then(parse);
        let due = match updated {
            Some(u) if p.rotates() => Some(u + Duration::days(i64::from(p.rotation_days))),
            _ => None,
        };
        rows.push(Row {
            name: &p.name,
            description: &p.description,
            required,
            required_in: &p.required_in,
            github_scopes: Scopes(&p.github),
            state,
            updated_at: o.updated_at,
            age_days: updated.map(|u| (now - u).num_days()),
            rotation_days: p.rotation_days,
            due: due.map(crate::util::fmt_time),
            overdue: due.is_some_and(|d| d <= now),
        });
    }
    let summary = Summary {
        secrets: rows.len(),
        required: rows.iter().filter(|r| r.required).count(),
        present: rows.iter().filter(|r| r.state == State::Present).count(),
        missing: rows.iter().filter(|r| r.state == State::Missing).count(),
        overdue: rows.iter().filter(|r| r.overdue).count(),
    };
    Ok(Presence {
        schema: SCHEMA,
        source: source.name(),
        environment: environment.map(String::from),
        checked_at: crate::util::fmt_time(now),
        summary,
        secrets: rows,
    })
}

fn where_(p: &Presence) -> String {
    match &p.environment {
        Some(e) => format!("environment '{e}'"),
        None => "any environment".into(),
    }
}

impl Human for Presence<'_> {
    fn human(&self, out: &mut String) {
        let mut t = Table::new(["NAME", "STATE", "REQUIRED IN", "UPDATED", "DUE"]);
        for r in &self.secrets {
            let state = match r.state {
                State::Present if r.overdue => "present (OVERDUE)",
                State::Present => "present",
                State::Missing => "MISSING",
                State::Absent => "absent (not required)",
            };
            t.row([
                r.name.to_string(),
                state.to_string(),
                if r.required_in.is_empty() { "-".into() } else { r.required_in.join(",") },
                r.updated_at.clone().unwrap_or_else(|| "-".into()),
                r.due.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        t.render(out);
        out.push_str(&format!(
            "{} of {} required secrets present for {} (source {}); {} missing\n",
            self.summary.required - self.summary.missing,
            self.summary.required,
            where_(self),
            self.source,
            self.summary.missing
        ));
    }

    fn exit(&self) -> Exit {
        if self.summary.missing > 0 { Exit::Attention } else { Exit::Ok }
    }
}

/// Escapes the message of a GitHub workflow command.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escapes a property value (`title=…`) of a GitHub workflow command.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

fn md(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// The workflow commands printed on stdout.
pub fn annotations(p: &Presence) -> String {
    let mut out = String::new();
    for r in &p.secrets {
        match r.state {
            State::Missing => out.push_str(&format!(
                "::error title={}::{}\n",
                escape_property("Missing secret"),
                escape_data(&format!(
                    "{} is required in {} but is not set (source {}): {}. Add it as a GitHub secret or run 'keyward github sync'.",
                    r.name,
                    r.required_in.join(", "),
                    p.source,
                    r.description
                ))
            )),
            State::Present if r.overdue => out.push_str(&format!(
                "::warning title={}::{}\n",
                escape_property("Secret overdue for rotation"),
                escape_data(&format!(
                    "{} was due for rotation on {}: run 'keyward secrets rotate {}'",
                    r.name,
                    r.due.as_deref().unwrap_or("-"),
                    r.name
                ))
            )),
            _ => {}
        }
    }
    out.push_str(&format!(
        "::notice title={}::{}\n",
        escape_property("Secret presence"),
        escape_data(&format!(
            "{} of {} required secrets present for {} (source {}); {} missing",
            p.summary.required - p.summary.missing,
            p.summary.required,
            where_(p),
            p.source,
            p.summary.missing
        ))
    ));
    out
}

/// The Markdown appended to `$GITHUB_STEP_SUMMARY`.
pub fn step_summary(p: &Presence) -> String {
    let mut out = format!(
        "### Secret presence ({}, source `{}`)\n\n{} of {} required secrets present; {} missing.\n\n",
        where_(p),
        p.source,
        p.summary.required - p.summary.missing,
        p.summary.required,
        p.summary.missing
    );
    out.push_str("| secret | state | required in | GitHub scopes | updated | due |\n| --- | --- | --- | --- | --- | --- |\n");
    for r in &p.secrets {
        let state = match r.state {
            State::Present if r.overdue => "⚠️ present, overdue",
            State::Present => "✅ present",
            State::Missing => "❌ missing",
            State::Absent => "➖ absent (not required)",
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            r.name,
            state,
            md(&r.required_in.join(", ")),
            md(&r.github_scopes.describe().join(", ")),
            r.updated_at.as_deref().unwrap_or("-"),
            r.due.as_deref().unwrap_or("-"),
        ));
    }
    out.push('\n');
    out
}

/// Prints the report in `format`; with `github`, also appends the step summary.
pub fn emit(p: &Presence, format: Format) -> Result<Exit, Error> {
    match format {
        Format::Github => {
            crate::output::write_stdout(annotations(p).as_bytes())?;
            if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|v| !v.is_empty()) {
                let path = PathBuf::from(path);
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|source| ReportError::Summary { path: path.clone(), source })
                    .map_err(|e| Error::Output(e.to_string()))?;
                f.write_all(step_summary(p).as_bytes())
                    .map_err(|source| ReportError::Summary { path, source })
                    .map_err(|e| Error::Output(e.to_string()))?;
            }
            Ok(p.exit())
        }
        _ => crate::output::emit(format, p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_command_escaping() {
        assert_eq!(escape_data("a%b\r\nc"), "a%25b%0D%0Ac");
        assert_eq!(escape_property("x: y, z"), "x%3A y%2C z");
    }

    struct Fixed(Vec<bool>);
    impl Source for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }
        fn observe(&self, names: &[&str]) -> Result<Vec<Observation>, Error> {
            Ok(names
                .iter()
                .zip(&self.0)
                .map(|(_, &p)| Observation {
                    present: p,
                    updated_at: p.then(|| "2026-01-01T00:00:00Z".into()),
                })
                .collect())
        }
    }

    #[test]
    fn missing_required_means_attention() {
        let mut p = Policies::default();
        p.add_text(
            std::path::Path::new("t.toml"),
            r#"
[[secret]]
name = "A"
description = "a"
generator = { kind = "hex", bytes = 32 }
required_in = ["production"]
[[secret]]
name = "B"
description = "b"
generator = { kind = "imported" }
required_in = ["staging"]
"#,
        )
        .unwrap();
        let now = crate::util::parse_time("2026-06-01").unwrap();
        let r = presence(&p, Some("production"), &Fixed(vec![true, false]), now).unwrap();
        assert_eq!(r.exit(), Exit::Ok);
        assert_eq!(r.secrets[1].state, State::Absent);
        assert!(r.secrets[0].overdue);
        let r = presence(&p, None, &Fixed(vec![true, false]), now).unwrap();
        assert_eq!(r.exit(), Exit::Attention);
        assert!(annotations(&r).contains("::error title=Missing secret::B is required in staging"));
    }
}
