//! keyward's ACME client against a real Pebble (and pebble-challtestsrv, and nginx):
//! issuance through each challenge, deploy hooks, ARI and lifetime renewal decisions,
//! and runs with nothing due that send no request.

mod common;
#[path = "support/pebble.rs"]
mod pebble;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{Env, free_port};
use pebble::{Nginx, Pebble, PebbleOpts, Version};

/// Appends an `[acme]` section for `pebble` and the given certificate entries.
fn configure(env: &Env, pebble: &Pebble, certs: &str) {
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
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
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
    let peers = env.path("peers");
    std::fs::create_dir_all(&peers).unwrap();
    let http_port = free_port();
    let pebble = Pebble::start(&peers, PebbleOpts { http_port, ..Default::default() });
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
    let acme = doc["steps"].as_array().unwrap().iter().find(|s| s["name"] == "acme").unwrap().clone();
    assert_eq!(acme["actions"][0]["action"], "issue", "{doc}");
    assert_eq!(acme["actions"][0]["result"]["status"], "done", "{doc}");

    // certbot's layout: live/ links into archive/, key private.
    for f in ["cert", "chain", "fullchain", "privkey"] {
        let link = std::fs::read_link(live(&env, "pazpaz.test", f)).unwrap();
        assert_eq!(link, Path::new(&format!("../../archive/pazpaz.test/{f}1.pem")));
    }
    let key_mode = std::fs::metadata(env.path("letsencrypt/archive/pazpaz.test/privkey1.pem")).unwrap().mode();
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
    assert_eq!(pebble.requests(), before, "a run with nothing due must not talk to the server\n{}\n{}", r.stderr, pebble.log());
    assert_eq!(std::fs::read_link(live(&env, "pazpaz.test", "cert")).unwrap(), Path::new("../../archive/pazpaz.test/cert1.pem"));

    // The account key is encrypted at rest; reused by the next renewal.
    let accounts = env.path("state/acme/accounts");
    let account = std::fs::read_dir(&accounts).unwrap().next().unwrap().unwrap().path();
    let sealed = std::fs::read(account.join("credentials.age")).unwrap();
    assert!(sealed.starts_with(b"age-encryption.org/v1"));
    assert_eq!(std::fs::metadata(account.join("credentials.age")).unwrap().mode() & 0o777, 0o600);
    let account_url = std::fs::read_to_string(account.join("account.json")).unwrap();
    env.run(&["acme", "renew", "--force", "pazpaz.test"]).code(0);
    assert_eq!(std::fs::read_to_string(account.join("account.json")).unwrap(), account_url);
    assert_eq!(std::fs::read_dir(&accounts).unwrap().count(), 1);
    assert_eq!(std::fs::read_link(live(&env, "pazpaz.test", "cert")).unwrap(), Path::new("../../archive/pazpaz.test/cert2.pem"));
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
    let p24 = Pebble::start(&dir.path().join("b").tap_mkdir(), PebbleOpts { version: Version::V24, ..Default::default() });
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
