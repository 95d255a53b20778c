//! keyward's ACME client against a real Pebble (and pebble-challtestsrv, and nginx):
//! issuance through each challenge, deploy hooks, ARI and lifetime renewal decisions,
//! and runs with nothing due that send no request.

mod common;
#[path = "support/pebble.rs"]
mod pebble;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::Env;
use pebble::free_port;
use pebble::{Nginx, Pebble, PebbleOpts, Version};

/// Appends an `[acme]` section for `pebble` and the given certificate entries.
///
/// The starter's `[ca]` and `[secrets]` sections are dropped: these tests move the clock
/// far ahead, and CRL refreshes or rotations would then be due too.
fn configure(env: &Env, pebble: &Pebble, certs: &str) {
    env.drop_sections(&["ca", "secrets"]);
    let mut text = std::fs::read_to_string(env.config()).unwrap();
    text.push_str(&format!(
        "\n[acme]\ndirectory = \"{}\"\nca_file = \"{}\"\ncontact = [\"ops@pazpaz.test\"]\noutput_dir = \"letsencrypt\"\ntimeout_seconds = 10\nvalidation_timeout_seconds = 30\n{certs}",
        pebble.directory(),
        pebble.tls.ca_file.display()
    ));
    std::fs::write(env.config(), text).unwrap();
}

fn live(env: &Env, name: &str, file: &str) -> std::path::PathBuf {
    env.path(&format!("letsencrypt/live/{name}/{file}.pem"))
}

fn der_of(pem_text: &str) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem_text.as_bytes()).next().unwrap().unwrap().to_vec()
}

fn acme_item(env: &Env, name: &str) -> serde_json::Value {
    let r = env.run(&["--format", "json", "status"]);
    let doc: serde_json::Value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "acme" && i["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no status item for {name}: {doc}"))
}

#[test]
fn webroot_through_nginx_deploys_and_nginx_serves_a_chain_that_validates() {
    let env = Env::init();
    let pebble = Pebble::start_in(env.root(), PebbleOpts::default());
    let peers = env.path("peers");
    let http_port = pebble.http_port;
    let webroot = env.path("webroot");
    std::fs::create_dir_all(&webroot).unwrap();
    let nginx = Nginx::start(&peers, http_port, &webroot);

    // The deploy hook enables nginx's TLS server on the new lineage and reloads it.
    let https_port = free_port();
    let lineage = env.path("letsencrypt/live/pazpaz.test");
    let ssl = format!(
        "server {{ listen 127.0.0.1:{https_port} ssl; server_name pazpaz.test; ssl_certificate {l}/fullchain.pem; ssl_certificate_key {l}/privkey.pem; location / {{ return 200 'ok'; }} }}\n",
        l = lineage.display()
    );
    std::fs::write(peers.join("ssl.conf.in"), ssl).unwrap();
    let hook_env = peers.join("hook-env");
    let script = format!(
        "cp {in_} {out} && env | grep -E '^(RENEWED_|KEYWARD_CERTIFICATE)' > {env_} && exec \"$@\"",
        in_ = peers.join("ssl.conf.in").display(),
        out = nginx.dir.join("conf.d/ssl.conf").display(),
        env_ = hook_env.display()
    );
    let mut argv = vec!["sh".to_string(), "-c".into(), script, "deploy".into()];
    argv.extend(nginx.reload_argv());
    let argv = serde_json::to_string(&argv).unwrap();
    configure(
        &env,
        &pebble,
        &format!(
            "\n[[acme.certificate]]\nname = \"pazpaz.test\"\ndomains = [\"pazpaz.test\", \"www.pazpaz.test\"]\nchallenge = {{ type = \"webroot\", webroot = \"{}\" }}\ndeploy_hooks = [{{ command = {argv} }}]\n",
            webroot.display()
        ),
    );

    let r = env.run(&["--format", "json", "run"]);
    r.code(0);
    let doc = r.json();
    let acme =
        doc["steps"].as_array().unwrap().iter().find(|s| s["name"] == "acme").unwrap().clone();
    assert_eq!(acme["actions"][0]["action"], "issue", "{doc}");
    assert_eq!(acme["actions"][0]["result"]["status"], "done", "{doc}");

    // No key material in the output or the audit log.
    let key_pem = std::fs::read_to_string(live(&env, "pazpaz.test", "privkey")).unwrap();
    let key_body = key_pem.lines().nth(1).unwrap().to_string();
    let audit_log = std::fs::read_to_string(env.path("state/audit.jsonl")).unwrap();
    for text in [&r.stdout, &r.stderr, &audit_log] {
        assert!(!text.contains("PRIVATE KEY") && !text.contains(&key_body));
    }
    assert!(common::tree_contains(&env.path("state"), key_body.as_bytes()).is_empty());

    // certbot's layout: live/ links into archive/, key private.
    for f in ["cert", "chain", "fullchain", "privkey"] {
        let link = std::fs::read_link(live(&env, "pazpaz.test", f)).unwrap();
        assert_eq!(link, Path::new(&format!("../../archive/pazpaz.test/{f}1.pem")));
    }
    let key_mode =
        std::fs::metadata(env.path("letsencrypt/archive/pazpaz.test/privkey1.pem")).unwrap().mode();
    assert_eq!(key_mode & 0o777, 0o600);
    // The challenge file is gone again.
    assert_eq!(std::fs::read_dir(webroot.join(".well-known/acme-challenge")).unwrap().count(), 0);

    // The deploy hook ran with certbot's variables.
    let got = std::fs::read_to_string(&hook_env).unwrap();
    assert!(got.contains(&format!("RENEWED_LINEAGE={}", lineage.display())), "{got}");
    assert!(got.contains("RENEWED_DOMAINS=pazpaz.test www.pazpaz.test"), "{got}");

    // nginx now serves the issued chain, and it validates against Pebble's root.
    let root = pebble.root_pem();
    let cert_pem = std::fs::read_to_string(live(&env, "pazpaz.test", "cert")).unwrap();
    let mut chain = Err(String::new());
    assert!(
        pebble::eventually(10, || {
            chain = pebble::tls_connect(https_port, "www.pazpaz.test", &root);
            chain.is_ok()
        }),
        "TLS to nginx failed: {chain:?}\n{}",
        std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default()
    );
    assert_eq!(chain.unwrap()[0], der_of(&cert_pem));
    // A client that trusts something else refuses it.
    assert!(pebble::tls_connect(https_port, "pazpaz.test", &pebble.tls.ca_pem).is_err());

    // Status: healthy, next renewal from the server's window.
    let item = acme_item(&env, "pazpaz.test");
    assert_eq!(item["health"], "healthy", "{item}");
    assert!(item["next_action"].as_str().unwrap().contains("renewal information"), "{item}");

    // A second run with nothing due sends no request at all.
    let before = pebble.requests();
    assert!(before > 0);
    let r = env.run(&["run"]);
    r.code(0);
    assert!(r.stdout.contains("nothing was due"), "{}", r.stdout);
    assert_eq!(
        pebble.requests(),
        before,
        "a run with nothing due must not talk to the server\n{}\n{}",
        r.stderr,
        pebble.log()
    );
    assert_eq!(
        std::fs::read_link(live(&env, "pazpaz.test", "cert")).unwrap(),
        Path::new("../../archive/pazpaz.test/cert1.pem")
    );

    // The account key is encrypted at rest; reused by the next renewal.
    let accounts = env.path("state/acme/accounts");
    let account = std::fs::read_dir(&accounts).unwrap().next().unwrap().unwrap().path();
    let sealed = std::fs::read(account.join("credentials.age")).unwrap();
    assert!(sealed.starts_with(b"age-encryption.org/v1"));
    assert_eq!(std::fs::metadata(account.join("credentials.age")).unwrap().mode() & 0o777, 0o600);
    let account_url = std::fs::read_to_string(account.join("account.json")).unwrap();
    env.run(&["acme", "renew", "--force", "pazpaz.test"]).code(0);
    // Without reuse_key every renewal has a new key.
    assert_ne!(std::fs::read_to_string(live(&env, "pazpaz.test", "privkey")).unwrap(), key_pem);
    assert_eq!(std::fs::read_to_string(account.join("account.json")).unwrap(), account_url);
    assert_eq!(std::fs::read_dir(&accounts).unwrap().count(), 1);
    assert_eq!(
        std::fs::read_link(live(&env, "pazpaz.test", "cert")).unwrap(),
        Path::new("../../archive/pazpaz.test/cert2.pem")
    );
    // The renewal's order carried `replaces` (Pebble reflects it in the order).
    let audit = std::fs::read_to_string(env.path("state/audit.jsonl")).unwrap();
    assert!(audit.contains("(ARI replaces)"), "{audit}");
}

#[test]
fn pebble_version_check() {
    // Keeps the two Pebbles honest: 2.6 offers renewalInfo, 2.4 does not.
    let dir = tempfile::tempdir().unwrap();
    let p26 = Pebble::start(&dir.path().join("a").tap_mkdir(), PebbleOpts::default());
    let (_, body) = pebble::https_get(p26.port, "127.0.0.1", "/dir", &p26.tls.ca_pem);
    assert!(body.contains("renewalInfo"), "{body}");
    let p24 = Pebble::start(
        &dir.path().join("b").tap_mkdir(),
        PebbleOpts { version: Version::V24, ..Default::default() },
    );
    let (_, body) = pebble::https_get(p24.port, "127.0.0.1", "/dir", &p24.tls.ca_pem);
    assert!(body.contains("newOrder") && !body.contains("renewalInfo"), "{body}");
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

fn cert_entry(name: &str, domains: &[&str], challenge: &str, extra: &str) -> String {
    let domains = serde_json::to_string(domains).unwrap();
    format!(
        "\n[[acme.certificate]]\nname = \"{name}\"\ndomains = {domains}\nchallenge = {challenge}\n{extra}\n"
    )
}

fn live_version(env: &Env, name: &str) -> String {
    std::fs::read_link(live(env, name, "cert")).unwrap().display().to_string()
}

fn state_of(env: &Env, name: &str) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(env.path(&format!("state/acme/certificates/{name}.json"))).unwrap(),
    )
    .unwrap()
}

#[test]
fn standalone_listener_with_p384_and_a_group_readable_key() {
    let env = Env::init();
    let pebble = Pebble::start_in(env.root(), PebbleOpts::default());
    let http_port = pebble.http_port;
    configure(
        &env,
        &pebble,
        &cert_entry(
            "standalone",
            &["standalone.pazpaz.test"],
            &pebble.standalone(),
            "key_type = \"p384\"\nkey_group = \"daemon\"\nreuse_key = true",
        ),
    );
    env.run(&["acme", "renew"]).code(0);
    let key_pem = std::fs::read_to_string(live(&env, "standalone", "privkey")).unwrap();
    let key = rcgen::KeyPair::from_pem(&key_pem).unwrap();
    assert_eq!(key.algorithm(), &rcgen::PKCS_ECDSA_P384_SHA384);
    let meta = std::fs::metadata(live(&env, "standalone", "privkey")).unwrap();
    let daemon = nix::unistd::Group::from_name("daemon").unwrap().unwrap();
    assert_eq!(meta.mode() & 0o777, 0o640);
    assert_eq!(meta.gid(), daemon.gid.as_raw());
    // The listener is gone once the order is done.
    assert!(std::net::TcpStream::connect(("127.0.0.1", http_port)).is_err());
    let r = env.run(&["--format", "json", "acme", "list"]);
    r.code(0);
    let doc = r.json();
    assert_eq!(doc["certificates"][0]["version"], 1, "{doc}");
    assert_eq!(doc["certificates"][0]["challenge"], "http-01 standalone");
    // reuse_key: the renewal keeps the private key.
    env.run(&["acme", "renew", "--force"]).code(0);
    assert_eq!(std::fs::read_to_string(live(&env, "standalone", "privkey")).unwrap(), key_pem);
    assert!(live_version(&env, "standalone").ends_with("cert2.pem"));
}

#[test]
fn dns01_hook_publishes_through_challtestsrv_including_a_wildcard() {
    let env = Env::init();
    let peers = env.path("peers");
    std::fs::create_dir_all(&peers).unwrap();
    let pebble = Pebble::start(&peers, PebbleOpts::default());
    let calls = peers.join("dns-calls");
    // The hook gets the record and value in its environment (and the value on stdin).
    let script = format!(
        r#"read -r v; [ "$v" = "$KEYWARD_ACME_VALUE" ] || exit 9; echo "$KEYWARD_ACME_ACTION $KEYWARD_ACME_RECORD" >> {calls}; if [ "$KEYWARD_ACME_ACTION" = present ]; then curl -sf -d "{{\"host\":\"$KEYWARD_ACME_RECORD.\",\"value\":\"$v\"}}" {m}/set-txt; else curl -sf -d "{{\"host\":\"$KEYWARD_ACME_RECORD.\"}}" {m}/clear-txt; fi"#,
        calls = calls.display(),
        m = pebble.challsrv.mgmt()
    );
    let hook = serde_json::to_string(&["sh", "-c", &script]).unwrap();
    configure(
        &env,
        &pebble,
        &cert_entry(
            "wild",
            // challtestsrv keeps one TXT value per name, so the wildcard's base name is
            // not in the same order.
            &["*.dns.pazpaz.test", "dns2.pazpaz.test"],
            &format!(
                "{{ type = \"dns-hook\", hook = {{ command = {hook} }}, propagation_seconds = 1 }}"
            ),
            "",
        ),
    );
    let r = env.run(&["run"]);
    r.code(0);
    let calls = std::fs::read_to_string(&calls).unwrap();
    for record in ["_acme-challenge.dns.pazpaz.test", "_acme-challenge.dns2.pazpaz.test"] {
        assert!(calls.contains(&format!("present {record}\n")), "{calls}");
        assert!(calls.contains(&format!("cleanup {record}\n")), "{calls}");
    }
    let info = std::fs::read_to_string(live(&env, "wild", "cert")).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(info.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    let sans =
        format!("{:?}", cert.subject_alternative_name().unwrap().unwrap().value.general_names);
    assert!(sans.contains("*.dns.pazpaz.test"), "{sans}");
}

#[test]
fn ari_window_decides_and_retry_after_is_remembered() {
    let env = Env::init();
    let pebble = Pebble::start_in(env.root(), PebbleOpts::default());
    configure(&env, &pebble, &cert_entry("ari", &["ari.pazpaz.test"], &pebble.standalone(), ""));
    env.run(&["run"]).code(0);
    let st = state_of(&env, "ari");
    let ari = &st["ari"];
    let t = |k: &str| chrono::DateTime::parse_from_rfc3339(ari[k].as_str().unwrap()).unwrap();
    assert!(t("window_start") <= t("renew_at") && t("renew_at") <= t("window_end"), "{st}");
    assert!(t("next_check") > chrono::Utc::now(), "{st}");
    let renew_at = t("renew_at");

    // Before the chosen time, with Retry-After not passed: not due, no request.
    let before = pebble.requests();
    let early = (renew_at - chrono::Duration::minutes(10))
        .min(t("next_check") - chrono::Duration::seconds(5));
    let early = early.max(chrono::Utc::now().into()).to_rfc3339();
    let r = env.run_env(&["run"], &[("KEYWARD_NOW", &early)]);
    r.code(0);
    assert!(r.stdout.contains("nothing was due"), "{}", r.stdout);
    assert_eq!(pebble.requests(), before);

    // After Retry-After but before the window: keyward asks again, and only that.
    let recheck = (t("next_check") + chrono::Duration::seconds(5))
        .min(renew_at - chrono::Duration::seconds(60));
    if recheck > t("next_check") {
        let r = env.run_env(&["run"], &[("KEYWARD_NOW", &recheck.to_rfc3339())]);
        r.code(0);
        assert!(pebble.requests() > before, "Retry-After passed: keyward must ask again");
        assert_eq!(
            pebble.log().matches("POST /order-plz").count(),
            1,
            "only the renewal information was fetched"
        );
        assert!(live_version(&env, "ari").ends_with("cert1.pem"));
    }

    // Past the chosen time inside the window: renewed, carrying `replaces`.
    let late = (renew_at + chrono::Duration::seconds(1)).to_rfc3339();
    let r = env.run_env(&["-v", "--format", "json", "run"], &[("KEYWARD_NOW", &late)]);
    r.code(0);
    let doc = r.json();
    let reason = doc["steps"][1]["actions"][0]["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("renewal window"), "{doc}");
    assert!(live_version(&env, "ari").ends_with("cert2.pem"));
    let audit = std::fs::read_to_string(env.path("state/audit.jsonl")).unwrap();
    assert!(audit.contains("(ARI replaces)"), "{audit}\n{}", r.stderr);
}

#[test]
fn without_renewal_information_a_third_of_the_lifetime_decides() {
    let env = Env::init();
    let peers = env.path("peers");
    std::fs::create_dir_all(&peers).unwrap();
    let http_port = free_port();
    let pebble = Pebble::start(
        &peers,
        PebbleOpts { http_port, version: Version::V24, ..Default::default() },
    );
    configure(&env, &pebble, &cert_entry("life", &["life.pazpaz.test"], &pebble.standalone(), ""));
    env.run(&["run"]).code(0);
    let dirs = std::fs::read_to_string(env.path("state/acme/directories.json")).unwrap();
    assert!(dirs.contains("\"renewal_info\": false"), "{dirs}");
    let pem = std::fs::read_to_string(live(&env, "life", "cert")).unwrap();
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    let c = p.parse_x509().unwrap();
    let nb = chrono::DateTime::from_timestamp(c.validity().not_before.timestamp(), 0).unwrap();
    let na = chrono::DateTime::from_timestamp(c.validity().not_after.timestamp(), 0).unwrap();
    let renew = na - (na - nb) / 3;

    let before = pebble.requests();
    let r = env
        .run_env(&["run"], &[("KEYWARD_NOW", &(renew - chrono::Duration::hours(1)).to_rfc3339())]);
    r.code(0);
    assert!(r.stdout.contains("nothing was due"), "{}", r.stdout);
    assert_eq!(pebble.requests(), before, "the lifetime rule needs no request");
    let item = {
        let r = env.run_env(
            &["--format", "json", "status"],
            &[("KEYWARD_NOW", &(renew - chrono::Duration::hours(1)).to_rfc3339())],
        );
        let doc = r.json();
        doc["items"].as_array().unwrap().iter().find(|i| i["kind"] == "acme").cloned().unwrap()
    };
    assert!(item["next_action"].as_str().unwrap().contains("1/3 of the lifetime"), "{item}");

    // `plan` shows the renewal and changes nothing, without a request.
    let due = (renew + chrono::Duration::hours(1)).to_rfc3339();
    let r = env.run_env(&["plan"], &[("KEYWARD_NOW", &due)]);
    r.code(0);
    assert!(r.stdout.contains("planned") && r.stdout.contains("renew"), "{}", r.stdout);
    assert_eq!(pebble.requests(), before);
    assert!(live_version(&env, "life").ends_with("cert1.pem"));

    let r = env.run_env(&["--format", "json", "run"], &[("KEYWARD_NOW", &due)]);
    r.code(0);
    assert!(r.stdout.contains("a third of the lifetime left"), "{}", r.stdout);
    assert!(live_version(&env, "life").ends_with("cert2.pem"));
    // No ARI on this server: the renewal carries no `replaces`.
    let audit = std::fs::read_to_string(env.path("state/audit.jsonl")).unwrap();
    assert!(!audit.contains("(ARI replaces)"));
}

#[test]
fn rejected_nonces_are_retried() {
    let env = Env::init();
    let peers = env.path("peers");
    std::fs::create_dir_all(&peers).unwrap();
    let http_port = free_port();
    let pebble =
        Pebble::start(&peers, PebbleOpts { http_port, nonce_reject: 60, ..Default::default() });
    configure(
        &env,
        &pebble,
        &cert_entry(
            "nonce",
            &["nonce.pazpaz.test", "www.nonce.pazpaz.test"],
            &pebble.standalone(),
            "",
        ),
    );
    env.run(&["run"]).code(0);
    assert!(live_version(&env, "nonce").ends_with("cert1.pem"));
    let log = pebble.log();
    assert!(log.contains("reject 60% of good nonces"), "{log}");
    // More POSTs than a clean run needs: the rejected ones were sent again.
    let posts = log.matches("POST ").count();
    assert!(posts > 12, "expected retried POSTs, saw {posts}\n{log}");
}

#[test]
fn a_certificate_the_server_does_not_know_falls_back_to_the_lifetime_rule() {
    let env = Env::init();
    let first = Pebble::start_in(env.root(), PebbleOpts::default());
    configure(&env, &first, &cert_entry("moved", &["moved.pazpaz.test"], &first.standalone(), ""));
    env.run(&["run"]).code(0);
    let serial = state_of(&env, "moved")["serial"].clone();
    drop(first);

    // Another server (a restarted Pebble has new issuers) has never seen it.
    let peers2 = env.path("peers2");
    std::fs::create_dir_all(&peers2).unwrap();
    let second = Pebble::start(&peers2, PebbleOpts::default());
    let base = std::fs::read_to_string(env.config()).unwrap();
    std::fs::write(env.config(), base.split("\n[acme]").next().unwrap()).unwrap();
    configure(
        &env,
        &second,
        &cert_entry("moved", &["moved.pazpaz.test"], &second.standalone(), ""),
    );
    let r = env.run(&["run"]);
    r.code(0);
    assert!(r.stdout.contains("nothing was due"), "{}", r.stdout);
    assert_eq!(state_of(&env, "moved")["no_ari_serial"], serial);
    let item = acme_item(&env, "moved");
    assert_eq!(item["health"], "healthy", "{item}");
    assert!(item["next_action"].as_str().unwrap().contains("1/3 of the lifetime"), "{item}");
    let before = second.requests();
    env.run(&["run"]).code(0);
    assert_eq!(second.requests(), before);
}
