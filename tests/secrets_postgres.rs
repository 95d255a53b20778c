//! PostgreSQL role rotation against a real server: end to end, a crash injected at
//! every phase followed by a re-run, a failing hook rolled back, rollback, and the
//! password never reaching the server's log.

mod common;

use std::path::Path;
use std::process::Command;

use common::pg::Postgres;
use common::{Env, Run};

const INITIAL: &str = "initial-Passw0rd-for-tests";

struct Setup {
    pg: Postgres,
    env: Env,
}

fn psql_bin() -> std::path::PathBuf {
    common::pg::bin_dir().join("psql")
}

/// Logs in over TCP as `pazpaz` with `password` (given in the environment, as a
/// client reading the env file would).
fn login(pg: &Postgres, password: &str) -> bool {
    Command::new(psql_bin())
        .args([
            "-X",
            "-w",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
            "-U",
            "pazpaz",
            "-d",
            "postgres",
            "-c",
            "SELECT 1",
        ])
        .env("PGPASSWORD", password)
        .env_remove("PGPASSFILE")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The value a Compose reader gets for `key` from the env file.
fn env_value(path: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let f = keyward::secrets::envfile::EnvFile::parse("test", &text).unwrap();
    let v = f.get(key).unwrap_or_else(|| panic!("{key} missing from {}:\n{text}", path.display()));
    v.as_str().unwrap().to_string()
}

fn get(env: &Env, name: &str) -> String {
    let r = env.run(&["secrets", "get", name]);
    r.code(0);
    r.stdout
}

fn setup() -> Setup {
    let mut pg = Postgres::init();
    // The server (running as `postgres` under root) writes its log and socket into the
    // harness's temp folder, which root owns: hand the folder to the server user.
    let (uid, gid) = common::pg::server_user();
    std::os::unix::fs::chown(pg.dir.path(), Some(uid), Some(gid)).unwrap();
    pg.hba("host all all 127.0.0.1/32 scram-sha-256");
    pg.conf("password_encryption = 'scram-sha-256'\nlog_statement = 'all'\nlog_min_error_statement = 'error'");
    pg.start();
    pg.psql_admin(&format!("CREATE ROLE pazpaz LOGIN PASSWORD '{INITIAL}'"));
    assert!(login(&pg, INITIAL));
    let env = Env::init();
    let hook_out = env.path("hook-got");
    let fail_flag = env.path("fail-hook");
    let mut config = std::fs::read_to_string(env.config()).unwrap();
    config.push_str(&format!(
        r#"
[secrets.postgres.pazpaz]
host = "127.0.0.1"
port = {port}
dbname = "postgres"
connect_timeout_seconds = 5

[secrets.hooks.restart-api]
command = ["sh", "-c", "cat > {hook}.$KEYWARD_SECRET; test ! -e {flag} || test $KEYWARD_PHASE = rollback"]
timeout_seconds = 10
"#,
        port = pg.port,
        hook = hook_out.display(),
        flag = fail_flag.display()
    ));
    std::fs::write(env.config(), config).unwrap();
    // Bootstrap: import the password the role has today, then create the rest.
    env.run_stdin(&["secrets", "set", "POSTGRES_PASSWORD"], format!("{INITIAL}\n").as_bytes())
        .code(0);
    env.run(&["run"]).code(0);
    Setup { pg, env }
}

fn envfile(env: &Env) -> std::path::PathBuf {
    env.path("pazpaz/.env.production")
}

fn vault(env: &Env) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(env.path("state/secrets/vault.json")).unwrap()).unwrap()
}

/// Every target holds the store's current value, and it works.
#[track_caller]
fn assert_consistent(s: &Setup) -> String {
    let v = vault(&s.env);
    let e = &v["secrets"]["POSTGRES_PASSWORD"];
    assert!(e.get("pending").is_none(), "a pending version was left: {e}");
    let current = get(&s.env, "POSTGRES_PASSWORD");
    assert_eq!(
        env_value(&envfile(&s.env), "POSTGRES_PASSWORD"),
        current,
        "env file and store disagree"
    );
    assert!(login(&s.pg, &current), "the current password does not log in");
    assert_eq!(
        std::fs::read_to_string(s.env.path("hook-got.POSTGRES_PASSWORD")).unwrap(),
        current,
        "the hook last got another value"
    );
    current
}

#[test]
fn rotation_end_to_end_old_password_refused() {
    let s = setup();
    let before = assert_consistent(&s);
    assert_eq!(before, INITIAL);
    let r = s.env.run(&["--format", "json", "secrets", "rotate", "POSTGRES_PASSWORD"]);
    r.code(0);
    assert_eq!(r.json()["changes"][0]["version"], 2);
    let now = assert_consistent(&s);
    assert_ne!(now, before);
    assert!(!login(&s.pg, &before), "the old password still logs in");
    // A client that reads the env file connects with the new password.
    assert!(login(&s.pg, &env_value(&envfile(&s.env), "POSTGRES_PASSWORD")));
    // The password went over the wire as a SCRAM verifier: never in the server log.
    let log = s.pg.log();
    assert!(
        log.contains("SCRAM-SHA-256$4096:"),
        "log_statement=all should show the verifier:\n{log}"
    );
    for pw in [now.as_str(), INITIAL] {
        let lines: Vec<&str> =
            log.lines().filter(|l| l.contains(pw) && !l.contains("CREATE ROLE")).collect();
        assert!(lines.is_empty(), "a password reached the server log: {lines:?}");
    }
    // Status shows the version and due date.
    let st = s.env.run(&["--format", "json", "status"]);
    st.code(0);
    let item = st.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "POSTGRES_PASSWORD")
        .cloned()
        .unwrap();
    assert_eq!(item["version"], 2);
    assert!(item["next_action"].as_str().unwrap().starts_with("20"), "{item}");
}

#[test]
fn rollback_restores_the_previous_password_everywhere() {
    let s = setup();
    s.env.run(&["secrets", "rotate", "POSTGRES_PASSWORD"]).code(0);
    let v2 = assert_consistent(&s);
    let r = s.env.run(&["--format", "json", "secrets", "rollback", "POSTGRES_PASSWORD"]);
    r.code(0);
    assert_eq!(r.json()["changes"][0]["version"], 1);
    let back = assert_consistent(&s);
    assert_eq!(back, INITIAL);
    assert!(!login(&s.pg, &v2));
    // The audit log records it.
    let audit = std::fs::read_to_string(s.env.path("state/audit.jsonl")).unwrap();
    assert!(audit.contains("\"action\":\"secret-rollback\""), "{audit}");
}

#[test]
fn a_failing_hook_rolls_back_postgres_and_the_env_file() {
    let s = setup();
    let before = assert_consistent(&s);
    std::fs::write(s.env.path("fail-hook"), "").unwrap();
    let r = s.env.run(&["secrets", "rotate", "POSTGRES_PASSWORD"]);
    r.code(1);
    assert!(r.stdout.contains("hook 'restart-api' failed"), "{}", r.stdout);
    assert!(r.stdout.contains("version 1 is still current in every target"), "{}", r.stdout);
    std::fs::remove_file(s.env.path("fail-hook")).unwrap();
    // The hook was re-run with the current value: everything is back on version 1.
    assert_eq!(assert_consistent(&s), before);
    // status shows the failure (exit 3) until a rotation succeeds.
    let st = s.env.run(&["status"]);
    st.code(3);
    assert!(st.stdout.contains("FAILING"), "{}", st.stdout);
    s.env.run(&["secrets", "rotate", "POSTGRES_PASSWORD"]).code(0);
    assert_ne!(assert_consistent(&s), before);
    s.env.run(&["status"]).code(0);
}

#[test]
fn an_unreachable_server_changes_nothing_and_says_so() {
    let mut s = setup();
    let before = assert_consistent(&s);
    s.pg.stop();
    let r = s.env.run(&["secrets", "rotate", "POSTGRES_PASSWORD"]);
    r.code(1);
    assert!(r.stdout.contains("cannot reach PostgreSQL at 127.0.0.1"), "{}", r.stdout);
    assert!(r.stdout.contains("still current"), "{}", r.stdout);
    assert_eq!(env_value(&envfile(&s.env), "POSTGRES_PASSWORD"), before);
    assert_eq!(get(&s.env, "POSTGRES_PASSWORD"), before);
    s.pg.start();
    assert_consistent(&s);
}

fn crash_then_rerun(phase: &str) {
    let s = setup();
    let before = assert_consistent(&s);
    let fault = format!("rotate:{phase}");
    let r: Run =
        s.env.run_env(&["secrets", "rotate", "POSTGRES_PASSWORD"], &[("KEYWARD_FAULT", &fault)]);
    assert_ne!(r.code, 0, "the fault at {phase} did not stop keyward:\n{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(&format!("aborting at {fault}")), "{}", r.stderr);
    // Between the crash and the re-run, the env file holds a password that works, or
    // the pending one is known to the store.
    let on_disk = env_value(&envfile(&s.env), "POSTGRES_PASSWORD");
    let v = vault(&s.env);
    let pending = &v["secrets"]["POSTGRES_PASSWORD"]["pending"];
    assert!(
        login(&s.pg, &on_disk) || pending.is_object(),
        "{phase}: nothing works and nothing is pending"
    );
    // The timer's next run finishes or rolls back.
    let r = s.env.run(&["--format", "json", "run"]);
    r.code(0);
    let after = assert_consistent(&s);
    let finished_forward = matches!(phase, "after-apply" | "after-verify" | "after-promote");
    if finished_forward {
        assert_ne!(after, before, "{phase}: an applied rotation must be finished");
        assert!(!login(&s.pg, &before), "{phase}: the old password still works");
    } else {
        assert_eq!(after, before, "{phase}: an unfinished rotation must be rolled back");
    }
    if phase != "after-promote" {
        let doc = r.json();
        let actions = doc["steps"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["actions"].as_array().unwrap().clone())
            .collect::<Vec<_>>();
        let a = actions
            .iter()
            .find(|a| a["object"] == "POSTGRES_PASSWORD")
            .unwrap_or_else(|| panic!("{doc}"));
        assert!(a["action"].as_str().unwrap().starts_with("recover"), "{a}");
    }
    // And a normal rotation works afterwards.
    s.env.run(&["secrets", "rotate", "POSTGRES_PASSWORD"]).code(0);
    assert_consistent(&s);
    s.env.run(&["audit", "verify"]).code(0);
}

#[test]
fn crash_after_stage() {
    crash_then_rerun("after-stage");
}

#[test]
fn crash_after_apply_postgres() {
    crash_then_rerun("after-apply-postgres");
}

#[test]
fn crash_after_apply_env() {
    crash_then_rerun("after-apply-env");
}

#[test]
fn crash_after_apply_hook() {
    crash_then_rerun("after-apply-hook");
}

#[test]
fn crash_after_apply() {
    crash_then_rerun("after-apply");
}

#[test]
fn crash_after_verify() {
    crash_then_rerun("after-verify");
}

#[test]
fn crash_after_promote() {
    crash_then_rerun("after-promote");
}

#[test]
fn an_admin_without_the_right_is_refused_and_nothing_changes() {
    let s = setup();
    let before = assert_consistent(&s);
    s.pg.psql_admin("CREATE ROLE weak LOGIN PASSWORD 'weak-pw-for-tests'");
    let pw = s.env.path("weak.pass");
    std::fs::write(&pw, "weak-pw-for-tests\n").unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let text = std::fs::read_to_string(s.env.config()).unwrap();
    let text = text.replace(
        "dbname = \"postgres\"\n",
        &format!(
            "dbname = \"postgres\"\nadmin_user = \"weak\"\nadmin_password_file = \"{}\"\n",
            pw.display()
        ),
    );
    std::fs::write(s.env.config(), text).unwrap();
    let r = s.env.run(&["secrets", "rotate", "POSTGRES_PASSWORD"]);
    r.code(1);
    assert!(
        r.stdout.contains("refused to change the password of role \"pazpaz\"")
            && r.stdout.contains("version 1 is still current in every target")
            && r.stdout.contains("run 'keyward secrets rotate POSTGRES_PASSWORD' again"),
        "{}",
        r.stdout
    );
    assert_eq!(assert_consistent(&s), before);
}
