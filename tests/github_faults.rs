//! Every fault the local GitHub server can inject, and what keyward does about it:
//! rate limits are waited out, 5xx retried a bounded number of times, refusals
//! reported with the fix, and a failed write is never recorded as synced while the
//! other secrets still sync.

#[path = "support/github_fixture.rs"]
mod github_fixture;
#[path = "support/github_server.rs"]
mod github_server;

use std::time::Duration;

use github_fixture::*;
use github_server::{Fault, FaultKind, repo_key};

fn three() -> Vec<keyward::secrets::GithubItem> {
    vec![
        item("ALPHA", 1, b"alpha", vec![repo()]),
        item("BRAVO", 1, b"bravo", vec![repo()]),
        item("CHARLIE", 1, b"charlie", vec![repo()]),
    ]
}

fn put(name: &str) -> String {
    format!("/actions/secrets/{name}")
}

#[test]
fn unauthorized_names_the_token_and_records_nothing() {
    let s = server();
    let cfg = config(&s);
    let api = api(&cfg);
    let states = States::new();
    s.inject(Fault::new(None, "/actions/secrets", FaultKind::Unauthorized, 1));
    let r = sync(&api, &cfg, &three(), &states);
    let e = r.scopes[0].error.clone().unwrap();
    assert!(
        e.contains("401 Bad credentials") && e.contains("$GITHUB_TOKEN") && e.contains("expired"),
        "{e}"
    );
    assert_eq!(s.count("PUT", ""), 0);
    let st = states.load();
    for name in ["ALPHA", "BRAVO", "CHARLIE"] {
        assert!(st.entry(&repo_target(), name).is_none(), "{name} recorded as synced");
    }
    // The failure is remembered for `keyward status` until a sync succeeds.
    let scope = &st.scopes[&repo_key(OWNER, REPO)];
    assert!(scope.last_error.as_deref().unwrap().contains("401"));
    assert_eq!(keyward::output::Human::exit(&r), keyward::Exit::Failed);
    sync(&api, &cfg, &three(), &states);
    assert!(states.load().scopes[&repo_key(OWNER, REPO)].last_error.is_none());
}

#[test]
fn a_forbidden_write_names_the_missing_permission_and_the_others_still_sync() {
    let s = server();
    let cfg = config(&s);
    let api = api(&cfg);
    let states = States::new();
    s.inject(Fault::new(
        Some("PUT"),
        &put("BRAVO"),
        FaultKind::Forbidden { accepted: "secrets=write" },
        1,
    ));
    let r = sync(&api, &cfg, &three(), &states);
    let errs = errors(&r).join("\n");
    assert!(
        errs.contains("403")
            && errs.contains("\"Secrets\" (read and write)")
            && errs.contains("secrets=write"),
        "{errs}"
    );
    assert_eq!(r.failed(), ["BRAVO in repository pazpaz/app"]);
    let rk = repo_key(OWNER, REPO);
    assert_eq!(s.names(&rk), ["ALPHA", "CHARLIE"]);
    // Never recorded as synced: the next run sends exactly that one.
    assert!(states.load().entry(&repo_target(), "BRAVO").is_none());
    s.clear_log();
    let r = sync(&api, &cfg, &three(), &states);
    assert!(r.failed().is_empty());
    assert_eq!(s.count("PUT", ""), 1);
    assert_eq!(s.count("PUT", &put("BRAVO")), 1);
}

#[test]
fn a_forbidden_environment_names_the_environments_permission() {
    let s = server();
    let cfg = config(&s);
    let api = api(&cfg);
    s.inject(Fault::new(
        Some("GET"),
        "/environments/production/secrets",
        FaultKind::Forbidden { accepted: "environments=read" },
        1,
    ));
    let r = sync(&api, &cfg, &[item("A", 1, b"a", vec![env()])], &States::new());
    let e = r.scopes[0].error.clone().unwrap();
    assert!(e.contains("\"Environments\" (read)"), "{e}");
}

#[test]
fn secondary_rate_limits_are_waited_out() {
    let s = server();
    let cfg = config(&s);
    let api = api(&cfg);
    let states = States::new();
    // With retry-after, and without (exponential backoff from github.backoff_ms).
    s.inject(Fault::new(
        Some("PUT"),
        &put("ALPHA"),
        FaultKind::SecondaryLimit { retry_after: Some(1) },
        1,
    ));
    s.inject(Fault::new(
        Some("PUT"),
        &put("BRAVO"),
        FaultKind::SecondaryLimit { retry_after: None },
        2,
    ));
    let r = sync(&api, &cfg, &three(), &states);
    assert!(r.failed().is_empty(), "{:?}", errors(&r));
    assert_eq!(s.count("PUT", &put("ALPHA")), 2);
    assert_eq!(s.count("PUT", &put("BRAVO")), 3);
    let log = s.log();
    let alpha: Vec<_> =
        log.iter().filter(|l| l.method == "PUT" && l.path.ends_with("/ALPHA")).collect();
    assert!(
        alpha[1].time - alpha[0].time >= chrono::Duration::milliseconds(900),
        "retry-after was not honoured"
    );
    assert_eq!(s.value(&repo_key(OWNER, REPO), "BRAVO").unwrap(), b"bravo");
}

#[test]
fn an_exhausted_primary_limit_waits_until_the_reset() {
    let s = server();
    let cfg = config(&s);
    let api = api(&cfg);
    s.inject(Fault::new(
        Some("GET"),
        "/actions/secrets",
        FaultKind::PrimaryLimit { reset_in: 1 },
        1,
    ));
    let r = sync(&api, &cfg, &three(), &States::new());
    assert!(r.failed().is_empty(), "{:?}", errors(&r));
    let log = s.log();
    assert_eq!(log[0].status, 403);
    assert!(
        log[1].time - log[0].time >= chrono::Duration::milliseconds(900),
        "did not wait for x-ratelimit-reset"
    );
}

#[test]
fn too_many_requests_honours_retry_after_and_gives_up_beyond_max_wait() {
    let s = server();
    let mut cfg = config(&s);
    let api = api(&cfg);
    s.inject(Fault::new(Some("GET"), "/public-key", FaultKind::TooMany { retry_after: 1 }, 1));
    let r = sync(&api, &cfg, &three(), &States::new());
    assert!(r.failed().is_empty(), "{:?}", errors(&r));
    assert_eq!(s.count("GET", "/public-key"), 2);

    cfg.max_wait_seconds = 5;
    let api = github_fixture::api(&cfg);
    s.inject(Fault::new(Some("PUT"), &put("CHARLIE"), FaultKind::TooMany { retry_after: 3600 }, 1));
    let r = sync(&api, &cfg, &[item("CHARLIE", 2, b"new", vec![repo()])], &States::new());
    let errs = errors(&r).join("\n");
    assert!(errs.contains("rate-limiting") && errs.contains("max_wait_seconds"), "{errs}");
}

#[test]
fn server_errors_are_retried_a_bounded_number_of_times() {
    let s = server();
    let cfg = config(&s); // retries = 3
    let api = api(&cfg);
    let states = States::new();
    s.inject(Fault::new(Some("PUT"), &put("ALPHA"), FaultKind::Server(502), 2));
    s.inject(Fault::new(Some("PUT"), &put("BRAVO"), FaultKind::Server(503), 100));
    let r = sync(&api, &cfg, &three(), &states);
    assert_eq!(s.count("PUT", &put("ALPHA")), 3, "two 502s, then success");
    assert_eq!(s.count("PUT", &put("BRAVO")), 4, "first try and three retries");
    assert_eq!(r.failed(), ["BRAVO in repository pazpaz/app"]);
    let errs = errors(&r).join("\n");
    assert!(errs.contains("GitHub answered 503") && errs.contains("githubstatus.com"), "{errs}");
    let rk = repo_key(OWNER, REPO);
    assert_eq!(s.names(&rk), ["ALPHA", "CHARLIE"]);
    assert!(states.load().entry(&repo_target(), "BRAVO").is_none());
}

#[test]
fn slow_answers_time_out_and_fail_only_that_secret() {
    let s = server();
    let mut cfg = config(&s);
    cfg.timeout_seconds = 1;
    let api = api(&cfg);
    let states = States::new();
    s.inject(Fault::new(
        Some("PUT"),
        &put("BRAVO"),
        FaultKind::Slow(Duration::from_millis(1500)),
        4,
    ));
    // A slow read is retried.
    s.inject(Fault::new(
        Some("GET"),
        "/public-key",
        FaultKind::Slow(Duration::from_millis(1500)),
        1,
    ));
    let r = sync(&api, &cfg, &three(), &states);
    let errs = errors(&r).join("\n");
    assert!(
        errs.contains("did not answer within 1s") && errs.contains("timeout_seconds"),
        "{errs}"
    );
    assert_eq!(r.failed(), ["BRAVO in repository pazpaz/app"]);
    assert!(states.load().entry(&repo_target(), "BRAVO").is_none());
    assert!(states.load().entry(&repo_target(), "ALPHA").is_some());
}

#[test]
fn not_found_and_unprocessable_answers_say_what_to_fix() {
    let s = server();
    let cfg = config(&s);
    let api = api(&cfg);
    s.inject(Fault::new(
        Some("PUT"),
        &put("BRAVO"),
        FaultKind::Unprocessable("Secret names can only contain alphanumeric characters"),
        1,
    ));
    let r = sync(&api, &cfg, &three(), &States::new());
    let errs = errors(&r).join("\n");
    assert!(errs.contains("422") && errs.contains("letters, digits and underscores"), "{errs}");
    assert_eq!(r.failed().len(), 1);

    s.inject(Fault::new(Some("GET"), "/actions/secrets", FaultKind::NotFound, 1));
    let r = sync(&api, &cfg, &three(), &States::new());
    let e = r.scopes[0].error.clone().unwrap();
    assert!(
        e.contains("the repository pazpaz/app does not exist") && e.contains("github.repository"),
        "{e}"
    );

    let mut cfg = config(&s);
    cfg.organization = Some("no-such-org".into());
    let api = github_fixture::api(&cfg);
    let r = sync(
        &api,
        &cfg,
        &[item("O", 1, b"o", vec![org(keyward::github::Visibility::All, &[])])],
        &States::new(),
    );
    let e = r.scopes[0].error.clone().unwrap();
    assert!(e.contains("organisation no-such-org") && e.contains("github.organization"), "{e}");

    // A selected repository that does not exist fails that secret only.
    let cfg = config(&s);
    let api = github_fixture::api(&cfg);
    let r = sync(
        &api,
        &cfg,
        &[
            item("SEL", 1, b"s", vec![org(keyward::github::Visibility::Selected, &["ghost"])]),
            item("PRIV", 1, b"p", vec![org(keyward::github::Visibility::Private, &[])]),
        ],
        &States::new(),
    );
    assert_eq!(r.failed(), ["SEL in organisation pazpaz"]);
    assert!(errors(&r).join("\n").contains("selected repository pazpaz/ghost does not exist"));
}

#[test]
fn a_rejected_token_at_the_server_itself_is_a_401() {
    let s = server();
    s.revoke_tokens();
    let cfg = config(&s);
    let api = api(&cfg);
    let r = sync(&api, &cfg, &three(), &States::new());
    assert!(r.scopes[0].error.as_deref().unwrap().contains("401"), "{:?}", r.scopes[0].error);
}

#[test]
fn prune_waits_while_a_write_of_the_scope_fails() {
    let s = server();
    let cfg = config(&s);
    let api = api(&cfg);
    let states = States::new();
    sync(&api, &cfg, &[item("OLD_NAME", 1, b"v", vec![repo()])], &states);
    // Renamed in the policy; the new name's write fails this time.
    s.inject(Fault::new(Some("PUT"), &put("NEW_NAME"), FaultKind::Server(500), 100));
    let renamed = [item("NEW_NAME", 1, b"v", vec![repo()])];
    let r = run_sync(
        &api,
        &cfg,
        &renamed,
        &states,
        keyward::github::SyncOptions { dry_run: false, prune: true, ..Default::default() },
    );
    assert_eq!(r.failed(), ["NEW_NAME in repository pazpaz/app"]);
    assert_eq!(s.count("DELETE", ""), 0, "the old name stays while the new one is missing");
    assert_eq!(s.names(&repo_key(OWNER, REPO)), ["OLD_NAME"]);
    s.clear_faults();
    let r = run_sync(
        &api,
        &cfg,
        &renamed,
        &states,
        keyward::github::SyncOptions { dry_run: false, prune: true, ..Default::default() },
    );
    assert!(r.failed().is_empty());
    assert_eq!(s.names(&repo_key(OWNER, REPO)), ["NEW_NAME"]);
}

#[test]
fn a_success_that_uses_up_the_limit_holds_the_next_request_until_the_reset() {
    let s = server();
    let cfg = config(&s);
    let api = api(&cfg);
    s.inject(Fault::new(Some("GET"), "/actions/secrets", FaultKind::Exhausted { reset_in: 1 }, 1));
    let r = sync(&api, &cfg, &three(), &States::new());
    assert!(r.failed().is_empty(), "{:?}", errors(&r));
    let log = s.log();
    assert_eq!(log[0].status, 200);
    assert!(
        log[1].time - log[0].time >= chrono::Duration::milliseconds(900),
        "the request after x-ratelimit-remaining: 0 did not wait for the reset"
    );
}
