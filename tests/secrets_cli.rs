//! The secrets commands as an operator meets them: get/set/list/rotate/rollback,
//! status with due dates, hooks (timeout, failure), the machine key, and tampering.

mod common;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::{Env, require_tool};

fn vault(env: &Env) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(env.path("state/secrets/vault.json")).unwrap()).unwrap()
}

fn env_value(env: &Env, key: &str) -> String {
    let f = keyward::secrets::envfile::read(&env.path("pazpaz/.env.production")).unwrap();
    f.get(key).unwrap().as_str().unwrap().to_string()
}

fn add_config(env: &Env, extra: &str) {
    let mut c = std::fs::read_to_string(env.config()).unwrap();
    c.push_str(extra);
    std::fs::write(env.config(), c).unwrap();
}

/// Runs keyward under a pseudo-terminal (util-linux `script`), so stdout is a tty.
fn on_terminal(env: &Env, args: &str) -> (i32, String) {
    let script = require_tool("script", "apt-get install -y bsdutils");
    let cmd = format!("{} -c {} {args}", common::keyward_bin().display(), env.config().display());
    let out = Command::new(script).args(["-qec", &cmd, "/dev/null"]).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn get_refuses_a_terminal_without_reveal_and_audits_reads() {
    let env = Env::init();
    env.run(&["run"]).code(0);
    let value = env_value(&env, "SECRET_KEY");
    let (code, out) = on_terminal(&env, "secrets get SECRET_KEY");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--reveal") && !out.contains(&value), "{out}");
    let (code, out) = on_terminal(&env, "secrets get SECRET_KEY --reveal");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&value), "{out}");
    // Into a pipe: the raw value, no newline.
    let r = env.run(&["secrets", "get", "SECRET_KEY"]);
    r.code(0);
    assert_eq!(r.stdout, value);
    // Never inside JSON.
    env.run(&["--format", "json", "secrets", "get", "SECRET_KEY"]).code(2);
    let audit = std::fs::read_to_string(env.path("state/audit.jsonl")).unwrap();
    assert_eq!(audit.matches("\"action\":\"secret-reveal\"").count(), 2, "{audit}");
    assert!(!audit.contains(&value));
    env.run(&["secrets", "get", "NO_SUCH"]).code(2);
    let r = env.run(&["secrets", "get", "SMTP_PASSWORD"]);
    r.code(2);
    assert!(r.stderr.contains("keyward secrets set SMTP_PASSWORD"), "{}", r.stderr);
}

#[test]
fn set_reads_stdin_only() {
    let env = Env::init();
    let r = env.run_stdin(&["secrets", "set", "SMTP_PASSWORD"], b"");
    r.code(2);
    assert!(r.stderr.contains("stdin was empty"), "{}", r.stderr);
    let (code, out) = on_terminal(&env, "secrets set SMTP_PASSWORD");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("pipe it in"), "{out}");
    env.run_stdin(&["secrets", "set", "SMTP_PASSWORD"], b"smtp-value-1\n").code(0);
    assert_eq!(env_value(&env, "SMTP_PASSWORD"), "smtp-value-1");
    env.run_stdin(&["secrets", "set", "SMTP_PASSWORD"], b"smtp-value-2\n").code(0);
    let v = vault(&env);
    assert_eq!(v["secrets"]["SMTP_PASSWORD"]["current"]["version"], 2);
    assert_eq!(v["secrets"]["SMTP_PASSWORD"]["current"]["origin"], "imported");
    assert_eq!(v["secrets"]["SMTP_PASSWORD"]["previous"]["version"], 1);
    // Imported secrets are never generated.
    let r = env.run(&["secrets", "rotate", "SMTP_PASSWORD"]);
    r.code(2);
    assert!(r.stderr.contains("keyward secrets set SMTP_PASSWORD"), "{}", r.stderr);
}

#[test]
fn list_rotate_rollback_and_status_due_dates() {
    let env = Env::init();
    // The clock moves 91 days: without the CA, whose CRLs would be stale by then.
    env.drop_sections(&["ca"]);
    env.run(&["run"]).code(0);
    let r = env.run(&["--format", "json", "secrets", "list"]);
    r.code(0);
    let doc = r.json();
    let sk = doc["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "SECRET_KEY")
        .unwrap()
        .clone();
    assert_eq!(sk["version"], 1);
    assert_eq!(sk["targets"][0], "env:pazpaz/SECRET_KEY");
    assert!(sk["inactive_targets"][0].as_str().unwrap().contains("restart-api"), "{sk}");
    let v1 = env_value(&env, "SECRET_KEY");
    env.run(&["secrets", "rotate"]).code(2);
    // Dry run changes nothing.
    let r = env.run(&["secrets", "rotate", "SECRET_KEY", "--dry-run"]);
    r.code(0);
    assert!(r.stdout.contains("planned"), "{}", r.stdout);
    assert_eq!(env_value(&env, "SECRET_KEY"), v1);
    env.run(&["secrets", "rotate", "SECRET_KEY"]).code(0);
    let v2 = env_value(&env, "SECRET_KEY");
    assert_ne!(v1, v2);
    env.run(&["secrets", "rollback", "SECRET_KEY"]).code(0);
    assert_eq!(env_value(&env, "SECRET_KEY"), v1);
    let r = env.run(&["secrets", "rollback", "ENCRYPTION_MASTER_KEY"]);
    r.code(2);
    assert!(r.stderr.contains("no previous version"), "{}", r.stderr);
    // Only current and previous blobs are kept.
    let blobs: Vec<_> = std::fs::read_dir(env.path("state/secrets/blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("SECRET_KEY."))
        .collect();
    assert_eq!(blobs.len(), 2, "{blobs:?}");

    // 80 days on: due soon; 91 days on: overdue, status exits 3, run rotates.
    let st = env.run_env(&["--format", "json", "status"], &[("KEYWARD_NOW", &later(80))]);
    st.code(0);
    let item = |doc: &serde_json::Value, n: &str| {
        doc["items"].as_array().unwrap().iter().find(|i| i["name"] == n).unwrap().clone()
    };
    assert_eq!(item(&st.json(), "CSRF_SECRET_KEY")["health"], "due-soon");
    assert_eq!(item(&st.json(), "CSRF_SECRET_KEY")["version"], 1);
    let st = env.run_env(&["status"], &[("KEYWARD_NOW", &later(80))]);
    let line = st.stdout.lines().find(|l| l.contains("CSRF_SECRET_KEY")).unwrap().to_string();
    assert!(line.contains("due soon") && line.contains("v1, 80 days old"), "{line}");
    let st = env.run_env(&["status"], &[("KEYWARD_NOW", &later(91))]);
    st.code(3);
    assert!(st.stdout.contains("OVERDUE"), "{}", st.stdout);
    let plan = env.run_env(&["plan"], &[("KEYWARD_NOW", &later(91))]);
    plan.code(0);
    assert!(
        plan.stdout.contains("CSRF_SECRET_KEY") && plan.stdout.contains("every 90 days"),
        "{}",
        plan.stdout
    );
    assert!(
        !plan.stdout.contains("ENCRYPTION_MASTER_KEY"),
        "never rotated automatically: {}",
        plan.stdout
    );
    let csrf = env_value(&env, "CSRF_SECRET_KEY");
    env.run_env(&["run"], &[("KEYWARD_NOW", &later(91))]).code(0);
    assert_ne!(env_value(&env, "CSRF_SECRET_KEY"), csrf);
    env.run_env(&["status"], &[("KEYWARD_NOW", &later(91))]).code(0);
    let r = env.run_env(&["run"], &[("KEYWARD_NOW", &later(91))]);
    r.code(0);
    assert!(r.stdout.contains("nothing was due"), "{}", r.stdout);
}

fn later(days: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(days)).to_rfc3339()
}

#[test]
fn hook_failure_and_timeout_roll_back_the_env_file() {
    let env = Env::init();
    let log = env.path("hook.log");
    add_config(
        &env,
        &format!(
            "\n[secrets.hooks.restart-api]\ncommand = [\"sh\", \"-c\", \"echo $KEYWARD_PHASE $KEYWARD_SECRET >> {log}; test -e {flag} && [ $KEYWARD_PHASE = apply ] && sleep $(cat {flag}); exit 0\"]\ntimeout_seconds = 2\n",
            log = log.display(),
            flag = env.path("slow").display()
        ),
    );
    env.run(&["run"]).code(0);
    let v1 = env_value(&env, "SECRET_KEY");
    std::fs::write(env.path("slow"), "30").unwrap();
    let r = env.run(&["secrets", "rotate", "SECRET_KEY"]);
    r.code(1);
    assert!(r.stdout.contains("did not finish within 2s"), "{}", r.stdout);
    assert!(r.stdout.contains("version 1 is still current"), "{}", r.stdout);
    assert_eq!(env_value(&env, "SECRET_KEY"), v1);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.ends_with("apply SECRET_KEY\nrollback SECRET_KEY\n"), "{text}");
    assert!(vault(&env)["secrets"]["SECRET_KEY"].get("pending").is_none());
    std::fs::remove_file(env.path("slow")).unwrap();
    env.run(&["secrets", "rotate", "SECRET_KEY"]).code(0);
    assert_ne!(env_value(&env, "SECRET_KEY"), v1);
}

#[test]
fn machine_key_is_private_and_never_replaced() {
    let env = Env::init();
    env.run(&["run"]).code(0);
    let key = env.path("machine.key");
    assert_eq!(std::fs::metadata(&key).unwrap().mode() & 0o777, 0o600);
    // The state folder alone reveals nothing: no value in plaintext.
    let value = env_value(&env, "SECRET_KEY");
    assert!(common::tree_contains(&env.path("state"), value.as_bytes()).is_empty());
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let r = env.run(&["secrets", "get", "SECRET_KEY"]);
    r.code(2);
    assert!(r.stderr.contains("chmod 0600"), "{}", r.stderr);
    std::fs::rename(&key, env.path("machine.key.bak")).unwrap();
    let r = env.run(&["secrets", "rotate", "SECRET_KEY"]);
    r.code(1);
    assert!(r.stdout.contains("machine key") && r.stdout.contains("DR export"), "{}", r.stdout);
    assert!(!key.exists(), "a new key must not be made while values depend on the old one");
    // status and plan need no key.
    env.run(&["status"]).code(0);
}

#[test]
fn a_tampered_store_is_refused_with_the_fix() {
    let env = Env::init();
    env.run(&["run"]).code(0);
    let blobs = env.path("state/secrets/blobs");
    std::fs::copy(blobs.join("CSRF_SECRET_KEY.v1.age"), blobs.join("SECRET_KEY.v1.age")).unwrap();
    let r = env.run(&["secrets", "get", "SECRET_KEY"]);
    r.code(1);
    assert!(r.stderr.contains("tampered"), "{}", r.stderr);
    std::fs::write(env.path("state/secrets/vault.json"), "{ broken").unwrap();
    let r = env.run(&["secrets", "list"]);
    r.code(1);
    assert!(r.stderr.contains("vault.json is damaged"), "{}", r.stderr);
}

#[test]
fn machine_key_from_a_systemd_credential() {
    let env = Env::init();
    let creds = env.path("credentials");
    std::fs::create_dir_all(&creds).unwrap();
    let text = std::fs::read_to_string(env.config()).unwrap();
    std::fs::write(
        env.config(),
        text.replace(
            "# machine_key_credential = \"keyward-machine-key\"",
            "machine_key_credential = \"keyward-machine-key\"",
        ),
    )
    .unwrap();
    let dir = creds.display().to_string();
    // A credential is never created by keyward: it must be provided.
    let r = env.run_env(&["run"], &[("CREDENTIALS_DIRECTORY", &dir)]);
    r.code(1);
    assert!(r.stdout.contains("keyward-machine-key"), "{}", r.stdout);
    assert!(!creds.join("keyward-machine-key").exists());
    let key = age::x25519::Identity::generate();
    use age::secrecy::ExposeSecret;
    std::fs::write(
        creds.join("keyward-machine-key"),
        format!("{}\n", key.to_string().expose_secret()),
    )
    .unwrap();
    env.run_env(&["run"], &[("CREDENTIALS_DIRECTORY", &dir)]).code(0);
    let r = env.run_env(&["secrets", "get", "SECRET_KEY"], &[("CREDENTIALS_DIRECTORY", &dir)]);
    r.code(0);
    assert_eq!(r.stdout, env_value(&env, "SECRET_KEY"));
    assert!(!env.path("machine.key").exists(), "the file key is not used when the credential is");
}

#[test]
fn github_items_are_the_current_values_with_their_scopes() {
    let env = Env::init();
    env.run(&["run"]).code(0);
    env.run_stdin(&["secrets", "set", "SENTRY_DSN"], b"https://k@sentry.example/1").code(0);
    env.run(&["secrets", "rotate", "SECRET_KEY"]).code(0);
    let ctx = keyward::Context::load(Some(&env.config()), keyward::output::Format::Human, "test")
        .unwrap();
    let items = keyward::secrets::github_items(&ctx).unwrap();
    let names: Vec<&str> = items.iter().map(|i| i.name.as_str()).collect();
    // SMTP_PASSWORD has no value yet: left out, never made up.
    assert!(!names.contains(&"SMTP_PASSWORD"), "{names:?}");
    assert_eq!(names.len(), 10, "{names:?}");
    let sk = items.iter().find(|i| i.name == "SECRET_KEY").unwrap();
    assert_eq!(sk.version, 2);
    assert_eq!(sk.value.as_str().unwrap(), env_value(&env, "SECRET_KEY"));
    assert_eq!(
        sk.scopes,
        vec![keyward::github::GithubScope::Environment { environment: "production".into() }]
    );
    let dsn = items.iter().find(|i| i.name == "SENTRY_DSN").unwrap();
    assert_eq!(dsn.scopes, vec![keyward::github::GithubScope::Repository]);
    assert_eq!(dsn.value.expose(), b"https://k@sentry.example/1");
}

#[test]
fn kill_9_during_a_hook_then_rerun_rolls_back() {
    let env = Env::init();
    let marker = env.path("hook-pid");
    add_config(
        &env,
        &format!(
            "\n[secrets.hooks.restart-api]\ncommand = [\"sh\", \"-c\", \"cat > /dev/null; if [ -e {slow} ] && [ $KEYWARD_PHASE = apply ]; then echo $$ > {marker}; sleep 30; fi\"]\ntimeout_seconds = 60\n",
            slow = env.path("slow").display(),
            marker = marker.display()
        ),
    );
    env.run(&["run"]).code(0);
    let v1 = env_value(&env, "SECRET_KEY");
    std::fs::write(env.path("slow"), "").unwrap();
    let mut child = env.spawn(&["secrets", "rotate", "SECRET_KEY"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !marker.exists() {
        assert!(std::time::Instant::now() < deadline, "the hook never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The env file already holds the pending value when keyward dies.
    let pending_value = env_value(&env, "SECRET_KEY");
    assert_ne!(pending_value, v1);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Stop the orphaned hook (its own process group) too.
    let pid: i32 = std::fs::read_to_string(&marker).unwrap().trim().parse().unwrap();
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert_eq!(vault(&env)["secrets"]["SECRET_KEY"]["pending"]["phase"], "applying");
    std::fs::remove_file(env.path("slow")).unwrap();
    let r = env.run(&["--format", "json", "run"]);
    r.code(0);
    assert!(r.stdout.contains("rolled back version 2"), "{}", r.stdout);
    // Rolled back (the rotation was asked for, not due, so the run does not redo it):
    // the env file holds the current value, version 1, again.
    assert_eq!(env_value(&env, "SECRET_KEY"), v1);
    let r = env.run(&["secrets", "get", "SECRET_KEY"]);
    assert_eq!(r.stdout, v1);
    assert!(vault(&env)["secrets"]["SECRET_KEY"].get("pending").is_none());
}

#[test]
fn a_first_value_interrupted_anywhere_is_finished_not_lost() {
    for phase in ["after-stage", "after-apply-env", "after-apply", "after-verify"] {
        let env = Env::init();
        let fault = format!("rotate:{phase}");
        let r = env.run_env(&["run"], &[("KEYWARD_FAULT", &fault)]);
        assert_ne!(r.code, 0, "{phase}");
        // SECRET_KEY (the first policy) was being created: it had no value to roll
        // back to, so the next run finishes the staged one.
        let staged = vault(&env)["secrets"]["SECRET_KEY"]["pending"]["version"]["version"].clone();
        assert_eq!(staged, 1, "{phase}");
        env.run(&["run"]).code(0);
        let v = vault(&env);
        assert!(v["secrets"]["SECRET_KEY"].get("pending").is_none(), "{phase}: {v}");
        assert_eq!(v["secrets"]["SECRET_KEY"]["current"]["version"], 1, "{phase}");
        let r = env.run(&["secrets", "get", "SECRET_KEY"]);
        assert_eq!(r.stdout, env_value(&env, "SECRET_KEY"), "{phase}");
    }
}
