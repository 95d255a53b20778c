//! `keyward run`: the timer's one entry point.
//!
//! Runs every capability's due work in the contract's order — internal CA leaves, ACME
//! certificates, secret rotations, GitHub sync, metrics — under the run lock. One
//! failed item does not stop the others; the run ends non-zero and names what failed.
//! Each capability reports a [`Step`]; this module only orders, records and prints.

use serde::{Deserialize, Serialize};

use crate::audit::{Object, Outcome};
use crate::output::{Human, Table};
use crate::{Context, Error, Exit};

/// What one capability did (or would do) in a run.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: &'static str,
    /// False when keyward.toml has no section for this capability.
    pub configured: bool,
    pub actions: Vec<Action>,
}

impl Step {
    pub fn new(name: &'static str) -> Step {
        Step { name, configured: true, actions: Vec::new() }
    }

    pub fn unconfigured(name: &'static str) -> Step {
        Step { name, configured: false, actions: Vec::new() }
    }

    pub fn exit(&self) -> Exit {
        self.actions.iter().fold(Exit::Ok, |e, a| {
            e.worst(match a.result {
                ActionResult::Failed { .. } => Exit::Failed,
                _ => Exit::Ok,
            })
        })
    }
}

/// One thing due: a leaf to renew, a secret to rotate, a scope to sync.
#[derive(Debug, Clone, Serialize)]
pub struct Action {
    /// The object, as status and the audit log name it (`postgres-server`, `SECRET_KEY`).
    pub object: String,
    /// The verb (`renew`, `rotate`, `sync`, `refresh-crl`).
    pub action: String,
    /// Why it is due (`2/3 of the lifetime passed on 2027-03-01`).
    pub reason: String,
    pub result: ActionResult,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum ActionResult {
    /// Dry run: would be done.
    Planned,
    Done,
    Failed {
        error: String,
    },
}

/// The record of the last run, kept in the state folder for status and metrics.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LastRun {
    pub finished: String,
    pub success: bool,
    pub failed: Vec<String>,
    /// When the last successful run finished.
    pub last_success: Option<String>,
    /// When the last run with a failed item finished, and what failed then.
    #[serde(default)]
    pub last_failure: Option<String>,
    #[serde(default)]
    pub last_failed: Vec<String>,
}

pub const LAST_RUN_FILE: &str = "last-run.json";

#[derive(Debug, Serialize)]
pub struct Summary {
    pub dry_run: bool,
    pub steps: Vec<Step>,
    pub exit: Exit,
}

impl Summary {
    /// "step: action object" for every failed action.
    pub fn failed(&self) -> Vec<String> {
        self.steps
            .iter()
            .flat_map(|s| s.actions.iter().map(move |a| (s.name, a)))
            .filter(|(_, a)| matches!(a.result, ActionResult::Failed { .. }))
            .map(|(step, a)| format!("{step}: {} {}", a.action, a.object))
            .collect()
    }
}

impl Human for Summary {
    fn human(&self, out: &mut String) {
        let mut t = Table::new(["STEP", "OBJECT", "ACTION", "RESULT", "WHY"]);
        for step in &self.steps {
            if !step.configured {
                continue;
            }
            for a in &step.actions {
                let result = match &a.result {
                    ActionResult::Planned => "planned".to_string(),
                    ActionResult::Done => "done".to_string(),
                    ActionResult::Failed { error } => format!("FAILED: {error}"),
                };
                t.row([
                    step.name.to_string(),
                    a.object.clone(),
                    a.action.clone(),
                    result,
                    a.reason.clone(),
                ]);
            }
        }
        if t.is_empty() {
            out.push_str(if self.dry_run { "nothing is due\n" } else { "nothing was due\n" });
        } else {
            t.render(out);
        }
    }

    fn exit(&self) -> Exit {
        self.exit
    }
}

/// `keyward run [--dry-run]` and `keyward plan`.
pub fn run(ctx: &Context, dry_run: bool) -> Result<Exit, Error> {
    // Configuration errors stop the run before it writes anything (exit 2).
    crate::ca::preflight(ctx)?;
    let _lock = if dry_run { None } else { Some(ctx.lock()?) };
    let steps = vec![
        crate::ca::run_due(ctx, dry_run),
        crate::acme::run_due(ctx, dry_run),
        crate::secrets::run_due(ctx, dry_run),
        // GitHub sync comes after every rotation, so it sends the new values.
        crate::github::run_due(ctx, dry_run),
    ];
    let exit = steps.iter().fold(Exit::Ok, |e, s| e.worst(s.exit()));
    let mut summary = Summary { dry_run, steps, exit };
    if !dry_run {
        let previous: Option<LastRun> = ctx.store.read_json(LAST_RUN_FILE)?;
        write_last_run(ctx, &summary, previous.clone())?;
        // Metrics last, so they show this run's outcome. A failure to write them is
        // one more failed item, never a reason to hide what the run did.
        if let Err(e) = crate::status::write_textfile(ctx) {
            let mut step = Step::new("metrics");
            step.actions.push(Action {
                object: "textfile".into(),
                action: "write".into(),
                reason: "metrics.textfile".into(),
                result: ActionResult::Failed { error: e.to_string() },
            });
            summary.steps.push(step);
            summary.exit = summary.exit.worst(Exit::Failed);
            write_last_run(ctx, &summary, previous)?;
        }
        audit_run(ctx, &summary)?;
    }
    journal_line(&summary);
    crate::output::emit(ctx.format, &summary)
}

/// One compact JSON line on stderr, so the journal holds a machine-readable record of
/// every timer run next to the human table on stdout.
fn journal_line(summary: &Summary) {
    let count = |f: fn(&ActionResult) -> bool| {
        summary.steps.iter().flat_map(|s| &s.actions).filter(|a| f(&a.result)).count()
    };
    let failed = summary.failed();
    let line = serde_json::json!({
        "keyward": "run",
        "dry_run": summary.dry_run,
        "planned": count(|r| matches!(r, ActionResult::Planned)),
        "done": count(|r| matches!(r, ActionResult::Done)),
        "failed": failed,
        "exit": summary.exit.code(),
    });
    if crate::output::enabled(crate::output::Level::Warn) {
        eprintln!("{line}");
    }
}

/// Records the run in `last-run.json`, carrying over from `previous` (the record
/// before this run) when the last success and the last failure were.
fn write_last_run(
    ctx: &Context,
    summary: &Summary,
    previous: Option<LastRun>,
) -> Result<(), Error> {
    let failed = summary.failed();
    let finished = crate::util::fmt_time(crate::util::now());
    let success = failed.is_empty();
    let previous = previous.unwrap_or_default();
    let last = LastRun {
        last_success: if success { Some(finished.clone()) } else { previous.last_success },
        last_failure: if success { previous.last_failure } else { Some(finished.clone()) },
        last_failed: if success { previous.last_failed } else { failed.clone() },
        finished,
        success,
        failed: failed.clone(),
    };
    // A report of the run, rewritten every time: atomic, but not worth an fsync.
    let mut bytes = serde_json::to_vec_pretty(&last).map_err(|e| Error::Output(e.to_string()))?;
    bytes.push(b'\n');
    crate::store::replace_unsynced(
        &ctx.store.path(LAST_RUN_FILE),
        &bytes,
        crate::store::FileMode::PRIVATE,
    )
    .map_err(Error::from)
}

/// The run's one audit record, after everything it did.
fn audit_run(ctx: &Context, summary: &Summary) -> Result<(), Error> {
    let failed = summary.failed();
    let success = failed.is_empty();
    let detail = if success { None } else { Some(failed.join("; ")) };
    ctx.audit.append(
        "run",
        Object::new("run", "keyward run"),
        if success { Outcome::Ok } else { Outcome::Failed },
        detail.as_deref(),
    )?;
    Ok(())
}
