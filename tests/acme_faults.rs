//! ACME faults against real peers: a webroot nginx does not serve, hooks that fail, a
//! directory that cannot be reached or does not answer, EAB, and the takeover of a
//! real certbot lineage. Every failure must be loud (exit 1, audit record, status) and
//! must leave the live certificate untouched.

mod common;
#[path = "support/pebble.rs"]
mod pebble;

use std::path::Path;

use common::{Env, tree_contains};
use pebble::free_port;
use pebble::{Nginx, Pebble, PebbleOpts};

fn acme_section(directory: &str, ca_file: Option<&Path>, extra: &str) -> String {
    let ca = ca_file.map(|p| format!("ca_file = \"{}\"\n", p.display())).unwrap_or_default();
    format!(
        "\n[acme]\ndirectory = \"{directory}\"\n{ca}output_dir = \"letsencrypt\"\ntimeout_seconds = 5\nvalidation_timeout_seconds = 20\n{extra}"
    )
}

fn write_config(env: &Env, acme: &str) {
    let base = std::fs::read_to_string(env.config()).unwrap();
    let base = base.split("\n[acme]").next().unwrap().to_string();
    std::fs::write(env.config(), format!("{base}{acme}")).unwrap();
}

fn cert(name: &str, domain: &str, challenge: &str, extra: &str) -> String {
    cert_for(name, &[domain], challenge, extra)
}

fn cert_for(name: &str, domains: &[&str], challenge: &str, extra: &str) -> String {
    let domains = serde_json::to_string(domains).unwrap();
    format!(
        "\n[[acme.certificate]]\nname = \"{name}\"\ndomains = {domains}\nchallenge = {challenge}\n{extra}\n"
    )
}

fn status_item(env: &Env, name: &str) -> (i32, serde_json::Value) {
    let r = env.run(&["--format", "json", "status"]);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let item =
        doc["items"].as_array().unwrap().iter().find(|i| i["name"] == name).cloned().unwrap();
    (r.code, item)
}

fn audit(env: &Env) -> String {
    std::fs::read_to_string(env.path("state/audit.jsonl")).unwrap_or_default()
}

#[test]
fn a_webroot_nginx_does_not_serve_fails_loudly_and_leaves_live_untouched() {
    let env = Env::init();
    let pebble = Pebble::start_in(env.root(), PebbleOpts::default());
    let peers = env.path("peers");
    let http_port = pebble.http_port;
    let served = env.path("served");
    let unserved = env.path("unserved");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::create_dir_all(&unserved).unwrap();
    let _nginx = Nginx::start(&peers, http_port, &served);
    let ok = acme_section(
        &pebble.directory(),
        Some(&pebble.tls.ca_file),
        &cert(
            "site",
            "site.pazpaz.test",
            &format!("{{ type = \"webroot\", webroot = \"{}\" }}", served.display()),
            "",
        ),
    );
    write_config(&env, &ok);
    env.run(&["run"]).code(0);
    let live = env.path("letsencrypt/live/site/cert.pem");
    let before_pem = std::fs::read(&live).unwrap();
    let before_link = std::fs::read_link(&live).unwrap();

    // Now the webroot is one nginx does not serve: the renewal fails. The renewal also
    // adds a name never validated before: Pebble reuses a valid authorization for a
    // name 1% of the time even with PEBBLE_AUTHZREUSE=0 (it creates a new one only when
    // `rand.Intn(100) > percent`), and a reused one needs no challenge at all. A new
    // name always needs one, so the failure does not depend on Pebble's dice.
    write_config(
        &env,
        &acme_section(
            &pebble.directory(),
            Some(&pebble.tls.ca_file),
            &cert_for(
                "site",
                &["site.pazpaz.test", "www.site.pazpaz.test"],
                &format!("{{ type = \"webroot\", webroot = \"{}\" }}", unserved.display()),
                "",
            ),
        ),
    );
    let r = env.run(&["acme", "renew", "--force", "site"]);
    r.code(1);
    // The problem document's detail (Pebble got a 404 from nginx) and the fix.
    assert!(r.stdout.contains("the server says:"), "{}", r.stdout);
    assert!(r.stdout.contains("404"), "{}", r.stdout);
    assert!(r.stdout.contains("check that the web server answers"), "{}", r.stdout);
    assert_eq!(std::fs::read(&live).unwrap(), before_pem);
    assert_eq!(std::fs::read_link(&live).unwrap(), before_link);
    assert!(!env.path("letsencrypt/archive/site/cert2.pem").exists());
    assert!(audit(&env).contains("\"action\":\"acme renew\",\"object\":{\"kind\":\"acme-certificate\",\"name\":\"site\"},\"result\":\"failed\""), "{}", audit(&env));
    let (code, item) = status_item(&env, "site");
    assert_eq!(code, 3, "{item}");
    assert_eq!(item["health"], "failing", "{item}");
    assert!(item["note"].as_str().unwrap().contains("404"), "{item}");
    // And the metrics show it.
    let r = env.run(&["--format", "prometheus", "status"]);
    assert!(
        r.stdout.contains("keyward_item_failing{kind=\"acme\",name=\"site\"} 1"),
        "{}",
        r.stdout
    );

    // Back to a served webroot: the next renewal succeeds and clears the failure.
    write_config(&env, &ok);
    env.run(&["acme", "renew", "--force", "site"]).code(0);
    let (code, item) = status_item(&env, "site");
    assert_eq!(code, 0, "{item}");
    assert_eq!(item["health"], "healthy");
}

#[test]
fn a_failing_deploy_hook_is_reported_and_retried_until_it_works() {
    let env = Env::init();
    let pebble = Pebble::start_in(env.root(), PebbleOpts::default());
    let peers = env.path("peers");
    let http_port = pebble.http_port;
    let challenge = format!("{{ type = \"standalone\", listen = \"127.0.0.1:{http_port}\" }}");
    let counter = peers.join("hook-runs");
    let failing = format!(
        "deploy_hooks = [{{ command = [\"sh\", \"-c\", \"echo run >> {}; echo nginx refused the reload >&2; exit 7\"] }}]",
        counter.display()
    );
    write_config(
        &env,
        &acme_section(
            &pebble.directory(),
            Some(&pebble.tls.ca_file),
            &cert("hooked", "hooked.pazpaz.test", &challenge, &failing),
        ),
    );
    let r = env.run(&["run"]);
    r.code(1);
    assert!(r.stdout.contains("deploy hook failed"), "{}", r.stdout);
    assert!(r.stdout.contains("nginx refused the reload"), "{}", r.stdout);
    // The certificate itself is in place; only the deploy failed.
    assert!(env.path("letsencrypt/live/hooked/fullchain.pem").exists());
    assert!(audit(&env).contains("\"action\":\"acme deploy\""));
    let (code, item) = status_item(&env, "hooked");
    assert_eq!(code, 3);
    assert_eq!(item["health"], "failing");
    assert!(item["note"].as_str().unwrap().starts_with("deploy failed"), "{item}");
    let last: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.path("state/last-run.json")).unwrap()).unwrap();
    assert_eq!(last["success"], false);

    // The next run retries the hook (no new certificate), still failing: still loud.
    env.run(&["run"]).code(1);
    assert_eq!(std::fs::read_to_string(&counter).unwrap().lines().count(), 2);
    assert!(!env.path("letsencrypt/archive/hooked/cert2.pem").exists());

    // Fixed hook: the run deploys, and after that hooks run only after a real renewal.
    let fixed = format!(
        "deploy_hooks = [{{ command = [\"sh\", \"-c\", \"echo run >> {}\"] }}]",
        counter.display()
    );
    write_config(
        &env,
        &acme_section(
            &pebble.directory(),
            Some(&pebble.tls.ca_file),
            &cert("hooked", "hooked.pazpaz.test", &challenge, &fixed),
        ),
    );
    env.run(&["run"]).code(0);
    assert_eq!(std::fs::read_to_string(&counter).unwrap().lines().count(), 3);
    env.run(&["run"]).code(0);
    assert_eq!(
        std::fs::read_to_string(&counter).unwrap().lines().count(),
        3,
        "no renewal, no hook"
    );
    assert_eq!(status_item(&env, "hooked").1["health"], "healthy");
}

#[test]
fn a_failing_dns_hook_names_the_hook() {
    let env = Env::init();
    let peers = env.path("peers");
    std::fs::create_dir_all(&peers).unwrap();
    let pebble = Pebble::start(&peers, PebbleOpts::default());
    let challenge = "{ type = \"dns-hook\", hook = { command = [\"sh\", \"-c\", \"echo no API token >&2; exit 3\"] } }";
    write_config(
        &env,
        &acme_section(
            &pebble.directory(),
            Some(&pebble.tls.ca_file),
            &cert("dns", "dns.pazpaz.test", challenge, ""),
        ),
    );
    let r = env.run(&["run"]);
    r.code(1);
    assert!(r.stdout.contains("dns-01 hook failed"), "{}", r.stdout);
    assert!(r.stdout.contains("no API token"), "{}", r.stdout);
    assert!(!env.path("letsencrypt/live/dns").exists());

    // A hook that "succeeds" without publishing: the server's detail and the fix.
    let silent = "{ type = \"dns-hook\", hook = { command = [\"true\"] } }";
    write_config(
        &env,
        &acme_section(
            &pebble.directory(),
            Some(&pebble.tls.ca_file),
            &cert("dns", "dns.pazpaz.test", silent, ""),
        ),
    );
    let r = env.run(&["run"]);
    r.code(1);
    assert!(r.stdout.contains("dns-01 hook validation of dns.pazpaz.test"), "{}", r.stdout);
    assert!(r.stdout.contains("the server says:"), "{}", r.stdout);
    assert!(
        r.stdout.contains("published the TXT record _acme-challenge.dns.pazpaz.test"),
        "{}",
        r.stdout
    );
    assert!(!env.path("letsencrypt/live/dns").exists());
}

#[test]
fn an_unreachable_directory_and_a_silent_one_say_so() {
    let env = Env::init();
    let closed = free_port();
    write_config(
        &env,
        &acme_section(
            &format!("https://127.0.0.1:{closed}/dir"),
            None,
            &cert("x", "x.pazpaz.test", "{ type = \"standalone\", listen = \"127.0.0.1:1\" }", ""),
        ),
    );
    let r = env.run(&["run"]);
    r.code(1);
    assert!(r.stdout.contains("cannot reach the ACME server"), "{}", r.stdout);
    assert!(r.stdout.contains("check the network"), "{}", r.stdout);
    let (code, item) = status_item(&env, "x");
    assert_eq!(code, 3);
    assert_eq!(item["health"], "failing");

    // A server that accepts the connection and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut acme = acme_section(
        &format!("https://127.0.0.1:{port}/dir"),
        None,
        &cert("x", "x.pazpaz.test", "{ type = \"standalone\", listen = \"127.0.0.1:1\" }", ""),
    );
    acme = acme.replace("timeout_seconds = 5", "timeout_seconds = 1");
    write_config(&env, &acme);
    let r = env.run(&["acme", "renew"]);
    r.code(1);
    assert!(r.stdout.contains("did not answer within 1s"), "{}", r.stdout);
    drop(silent);
}

#[test]
fn eab_registration_keeps_the_hmac_key_and_account_key_out_of_everything() {
    let env = Env::init();
    let peers = env.path("peers");
    std::fs::create_dir_all(&peers).unwrap();
    // A base64url HMAC key that doubles as a canary.
    let hmac = "Y2FuYXJ5LWVhYi1obWFjLWtleS03ZjNhLWRvLW5vdC1sZWFr";
    let pebble = Pebble::start(
        &peers,
        PebbleOpts { eab: Some(("kid-7".into(), hmac.into())), ..Default::default() },
    );
    write_config(&env, &acme_section(&pebble.directory(), Some(&pebble.tls.ca_file), ""));
    let key_file = env.path("eab.key");
    std::fs::write(&key_file, hmac).unwrap();
    // A key file others can read is refused.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = env.run(&[
        "acme",
        "register",
        "--email",
        "ops@pazpaz.test",
        "--eab-kid",
        "kid-7",
        "--eab-hmac-file",
        key_file.to_str().unwrap(),
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("chmod 0600"), "{}", r.stderr);
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Without EAB, Pebble refuses.
    let r = env.run(&["acme", "register"]);
    r.code(1);
    assert!(r.stderr.contains("refused to register an account"), "{}", r.stderr);

    let r = env.run(&[
        "--format",
        "json",
        "acme",
        "register",
        "--email",
        "ops@pazpaz.test",
        "--eab-kid",
        "kid-7",
        "--eab-hmac-file",
        key_file.to_str().unwrap(),
    ]);
    r.code(0);
    let doc = r.json();
    assert_eq!(doc["created"], true);
    assert_eq!(doc["contact"][0], "mailto:ops@pazpaz.test");
    // Registering again loads the same account.
    let again = env.run(&["--format", "json", "acme", "register"]);
    again.code(0);
    assert_eq!(again.json()["account"], doc["account"]);
    assert_eq!(again.json()["created"], false);

    // A new --email updates the contact on the server and in the state.
    let updated =
        env.run(&["--format", "json", "acme", "register", "--email", "security@pazpaz.test"]);
    updated.code(0);
    assert_eq!(updated.json()["contact"][0], "mailto:security@pazpaz.test");
    assert_eq!(updated.json()["account"], doc["account"]);
    let listed = env.run(&["--format", "json", "acme", "list"]);
    assert_eq!(listed.json()["account"], doc["account"]);

    for out in [&r.stdout, &r.stderr, &again.stdout, &again.stderr] {
        assert!(!out.contains(hmac));
    }
    assert!(tree_contains(&env.path("state"), hmac.as_bytes()).is_empty());
    // The account key never sits in the state in the clear.
    assert!(tree_contains(&env.path("state"), b"key_pkcs8").is_empty());
    assert!(tree_contains(&env.path("state"), b"PRIVATE KEY").is_empty());
}

#[test]
fn certbot_lineage_is_imported_in_place_and_renewed_by_keyward() {
    let certbot = common::require_tool("certbot", "apt-get install certbot");
    let env = Env::init();
    let pebble = Pebble::start_in(env.root(), PebbleOpts::default());
    let peers = env.path("peers");
    let http_port = pebble.http_port;
    // A real certbot lineage, made by certbot against the same Pebble.
    let le = env.path("etc-letsencrypt");
    let out = std::process::Command::new(certbot)
        .args([
            "certonly",
            "--standalone",
            "--non-interactive",
            "--agree-tos",
            "--register-unsafely-without-email",
        ])
        .args([
            "--server",
            &pebble.directory(),
            "--http-01-port",
            &http_port.to_string(),
            "--http-01-address",
            "127.0.0.1",
        ])
        .args([
            "--config-dir",
            le.to_str().unwrap(),
            "--work-dir",
            peers.join("cb-work").to_str().unwrap(),
            "--logs-dir",
            peers.join("cb-logs").to_str().unwrap(),
        ])
        .args([
            "--key-type",
            "ecdsa",
            "--elliptic-curve",
            "secp256r1",
            "--cert-name",
            "pazpaz.health",
            "-d",
            "pazpaz.health",
            "-d",
            "www.pazpaz.health",
        ])
        .env("REQUESTS_CA_BUNDLE", &pebble.tls.ca_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "certbot failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let certbot_pem = std::fs::read(le.join("live/pazpaz.health/cert.pem")).unwrap();

    // Not configured yet: exit 2 with the entry to add, derived from certbot's config.
    let base_acme = acme_section(&pebble.directory(), Some(&pebble.tls.ca_file), "");
    write_config(&env, &base_acme);
    let r = env.run(&["acme", "import", "pazpaz.health", "--certbot-dir", le.to_str().unwrap()]);
    r.code(2);
    assert!(r.stderr.contains("[[acme.certificate]]"), "{}", r.stderr);
    assert!(r.stderr.contains("\"www.pazpaz.health\""), "{}", r.stderr);

    let entry = format!(
        "\n[[acme.certificate]]\nname = \"pazpaz.health\"\ndomains = [\"pazpaz.health\", \"www.pazpaz.health\"]\nchallenge = {{ type = \"standalone\", listen = \"127.0.0.1:{http_port}\" }}\noutput_dir = \"{}\"\n",
        le.display()
    );
    write_config(&env, &format!("{base_acme}{entry}"));
    let r = env.run(&[
        "--format",
        "json",
        "acme",
        "import",
        "pazpaz.health",
        "--certbot-dir",
        le.to_str().unwrap(),
    ]);
    r.code(0);
    let doc = r.json();
    assert_eq!(doc["version"], 1, "{doc}");
    // No gap: the live files nginx reads are still certbot's.
    assert_eq!(std::fs::read(le.join("live/pazpaz.health/cert.pem")).unwrap(), certbot_pem);
    // certbot no longer renews it.
    assert!(!le.join("renewal/pazpaz.health.conf").exists());
    assert!(le.join("renewal/pazpaz.health.conf.imported-by-keyward").exists());
    let (code, item) = status_item(&env, "pazpaz.health");
    assert_eq!(code, 0, "{item}");
    assert_eq!(item["health"], "healthy", "{item}");
    assert!(audit(&env).contains("\"action\":\"acme import\""));

    // keyward renews it into the same lineage: version 2, certbot's layout.
    env.run(&["acme", "renew", "--force", "pazpaz.health"]).code(0);
    let link = std::fs::read_link(le.join("live/pazpaz.health/fullchain.pem")).unwrap();
    assert_eq!(link, Path::new("../../archive/pazpaz.health/fullchain2.pem"));
    assert_ne!(std::fs::read(le.join("live/pazpaz.health/cert.pem")).unwrap(), certbot_pem);
    assert!(le.join("archive/pazpaz.health/cert1.pem").exists(), "earlier versions are kept");

    // Monitoring an extra certificate file by path.
    let extra =
        format!("monitor = [\"{}\"]\n", le.join("archive/pazpaz.health/cert1.pem").display());
    write_config(
        &env,
        &format!("{}{entry}", acme_section(&pebble.directory(), Some(&pebble.tls.ca_file), &extra)),
    );
    let (_, item) =
        status_item(&env, &le.join("archive/pazpaz.health/cert1.pem").display().to_string());
    assert_eq!(item["kind"], "certificate");
    assert!(item["days_left"].as_i64().unwrap() > 80, "{item}");
}

/// A minimal ACME front that registers accounts and answers every new-order with
/// Let's Encrypt's rateLimited problem and a Retry-After, as Boulder does. (Pebble has
/// no rate limits.) Counts the requests it gets.
struct RateLimitedAcme {
    port: u16,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tls: pebble::Tls,
}

impl RateLimitedAcme {
    fn start(dir: &Path) -> RateLimitedAcme {
        use std::io::{BufRead, BufReader, Read, Write};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let tls = pebble::Tls::make(dir);
        let certs: Vec<rustls::pki_types::CertificateDer<'static>> = {
            use rustls::pki_types::pem::PemObject;
            rustls::pki_types::CertificateDer::pem_file_iter(&tls.cert_file)
                .unwrap()
                .map(|c| c.unwrap())
                .collect()
        };
        let key = {
            use rustls::pki_types::pem::PemObject;
            rustls::pki_types::PrivateKeyDer::from_pem_file(&tls.key_file).unwrap()
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap(),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let count = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let config = config.clone();
                let count = count.clone();
                std::thread::spawn(move || {
                    let conn = rustls::ServerConnection::new(config).unwrap();
                    let mut tls = rustls::StreamOwned::new(conn, stream);
                    let mut reader = BufReader::new(&mut tls);
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; len];
                    let _ = reader.read_exact(&mut body);
                    count.fetch_add(1, Ordering::SeqCst);
                    let base = format!("https://127.0.0.1:{port}");
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let (status, headers, body) = match path.as_str() {
                        "/dir" => ("200 OK", String::new(), format!(
                            r#"{{"newNonce":"{base}/nonce","newAccount":"{base}/account","newOrder":"{base}/order","revokeCert":"{base}/revoke","keyChange":"{base}/key"}}"#
                        )),
                        "/nonce" => ("200 OK", "Replay-Nonce: n0nce\r\n".into(), String::new()),
                        "/account" => ("201 Created", format!("Replay-Nonce: n0nce\r\nLocation: {base}/account/1\r\n"), r#"{"status":"valid"}"#.into()),
                        _ => ("429 Too Many Requests", "Replay-Nonce: n0nce\r\nRetry-After: 7200\r\n".into(),
                            r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s","status":429}"#.into()),
                    };
                    let ctype = if status.starts_with('2') {
                        "application/json"
                    } else {
                        "application/problem+json"
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(resp.as_bytes());
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        RateLimitedAcme { port, requests, tls }
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn a_rate_limit_is_remembered_and_no_request_is_sent_before_it_ends() {
    let env = Env::init();
    let peers = env.path("peers");
    std::fs::create_dir_all(&peers).unwrap();
    let server = RateLimitedAcme::start(&peers);
    write_config(
        &env,
        &acme_section(
            &format!("https://127.0.0.1:{}/dir", server.port),
            Some(&server.tls.ca_file),
            &cert(
                "limited",
                "limited.pazpaz.test",
                "{ type = \"standalone\", listen = \"127.0.0.1:1\" }",
                "",
            ),
        ),
    );
    let r = env.run(&["run"]);
    r.code(1);
    assert!(r.stdout.contains("rate-limited"), "{}", r.stdout);
    assert!(r.stdout.contains("too many certificates"), "{}", r.stdout);
    assert!(r.stdout.contains("keyward will not ask again before"), "{}", r.stdout);
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.path("state/acme/certificates/limited.json")).unwrap(),
    )
    .unwrap();
    let until =
        chrono::DateTime::parse_from_rfc3339(state["backoff_until"].as_str().unwrap()).unwrap();
    let wait = until.signed_duration_since(chrono::Utc::now());
    assert!(
        wait > chrono::Duration::minutes(110) && wait <= chrono::Duration::minutes(120),
        "{state}"
    );

    // The next run sends nothing and still says the certificate is not renewed.
    let before = server.requests();
    let r = env.run(&["run"]);
    r.code(1);
    assert!(r.stdout.contains("rate limited"), "{}", r.stdout);
    assert_eq!(server.requests(), before, "no request before the rate limit ends");
    let (code, item) = status_item(&env, "limited");
    assert_eq!(code, 3);
    assert!(item["note"].as_str().unwrap().contains("rate-limited"), "{item}");

    // After it ends keyward asks again.
    let later = (until + chrono::Duration::minutes(1)).to_rfc3339();
    env.run_env(&["run"], &[("KEYWARD_NOW", &later)]).code(1);
    assert!(server.requests() > before);
}

#[test]
fn a_profile_the_server_does_not_offer_is_refused_before_ordering() {
    let env = Env::init();
    let pebble = Pebble::start_in(env.root(), PebbleOpts::default());
    write_config(
        &env,
        &acme_section(
            &pebble.directory(),
            Some(&pebble.tls.ca_file),
            &cert("prof", "prof.pazpaz.test", &pebble.standalone(), "profile = \"shortlived\""),
        ),
    );
    let r = env.run(&["run"]);
    r.code(1);
    assert!(
        r.stdout.contains("ACME profile \"shortlived\", which the server does not offer"),
        "{}",
        r.stdout
    );
    assert!(!pebble.log().contains("POST /order-plz"));
}
