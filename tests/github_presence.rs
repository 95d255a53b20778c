//! `github::present_names`, the `github` source of `keyward report presence`: the
//! names GitHub holds in a scope with their `updated_at`, never a value.
//!
//! One test in this file: it sets the token variable of its own process.

mod common;
#[path = "support/github_fixture.rs"]
mod github_fixture;
#[path = "support/github_server.rs"]
mod github_server;

use github_fixture::*;
use github_server::{TOKEN, env_key, repo_key};

#[test]
fn present_names_lists_a_scopes_names_and_times() {
    let s = server();
    s.set_behind_the_back(&repo_key(OWNER, REPO), "DEPLOY_KEY", b"v");
    s.set_behind_the_back(&env_key(OWNER, REPO, ENV), "DB_PASSWORD", b"v");
    let kw = common::Env::init();
    let mut t = std::fs::read_to_string(kw.config()).unwrap();
    t.push_str(&format!(
        "\n[github]\napi_url = \"{}\"\nowner = \"pazpaz\"\nrepository = \"app\"\ntoken_env = \"KEYWARD_PRESENCE_TEST_TOKEN\"\n",
        s.url()
    ));
    std::fs::write(kw.config(), t).unwrap();
    let ctx = keyward::Context::load(
        Some(&kw.config()),
        keyward::output::Format::Json,
        "report presence",
    )
    .unwrap();

    let err = keyward::github::present_names(&ctx, &repo()).unwrap_err();
    assert!(err.to_string().contains("$KEYWARD_PRESENCE_TEST_TOKEN is not set"), "{err}");

    // SAFETY: the only test of this binary; no other thread reads the environment.
    unsafe { std::env::set_var("KEYWARD_PRESENCE_TEST_TOKEN", TOKEN) };
    let names = keyward::github::present_names(&ctx, &repo()).unwrap();
    assert_eq!(names.len(), 1);
    assert_eq!(names[0].0, "DEPLOY_KEY");
    assert!(chrono::DateTime::parse_from_rfc3339(names[0].1.as_deref().unwrap()).is_ok());
    let names = keyward::github::present_names(&ctx, &env()).unwrap();
    assert_eq!(names.iter().map(|n| n.0.as_str()).collect::<Vec<_>>(), ["DB_PASSWORD"]);
    let err = keyward::github::present_names(
        &ctx,
        &keyward::github::GithubScope::Environment { environment: "nope".into() },
    )
    .unwrap_err();
    assert!(err.to_string().contains("the environment \"nope\" does not exist"), "{err}");
    assert_eq!(err.exit(), keyward::Exit::Failed);
}
