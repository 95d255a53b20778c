//! CLI contract tests: the binary run in a temp folder, checking stdout, stderr,
//! exit code and files.

mod common;

use common::{Env, tree};

#[test]
fn init_writes_a_config_that_loads() {
    let env = Env::init();
    assert!(env.config().is_file());
    let status = env.run(&["--format", "json", "status"]);
    status.code(0);
    let doc = status.json();
    assert!(doc["items"].is_array(), "{doc}");
    // State folder is private.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(env.path("state")).unwrap().mode() & 0o777, 0o700);
}

#[test]
fn init_never_overwrites() {
    let env = Env::init();
    let before = std::fs::read(env.config()).unwrap();
    let r = env.run(&["init", "--dir", env.root().to_str().unwrap()]);
    r.code(2);
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
    assert_eq!(std::fs::read(env.config()).unwrap(), before);
}

#[test]
fn missing_config_is_a_usage_error_with_the_fix() {
    let env = Env::empty();
    let r = env.run(&["status"]);
    r.code(2);
    assert!(r.stderr.contains("keyward init"), "{}", r.stderr);
}

#[test]
fn unknown_key_names_file_line_and_key_and_writes_nothing() {
    let env = Env::empty();
    std::fs::write(env.config(), "[state]\ndir = \"state\"\n\n[audit]\nfil = \"x\"\n").unwrap();
    let before = tree(env.root());
    let r = env.run(&["run"]);
    r.code(2);
    let want = format!("{}:5:1:", env.config().display());
    assert!(r.stderr.contains(&want), "{}", r.stderr);
    assert!(r.stderr.contains("fil"), "{}", r.stderr);
    assert_eq!(tree(env.root()), before, "nothing may be written on a config error");
}

#[test]
fn malformed_toml_is_a_usage_error() {
    let env = Env::empty();
    std::fs::write(env.config(), "[state\n").unwrap();
    let r = env.run(&["status"]);
    r.code(2);
    assert!(r.stderr.contains("keyward.toml:1:"), "{}", r.stderr);
}

#[test]
fn bad_usage_exits_2() {
    let env = Env::init();
    env.run(&["no-such-command"]).code(2);
    env.run(&["ca", "renew", "--all", "x"]).code(2);
    // A format a command does not produce.
    let r = env.run(&["--format", "prometheus", "run", "--dry-run"]);
    r.code(2);
    assert!(r.stderr.contains("does not support --format prometheus"), "{}", r.stderr);
}

#[test]
fn json_errors_are_one_document_on_stdout() {
    let env = Env::empty();
    let r = env.run(&["--format", "json", "status"]);
    r.code(2);
    let doc = r.json();
    assert_eq!(doc["exit"], 2);
    assert!(doc["error"].as_str().unwrap().contains("no configuration"));
}

#[test]
fn help_and_version_succeed() {
    let env = Env::empty();
    let r = env.run(&["--help"]);
    r.code(0);
    assert!(r.stdout.contains("Usage: keyward"));
    env.run(&["--version"]).code(0);
}

#[test]
fn completions_and_man_page() {
    let env = Env::empty();
    let r = env.run(&["completions", "bash"]);
    r.code(0);
    assert!(r.stdout.contains("_keyward"), "{}", r.stdout);
    let r = env.run(&["man"]);
    r.code(0);
    assert!(r.stdout.contains(".TH keyward"), "{}", &r.stdout[..200.min(r.stdout.len())]);
}

#[test]
fn run_records_last_run_and_audits() {
    let env = Env::init();
    env.run(&["run"]).code(0);
    let last: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.path("state/last-run.json")).unwrap()).unwrap();
    assert_eq!(last["success"], true);
    let r = env.run(&["--format", "json", "audit", "show"]);
    r.code(0);
    let doc = r.json();
    // The run's own record comes last, after those of what it did (the CA's first run).
    let records = doc["records"].as_array().unwrap();
    assert_eq!(records.last().unwrap()["action"], "run");
    env.run(&["audit", "verify"]).code(0);
}

#[test]
fn audit_verify_detects_an_edit() {
    let env = Env::init();
    env.run(&["run"]).code(0);
    env.run(&["run"]).code(0);
    let log = env.path("state/audit.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, text.replacen("\"result\":\"ok\"", "\"result\":\"failed\"", 1)).unwrap();
    let r = env.run(&["audit", "verify"]);
    r.code(1);
    assert!(r.stdout.contains("record 1"), "{}", r.stdout);
}

#[test]
fn a_second_mutating_run_waits_then_exits_75() {
    let env = Env::init();
    env.run(&["run"]).code(0);
    // Hold the lock from this process, as another keyward run would.
    let lock = std::fs::OpenOptions::new().write(true).open(env.path("state/lock")).unwrap();
    lock.lock().unwrap();
    std::fs::write(env.path("keyward.toml"), {
        let t = std::fs::read_to_string(env.config()).unwrap();
        t.replace("lock_wait_seconds = 30", "lock_wait_seconds = 1")
    })
    .unwrap();
    let r = env.run(&["run"]);
    r.code(75);
    assert!(r.stderr.contains("another keyward holds the lock"), "{}", r.stderr);
    // A dry run takes no lock.
    env.run(&["plan"]).code(0);
}
