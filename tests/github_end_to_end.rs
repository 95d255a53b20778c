//! The secrets and the GitHub sync together, through the binary, on PazPaz's real
//! policies: `keyward run` creates the secrets and syncs them to the `production`
//! environment of the local GitHub server, what GitHub received decrypts to the stored
//! values, and `report presence --source github` sees exactly what is there.

mod common;
#[path = "support/github_fixture.rs"]
mod github_fixture;
#[path = "support/github_server.rs"]
mod github_server;

use common::Env;
use github_server::{GithubServer, TOKEN, env_key};

fn configure(env: &Env, s: &GithubServer) {
    let mut t = std::fs::read_to_string(env.config()).unwrap();
    t.push_str(&format!(
        "\n[github]\napi_url = \"{}\"\nowner = \"pazpaz\"\nrepository = \"app\"\npause_ms = 0\nbackoff_ms = 10\n",
        s.url()
    ));
    std::fs::write(env.config(), t).unwrap();
}

#[test]
fn run_syncs_the_policies_values_and_presence_sees_them() {
    let s = github_fixture::server();
    let mut env = Env::init();
    configure(&env, &s);
    env.set_env("GITHUB_TOKEN", TOKEN);
    let scope = env_key("pazpaz", "app", "production");

    env.run(&["run"]).code(0);
    let names = s.names(&scope);
    for generated in ["SECRET_KEY", "CSRF_SECRET_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD"] {
        assert!(names.iter().any(|n| n == generated), "{generated} not synced: {names:?}");
        // What GitHub received decrypts to keyward's current value.
        let got = s.value(&scope, generated).unwrap();
        let mine = env.run(&["secrets", "get", generated]);
        mine.code(0);
        assert_eq!(got, mine.stdout.trim_end_matches('\n').as_bytes(), "{generated}");
    }
    s.assert_faithful();

    // The imported ones are not there yet: presence from GitHub says so, exit 3.
    let r = env.run(&[
        "--format",
        "json",
        "report",
        "presence",
        "--source",
        "github",
        "--environment",
        "production",
    ]);
    r.code(3);
    let doc = r.json();
    let rows = doc["secrets"].as_array().expect("rows");
    let state = |n: &str| rows.iter().find(|r| r["name"] == n).map(|r| r["state"].clone()).unwrap();
    assert_eq!(state("SECRET_KEY"), "present");
    assert_eq!(state("SMTP_PASSWORD"), "missing");
    assert_eq!(state("SENTRY_DSN"), "missing");

    // Import them, sync, and the report is clean; a second sync sends nothing.
    env.run_stdin(&["secrets", "set", "SMTP_PASSWORD"], b"smtp-canary-value\n").code(0);
    env.run_stdin(&["secrets", "set", "SENTRY_DSN"], b"https://key@sentry.example/1\n").code(0);
    env.run(&["github", "sync"]).code(0);
    let puts = s.count("PUT", "");
    env.run(&["report", "presence", "--source", "github", "--environment", "production"]).code(0);
    env.run(&["github", "sync"]).code(0);
    assert_eq!(s.count("PUT", ""), puts, "an unchanged sync sent a PUT");
    // No value in the presence report, the state or the audit log.
    let r = env.run(&["--format", "json", "report", "presence", "--source", "github"]);
    assert!(!r.stdout.contains("smtp-canary-value"));
    assert!(common::tree_contains(&env.path("state"), b"smtp-canary-value").is_empty());
}
