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
            Some(r) if r.success => out.push_str(&format!("last run: {} ok\n", r.finished)),
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
    items.extend(crate::secrets::status(ctx)?);
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

/// The node_exporter textfile form.
pub fn prometheus(status: &Status) -> String {
    let mut out = String::new();
    out.push_str("# HELP keyward_certificate_days_left Days until the certificate's notAfter.\n");
    out.push_str("# TYPE keyward_certificate_days_left gauge\n");
    for i in status.items.iter().filter(|i| i.days_left.is_some()) {
        out.push_str(&format!(
            "keyward_certificate_days_left{{kind=\"{}\",name=\"{}\"}} {}\n",
            i.kind,
            escape_label(&i.name),
            i.days_left.unwrap_or_default()
        ));
    }
    out.push_str(
        "# HELP keyward_attention Whether keyward status needs attention (1) or not (0).\n",
    );
    out.push_str("# TYPE keyward_attention gauge\n");
    out.push_str(&format!("keyward_attention {}\n", u8::from(status.attention)));
    out
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
