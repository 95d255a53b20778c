//! Metrics and alert rules: promtool checks the rules in docs/monitoring, runs their
//! unit tests, and lints the textfile that `keyward run` writes and
//! `keyward status --format prometheus` prints.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn promtool() -> PathBuf {
    let unpacked =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-tools/prometheus/usr/bin/promtool");
    if unpacked.is_file() {
        return unpacked;
    }
    common::find_tool("promtool").unwrap_or_else(|| {
        panic!("this test needs promtool: run 'scripts/fetch-deb prometheus' (scripts/test does)")
    })
}

fn monitoring() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/monitoring")
}

fn check(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn alert_rules_are_valid_and_their_tests_pass() {
    let p = promtool();
    let text = check(
        Command::new(&p).args(["check", "rules", "keyward-alerts.yml"]).current_dir(monitoring()),
    );
    assert!(text.contains("SUCCESS: 8 rules found"), "{text}");
    let text = check(
        Command::new(&p)
            .args(["test", "rules", "keyward-alerts.test.yml"])
            .current_dir(monitoring()),
    );
    assert!(text.contains("SUCCESS"), "{text}");
}

fn lint_metrics(p: &Path, metrics: &str) {
    let mut child = Command::new(p)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.trim().is_empty(),
        "promtool check metrics:\n{text}\n--- metrics\n{metrics}"
    );
}

#[test]
fn run_writes_a_textfile_that_promtool_accepts() {
    let p = promtool();
    let env = common::Env::init();
    env.run(&["run"]).code(0);
    let file = env.path("metrics/keyward.prom");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o644);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("keyward_last_run_success 1"), "{text}");
    assert!(text.contains("keyward_last_run_timestamp_seconds "), "{text}");
    lint_metrics(&p, &text);
    let r = env.run(&["--format", "prometheus", "status"]);
    lint_metrics(&p, &r.stdout);
}
