//! `keyward status`: every certificate and secret with its health, and the last run.
//!
//! Each capability contributes [`Item`]s; this module decides what needs attention and
//! renders the human table, JSON and the Prometheus textfile. It reads state only.

use serde::Serialize;

use crate::output::{Format, Human, Table};
use crate::run::{LAST_RUN_FILE, LastRun};
use crate::{Context, Error, Exit};

/// A certificate with fewer days left than this makes `status` exit 3.
pub const CRITICAL_DAYS: i64 = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    Healthy,
    DueSoon,
    Overdue,
    Failing,
}

impl Health {
    pub fn label(self) -> &'static str {
        match self {
            Health::Healthy => "ok",
            Health::DueSoon => "due soon",
            Health::Overdue => "OVERDUE",
            Health::Failing => "FAILING",
        }
    }
}

/// One line of status.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// `ca`, `certificate`, `acme`, `secret`.
    pub kind: &'static str,
    pub name: String,
    pub health: Health,
    /// Certificates: notAfter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
    /// When keyward will act next (renewal, rotation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_action: Option<String>,
    /// Secrets: the current version and when it was rotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_rotated: Option<String>,
    /// A short human note (serial, issuer, last error).
    pub note: String,
}

impl Item {
    /// Whether this item alone makes `status` exit 3.
    pub fn needs_attention(&self) -> bool {
        matches!(self.health, Health::Overdue | Health::Failing)
            || self.days_left.is_some_and(|d| d < CRITICAL_DAYS)
    }
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub items: Vec<Item>,
    pub last_run: Option<LastRun>,
    pub attention: bool,
}

impl Human for Status {
    fn human(&self, out: &mut String) {
        let mut t = Table::new(["KIND", "NAME", "HEALTH", "NOT AFTER", "DAYS", "NEXT", "NOTE"]);
        for i in &self.items {
            t.row([
                i.kind.to_string(),
                i.name.clone(),
                i.health.label().to_string(),
                i.not_after.clone().unwrap_or_else(|| "-".into()),
                i.days_left.map_or_else(|| "-".into(), |d| d.to_string()),
                i.next_action.clone().unwrap_or_else(|| "-".into()),
                i.note.clone(),
            ]);
        }
        if t.is_empty() {
            out.push_str(
                "no certificates or secrets yet: run 'keyward run' (or 'keyward ca init')\n",
            );
        } else {
            t.render(out);
        }
        match &self.last_run {
            None => out.push_str("last run: never\n"),
            Some(r) if r.success => {
                out.push_str(&format!("last run: {} ok", r.finished));
                if let Some(t) = &r.last_failure {
                    out.push_str(&format!(" (last failure {t}: {})", r.last_failed.join("; ")));
                }
                out.push('\n');
            }
            Some(r) => {
                out.push_str(&format!("last run: {} FAILED: {}\n", r.finished, r.failed.join("; ")))
            }
        }
        if self.attention {
            out.push_str("attention needed\n");
        }
    }

    fn exit(&self) -> Exit {
        if self.attention { Exit::Attention } else { Exit::Ok }
    }
}

/// Collects every capability's items.
pub fn collect(ctx: &Context) -> Result<Status, Error> {
    let mut items = Vec::new();
    items.extend(crate::ca::status(ctx)?);
    items.extend(crate::acme::status(ctx)?);
    items.extend(crate::secrets::status(ctx)?);
    items.extend(crate::github::status(ctx)?);
    let last_run: Option<LastRun> = ctx.store.read_json(LAST_RUN_FILE)?;
    let attention = items.iter().any(Item::needs_attention);
    Ok(Status { items, last_run, attention })
}

/// `keyward status`.
pub fn command(ctx: &Context) -> Result<Exit, Error> {
    let status = collect(ctx)?;
    if ctx.format == Format::Prometheus {
        crate::output::write_stdout(prometheus(&status).as_bytes())?;
        return Ok(status.exit());
    }
    crate::output::emit(ctx.format, &status)
}

/// The node_exporter textfile form (docs/monitoring/ has the alert rules on it).
pub fn prometheus(status: &Status) -> String {
    let mut m = Metrics::default();
    let certs: Vec<&Item> = status.items.iter().filter(|i| i.not_after.is_some()).collect();
    let secrets: Vec<&Item> = status.items.iter().filter(|i| i.kind == "secret").collect();
    // Days left is a recording rule on this (docs/monitoring), not a metric: a gauge
    // of days would go stale between runs and break Prometheus' base-unit rule.
    m.family(
        "keyward_certificate_expiry_timestamp_seconds",
        "The certificate's notAfter (a CRL's nextUpdate for kind=crl).",
    );
    for i in &certs {
        if let Some(t) = i.not_after.as_deref().and_then(timestamp) {
            m.sample(&[("kind", i.kind), ("name", &i.name)], t);
        }
    }
    m.family(
        "keyward_secret_last_rotated_timestamp_seconds",
        "When the current version became current.",
    );
    for i in &secrets {
        if let Some(t) = i.last_rotated.as_deref().and_then(timestamp) {
            m.sample(&[("name", &i.name)], t);
        }
    }
    m.family("keyward_secret_max_age_seconds", "The rotation period of the secret's policy.");
    for i in &secrets {
        let last = i.last_rotated.as_deref().and_then(timestamp);
        let due = i.next_action.as_deref().and_then(timestamp);
        if let (Some(last), Some(due)) = (last, due) {
            m.sample(&[("name", &i.name)], due - last);
        }
    }
    m.family("keyward_secret_overdue", "1 when the secret is past its rotation date.");
    for i in &secrets {
        m.sample(&[("name", &i.name)], i64::from(i.health == Health::Overdue));
    }
    m.family("keyward_item_failing", "1 when the last attempt on the item failed.");
    for i in &status.items {
        m.sample(&[("kind", i.kind), ("name", &i.name)], i64::from(i.health == Health::Failing));
    }
    if let Some(run) = &status.last_run {
        m.family("keyward_last_run_timestamp_seconds", "When the last keyward run finished.");
        if let Some(t) = timestamp(&run.finished) {
            m.sample(&[], t);
        }
        m.family("keyward_last_run_success", "1 when the last keyward run had no failed item.");
        m.sample(&[], i64::from(run.success));
        if let Some(t) = run.last_success.as_deref().and_then(timestamp) {
            m.family(
                "keyward_last_success_timestamp_seconds",
                "When the last successful run finished.",
            );
            m.sample(&[], t);
        }
        if let Some(t) = run.last_failure.as_deref().and_then(timestamp) {
            m.family(
                "keyward_last_failure_timestamp_seconds",
                "When the last run with a failed item finished.",
            );
            m.sample(&[], t);
        }
    }
    m.family("keyward_attention", "1 when 'keyward status' exits 3.");
    m.sample(&[], i64::from(status.attention));
    m.out
}

#[derive(Default)]
struct Metrics {
    out: String,
    name: &'static str,
}

impl Metrics {
    fn family(&mut self, name: &'static str, help: &str) {
        self.name = name;
        self.out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: i64) {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            let l: Vec<String> =
                labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
            self.out.push_str(&format!("{{{}}}", l.join(",")));
        }
        self.out.push_str(&format!(" {value}\n"));
    }
}

fn timestamp(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp())
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Writes the textfile for node_exporter atomically, mode 0644 so it can read it.
pub fn write_textfile(ctx: &Context) -> Result<Option<std::path::PathBuf>, Error> {
    let Some(path) = ctx.config.file.metrics.textfile.as_ref().map(|p| ctx.config.resolve(p))
    else {
        return Ok(None);
    };
    let text = prometheus(&collect(ctx)?);
    // Rewritten on every run and read-only for node_exporter: atomic, no fsync needed.
    crate::store::replace_unsynced(&path, text.as_bytes(), crate::store::FileMode::PUBLIC)?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
