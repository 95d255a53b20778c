//! `keyward acme …` without a server: configuration errors, usage errors, and what
//! list and status say before anything was issued.

mod common;

use common::{Env, tree};

fn with_acme(env: &Env, acme: &str) {
    let mut text = std::fs::read_to_string(env.config()).unwrap();
    text.push_str(acme);
    std::fs::write(env.config(), text).unwrap();
}

const ONE: &str = "\n[acme]\ndirectory = \"https://127.0.0.1:9/dir\"\noutput_dir = \"le\"\n\n[[acme.certificate]]\nname = \"pazpaz.health\"\ndomains = [\"pazpaz.health\"]\nchallenge = { type = \"webroot\", webroot = \"www\" }\n";

#[test]
fn without_an_acme_section_commands_say_how_to_add_one() {
    let env = Env::init();
    for args in [&["acme", "list"][..], &["acme", "renew"], &["acme", "register"]] {
        let r = env.run(args);
        r.code(2);
        assert!(r.stderr.contains("no [acme] section"), "{}", r.stderr);
    }
    // run and status simply have no ACME lines.
    env.run(&["run"]).code(0);
    env.run(&["status"]).code(0);
}

#[test]
fn bad_acme_config_names_the_key_and_changes_nothing() {
    let env = Env::init();
    let before = tree(env.root());
    with_acme(&env, &ONE.replace("pazpaz.health\"]", "pazpaz health\"]"));
    let r = env.run(&["run"]);
    r.code(2);
    assert!(r.stderr.contains("acme.certificate[0].domains"), "{}", r.stderr);
    let cfg = env.config();
    let text = std::fs::read_to_string(&cfg).unwrap().replace("pazpaz health", "pazpaz.health");
    std::fs::write(&cfg, text.replace("type = \"webroot\", webroot = \"www\"", "type = \"ftp\""))
        .unwrap();
    let r = env.run(&["acme", "list"]);
    r.code(2);
    assert!(r.stderr.contains("keyward.toml:"), "{}", r.stderr);
    assert!(r.stderr.contains("ftp"), "{}", r.stderr);
    let after: Vec<_> =
        tree(env.root()).into_iter().filter(|p| !p.ends_with("keyward.toml")).collect();
    assert_eq!(
        after,
        before.into_iter().filter(|p| !p.ends_with("keyward.toml")).collect::<Vec<_>>()
    );
}

#[test]
fn unknown_names_are_usage_errors() {
    let env = Env::init();
    with_acme(&env, ONE);
    let r = env.run(&["acme", "renew", "nope"]);
    r.code(2);
    assert!(r.stderr.contains("configured: pazpaz.health"), "{}", r.stderr);
    env.run(&["acme", "renew", "--all", "x"]).code(2);
}

#[test]
fn before_the_first_issue_list_status_and_plan_say_what_will_happen() {
    let env = Env::init();
    with_acme(&env, ONE);
    let r = env.run(&["--format", "json", "acme", "list"]);
    r.code(0);
    let doc = r.json();
    assert_eq!(doc["certificates"][0]["name"], "pazpaz.health");
    assert!(doc["certificates"][0]["next"].as_str().unwrap().contains("no certificate yet"));
    assert!(doc["account"].is_null());
    // Not issued yet needs attention.
    let r = env.run(&["--format", "json", "status"]);
    r.code(3);
    assert_eq!(acme_item(&r.json(), "pazpaz.health")["health"], "overdue");
    // plan changes nothing and sends nothing (the directory is a closed port).
    let before = tree(env.root());
    let r = env.run(&["plan"]);
    r.code(0);
    assert!(r.stdout.contains("issue") && r.stdout.contains("planned"), "{}", r.stdout);
    assert_eq!(tree(env.root()), before);
}

#[test]
fn a_monitored_file_that_is_missing_is_failing() {
    let env = Env::init();
    with_acme(&env, "\n[acme]\nmonitor = [\"certs/missing.pem\"]\n");
    let r = env.run(&["--format", "json", "status"]);
    r.code(3);
    let item = acme_item(&r.json(), "missing.pem");
    assert_eq!(item["kind"], "certificate");
    assert_eq!(item["health"], "failing");
}

#[test]
fn a_damaged_state_file_is_a_failing_line_not_a_broken_status() {
    let env = Env::init();
    with_acme(&env, ONE);
    env.run(&["status"]);
    let dir = env.path("state/acme/certificates");
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).unwrap();
    let f = dir.join("pazpaz.health.json");
    std::fs::write(&f, "{not json").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = env.run(&["--format", "json", "status"]);
    r.code(3);
    let item = acme_item(&r.json(), "pazpaz.health");
    assert_eq!(item["health"], "failing");
    assert!(item["note"].as_str().unwrap().contains("pazpaz.health.json is damaged"), "{item}");
    // A run reports it as a failed item and still finishes.
    let r = env.run(&["run"]);
    r.code(1);
    assert!(r.stdout.contains("damaged"), "{}", r.stdout);
}

/// The status item whose name contains `name` (other capabilities' items come too).
fn acme_item(doc: &serde_json::Value, name: &str) -> serde_json::Value {
    doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"].as_str().is_some_and(|n| n.contains(name)))
        .cloned()
        .unwrap_or_else(|| panic!("no status item named {name}: {doc}"))
}
