//! `keyward run` and `keyward status` through the binary in each state an operator
//! meets — healthy, due soon, overdue, failing — in human, JSON and Prometheus form.
//! The clock moves with `KEYWARD_NOW`; the CA is left out where the clock moves so far
//! that its CRLs would need a run too (the CA's own due states are in tests/ca_cli.rs).

mod common;

use common::Env;

fn days(n: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(n)).to_rfc3339()
}

fn item(doc: &serde_json::Value, name: &str) -> serde_json::Value {
    doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no item {name} in {doc}"))
}

#[test]
fn healthy_after_a_first_run() {
    let env = Env::init();
    env.run(&["run"]).code(0);
    let r = env.run(&["status"]);
    r.code(0);
    assert!(
        r.stdout.contains("postgres-server") && r.stdout.contains("SECRET_KEY"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("last run: ") && r.stdout.contains(" ok"), "{}", r.stdout);
    assert!(!r.stdout.contains("attention needed"), "{}", r.stdout);
    let doc = env.run(&["--format", "json", "status"]).json();
    assert_eq!(doc["attention"], false);
    assert_eq!(item(&doc, "postgres-server")["health"], "healthy");
    assert_eq!(item(&doc, "SECRET_KEY")["health"], "healthy");
    assert_eq!(doc["last_run"]["success"], true);
    let p = env.run(&["--format", "prometheus", "status"]);
    p.code(0);
    assert!(p.stdout.contains("keyward_attention 0"), "{}", p.stdout);
    assert!(p.stdout.contains("keyward_last_run_success 1"), "{}", p.stdout);
    assert!(p.stdout.contains("keyward_secret_overdue{name=\"SECRET_KEY\"} 0"), "{}", p.stdout);
    assert!(
        p.stdout.contains("keyward_certificate_expiry_timestamp_seconds{kind=\"certificate\",name=\"postgres-server\"}"),
        "{}",
        p.stdout
    );
}

#[test]
fn due_soon_then_overdue_then_rotated() {
    let env = Env::init();
    env.drop_sections(&["ca"]);
    env.run(&["run"]).code(0);

    // 80 days on: due soon (within secrets.warn_days of the 90-day rotation), exit 0.
    let soon = days(80);
    let r = env.run_env(&["status"], &[("KEYWARD_NOW", &soon)]);
    r.code(0);
    assert!(r.stdout.contains("due soon"), "{}", r.stdout);
    let doc = env.run_env(&["--format", "json", "status"], &[("KEYWARD_NOW", &soon)]).json();
    assert_eq!(item(&doc, "SECRET_KEY")["health"], "due-soon");

    // 91 days on: overdue, exit 3 in every format; the plan says what the run will do.
    let late = days(91);
    let r = env.run_env(&["status"], &[("KEYWARD_NOW", &late)]);
    r.code(3);
    assert!(r.stdout.contains("OVERDUE") && r.stdout.contains("attention needed"), "{}", r.stdout);
    let j = env.run_env(&["--format", "json", "status"], &[("KEYWARD_NOW", &late)]);
    j.code(3);
    assert_eq!(item(&j.json(), "SECRET_KEY")["health"], "overdue");
    assert_eq!(j.json()["attention"], true);
    let p = env.run_env(&["--format", "prometheus", "status"], &[("KEYWARD_NOW", &late)]);
    p.code(3);
    assert!(p.stdout.contains("keyward_secret_overdue{name=\"SECRET_KEY\"} 1"), "{}", p.stdout);
    assert!(p.stdout.contains("keyward_attention 1"), "{}", p.stdout);
    let plan = env.run_env(&["plan"], &[("KEYWARD_NOW", &late)]);
    plan.code(0);
    assert!(
        plan.stdout.contains("SECRET_KEY") && plan.stdout.contains("planned"),
        "{}",
        plan.stdout
    );

    // The timer's run rotates them; status is healthy again.
    env.run_env(&["run"], &[("KEYWARD_NOW", &late)]).code(0);
    let doc = env.run_env(&["--format", "json", "status"], &[("KEYWARD_NOW", &late)]).json();
    assert_eq!(item(&doc, "SECRET_KEY")["version"], 2);
    assert_eq!(item(&doc, "SECRET_KEY")["health"], "healthy");
}

#[test]
fn a_failing_run_shows_in_status_and_metrics_until_it_works() {
    let env = Env::init();
    env.drop_sections(&["ca"]);
    // The env file's folder is a file: every write of the env file fails.
    std::fs::write(env.path("pazpaz"), b"not a folder").unwrap();
    let r = env.run(&["run"]);
    r.code(1);
    assert!(r.stdout.contains("FAILED"), "{}", r.stdout);
    assert!(r.stderr.contains("\"exit\":1"), "journal line: {}", r.stderr);

    let s = env.run(&["status"]);
    s.code(3);
    assert!(s.stdout.contains("FAILING") || s.stdout.contains("FAILED"), "{}", s.stdout);
    let doc = env.run(&["--format", "json", "status"]).json();
    assert_eq!(doc["last_run"]["success"], false);
    assert!(doc["last_run"]["last_failure"].is_string(), "{doc}");
    let p = env.run(&["--format", "prometheus", "status"]);
    p.code(3);
    assert!(p.stdout.contains("keyward_last_run_success 0"), "{}", p.stdout);
    assert!(p.stdout.contains("keyward_last_failure_timestamp_seconds "), "{}", p.stdout);
    let metrics = std::fs::read_to_string(env.path("metrics/keyward.prom")).unwrap();
    assert!(metrics.contains("keyward_last_run_success 0"), "{metrics}");

    // Fixed: the next run succeeds, the last failure is still on record.
    std::fs::remove_file(env.path("pazpaz")).unwrap();
    env.run(&["run"]).code(0);
    let s = env.run(&["status"]);
    s.code(0);
    assert!(s.stdout.contains("last failure"), "{}", s.stdout);
    let metrics = std::fs::read_to_string(env.path("metrics/keyward.prom")).unwrap();
    assert!(metrics.contains("keyward_last_run_success 1"), "{metrics}");
    assert!(metrics.contains("keyward_last_failure_timestamp_seconds "), "{metrics}");
}
