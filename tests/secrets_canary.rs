//! Canary hygiene: a secret value runs through every secrets and report command; it
//! never appears in stdout (except `secrets get`, whose purpose it is), stderr, the
//! audit log, JSON output, the state folder in plaintext, or any process's argv or
//! environment — checked in /proc while a hook that receives it is running.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Env;

const CANARY: &str = "canary-7f3a9c1e-smtp";

#[track_caller]
fn clean(what: &str, r: &common::Run) {
    assert!(!r.stdout.contains(CANARY), "{what}: canary on stdout:\n{}", r.stdout);
    assert!(!r.stderr.contains(CANARY), "{what}: canary on stderr:\n{}", r.stderr);
}

/// Every process's argv and environment that mention the canary.
fn proc_hits() -> Vec<String> {
    let mut hits = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let pid = e.file_name();
            if !pid.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            for f in ["cmdline", "environ"] {
                if let Ok(b) = std::fs::read(e.path().join(f))
                    && b.windows(CANARY.len()).any(|w| w == CANARY.as_bytes())
                {
                    hits.push(format!("/proc/{}/{f}", pid.to_string_lossy()));
                }
            }
        }
    }
    hits
}

#[test]
fn the_canary_never_leaks() {
    let env = Env::init();
    let started = env.path("hook-started");
    let got = env.path("hook-got");
    let mut c = std::fs::read_to_string(env.config()).unwrap();
    c.push_str(&format!(
        "\n[secrets.hooks.restart-api]\ncommand = [\"sh\", \"-c\", \"cat > {got}.$KEYWARD_SECRET; touch {started}; sleep 1\"]\ntimeout_seconds = 20\n",
        got = got.display(),
        started = started.display()
    ));
    std::fs::write(env.config(), c).unwrap();
    clean("run", &env.run(&["run"]));

    // `secrets set` with the hook running: scan every process while it is.
    let mut child = Command::new(common::keyward_bin())
        .args(["-c", env.config().to_str().unwrap(), "secrets", "set", "SMTP_PASSWORD"])
        .env_remove("KEYWARD_NOW")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(CANARY.as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut scans = 0;
    let mut during_hook = 0;
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        let hits = proc_hits();
        assert!(hits.is_empty(), "the canary is in {hits:?}");
        scans += 1;
        if started.exists() {
            during_hook += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(during_hook > 0 && scans > 0, "no scan happened while the hook ran");
    assert_eq!(
        std::fs::read_to_string(format!("{}.SMTP_PASSWORD", got.display())).unwrap(),
        CANARY,
        "the hook got it on stdin"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(CANARY));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(CANARY));

    let canary_env: Vec<(&str, &str)> = vec![("SMTP_PASSWORD", CANARY)];
    let policies = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
    let summary = env.path("summary.md");
    let summary_s = summary.display().to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec!["secrets", "list"],
        vec!["--format", "json", "secrets", "list"],
        vec!["status"],
        vec!["--format", "json", "status"],
        vec!["--format", "prometheus", "status"],
        vec!["plan"],
        vec!["--format", "json", "run"],
        vec!["secrets", "rotate", "SECRET_KEY"],
        vec!["--format", "json", "secrets", "rotate", "--due"],
        vec!["secrets", "rotate", "SMTP_PASSWORD"],
        vec!["secrets", "docs"],
        vec!["report", "presence", "--source", "state"],
        vec!["--format", "json", "report", "presence", "--source", "state"],
        vec!["--format", "github", "report", "presence", "--source", "state"],
        vec!["report", "presence", "--source", "env", "--policies", policies],
        vec!["--format", "json", "report", "presence", "--source", "env"],
        vec!["--format", "github", "report", "presence", "--source", "env"],
        vec!["audit", "show"],
        vec!["--format", "json", "audit", "show"],
        vec!["audit", "verify"],
        vec!["-v", "-v", "secrets", "rotate", "CSRF_SECRET_KEY"],
    ];
    for args in &commands {
        let mut vars = canary_env.clone();
        vars.push(("GITHUB_STEP_SUMMARY", &summary_s));
        let r = env.run_env(args, &vars);
        assert!(r.code == 0 || r.code == 2 || r.code == 3, "{args:?}: {}\n{}", r.stdout, r.stderr);
        clean(&format!("{args:?}"), &r);
    }
    // A second import, then roll back to the canary: both runs clean.
    clean("set", &env.run_stdin(&["-v", "secrets", "set", "SMTP_PASSWORD"], b"other-value"));
    clean("rollback", &env.run(&["-v", "secrets", "rollback", "SMTP_PASSWORD"]));
    // A value the env file cannot take: the error names the key, never the value.
    let bad = format!("{CANARY}'$x");
    let r = env.run_stdin(&["secrets", "set", "SENTRY_DSN"], bad.as_bytes());
    r.code(1);
    clean("set unquotable", &r);
    // get prints it only on stdout, and only into a pipe.
    let r = env.run(&["secrets", "get", "SMTP_PASSWORD"]);
    r.code(0);
    assert_eq!(r.stdout, CANARY);
    assert!(!r.stderr.contains(CANARY));

    // Nothing at rest in plaintext outside the env file target and the hook's output.
    let leaks: Vec<_> = common::tree_contains(env.root(), CANARY.as_bytes())
        .into_iter()
        .filter(|p| {
            !p.ends_with("pazpaz/.env.production") && !p.to_string_lossy().contains("hook-got")
        })
        .collect();
    assert!(leaks.is_empty(), "the canary is at rest in {leaks:?}");
    let audit = std::fs::read_to_string(env.path("state/audit.jsonl")).unwrap();
    assert!(audit.contains("secret-set") && audit.contains("secret-reveal"), "{audit}");
}
