//! The GitHub sync end to end against the local GitHub API server: all three
//! scopes, idempotence, drift, pruning ownership, dry runs, limits, GitHub App auth
//! and canary hygiene.

mod common;
#[path = "support/github_fixture.rs"]
mod github_fixture;
#[path = "support/github_server.rs"]
mod github_server;

use github_fixture::*;
use github_server::{env_key, org_key, repo_key};
use keyward::github::{SyncOptions, Visibility};

#[test]
fn syncs_all_three_scopes_and_github_opens_every_box() {
    let s = server();
    let cfg = config(&s);
    let api = api(&cfg);
    let states = States::new();
    let items = vec![
        item("DEPLOY_KEY", 1, b"repo-value-1", vec![repo()]),
        item("DB_PASSWORD", 3, b"env-value-3", vec![env(), repo()]),
        item("SHARED_TOKEN", 1, b"org-value-1", vec![org(Visibility::Selected, &["app", "infra"])]),
        item("ORG_ALL", 1, b"org-all", vec![org(Visibility::All, &[])]),
    ];
    let r = sync(&api, &cfg, &items, &states);
    assert!(errors(&r).is_empty(), "{:?}", errors(&r));
    let rk = repo_key(OWNER, REPO);
    let ek = env_key(OWNER, REPO, ENV);
    let ok = org_key(ORG);
    assert_eq!(s.value(&rk, "DEPLOY_KEY").unwrap(), b"repo-value-1");
    assert_eq!(s.value(&rk, "DB_PASSWORD").unwrap(), b"env-value-3");
    assert_eq!(s.value(&ek, "DB_PASSWORD").unwrap(), b"env-value-3");
    assert_eq!(s.value(&ok, "SHARED_TOKEN").unwrap(), b"org-value-1");
    let shared = s.stored(&ok, "SHARED_TOKEN").unwrap();
    assert_eq!(shared.visibility.as_deref(), Some("selected"));
    assert_eq!(shared.selected.len(), 2, "both selected repositories by id");
    assert_eq!(s.stored(&ok, "ORG_ALL").unwrap().visibility.as_deref(), Some("all"));
    // Every value arrived as a sealed box that the scope's key opened.
    assert_eq!(s.received().len(), 5);
    // One list and one public key per scope; the environment path is the current one.
    assert_eq!(s.count("GET", "/public-key"), 3);
    assert_eq!(s.count("GET", "/repos/pazpaz/app/environments/production/secrets/public-key"), 1);
    assert_eq!(s.count("PUT", "/repos/pazpaz/app/environments/production/secrets/DB_PASSWORD"), 1);
    assert_eq!(s.count("GET", "/repositories/"), 0, "never the older /repositories/{{id}} paths");
    for ((_, name), (change, outcome)) in outcomes(&r) {
        assert_eq!((change.as_str(), outcome.as_str()), ("create", "done"), "{name}");
    }
    assert_eq!(r.requests as usize, s.total());
    s.assert_faithful();
}

#[test]
fn a_second_sync_sends_no_put_and_one_change_sends_one() {
    let s = server();
    let cfg = config(&s);
    let api = api(&cfg);
    let states = States::new();
    let mut items: Vec<_> = (0..10)
        .map(|i| item(&format!("S{i}"), 1, format!("value-{i}").as_bytes(), vec![repo()]))
        .collect();
    sync(&api, &cfg, &items, &states);
    s.clear_log();
    let r = sync(&api, &cfg, &items, &states);
    assert_eq!(s.count("PUT", ""), 0, "{:?}", s.log());
    assert_eq!(s.count("GET", "/public-key"), 0, "no key is fetched when nothing changed");
    assert_eq!(s.total(), 1, "the drift check is one list request");
    assert!(outcomes(&r).values().all(|(c, _)| c == "unchanged"));

    items[4] = item("S4", 2, b"rotated", vec![repo()]);
    s.clear_log();
    let r = sync(&api, &cfg, &items, &states);
    assert_eq!(s.count("PUT", "/actions/secrets/S4"), 1);
    assert_eq!(s.count("PUT", ""), 1);
    assert_eq!(s.count("GET", "/public-key"), 1);
    assert_eq!(s.value(&repo_key(OWNER, REPO), "S4").unwrap(), b"rotated");
    assert_eq!(
        outcomes(&r)[&(repo_key(OWNER, REPO), "S4".to_string())],
        ("update".into(), "done".into())
    );
    // A new version with the same value is not re-sent either.
    items[4] = item("S4", 3, b"rotated", vec![repo()]);
    s.clear_log();
    sync(&api, &cfg, &items, &states);
    assert_eq!(s.count("PUT", ""), 0);
    s.assert_faithful();
}

#[test]
fn drift_check_when_unchanged_saves_the_list_request_of_a_scope_with_writes() {
    let s = server();
    let mut cfg = config(&s);
    cfg.drift_check = keyward::github::config::DriftCheck::WhenUnchanged;
    let api = api(&cfg);
    let states = States::new();
    let mut items: Vec<_> = (0..10)
        .map(|i| item(&format!("S{i}"), 1, format!("value-{i}").as_bytes(), vec![repo()]))
        .collect();
    sync(&api, &cfg, &items, &states);
    let rk = repo_key(OWNER, REPO);
    s.set_behind_the_back(&rk, "S7", b"tampered");
    // One value changed: the public key and one PUT, no list.
    items[2] = item("S2", 2, b"rotated", vec![repo()]);
    s.clear_log();
    let r = sync(&api, &cfg, &items, &states);
    assert_eq!(s.total(), 2, "{:?}", s.log());
    assert_eq!(s.count("GET", "/public-key"), 1);
    assert_eq!(s.count("PUT", "/S2"), 1);
    assert!(r.warnings.is_empty());
    // Nothing to write: the list, which catches the change behind keyward's back.
    s.clear_log();
    let r = sync(&api, &cfg, &items, &states);
    assert!(r.warnings.iter().any(|w| w.contains("S7")), "{:?}", r.warnings);
    assert_eq!(s.count("PUT", "/S7"), 1);
    assert_eq!(s.value(&rk, "S7").unwrap(), b"value-7");
    s.clear_log();
    sync(&api, &cfg, &items, &states);
    assert_eq!(s.total(), 1);
    assert_eq!(s.count("PUT", ""), 0);
}

#[test]
fn changes_behind_keywards_back_are_warned_about_and_undone() {
    let s = server();
    let cfg = config(&s);
    let api = api(&cfg);
    let states = States::new();
    let items = vec![
        item("A", 1, b"keyward-a", vec![repo()]),
        item("B", 1, b"keyward-b", vec![repo()]),
        item("C", 1, b"keyward-c", vec![org(Visibility::Private, &[])]),
    ];
    sync(&api, &cfg, &items, &states);
    let rk = repo_key(OWNER, REPO);
    s.set_behind_the_back(&rk, "A", b"someone-else");
    s.delete_behind_the_back(&rk, "B");
    s.set_behind_the_back(&org_key(ORG), "C", b"someone-else");
    s.clear_log();
    let r = sync(&api, &cfg, &items, &states);
    assert_eq!(s.value(&rk, "A").unwrap(), b"keyward-a");
    assert_eq!(s.value(&rk, "B").unwrap(), b"keyward-b");
    assert_eq!(s.value(&org_key(ORG), "C").unwrap(), b"keyward-c");
    assert_eq!(s.count("PUT", ""), 3);
    assert!(
        r.warnings.iter().any(|w| w.contains("A in repository pazpaz/app was changed on GitHub")
            && w.contains("behind keyward's back")),
        "{:?}",
        r.warnings
    );
    assert!(r.warnings.iter().any(|w| w.contains("B was deleted")), "{:?}", r.warnings);
    // And then it is quiet again.
    s.clear_log();
    let r = sync(&api, &cfg, &items, &states);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(s.count("PUT", ""), 0);
}

#[test]
fn prune_deletes_only_what_keyward_created() {
    let s = server();
    let cfg = config(&s);
    let api = api(&cfg);
    let states = States::new();
    let rk = repo_key(OWNER, REPO);
    // A person's secret, and one that existed before keyward took it over.
    s.set_behind_the_back(&rk, "HUMAN", b"theirs");
    s.set_behind_the_back(&rk, "TAKEN", b"old");
    let items = vec![
        item("KEEP", 1, b"k", vec![repo()]),
        item("OLD", 1, b"o", vec![repo()]),
        item("TAKEN", 1, b"t", vec![repo()]),
    ];
    sync(&api, &cfg, &items, &states);
    let now = vec![item("KEEP", 1, b"k", vec![repo()])];

    // Without --prune nothing is deleted; the candidate is reported.
    s.clear_log();
    let r = sync(&api, &cfg, &now, &states);
    assert_eq!(s.count("DELETE", ""), 0);
    assert_eq!(outcomes(&r)[&(rk.clone(), "OLD".to_string())].0, "prunable");
    assert!(!outcomes(&r).contains_key(&(rk.clone(), "TAKEN".to_string())));

    // A dry run lists the delete and sends none.
    let r = run_sync(
        &api,
        &cfg,
        &now,
        &states,
        SyncOptions { dry_run: true, prune: true, ..Default::default() },
    );
    assert_eq!(outcomes(&r)[&(rk.clone(), "OLD".to_string())], ("delete".into(), "planned".into()));
    assert_eq!(s.count("DELETE", ""), 0);

    let r = run_sync(
        &api,
        &cfg,
        &now,
        &states,
        SyncOptions { dry_run: false, prune: true, ..Default::default() },
    );
    assert_eq!(s.count("DELETE", ""), 1);
    assert_eq!(s.count("DELETE", "/OLD"), 1);
    assert_eq!(outcomes(&r)[&(rk.clone(), "OLD".to_string())], ("delete".into(), "done".into()));
    let mut names = s.names(&rk);
    names.sort();
    assert_eq!(names, ["HUMAN", "KEEP", "TAKEN"]);
    // Pruning again finds nothing; the never-owned record is forgotten, not deleted.
    let r = run_sync(
        &api,
        &cfg,
        &now,
        &states,
        SyncOptions { dry_run: false, prune: true, ..Default::default() },
    );
    assert_eq!(s.count("DELETE", ""), 1);
    assert!(errors(&r).is_empty());
    assert!(states.load().entry(&repo_target(), "TAKEN").is_none());
}

#[test]
fn status_names_present_missing_unmanaged_and_prunable() {
    let s = server();
    let cfg = config(&s);
    let api = api(&cfg);
    let states = States::new();
    s.set_behind_the_back(&repo_key(OWNER, REPO), "BY_HAND", b"x");
    sync(
        &api,
        &cfg,
        &[item("GONE", 1, b"g", vec![repo()]), item("HERE", 1, b"h", vec![repo()])],
        &states,
    );
    let wanted = [item("HERE", 1, b"h", vec![repo()]), item("NOT_YET", 1, b"n", vec![repo()])];
    let (targets, _) = keyward::github::sync::plan_targets(&wanted, &cfg);
    s.clear_log();
    let st = keyward::github::status_of(&api, &targets, &states.load());
    let r = &st.scopes[0];
    assert_eq!(r.present, ["HERE"]);
    assert_eq!(r.missing, ["NOT_YET"]);
    assert_eq!(r.unmanaged, ["BY_HAND"]);
    assert_eq!(r.prunable, ["GONE"]);
    assert_eq!(keyward::output::Human::exit(&st), keyward::Exit::Attention);
    assert_eq!(s.total(), 1, "one list per scope");
}

#[test]
fn dry_run_lists_creates_and_updates_and_writes_nothing() {
    let s = server();
    let cfg = config(&s);
    let api = api(&cfg);
    let states = States::new();
    sync(&api, &cfg, &[item("A", 1, b"a1", vec![repo()])], &states);
    let before = std::fs::read(states.store.path(keyward::github::state::STATE_FILE)).unwrap();
    s.clear_log();
    let items = vec![item("A", 2, b"a2", vec![repo()]), item("B", 1, b"b", vec![env()])];
    let r = run_sync(
        &api,
        &cfg,
        &items,
        &states,
        SyncOptions { dry_run: true, prune: false, ..Default::default() },
    );
    let o = outcomes(&r);
    assert_eq!(o[&(repo_key(OWNER, REPO), "A".into())], ("update".into(), "planned".into()));
    assert_eq!(o[&(env_key(OWNER, REPO, ENV), "B".into())], ("create".into(), "planned".into()));
    assert_eq!(s.count("PUT", ""), 0);
    assert_eq!(s.count("GET", "/public-key"), 0);
    assert_eq!(
        std::fs::read(states.store.path(keyward::github::state::STATE_FILE)).unwrap(),
        before
    );
}

#[test]
fn values_over_48_kb_and_bad_names_are_refused_before_sending() {
    let s = server();
    let cfg = config(&s);
    let api = api(&cfg);
    let states = States::new();
    let big = vec![b'x'; 48 * 1024 + 1];
    let items = vec![
        item("BIG", 1, &big, vec![repo()]),
        item("EXACTLY_48K", 1, &vec![b'y'; 48 * 1024], vec![repo()]),
        item("1STARTS_WITH_DIGIT", 1, b"v", vec![repo()]),
        item("GITHUB_RESERVED", 1, b"v", vec![repo()]),
        item("HAS-DASH", 1, b"v", vec![repo()]),
        item("FINE", 1, b"v", vec![repo()]),
    ];
    let r = sync(&api, &cfg, &items, &states);
    let rk = repo_key(OWNER, REPO);
    assert_eq!(s.names(&rk), ["EXACTLY_48K", "FINE"]);
    assert_eq!(s.count("PUT", ""), 2);
    let errs = errors(&r).join("\n");
    assert!(errs.contains("48 KB"), "{errs}");
    assert!(errs.contains("must not start with a digit"), "{errs}");
    assert!(errs.contains("GITHUB_"), "{errs}");
    assert!(errs.contains("letters, digits and underscores"), "{errs}");
    assert_eq!(r.failed().len(), 4);
}

#[test]
fn more_than_100_secrets_in_a_repository_fail_clearly() {
    let s = server();
    let cfg = config(&s);
    let api = api(&cfg);
    let states = States::new();
    let rk = repo_key(OWNER, REPO);
    for i in 0..98 {
        s.set_behind_the_back(&rk, &format!("EXISTING_{i}"), b"x");
    }
    let items: Vec<_> = (0..4).map(|i| item(&format!("NEW_{i}"), 1, b"v", vec![repo()])).collect();
    let r = sync(&api, &cfg, &items, &states);
    assert_eq!(s.names(&rk).len(), 100);
    assert_eq!(r.failed().len(), 2);
    let errs = errors(&r).join("\n");
    assert!(
        errs.contains("GitHub's limit is 100") && errs.contains("delete unused ones"),
        "{errs}"
    );
    // Pagination: the 100 secrets came in one page of 100 (keyward asks per_page=100).
    assert!(s.log().iter().all(|l| l.status < 400), "{:?}", s.log());
}

#[test]
fn lists_are_paginated_and_every_page_is_read() {
    let s = server();
    let cfg = config(&s);
    let api = api(&cfg);
    let ok = org_key(ORG);
    for i in 0..250 {
        s.set_behind_the_back(&ok, &format!("ORG_{i:03}"), b"x");
    }
    use keyward::github::SecretsApi;
    let list = api.list(&keyward::github::Target::Organization { org: ORG.into() }).unwrap();
    assert_eq!(list.len(), 250);
    assert_eq!(s.count("GET", "/orgs/pazpaz/actions/secrets"), 3);
    s.assert_faithful();
}

#[test]
fn an_environment_that_does_not_exist_is_an_error_with_the_fix_and_not_created() {
    let s = server();
    let cfg = config(&s);
    let api = api(&cfg);
    let states = States::new();
    let items = vec![
        item(
            "A",
            1,
            b"a",
            vec![keyward::github::GithubScope::Environment { environment: "staging eu/1".into() }],
        ),
        item("B", 1, b"b", vec![repo()]),
    ];
    let r = sync(&api, &cfg, &items, &states);
    let errs = errors(&r).join("\n");
    assert!(
        errs.contains("the environment \"staging eu/1\" does not exist in pazpaz/app"),
        "{errs}"
    );
    assert!(errs.contains("Settings → Environments"), "{errs}");
    // The name went out as one encoded path segment; nothing was created.
    assert_eq!(s.count("GET", "/environments/staging eu/1/secrets"), 1, "{:?}", s.log());
    assert_eq!(s.count("PUT", "/environments/"), 0);
    // The other scope still synced.
    assert_eq!(s.value(&repo_key(OWNER, REPO), "B").unwrap(), b"b");

    // A repository that does not exist says so.
    let mut cfg2 = config(&s);
    cfg2.repository = Some("nope".into());
    let api2 = github_fixture::api(&cfg2);
    let r = sync(&api2, &cfg2, &[item("A", 1, b"a", vec![env()])], &States::new());
    let errs = errors(&r).join("\n");
    assert!(errs.contains("the repository pazpaz/nope does not exist"), "{errs}");
}

#[test]
fn github_app_installation_tokens_are_used() {
    let openssl = common::require_tool("openssl", "apt-get install openssl");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("app.pem");
    let pubkey = dir.path().join("app.pub.pem");
    let ok = std::process::Command::new(&openssl)
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(&key)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    let ok = std::process::Command::new(&openssl)
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&pubkey)
        .status()
        .unwrap();
    assert!(ok.success());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = server();
    s.add_app(4242, 77, &std::fs::read_to_string(&pubkey).unwrap());
    let mut cfg = config(&s);
    cfg.app = Some(keyward::github::config::AppConfig {
        app_id: 4242,
        installation_id: 77,
        private_key_file: "app.pem".into(),
    });
    let cred = keyward::github::auth::credential(&cfg, dir.path()).unwrap();
    let api = keyward::github::connect_with(&cfg, &cred).unwrap();
    let states = States::new();
    let r = sync(&api, &cfg, &[item("A", 1, b"app-value", vec![repo()])], &states);
    assert!(errors(&r).is_empty(), "{:?}", errors(&r));
    assert_eq!(s.value(&repo_key(OWNER, REPO), "A").unwrap(), b"app-value");
    assert_eq!(s.count("POST", "/app/installations/77/access_tokens"), 1);

    // A key file others can read is refused before anything is sent.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = keyward::github::auth::credential(&cfg, dir.path()).err().unwrap();
    assert!(err.to_string().contains("chmod 0600"), "{err}");
}

#[test]
fn mutative_requests_are_serial_with_the_configured_pause() {
    let s = server();
    let mut cfg = config(&s);
    cfg.pause_ms = 250;
    let api = api(&cfg);
    let items: Vec<_> = (0..4).map(|i| item(&format!("P{i}"), 1, b"v", vec![repo()])).collect();
    sync(&api, &cfg, &items, &States::new());
    let puts: Vec<_> = s.log().into_iter().filter(|l| l.method == "PUT").collect();
    assert_eq!(puts.len(), 4);
    for w in puts.windows(2) {
        let gap = w[1].time - w[0].time;
        assert!(gap >= chrono::Duration::milliseconds(200), "PUTs {gap:?} apart");
    }
}

#[test]
fn canary_values_reach_no_report_error_state_or_audit_record() {
    let canary = "CANARY-7f3a9c-never-print-me";
    let s = server();
    let cfg = config(&s);
    let api = api(&cfg);
    let states = States::new();
    let audit = keyward::audit::AuditLog::new(states.store.path("audit.jsonl"), "github sync");
    let rk = repo_key(OWNER, REPO);
    // One succeeds, one fails at GitHub (422), one is refused locally, one scope is missing.
    s.inject(github_server::Fault::new(
        Some("PUT"),
        "/FAILS",
        github_server::FaultKind::Unprocessable("Invalid request"),
        5,
    ));
    let big = format!("{canary}{}", "x".repeat(50 * 1024));
    let items = vec![
        item("OK", 1, canary.as_bytes(), vec![repo()]),
        item("FAILS", 1, canary.as_bytes(), vec![repo()]),
        item("TOO_BIG", 1, big.as_bytes(), vec![repo()]),
        item(
            "ENV",
            1,
            canary.as_bytes(),
            vec![keyward::github::GithubScope::Environment { environment: "missing".into() }],
        ),
    ];
    let r = sync(&api, &cfg, &items, &states);
    keyward::github::audit_report(&audit, &r).unwrap();
    assert_eq!(s.value(&rk, "OK").unwrap(), canary.as_bytes());
    assert_eq!(r.failed().len(), 4, "{:?}", r.failed());
    let json = serde_json::to_string(&r).unwrap();
    let mut human = String::new();
    keyward::output::Human::human(&r, &mut human);
    for (what, text) in
        [("json report", &json), ("human report", &human), ("errors", &errors(&r).join("\n"))]
    {
        assert!(!text.contains(canary), "{what} holds the value: {text}");
    }
    assert!(common::tree_contains(states.dir.path(), canary.as_bytes()).is_empty());
    assert!(common::tree_contains(states.dir.path(), b"CANARY").is_empty());
    let audit_text = std::fs::read_to_string(states.store.path("audit.jsonl")).unwrap();
    assert!(
        audit_text.contains("github-create") && audit_text.contains("\"failed\""),
        "{audit_text}"
    );
}

/// Runs the sync in a child process at the highest verbosity, with drift, retries
/// and failures, and checks every byte it wrote to stdout and stderr.
#[test]
fn canary_values_reach_no_log_line() {
    let canary = "CANARY-b81e44-never-log-me";
    if std::env::var_os("KEYWARD_CANARY_CHILD").is_some() {
        keyward::output::init(keyward::output::Format::Human, 3);
        let s = server();
        // Listing every scope on every sync, so a change behind keyward's back is
        // warned about in the same sync that writes the new version.
        let mut cfg = config(&s);
        cfg.drift_check = keyward::github::config::DriftCheck::Always;
        let api = api(&cfg);
        let states = States::new();
        let items = vec![
            item("LOGGED_A", 1, canary.as_bytes(), vec![repo(), env()]),
            item(
                "LOGGED_B",
                1,
                canary.as_bytes(),
                vec![org(Visibility::Selected, &["app", "ghost"])],
            ),
        ];
        sync(&api, &cfg, &items, &states);
        s.set_behind_the_back(&repo_key(OWNER, REPO), "LOGGED_A", b"other");
        s.inject(github_server::Fault::new(
            Some("PUT"),
            "/LOGGED_A",
            github_server::FaultKind::Server(502),
            1,
        ));
        s.inject(github_server::Fault::new(
            Some("PUT"),
            "/environments/production/secrets/LOGGED_A",
            github_server::FaultKind::Unprocessable("Invalid request"),
            1,
        ));
        let items =
            vec![item("LOGGED_A", 2, format!("{canary}-2").as_bytes(), vec![repo(), env()])];
        let r = sync(&api, &cfg, &items, &states);
        let mut human = String::new();
        keyward::output::Human::human(&r, &mut human);
        println!("{human}");
        println!("{}", serde_json::to_string(&r).unwrap());
        eprintln!("{:?}", errors(&r));
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "canary_values_reach_no_log_line", "--nocapture", "--test-threads=1"])
        .env("KEYWARD_CANARY_CHILD", "1")
        .output()
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("warning: LOGGED_A in repository pazpaz/app was also changed on GitHub"),
        "{text}"
    );
    assert!(text.contains("debug: GitHub: GitHub answered 502"), "{text}");
    assert!(text.contains("FAILED"), "{text}");
    assert!(!text.contains("CANARY"), "a value reached the output:\n{text}");
}

#[test]
fn a_new_visibility_or_repository_selection_is_sent_again() {
    let s = server();
    let cfg = config(&s);
    let api = api(&cfg);
    let states = States::new();
    let ok = org_key(ORG);
    sync(&api, &cfg, &[item("O", 1, b"o", vec![org(Visibility::Selected, &["app"])])], &states);
    assert_eq!(s.stored(&ok, "O").unwrap().selected.len(), 1);
    s.clear_log();
    let r = sync(
        &api,
        &cfg,
        &[item("O", 1, b"o", vec![org(Visibility::Selected, &["app", "infra"])])],
        &states,
    );
    assert_eq!(s.count("PUT", "/orgs/pazpaz/actions/secrets/O"), 1);
    assert_eq!(outcomes(&r)[&(ok.clone(), "O".to_string())].0, "update");
    assert_eq!(s.stored(&ok, "O").unwrap().selected.len(), 2);
    sync(&api, &cfg, &[item("O", 1, b"o", vec![org(Visibility::All, &[])])], &states);
    assert_eq!(s.stored(&ok, "O").unwrap().visibility.as_deref(), Some("all"));
    s.clear_log();
    sync(&api, &cfg, &[item("O", 1, b"o", vec![org(Visibility::All, &[])])], &states);
    assert_eq!(s.count("PUT", ""), 0);
    s.assert_faithful();
}
