//! `keyward report presence`: sources env and state, formats human, json and github
//! (annotations and the step summary), exit codes, and that no value leaks.

mod common;

use common::Env;

const NAMES: &[&str] = &[
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
    "S3_ACCESS_KEY",
    "S3_SECRET_KEY",
    "SECRET_KEY",
    "ENCRYPTION_MASTER_KEY",
    "CSRF_SECRET_KEY",
    "SMTP_PASSWORD",
    "SENTRY_DSN",
];

fn policies() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/policies").to_string()
}

fn all_set(canary: &str) -> Vec<(String, String)> {
    NAMES.iter().map(|n| (n.to_string(), format!("{canary}-{n}"))).collect()
}

fn presence(env: &Env, vars: &[(String, String)], extra: &[&str]) -> common::Run {
    let mut args = vec!["report", "presence", "--source", "env", "--policies"];
    let p = policies();
    args.push(&p);
    args.extend_from_slice(extra);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.run_env(&args, &vars)
}

#[track_caller]
fn no_canary(r: &common::Run, canary: &str) {
    assert!(
        !r.stdout.contains(canary) && !r.stderr.contains(canary),
        "a value leaked:\n{}\n{}",
        r.stdout,
        r.stderr
    );
}

#[test]
fn env_source_all_present_exits_0_in_every_format() {
    let env = Env::empty();
    let canary = "canary-presence-7f3a";
    let vars = all_set(canary);
    for fmt in ["human", "json", "github"] {
        let r = presence(&env, &vars, &["--environment", "production", "--format", fmt]);
        r.code(0);
        no_canary(&r, canary);
    }
    let r = presence(&env, &vars, &["--environment", "production", "--format", "json"]);
    let doc = r.json();
    assert_eq!(doc["schema"], "keyward.presence/1");
    assert_eq!(doc["source"], "env");
    assert_eq!(doc["environment"], "production");
    assert_eq!(doc["summary"]["missing"], 0);
    assert_eq!(doc["summary"]["required"], NAMES.len());
    let row = &doc["secrets"][0];
    for key in [
        "name",
        "description",
        "required",
        "required_in",
        "github_scopes",
        "state",
        "updated_at",
        "age_days",
        "rotation_days",
        "due",
        "overdue",
    ] {
        assert!(row.get(key).is_some(), "missing {key} in {row}");
    }
    // Nothing about the value: no length, no prefix, no hash.
    let text = r.stdout.to_lowercase();
    for word in ["length", "prefix", "sha", "hash", "fingerprint"] {
        assert!(!text.contains(&format!("\"{word}")), "{word} in {text}");
    }
}

#[test]
fn a_missing_or_empty_secret_exits_3_with_annotations_and_summary() {
    let env = Env::empty();
    let canary = "canary-presence-91bc";
    let mut vars = all_set(canary);
    // GitHub passes an unset secret as an empty string.
    vars.retain(|(k, _)| k != "SECRET_KEY");
    vars.push(("SECRET_KEY".into(), String::new()));
    vars.retain(|(k, _)| k != "SENTRY_DSN");
    let summary = env.path("step-summary.md");
    std::fs::write(&summary, "previous step\n").unwrap();
    vars.push(("GITHUB_STEP_SUMMARY".into(), summary.display().to_string()));

    let r = presence(&env, &vars, &["--environment", "production", "--format", "github"]);
    r.code(3);
    no_canary(&r, canary);
    let errors: Vec<&str> =
        r.stdout.lines().filter(|l| l.starts_with("::error title=Missing secret::")).collect();
    assert_eq!(errors.len(), 2, "{}", r.stdout);
    assert!(errors[0].contains("SECRET_KEY is required in production"), "{}", r.stdout);
    assert!(errors[1].contains("SENTRY_DSN"), "{}", r.stdout);
    assert!(
        r.stdout.contains("::notice title=Secret presence::9 of 11 required secrets present"),
        "{}",
        r.stdout
    );
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.starts_with("previous step\n### Secret presence"), "appended, not replaced:\n{md}");
    assert!(md.contains("| `SECRET_KEY` | ❌ missing |"), "{md}");
    assert!(md.contains("| `REDIS_PASSWORD` | ✅ present |"), "{md}");
    assert!(!md.contains(canary));

    for fmt in ["human", "json"] {
        let r = presence(&env, &vars, &["--environment", "production", "--format", fmt]);
        r.code(3);
        no_canary(&r, canary);
    }
    let doc = presence(&env, &vars, &["--environment", "production", "--format", "json"]).json();
    assert_eq!(doc["summary"]["missing"], 2);
    let sk = doc["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "SECRET_KEY")
        .unwrap()
        .clone();
    assert_eq!(sk["state"], "missing");
    // Not required in staging: absent, exit 0.
    let r = presence(&env, &vars, &["--environment", "staging", "--format", "json"]);
    r.code(0);
    assert_eq!(r.json()["summary"]["required"], 0);
}

#[test]
fn workflow_command_data_is_escaped() {
    let env = Env::empty();
    let dir = env.path("policies");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("p.toml"),
        "[[secret]]\nname = \"ODD_ONE\"\ndescription = \"100% odd:\\nsecond line, really\"\ngenerator = { kind = \"imported\" }\nrequired_in = [\"production\"]\n",
    )
    .unwrap();
    let r = env.run(&[
        "report",
        "presence",
        "--source",
        "env",
        "--policies",
        dir.to_str().unwrap(),
        "--format",
        "github",
    ]);
    r.code(3);
    let line = r.stdout.lines().next().unwrap();
    assert!(line.contains("100%25 odd:%0Asecond line, really"), "{line}");
    assert_eq!(
        r.stdout.lines().count(),
        2,
        "a newline in the data must not start a new command:\n{}",
        r.stdout
    );
}

#[test]
fn state_source_reads_the_store() {
    let env = Env::init();
    let r = env.run(&["report", "presence", "--source", "state"]);
    r.code(3);
    env.run(&["run"]).code(0);
    let r = env.run(&["--format", "json", "report", "presence", "--source", "state"]);
    r.code(3); // SMTP_PASSWORD and SENTRY_DSN are imported and not set yet
    let doc = r.json();
    assert_eq!(doc["environment"], "production", "the configured environment is the default");
    assert_eq!(doc["summary"]["missing"], 2);
    let sk = doc["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "SECRET_KEY")
        .unwrap()
        .clone();
    assert_eq!(sk["state"], "present");
    assert!(sk["updated_at"].is_string() && sk["due"].is_string(), "{sk}");
    assert_eq!(sk["age_days"], 0);
    env.run_stdin(&["secrets", "set", "SMTP_PASSWORD"], b"canary-smtp-1").code(0);
    env.run_stdin(&["secrets", "set", "SENTRY_DSN"], b"canary-dsn-1").code(0);
    let r = env.run(&["report", "presence", "--source", "state"]);
    r.code(0);
    assert!(!r.stdout.contains("canary"), "{}", r.stdout);
    // A year on, rotations are overdue: present still, flagged overdue.
    let r = env.run_env(
        &["--format", "json", "report", "presence", "--source", "state"],
        &[("KEYWARD_NOW", "2027-12-31T00:00:00Z")],
    );
    r.code(0);
    assert!(r.json()["summary"]["overdue"].as_u64().unwrap() > 0);
}

#[test]
fn github_source_is_not_here_yet_and_bad_formats_are_refused() {
    let env = Env::init();
    env.run(&["report", "presence", "--source", "github"]).code(2);
    env.run(&["--format", "prometheus", "report", "presence", "--source", "env"]).code(2);
    env.run(&["report", "presence"]).code(2);
}
