//! `keyward github sync|status` and `keyward run` through the binary, against the
//! local GitHub server: exit codes, stdout, stderr, state and audit log.
//!
//! The values to sync come from the secret policies; here the state is seeded with
//! what an earlier sync recorded, so the command-line paths that need no policy
//! (status, pruning, errors) run end to end.

mod common;
#[path = "support/github_fixture.rs"]
mod github_fixture;
#[path = "support/github_server.rs"]
mod github_server;

use common::Env;
use github_fixture::*;
use github_server::{GithubServer, TOKEN, repo_key};

/// The `[github]` section for the local server. The starter's secrets are dropped:
/// these tests drive the sync state directly (the policies' values are synced end to
/// end in tests/github_end_to_end.rs).
fn configure(env: &Env, s: &GithubServer, extra: &str) {
    env.drop_sections(&["secrets"]);
    let mut t = std::fs::read_to_string(env.config()).unwrap();
    t.push_str(&format!(
        "\n[github]\napi_url = \"{}\"\nowner = \"pazpaz\"\nrepository = \"app\"\npause_ms = 0\nbackoff_ms = 10\n{extra}",
        s.url()
    ));
    std::fs::write(env.config(), t).unwrap();
}

/// What an earlier sync left: OLD created by keyward, TAKEN taken over.
fn seed(env: &Env, s: &GithubServer) {
    s.set_behind_the_back(&repo_key(OWNER, REPO), "TAKEN", b"before");
    s.set_behind_the_back(&repo_key(OWNER, REPO), "HUMAN", b"theirs");
    let cfg = config(s);
    let api = api(&cfg);
    let store = keyward::store::Store::open(&env.path("state")).unwrap();
    let mut state = keyward::github::SyncState::load(&store).unwrap();
    let items =
        [item("OLD", 1, b"old-value", vec![repo()]), item("TAKEN", 1, b"mine", vec![repo()])];
    let (targets, _) = keyward::github::sync::plan_targets(&items, &cfg);
    let r = keyward::github::sync::sync(&api, &targets, &mut state, Default::default());
    assert!(r.failed().is_empty());
    state.save(&store).unwrap();
}

#[test]
fn without_a_github_section_the_commands_say_how_to_configure() {
    let env = Env::init();
    let r = env.run(&["github", "sync"]);
    r.code(2);
    assert!(r.stderr.contains("no [github] section"), "{}", r.stderr);
    env.run(&["github", "status"]).code(2);
    env.run(&["--format", "prometheus", "github", "sync"]).code(2);
    // keyward run skips an unconfigured capability.
    env.run(&["run"]).code(0);
}

#[test]
fn with_nothing_to_sync_no_request_is_made_and_no_token_is_needed() {
    let s = server();
    let env = Env::init();
    configure(&env, &s, "");
    let r = env.run(&["github", "sync"]);
    r.code(0);
    assert!(r.stdout.contains("0 scope(s)"), "{}", r.stdout);
    let r = env.run(&["--format", "json", "github", "status"]);
    r.code(0);
    assert_eq!(r.json()["scopes"].as_array().unwrap().len(), 0);
    env.run(&["run"]).code(0);
    assert_eq!(s.total(), 0);
}

#[test]
fn status_and_prune_end_to_end() {
    let s = server();
    let mut env = Env::init();
    configure(&env, &s, "");
    seed(&env, &s);

    // keyward status shows what was synced, from the state alone (no request).
    let before = s.total();
    let r = env.run(&["--format", "json", "status"]);
    r.code(0);
    let items = r.json()["items"].as_array().unwrap().clone();
    let gh = items.iter().find(|i| i["kind"] == "github").expect("a github item");
    assert_eq!(gh["name"], "repository pazpaz/app");
    assert!(
        gh["note"].as_str().unwrap().starts_with("2 secret(s) synced (1 created by keyward)"),
        "{gh}"
    );
    assert_eq!(s.total(), before);

    // No token: a configuration error that names the variable.
    let r = env.run(&["github", "status"]);
    r.code(2);
    assert!(r.stderr.contains("$GITHUB_TOKEN is not set"), "{}", r.stderr);

    env.set_env("GITHUB_TOKEN", TOKEN);
    let r = env.run(&["--format", "json", "github", "status"]);
    r.code(0);
    let doc = r.json();
    let scope = &doc["scopes"][0];
    assert_eq!(scope["key"], "repository:pazpaz/app");
    assert_eq!(scope["prunable"], serde_json::json!(["OLD"]));
    assert_eq!(scope["unmanaged"], serde_json::json!(["HUMAN", "TAKEN"]));

    // Without --prune: nothing deleted, the hint is printed.
    let r = env.run(&["github", "sync"]);
    r.code(0);
    assert!(r.stdout.contains("'keyward github sync --prune' deletes them"), "{}", r.stdout);
    assert_eq!(s.count("DELETE", ""), 0);

    // --dry-run --prune lists the delete.
    let r = env.run(&["github", "sync", "--dry-run", "--prune"]);
    r.code(0);
    assert!(
        r.stdout.contains("OLD") && r.stdout.contains("delete") && r.stdout.contains("planned"),
        "{}",
        r.stdout
    );
    assert_eq!(s.count("DELETE", ""), 0);

    let r = env.run(&["--format", "json", "github", "sync", "--prune"]);
    r.code(0);
    assert_eq!(r.json()["scopes"][0]["secrets"][0]["change"], "delete");
    assert_eq!(s.count("DELETE", "/OLD"), 1);
    assert_eq!(s.count("DELETE", ""), 1);
    assert_eq!(s.names(&repo_key(OWNER, REPO)), ["HUMAN", "TAKEN"]);

    let r = env.run(&["--format", "json", "audit", "show"]);
    r.code(0);
    let records = r.json()["records"].as_array().unwrap().clone();
    assert!(
        records.iter().any(|x| x["action"] == "github-delete"
            && x["object"]["name"] == "repository:pazpaz/app/OLD")
    );
    env.run(&["audit", "verify"]).code(0);
    // The token never reaches output, state or the audit log.
    assert!(common::tree_contains(env.root(), TOKEN.as_bytes()).is_empty());
    assert!(!r.stdout.contains(TOKEN));
}

#[test]
fn a_rejected_token_fails_the_sync_and_the_run_with_the_fix() {
    let s = server();
    let mut env = Env::init();
    configure(&env, &s, "token_env = \"PAZPAZ_GH_TOKEN\"\n");
    seed(&env, &s);
    let r = env.run(&["github", "status"]);
    r.code(2);
    assert!(r.stderr.contains("$PAZPAZ_GH_TOKEN is not set"), "{}", r.stderr);

    env.set_env("PAZPAZ_GH_TOKEN", "ghp_wrong");
    let r = env.run(&["github", "sync", "--prune"]);
    r.code(1);
    assert!(
        r.stdout.contains("401 Bad credentials") && r.stdout.contains("$PAZPAZ_GH_TOKEN"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("ghp_wrong") && !r.stderr.contains("ghp_wrong"));

    // keyward status now needs attention: that scope's last sync failed.
    let r = env.run(&["--format", "json", "status"]);
    r.code(3);
    let items = r.json()["items"].as_array().unwrap().clone();
    let gh = items.iter().find(|i| i["kind"] == "github").expect("a github item");
    assert_eq!(gh["health"], "failing");
    assert!(gh["note"].as_str().unwrap().contains("last sync FAILED"), "{gh}");

    let r = env.run(&["run"]);
    r.code(1);
    assert!(r.stdout.contains("github") && r.stdout.contains("401"), "{}", r.stdout);
    let last: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.path("state/last-run.json")).unwrap()).unwrap();
    assert_eq!(last["success"], false);
    assert!(last["failed"][0].as_str().unwrap().starts_with("github"), "{last}");
    assert_eq!(s.count("DELETE", ""), 0);
    assert!(common::tree_contains(env.root(), b"ghp_wrong").is_empty());

    // Once the token works again, the next sync clears the failure.
    s.add_token("ghp_wrong");
    env.run(&["github", "sync"]).code(0);
    env.run(&["status"]).code(0);
}

#[test]
fn run_never_prunes() {
    let s = server();
    let mut env = Env::init();
    configure(&env, &s, "");
    seed(&env, &s);
    env.set_env("GITHUB_TOKEN", TOKEN);
    let r = env.run(&["--format", "json", "run"]);
    r.code(0);
    assert_eq!(s.count("DELETE", ""), 0);
    assert_eq!(s.count("PUT", ""), 2, "only the seeding wrote");
}
