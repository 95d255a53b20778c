//! The internal CA through the binary: the quick start's PKI, certificates checked
//! with OpenSSL, renewal and CRL refresh on a moved clock, hooks, and bad input.

mod common;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Env, Run, require_tool, tree};

fn openssl(args: &[&str]) -> (bool, String) {
    require_tool("openssl", "apt-get install -y openssl");
    let out = Command::new("openssl").args(args).output().expect("run openssl");
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Base64 lines of every private key under `dir`.
fn key_lines(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for f in tree(dir) {
        if !f.is_file() {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&f) else { continue };
        let mut inside = false;
        for line in text.lines() {
            if line.starts_with("-----BEGIN") {
                inside = line.contains("PRIVATE KEY");
            } else if line.starts_with("-----END") {
                inside = false;
            } else if inside && line.len() >= 20 {
                out.push(line.to_string());
            }
        }
    }
    out
}

#[track_caller]
fn assert_no_keys(keys: &[String], what: &str, text: &str) {
    for k in keys {
        assert!(!text.contains(k.as_str()), "key material in {what}");
    }
    assert!(!text.contains("PRIVATE KEY"), "a private key in {what}");
}

#[test]
fn quick_start_builds_the_whole_pki_and_openssl_agrees() {
    let env = Env::init();
    let r = env.run(&["run"]);
    r.code(0);
    let deploy = env.path("deploy");
    let pg = deploy.join("postgres/ssl");
    for f in ["server.crt", "server.key", "root.crt", "root.crl"] {
        assert!(pg.join(f).is_file(), "{f} missing");
    }
    let minio = deploy.join("minio/certs");
    for f in ["public.crt", "private.key", "CAs/ca.crt"] {
        assert!(minio.join(f).is_file(), "{f} missing");
    }
    // Key files are private, certificates public.
    let mode = |f: &Path| std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&pg.join("server.key")), 0o600);
    assert_eq!(mode(&minio.join("private.key")), 0o600);
    assert_eq!(mode(&pg.join("server.crt")), 0o644);

    // Every chain verifies, for its purpose.
    let ca = pg.join("root.crt");
    let (ok, out) =
        openssl(&["verify", "-purpose", "sslserver", "-CAfile", p(&ca), p(&pg.join("server.crt"))]);
    assert!(ok, "{out}");
    let (ok, out) = openssl(&[
        "verify",
        "-purpose",
        "sslserver",
        "-CAfile",
        p(&minio.join("CAs/ca.crt")),
        p(&minio.join("public.crt")),
    ]);
    assert!(ok, "{out}");
    for role in ["pazpaz", "pazpaz_readonly", "pazpaz_backup"] {
        let d = deploy.join(format!("postgres/clients/{role}"));
        let (ok, out) = openssl(&[
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            p(&d.join("root.crt")),
            p(&d.join("postgresql.crt")),
        ]);
        assert!(ok, "{role}: {out}");
        let (_, text) =
            openssl(&["x509", "-noout", "-subject", "-in", p(&d.join("postgresql.crt"))]);
        assert!(text.contains(&format!("CN = {role}")), "{text}");
        // A client certificate is not a server certificate.
        let (ok, _) = openssl(&[
            "verify",
            "-purpose",
            "sslserver",
            "-CAfile",
            p(&d.join("root.crt")),
            p(&d.join("postgresql.crt")),
        ]);
        assert!(!ok, "{role}'s client certificate verified as a server certificate");
    }
    // The CRL verifies against the CA.
    let (ok, out) = openssl(&["crl", "-noout", "-CAfile", p(&ca), "-in", p(&pg.join("root.crl"))]);
    assert!(ok && out.contains("verify OK"), "{out}");

    // The extensions, as OpenSSL reads them.
    let (_, ca_text) = openssl(&["x509", "-noout", "-text", "-in", p(&ca)]);
    assert!(ca_text.contains("CA:TRUE, pathlen:0"), "{ca_text}");
    assert!(ca_text.contains("Certificate Sign, CRL Sign"), "{ca_text}");
    assert!(ca_text.contains("Subject Key Identifier"), "{ca_text}");
    let (_, leaf) = openssl(&["x509", "-noout", "-text", "-in", p(&pg.join("server.crt"))]);
    for want in [
        "X509v3 Basic Constraints: critical",
        "CA:FALSE",
        "X509v3 Key Usage: critical",
        "Digital Signature",
        "TLS Web Server Authentication",
        "X509v3 Subject Key Identifier",
        "X509v3 Authority Key Identifier",
        "DNS:db",
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "ASN1 OID: prime256v1",
    ] {
        assert!(leaf.contains(want), "{want} missing:\n{leaf}");
    }
    assert!(!leaf.contains("1975") && !leaf.contains("4096"), "rcgen's default validity:\n{leaf}");
    // A random 128-bit serial (not derived from the key): 15 or 16 bytes.
    let (_, serial) = openssl(&["x509", "-noout", "-serial", "-in", p(&pg.join("server.crt"))]);
    let hex = serial.trim().trim_start_matches("serial=");
    assert!((30..=32).contains(&hex.len()), "{hex}");
    // Validity is the profile's: one year.
    let (_, dates) = openssl(&[
        "x509",
        "-noout",
        "-checkend",
        &(364 * 86400).to_string(),
        "-in",
        p(&pg.join("server.crt")),
    ]);
    assert!(dates.contains("will not expire"), "{dates}");
    let (_, dates) = openssl(&[
        "x509",
        "-noout",
        "-checkend",
        &(366 * 86400).to_string(),
        "-in",
        p(&pg.join("server.crt")),
    ]);
    assert!(dates.contains("will expire"), "{dates}");
    // The key matches the certificate.
    let (_, a) = openssl(&["x509", "-noout", "-pubkey", "-in", p(&pg.join("server.crt"))]);
    let (_, b) = openssl(&["pkey", "-pubout", "-in", p(&pg.join("server.key"))]);
    assert_eq!(a, b);

    // A second run has nothing to do and touches nothing.
    let before: Vec<_> = tree(&deploy)
        .into_iter()
        .map(|f| (f.clone(), std::fs::symlink_metadata(&f).unwrap().modified().unwrap()))
        .collect();
    let r = env.run(&["run"]);
    r.code(0);
    assert!(r.stdout.contains("nothing was due"), "{}", r.stdout);
    let after: Vec<_> = tree(&deploy)
        .into_iter()
        .map(|f| (f.clone(), std::fs::symlink_metadata(&f).unwrap().modified().unwrap()))
        .collect();
    assert_eq!(before, after);

    // Inventory and status.
    let list = env.run(&["--format", "json", "ca", "list"]);
    list.code(0);
    let doc = list.json();
    assert_eq!(doc["leaves"].as_array().unwrap().len(), 5, "{doc}");
    assert!(doc["leaves"].as_array().unwrap().iter().all(|l| l["state"] == "ok"), "{doc}");
    let show = env.run(&["--format", "json", "ca", "show", "minio-server"]);
    show.code(0);
    let d = show.json();
    assert_eq!(d["certificate"]["is_ca"], false);
    assert_eq!(d["certificate"]["sans"][0], "minio");
    env.run(&["ca", "show", "ca"]).code(0);
    env.run(&["ca", "show", "nope"]).code(2);
    let st = env.run(&["--format", "json", "status"]);
    st.code(0);
    assert!(st.stdout.contains("postgres-server"), "{}", st.stdout);

    // No key bytes anywhere a person or a log would see them.
    let keys = key_lines(env.root());
    assert!(keys.len() > 20, "found {} key lines", keys.len());
    let audit = std::fs::read_to_string(env.path("state/audit.jsonl")).unwrap();
    assert_no_keys(&keys, "the audit log", &audit);
    for r in [
        &list,
        &show,
        &st,
        &r,
        &env.run(&["--format", "json", "audit", "show"]),
        &env.run(&["ca", "show", "postgres-server"]),
    ] {
        assert_no_keys(&keys, "stdout", &r.stdout);
        assert_no_keys(&keys, "stderr", &r.stderr);
    }
    // Also with every log line on (-vv) while every key is replaced.
    let renew = env.run(&["-vv", "--format", "json", "ca", "renew", "--all", "--force"]);
    renew.code(0);
    let keys = key_lines(env.root());
    assert_no_keys(&keys, "stdout of ca renew -vv", &renew.stdout);
    assert_no_keys(&keys, "stderr of ca renew -vv", &renew.stderr);
    let audit = std::fs::read_to_string(env.path("state/audit.jsonl")).unwrap();
    assert_no_keys(&keys, "the audit log", &audit);
    // Audit records name certificates by serial and fingerprint.
    assert!(audit.contains("\"action\":\"issue\""), "{audit}");
    assert!(audit.contains("\"fingerprint\""), "{audit}");
    env.run(&["audit", "verify"]).code(0);
    // Tampering with a CA record is detected.
    std::fs::write(
        env.path("state/audit.jsonl"),
        audit.replacen("\"action\":\"issue\"", "\"action\":\"renew\"", 1),
    )
    .unwrap();
    env.run(&["audit", "verify"]).code(1);
}

fn leaf_json(env: &Env, name: &str) -> serde_json::Value {
    let r = env.run(&["--format", "json", "ca", "show", name]);
    r.code(0);
    r.json()
}

#[test]
fn run_renews_after_two_thirds_and_refreshes_the_crl() {
    let env = Env::init();
    env.run(&["run"]).code(0);
    let serial = leaf_json(&env, "postgres-server")["certificate"]["serial"].clone();
    let crl_before = std::fs::read(env.path("deploy/postgres/ssl/root.crl")).unwrap();
    // 20 days on: the 30-day CRL is past half its validity; leaves are not due.
    let t20 = chrono::Utc::now() + chrono::Duration::days(20);
    let r = env.run_env(&["--format", "json", "run"], &[("KEYWARD_NOW", &t20.to_rfc3339())]);
    r.code(0);
    let doc = r.json();
    let actions: Vec<String> = doc["steps"][0]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_string())
        .collect();
    assert!(actions.contains(&"refresh-crl".to_string()), "{doc}");
    assert!(!actions.contains(&"renew".to_string()), "{doc}");
    assert_ne!(std::fs::read(env.path("deploy/postgres/ssl/root.crl")).unwrap(), crl_before);
    assert_eq!(leaf_json(&env, "postgres-server")["certificate"]["serial"], serial);
    // The dry run at 250 days (past 2/3 of 365) plans renewals and changes nothing.
    let t250 = chrono::Utc::now() + chrono::Duration::days(250);
    let before = tree(env.root());
    let plan = env.run_env(&["--format", "json", "plan"], &[("KEYWARD_NOW", &t250.to_rfc3339())]);
    plan.code(0);
    assert!(plan.stdout.contains("\"planned\""), "{}", plan.stdout);
    assert!(plan.stdout.contains("2/3 of its lifetime"), "{}", plan.stdout);
    assert_eq!(tree(env.root()), before);
    let st = env.run_env(&["--format", "json", "status"], &[("KEYWARD_NOW", &t250.to_rfc3339())]);
    assert!(st.stdout.contains("due-soon"), "{}", st.stdout);
    let r = env.run_env(&["run"], &[("KEYWARD_NOW", &t250.to_rfc3339())]);
    r.code(0);
    assert!(r.stdout.contains("renew"), "{}", r.stdout);
    let new = leaf_json(&env, "postgres-server");
    assert_ne!(new["certificate"]["serial"], serial);
    // The superseded key is gone from the state; only the current one is kept.
    let files: Vec<_> = std::fs::read_dir(env.path("state/ca/leaves"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("postgres-server."))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let audit = std::fs::read_to_string(env.path("state/audit.jsonl")).unwrap();
    assert!(audit.contains("\"simulated_clock\":true"), "{audit}");
    // At 364 days, the CA's own certificate is still fine but a leaf renewed at 250 is not due.
    let t364 = chrono::Utc::now() + chrono::Duration::days(364);
    let r = env.run_env(&["--format", "json", "plan"], &[("KEYWARD_NOW", &t364.to_rfc3339())]);
    assert!(!r.stdout.contains("\"object\": \"postgres-server\""), "{}", r.stdout);
    // With the clock at 400 days and no run, status needs attention (exit 3).
    let t400 = chrono::Utc::now() + chrono::Duration::days(700);
    env.run_env(&["status"], &[("KEYWARD_NOW", &t400.to_rfc3339())]).code(3);
}

#[test]
fn a_failing_reload_hook_fails_the_run_is_audited_and_retried() {
    let env = Env::init();
    let cfg = std::fs::read_to_string(env.config()).unwrap();
    let flag = env.path("hook-ok");
    let script = format!("test -e {} || {{ echo reload refused >&2; exit 4; }}", flag.display());
    let at = cfg.find("[ca.hooks.minio-reload]").unwrap();
    let (head, tail) = cfg.split_at(at);
    let tail = tail.replacen(
        "command = [\"true\"]",
        &format!("command = [\"sh\", \"-c\", {script:?}]"),
        1,
    );
    let cfg = format!("{head}{tail}");
    std::fs::write(env.config(), cfg).unwrap();
    let r = env.run(&["run"]);
    r.code(1);
    assert!(r.stdout.contains("FAILED") && r.stdout.contains("reload refused"), "{}", r.stdout);
    // The other targets were still deployed and reloaded.
    assert!(env.path("deploy/postgres/ssl/server.crt").is_file());
    let audit = std::fs::read_to_string(env.path("state/audit.jsonl")).unwrap();
    assert!(
        audit.lines().any(|l| l.contains("\"action\":\"reload\"")
            && l.contains("\"result\":\"failed\"")
            && l.contains("minio-reload")),
        "{audit}"
    );
    assert!(
        audit.lines().any(|l| l.contains("\"action\":\"reload\"")
            && l.contains("\"result\":\"ok\"")
            && l.contains("postgres-reload")),
        "{audit}"
    );
    let st = env.run(&["status"]);
    st.code(3);
    assert!(st.stdout.contains("reload hook minio-reload"), "{}", st.stdout);
    // The next run retries the hook (and only the hook).
    env.run(&["run"]).code(1);
    std::fs::write(&flag, "").unwrap();
    let r = env.run(&["run"]);
    r.code(0);
    assert!(r.stdout.contains("minio-reload") && r.stdout.contains("reload"), "{}", r.stdout);
    assert!(!r.stdout.contains("issue"), "{}", r.stdout);
    let r = env.run(&["run"]);
    r.code(0);
    assert!(r.stdout.contains("nothing was due"), "{}", r.stdout);
}

#[test]
fn adhoc_role_certificates_are_recorded_and_renewed() {
    let env = Env::init();
    env.run(&["run"]).code(0);
    let r = env.run(&["ca", "issue", "postgres-client", "--name", "reporting"]);
    r.code(0);
    let d = env.path("deploy/postgres/clients/reporting");
    let (_, subj) = openssl(&["x509", "-noout", "-subject", "-in", p(&d.join("postgresql.crt"))]);
    assert!(subj.contains("CN = reporting"), "{subj}");
    let j = leaf_json(&env, "reporting");
    assert_eq!(j["leaf"]["adhoc"], true);
    let t = chrono::Utc::now() + chrono::Duration::days(300);
    let r = env.run_env(&["run"], &[("KEYWARD_NOW", &t.to_rfc3339())]);
    r.code(0);
    assert!(r.stdout.contains("reporting"), "{}", r.stdout);
    // Extra SANs on a declared leaf stay across renewals.
    env.run(&["ca", "issue", "minio-server", "--san", "files.internal"]).code(0);
    env.run(&["ca", "renew", "minio-server", "--force"]).code(0);
    let j = leaf_json(&env, "minio-server");
    assert!(
        j["certificate"]["sans"].as_array().unwrap().iter().any(|s| s == "files.internal"),
        "{j}"
    );
    // Unknown profile, leaf of another profile, bad SAN: usage errors.
    env.run(&["ca", "issue", "nope"]).code(2);
    env.run(&["ca", "issue", "postgres-client", "--name", "minio-server"]).code(2);
    env.run(&["ca", "issue", "minio-server", "--san", "bad host"]).code(2);
    env.run(&["ca", "renew", "ghost"]).code(2);
    // Revoke by serial, then again: already revoked.
    let serial =
        leaf_json(&env, "reporting")["certificate"]["serial"].as_str().unwrap().to_string();
    env.run(&["ca", "revoke", &serial.to_ascii_uppercase()]).code(0);
    let r = env.run(&["ca", "revoke", &serial]);
    r.code(2);
    assert!(r.stderr.contains("already revoked"), "{}", r.stderr);
    // An ad-hoc leaf is not reissued after revocation.
    assert_eq!(leaf_json(&env, "reporting")["leaf"]["state"], "revoked");
}

#[test]
fn bad_profiles_and_config_are_usage_errors_that_write_nothing() {
    let env = Env::init();
    env.run(&["run"]).code(0);
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "ca/minio-server.toml",
            "validity_days = 365",
            "validity_days = 365\ncolour = \"blue\"",
            ":6:1: unknown field `colour`",
        ),
        (
            "ca/minio-server.toml",
            "validity_days = 365",
            "validity_days = 365\nis_ca = true",
            "CA:TRUE",
        ),
        (
            "ca/minio-server.toml",
            "validity_days = 365",
            "validity_days = 365\nkey_usage = [\"key_cert_sign\"]",
            "CA key usage",
        ),
        ("ca/minio-server.toml", "key_mode = \"0600\"", "key_mode = \"0644\"", "key_mode"),
        (
            "ca/minio-server.toml",
            "key_mode = \"0600\"",
            "key_mode = \"0640\"\nowner = \"nobody\"",
            "duplicate key",
        ),
        ("ca/postgres-client.toml", "key_mode = \"0600\"", "key_mode = \"0640\"", "root-owned"),
        ("ca/minio-server.toml", "reload = \"minio-reload\"", "reload = \"nope\"", "no hook"),
        ("ca/minio-server.toml", "[[leaf]]", "[[leaf", ":"),
        ("keyward.toml", "chown = false", "chown = false\nchwon = true", "chwon"),
    ];
    for (file, from, to, want) in cases {
        let path = env.path(file);
        let good = std::fs::read_to_string(&path).unwrap();
        assert!(good.contains(from), "{file} lacks {from}");
        std::fs::write(&path, good.replacen(from, to, 1)).unwrap();
        let before: Vec<(PathBuf, Vec<u8>)> = tree(env.root())
            .into_iter()
            .filter(|f| f.is_file())
            .map(|f| (f.clone(), std::fs::read(&f).unwrap()))
            .collect();
        for args in [
            &["run"][..],
            &["ca", "renew", "--all", "--force"][..],
            &["ca", "issue", "minio-server"][..],
        ] {
            let r = env.run(args);
            r.code(2);
            assert!(r.stderr.contains(want), "{file} {to:?} {args:?}: {}", r.stderr);
            if *file != "keyward.toml" {
                assert!(r.stderr.contains(p(&path)), "{}", r.stderr);
            }
        }
        let after: Vec<(PathBuf, Vec<u8>)> = tree(env.root())
            .into_iter()
            .filter(|f| f.is_file())
            .map(|f| (f.clone(), std::fs::read(&f).unwrap()))
            .collect();
        assert!(before == after, "{file} {to:?}: something was written");
        std::fs::write(&path, good).unwrap();
    }
    env.run(&["run"]).code(0);
}

#[test]
fn ca_init_refuses_an_existing_ca_and_insecure_keys_are_refused() {
    let env = Env::init();
    let r = env.run(&["--format", "json", "ca", "init", "--key-type", "p384"]);
    r.code(0);
    let r = env.run(&["ca", "init"]);
    r.code(2);
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
    env.run(&["ca", "init", "--key-type", "ed25519"]).code(2);
    let inv = env.run(&["--format", "json", "ca", "list"]).json();
    assert_eq!(inv["authorities"].as_array().unwrap().len(), 1);
    assert_eq!(inv["authorities"][0]["key_type"], "p384");
    env.run(&["run"]).code(0);
    let (_, t) =
        openssl(&["x509", "-noout", "-text", "-in", p(&env.path("deploy/postgres/ssl/root.crt"))]);
    assert!(t.contains("secp384r1") || t.contains("P-384"), "{t}");
    // A CA key that others can read is refused, with the fix.
    let id = inv["authorities"][0]["id"].as_str().unwrap();
    let key = env.path(&format!("state/ca/authorities/{id}/ca.key"));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = env.run(&["ca", "renew", "postgres-server", "--force"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stdout.contains("chmod 0600") || r.stderr.contains("chmod 0600"),
        "{} {}",
        r.stdout,
        r.stderr
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    // So is a leaf key file.
    let serial =
        leaf_json(&env, "minio-server")["certificate"]["serial"].as_str().unwrap().to_string();
    let leaf = env.path(&format!("state/ca/leaves/minio-server.{serial}.pem"));
    std::fs::set_permissions(&leaf, std::fs::Permissions::from_mode(0o640)).unwrap();
    let r = env.run(&["ca", "show", "minio-server"]);
    r.code(2);
    assert!(r.stderr.contains("chmod 0600"), "{}", r.stderr);
    std::fs::set_permissions(&leaf, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Without --yes, regenerate refuses.
    let r = env.run(&["ca", "regenerate"]);
    r.code(2);
    assert!(r.stderr.contains("--yes"), "{}", r.stderr);
    // Ed25519 leaves verify too.
    let cfg = std::fs::read_to_string(env.path("ca/minio-server.toml")).unwrap();
    std::fs::write(
        env.path("ca/minio-server.toml"),
        cfg.replace("validity_days = 365", "validity_days = 365\nkey_type = \"ed25519\""),
    )
    .unwrap();
    let r = env.run(&["run"]);
    r.code(0);
    assert!(r.stdout.contains("key type changed"), "{}", r.stdout);
    let m = env.path("deploy/minio/certs");
    let (ok, out) =
        openssl(&["verify", "-CAfile", p(&m.join("CAs/ca.crt")), p(&m.join("public.crt"))]);
    assert!(ok, "{out}");
    let (_, t) = openssl(&["x509", "-noout", "-text", "-in", p(&m.join("public.crt"))]);
    assert!(t.contains("ED25519"), "{t}");
}

#[test]
fn two_tier_root_is_encrypted_and_only_signs_the_intermediate() {
    let env = Env::init();
    let pass = env.path("pass");
    std::fs::write(&pass, "canary-root-passphrase\n").unwrap();
    let r = env.run(&["ca", "init", "--two-tier", "--root-passphrase-file", p(&pass)]);
    r.code(0);
    env.run(&["run"]).code(0);
    let inv = env.run(&["--format", "json", "ca", "list"]).json();
    let id = inv["authorities"][0]["id"].as_str().unwrap().to_string();
    let dir = env.path(&format!("state/ca/authorities/{id}"));
    assert!(!dir.join("root.key").exists());
    let armored = std::fs::read_to_string(dir.join("root.key.age")).unwrap();
    assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"), "{armored}");
    // The passphrase decrypts it (stock age would too: it is age v1, scrypt).
    let id_ = age::scrypt::Identity::new(age::secrecy::SecretString::from(
        "canary-root-passphrase".to_string(),
    ));
    let plain = age::decrypt(
        &id_,
        &age::armor::ArmoredReader::new(armored.as_bytes())
            .bytes()
            .collect::<Result<Vec<u8>, _>>()
            .unwrap(),
    )
    .unwrap();
    assert!(String::from_utf8(plain).unwrap().contains("PRIVATE KEY"));
    // root -> intermediate -> leaf.
    let pg = env.path("deploy/postgres/ssl");
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        p(&dir.join("root.crt")),
        "-untrusted",
        p(&dir.join("ca.crt")),
        p(&pg.join("server.crt")),
    ]);
    assert!(ok, "{out}");
    let (_, root) = openssl(&["x509", "-noout", "-text", "-in", p(&dir.join("root.crt"))]);
    assert!(root.contains("CA:TRUE, pathlen:1"), "{root}");
    let (_, inter) = openssl(&["x509", "-noout", "-text", "-in", p(&dir.join("ca.crt"))]);
    assert!(inter.contains("CA:TRUE, pathlen:0"), "{inter}");
    // The bundle has root and intermediate; the CRL file has a CRL for each.
    assert_eq!(
        std::fs::read_to_string(pg.join("root.crt")).unwrap().matches("BEGIN CERTIFICATE").count(),
        2
    );
    assert_eq!(
        std::fs::read_to_string(pg.join("root.crl")).unwrap().matches("BEGIN X509 CRL").count(),
        2
    );
    // The passphrase is nowhere else.
    let found = common::tree_contains(env.path("state").as_path(), b"canary-root-passphrase");
    assert!(found.is_empty(), "{found:?}");
    // Regenerating a two-tier CA needs the root protection again.
    let r = env.run(&["ca", "regenerate", "--yes"]);
    r.code(2);
    assert!(r.stderr.contains("recipients") || r.stderr.contains("passphrase"), "{}", r.stderr);
    env.run(&["ca", "regenerate", "--yes", "--root-passphrase-file", p(&pass)]).code(0);
    let inv = env.run(&["--format", "json", "ca", "list"]).json();
    assert_eq!(inv["authorities"].as_array().unwrap().len(), 2);
    assert_eq!(inv["authorities"][0]["two_tier"], true);
}

#[test]
fn two_tier_root_can_be_encrypted_to_dr_recipients() {
    let env = Env::init();
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let cfg = std::fs::read_to_string(env.config()).unwrap();
    std::fs::write(env.config(), format!("{cfg}\n[dr]\nrecipients = [\"{recipient}\"]\n")).unwrap();
    env.run(&["ca", "init", "--two-tier"]).code(0);
    let inv = env.run(&["--format", "json", "ca", "list"]).json();
    let id = inv["authorities"][0]["id"].as_str().unwrap().to_string();
    let armored =
        std::fs::read(env.path(&format!("state/ca/authorities/{id}/root.key.age"))).unwrap();
    let mut r = age::armor::ArmoredReader::new(&armored[..]);
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes).unwrap();
    let plain = age::decrypt(&identity, &bytes).unwrap();
    assert!(String::from_utf8(plain).unwrap().contains("PRIVATE KEY"));
    let _: Run = env.run(&["run"]);
}

#[test]
fn a_configured_chown_that_is_impossible_is_an_error() {
    let env = Env::init();
    let cfg =
        std::fs::read_to_string(env.config()).unwrap().replace("chown = false", "chown = true");
    std::fs::write(env.config(), cfg).unwrap();
    // minio-server's target names owner 0 (root), which an unprivileged user cannot give.
    let root = nix::unistd::getuid().is_root();
    let out = if root {
        require_tool("runuser", "apt-get install -y util-linux");
        let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("user nobody");
        for f in tree(env.root()).into_iter().chain([env.root().to_path_buf()]) {
            std::os::unix::fs::lchown(&f, Some(nobody.uid.as_raw()), Some(nobody.gid.as_raw()))
                .unwrap();
        }
        Command::new("runuser")
            .args(["-u", "nobody", "--"])
            .arg(common::keyward_bin())
            .arg("-c")
            .arg(env.config())
            .arg("run")
            .output()
            .unwrap()
    } else {
        Command::new(common::keyward_bin()).arg("-c").arg(env.config()).arg("run").output().unwrap()
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("cannot give") && stdout.contains("owner"), "{stdout}");
    // Nothing half-deployed: the target has no visible files.
    assert!(!env.path("deploy/minio/certs/private.key").exists());
    let audit = std::fs::read_to_string(env.path("state/audit.jsonl")).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"action\":\"deploy\"") && l.contains("\"result\":\"failed\"")),
        "{audit}"
    );
}
