//! `kill -9` during `ca regenerate`, then a re-run: the regeneration completes
//! without a third CA, and at every moment each target folder holds a complete,
//! consistent set (certificate matches key, chain verifies against the folder's own
//! bundle).
//!
//! Kills come from the fault-injection hook `KEYWARD_FAULT=POINT[:N]` (keyward sends
//! itself SIGKILL at the N-th pass of POINT; see docs/cli.md) and from plain `kill -9`
//! at random moments.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Env, require_tool};

/// Every target folder of the quick-start profiles.
const TARGETS: &[(&str, &str, &str, &str)] = &[
    ("deploy/postgres/ssl", "server.crt", "server.key", "root.crt"),
    ("deploy/minio/certs", "public.crt", "private.key", "CAs/ca.crt"),
    ("deploy/postgres/clients/pazpaz", "postgresql.crt", "postgresql.key", "root.crt"),
    ("deploy/postgres/clients/pazpaz_readonly", "postgresql.crt", "postgresql.key", "root.crt"),
    ("deploy/postgres/clients/pazpaz_backup", "postgresql.crt", "postgresql.key", "root.crt"),
];

fn spki_of_cert(pem_text: &str) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(pem_text.as_bytes()).unwrap();
    let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
    c.public_key().subject_public_key.data.to_vec()
}

#[track_caller]
fn check_consistent(env: &Env, when: &str) {
    for (dir, cert, key, bundle) in TARGETS {
        let d = env.path(dir);
        let data = std::fs::read_link(d.join("..data"))
            .unwrap_or_else(|e| panic!("{when}: {dir} has no ..data: {e}"));
        assert!(d.join(&data).is_dir(), "{when}: {dir}: ..data points at a missing generation");
        let cert_pem = std::fs::read_to_string(d.join(cert))
            .unwrap_or_else(|e| panic!("{when}: {dir}/{cert}: {e}"));
        let key_pem = std::fs::read_to_string(d.join(key))
            .unwrap_or_else(|e| panic!("{when}: {dir}/{key}: {e}"));
        let pair = rcgen::KeyPair::from_pem(&key_pem)
            .unwrap_or_else(|e| panic!("{when}: {dir}/{key}: {e}"));
        assert_eq!(
            spki_of_cert(&cert_pem),
            pair.public_key_raw(),
            "{when}: {dir}: the key does not match the certificate"
        );
        let out = Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(d.join(bundle))
            .arg(d.join(cert))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{when}: {dir}: the chain does not verify against its own bundle: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if *dir == "deploy/postgres/ssl" {
            let out = Command::new("openssl")
                .arg("crl")
                .arg("-noout")
                .arg("-CAfile")
                .arg(d.join(bundle))
                .arg("-in")
                .arg(d.join("root.crl"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{when}: {dir}: root.crl does not verify: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

fn authority_dirs(env: &Env) -> usize {
    std::fs::read_dir(env.path("state/ca/authorities"))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .count()
}

/// After a completed regeneration: no transition, every leaf from the current CA.
#[track_caller]
fn check_completed(env: &Env, expect_authorities: usize, when: &str) {
    let inv = env.run(&["--format", "json", "ca", "list"]);
    inv.code(0);
    let doc = inv.json();
    assert!(doc.get("transition").is_none(), "{when}: still in transition: {doc}");
    let current = doc["authorities"][0]["id"].as_str().unwrap();
    for l in doc["leaves"].as_array().unwrap() {
        assert_eq!(l["issuer"], current, "{when}: {} not reissued", l["name"]);
    }
    assert_eq!(authority_dirs(env), expect_authorities, "{when}: a CA too many (or too few)");
    check_consistent(env, when);
}

#[test]
fn kill_9_at_every_phase_of_regenerate_then_rerun_completes() {
    require_tool("openssl", "apt-get install -y openssl");
    let env = Env::init();
    env.run(&["run"]).code(0);
    check_consistent(&env, "after the first run");
    let mut cas = 1;
    let points = [
        "regenerate-started",
        "authority-written",
        "manifest-switched",
        "deploy-generation-written:1",
        "deploy-data-swapped:2",
        "bundles-deployed",
        "leaf-issued:1",
        "leaf-issued:4",
        "deploy-generation-written:8",
        "deploy-data-swapped:9",
    ];
    for (i, point) in points.iter().enumerate() {
        let r = env.run_env(&["ca", "regenerate", "--yes"], &[("KEYWARD_FAULT", point)]);
        assert_eq!(
            r.code, -1,
            "{point}: keyward was not killed (exit {}):\n{}\n{}",
            r.code, r.stdout, r.stderr
        );
        check_consistent(&env, &format!("killed at {point}"));
        // Status shows the interrupted regeneration (except before the first write).
        let st = env.run(&["status"]);
        assert!(
            st.stdout.contains("interrupted") || *point == "regenerate-started",
            "{point}: {}",
            st.stdout
        );
        // Alternate the two ways of finishing it.
        let finish: &[&str] = if i % 2 == 0 { &["ca", "regenerate", "--yes"] } else { &["run"] };
        env.run(finish).code(0);
        cas += 1;
        check_completed(&env, cas, &format!("after {point} and {finish:?}"));
        env.run(&["ca", "retire-previous"]).code(0);
        check_consistent(&env, &format!("retired after {point}"));
    }
    env.run(&["audit", "verify"]).code(0);
}

#[test]
fn kill_9_at_random_moments_leaves_whole_sets() {
    require_tool("openssl", "apt-get install -y openssl");
    let env = Env::init();
    env.run(&["run"]).code(0);
    let mut cas = 1;
    // A pseudo-random but reproducible spread of delays across the run.
    let delays_ms = [3u64, 11, 7, 19, 2, 15, 9, 27];
    for (i, ms) in delays_ms.iter().enumerate() {
        let mut child = env.spawn(&["ca", "regenerate", "--yes"]);
        std::thread::sleep(Duration::from_millis(*ms));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let status = child.wait().unwrap();
        check_consistent(&env, &format!("kill -9 after {ms} ms ({status})"));
        // `keyward run` finishes an interrupted regeneration and does nothing else.
        env.run(&["run"]).code(0);
        // Killed before it recorded its intent, the regeneration simply did not start;
        // otherwise exactly one new CA exists now. Never two.
        let now = authority_dirs(&env);
        assert!(now == cas || now == cas + 1, "iteration {i}: {now} CAs after {cas}");
        cas = now;
        check_completed(&env, cas, &format!("kill after {ms} ms, iteration {i}"));
        env.run(&["ca", "retire-previous"]).code(0);
    }
    env.run(&["audit", "verify"]).code(0);
}
