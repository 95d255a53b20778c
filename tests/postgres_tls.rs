//! A real PostgreSQL running on keyward's certificates: server certificate, key,
//! client CA bundle and CRL deployed by keyward, `cert` authentication for every TCP
//! login, checked with Debian's psql (`sslmode=verify-full`).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::pg::Postgres;
use common::{Env, require_tool};

const PSQL: &str = "apt-get install -y postgresql-client";

/// A keyward installation whose postgres-server target feeds `pg`, with client
/// certificates for the roles alice and bob.
fn setup(pg: &Postgres) -> Env {
    require_tool("openssl", "apt-get install -y openssl");
    let env = Env::init();
    // The server runs as `postgres` and must reach the deployed files.
    std::fs::set_permissions(env.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (uid, gid) = common::pg::server_user();
    let root = nix::unistd::getuid().is_root();
    let (owner, group, mode) = if root {
        ("root".to_string(), gid.to_string(), "0640")
    } else {
        (uid.to_string(), gid.to_string(), "0600")
    };
    std::fs::write(
        env.path("ca/postgres-server.toml"),
        format!(
            r#"description = "PostgreSQL server"
usage = "server"
validity_days = 365
[[leaf]]
name = "postgres-server"
common_name = "db"
sans = ["db", "localhost", "127.0.0.1"]
[[target]]
dir = "postgres/ssl"
layout = "postgres-server"
owner = "{owner}"
group = "{group}"
key_mode = "{mode}"
reload = "postgres-reload"
"#
        ),
    )
    .unwrap();
    let me = nix::unistd::getuid().as_raw();
    std::fs::write(
        env.path("ca/postgres-client.toml"),
        format!(
            r#"description = "clients"
usage = "client"
validity_days = 365
[[leaf]]
name = "alice"
[[leaf]]
name = "bob"
[[target]]
dir = "postgres/clients/{{name}}"
layout = "postgres-client"
owner = "{me}"
key_mode = "0600"
"#
        ),
    )
    .unwrap();
    let cfg =
        std::fs::read_to_string(env.config()).unwrap().replace("chown = false", "chown = true");
    std::fs::write(env.config(), cfg).unwrap();
    let _ = pg;
    env
}

/// Points the postgres-reload hook at the running server.
fn reload_hook_to(env: &Env, pg: &Postgres) {
    let cfg = std::fs::read_to_string(env.config()).unwrap();
    let start = cfg.find("[ca.hooks.postgres-reload]").unwrap();
    let end = start + cfg[start..].find("timeout_seconds").unwrap();
    let hook = format!(
        "[ca.hooks.postgres-reload]\ncommand = [\"{}\", \"-X\", \"-h\", \"{}\", \"-p\", \"{}\", \"-U\", \"postgres\", \"-d\", \"postgres\", \"-c\", \"select pg_reload_conf()\"]\n",
        pg.psql_bin().display(),
        pg.socket_dir().display(),
        pg.port
    );
    let cfg = format!("{}{}{}", &cfg[..start], hook, &cfg[end..]);
    std::fs::write(env.config(), cfg).unwrap();
}

fn start_pg(env: &Env, pg: &mut Postgres) {
    let ssl = env.path("deploy/postgres/ssl");
    pg.conf(&format!(
        "ssl = on\nssl_cert_file = '{0}/server.crt'\nssl_key_file = '{0}/server.key'\nssl_ca_file = '{0}/root.crt'\nssl_crl_file = '{0}/root.crl'\n",
        ssl.display()
    ));
    pg.hba("hostssl all all 127.0.0.1/32 cert\nhostnossl all all 0.0.0.0/0 reject");
    pg.start();
    pg.psql_admin("create role alice login; create role bob login");
}

fn client(env: &Env, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let d = env.path(&format!("deploy/postgres/clients/{name}"));
    (d.join("root.crt"), d.join("postgresql.crt"), d.join("postgresql.key"))
}

/// A copy of a client's current files (what a client holds until it is redeployed).
fn snapshot(env: &Env, name: &str, into: &Path) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(into).unwrap();
    let (r, c, k) = client(env, name);
    let out = (into.join("root.crt"), into.join("postgresql.crt"), into.join("postgresql.key"));
    std::fs::copy(r, &out.0).unwrap();
    std::fs::copy(c, &out.1).unwrap();
    std::fs::copy(k, &out.2).unwrap();
    std::fs::set_permissions(&out.2, std::fs::Permissions::from_mode(0o600)).unwrap();
    out
}

fn login(pg: &Postgres, user: &str, f: &(PathBuf, PathBuf, PathBuf)) -> common::pg::Login {
    pg.login(user, "verify-full", Some((&f.0, &f.1, &f.2)))
}

#[track_caller]
fn assert_in(pg: &Postgres, user: &str, f: &(PathBuf, PathBuf, PathBuf)) {
    match login(pg, user, f) {
        Ok(u) => assert_eq!(u, user),
        Err(e) => panic!(
            "{user} could not log in with {}: {e}\n--- server log\n{}",
            f.1.display(),
            pg.log()
        ),
    }
}

#[track_caller]
fn assert_out(pg: &Postgres, user: &str, f: &(PathBuf, PathBuf, PathBuf), why: &str) {
    if let Ok(u) = login(pg, user, f) {
        panic!("{why}: logged in as {u} with {}", f.1.display());
    }
}

fn serial_presented(pg: &Postgres) -> String {
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-starttls", "postgres", "-connect", &format!("127.0.0.1:{}", pg.port)])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let start =
        text.find("-----BEGIN CERTIFICATE-----").expect("server certificate in s_client output");
    let end = text.find("-----END CERTIFICATE-----").unwrap() + 25;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.pem");
    std::fs::write(&p, &text[start..end]).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(&p)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    s.trim().trim_start_matches("serial=").to_ascii_lowercase()
}

fn show_serial(env: &Env, name: &str) -> String {
    let r = env.run(&["--format", "json", "ca", "show", name]);
    r.code(0);
    r.json()["certificate"]["serial"].as_str().unwrap().to_string()
}

#[test]
fn postgres_accepts_keyward_certificates_through_revoke_regenerate_and_retire() {
    require_tool("psql", PSQL);
    let mut pg = Postgres::init();
    let env = setup(&pg);
    env.run(&["run"]).code(0);
    // The key as PostgreSQL's rule wants it.
    use std::os::unix::fs::MetadataExt;
    let key = std::fs::metadata(env.path("deploy/postgres/ssl/server.key")).unwrap();
    if nix::unistd::getuid().is_root() {
        assert_eq!((key.uid(), key.mode() & 0o777), (0, 0o640));
        assert_eq!(key.gid(), common::pg::server_user().1);
    } else {
        assert_eq!(key.mode() & 0o777, 0o600);
    }
    start_pg(&env, &mut pg);
    reload_hook_to(&env, &pg);

    let alice = client(&env, "alice");
    let bob = client(&env, "bob");
    assert_in(&pg, "alice", &alice);
    assert_in(&pg, "bob", &bob);
    // The same certificate cannot log in as another role.
    assert_out(&pg, "bob", &alice, "alice's certificate used for bob");
    // Plain connections are refused.
    let plain = pg.login("alice", "disable", None);
    assert!(plain.is_err(), "a plain connection got in: {plain:?}");
    // A certificate from another CA is refused.
    let other = Env::init();
    std::fs::copy(env.path("ca/postgres-client.toml"), other.path("ca/postgres-client.toml"))
        .unwrap();
    other.run(&["run"]).code(0);
    let (_, oc, ok) = client(&other, "alice");
    let foreign = (alice.0.clone(), oc, ok);
    assert_out(&pg, "alice", &foreign, "a certificate of another CA");

    // Revocation: the revoked certificate is refused once PostgreSQL reloaded the CRL
    // (keyward's reload hook does that).
    let revoked = snapshot(&env, "alice", &env.path("held/alice-revoked"));
    env.run(&["ca", "revoke", "alice", "--reason", "key-compromise"]).code(0);
    assert_out(&pg, "alice", &revoked, "a revoked certificate");
    // The reissued one works.
    assert_in(&pg, "alice", &alice);
    let crl = std::process::Command::new("openssl")
        .args(["crl", "-noout", "-text", "-in"])
        .arg(env.path("deploy/postgres/ssl/root.crl"))
        .output()
        .unwrap();
    let crl = String::from_utf8_lossy(&crl.stdout).to_ascii_lowercase();
    let revoked_serial = {
        let out = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-serial", "-in"])
            .arg(&revoked.1)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .trim_start_matches("serial=")
            .to_ascii_lowercase()
    };
    assert!(crl.contains(&revoked_serial), "{revoked_serial} not in the CRL:\n{crl}");
    assert!(crl.contains("key compromise"), "{crl}");

    // pg_reload_conf() picks up a renewed server certificate without a restart.
    let pid = pg.postmaster_pid();
    let before = serial_presented(&pg);
    assert_eq!(before, show_serial(&env, "postgres-server"));
    env.run(&["ca", "renew", "postgres-server", "--force"]).code(0);
    let after = show_serial(&env, "postgres-server");
    assert_ne!(before, after);
    assert_eq!(serial_presented(&pg), after, "PostgreSQL still presents the old certificate");
    assert_eq!(pg.postmaster_pid(), pid, "the server restarted");
    assert_in(&pg, "alice", &alice);

    // Regeneration: bob keeps his old-CA certificate (with the transition bundle that
    // keyward deployed to every client first); alice's reissued one works throughout.
    let r = env.run(&["--format", "json", "ca", "list"]);
    let old_ca = r.json()["authorities"][0]["id"].as_str().unwrap().to_string();
    let mut held_bob = snapshot(&env, "bob", &env.path("held/bob-old"));
    env.run(&["ca", "regenerate", "--yes"]).code(0);
    let inv = env.run(&["--format", "json", "ca", "list"]).json();
    assert_eq!(inv["authorities"].as_array().unwrap().len(), 2, "{inv}");
    assert_ne!(inv["authorities"][0]["id"], old_ca.as_str());
    assert_eq!(inv["authorities"][1]["id"], old_ca.as_str());
    // bob's trust bundle as every client now has it: old and new CA.
    std::fs::copy(&bob.0, &held_bob.0).unwrap();
    held_bob = (held_bob.0.clone(), held_bob.1.clone(), held_bob.2.clone());
    assert_in(&pg, "bob", &held_bob);
    assert_in(&pg, "alice", &alice);
    assert_in(&pg, "bob", &bob);
    // Revoked stays revoked across the transition.
    assert_out(&pg, "alice", &revoked, "a revoked certificate after regenerate");
    env.run(&["ca", "retire-previous"]).code(0);
    assert_out(&pg, "bob", &held_bob, "an old-CA certificate after retire-previous");
    assert_in(&pg, "alice", &alice);
    assert_in(&pg, "bob", &bob);
    env.run(&["audit", "verify"]).code(0);
}

#[test]
fn postgres_accepts_a_two_tier_chain_with_crls_for_every_ca() {
    require_tool("psql", PSQL);
    let mut pg = Postgres::init();
    let env = setup(&pg);
    let pass = env.path("root-pass");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    env.run(&["ca", "init", "--two-tier", "--root-passphrase-file", pass.to_str().unwrap()])
        .code(0);
    env.run(&["run"]).code(0);
    start_pg(&env, &mut pg);
    reload_hook_to(&env, &pg);
    let alice = client(&env, "alice");
    assert_in(&pg, "alice", &alice);
    // The client presents leaf + intermediate; the server's bundle holds the root.
    let chain = std::fs::read_to_string(&alice.1).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    let bob = snapshot(&env, "bob", &env.path("held/bob"));
    env.run(&["ca", "revoke", "bob", "--no-reissue"]).code(0);
    assert_out(&pg, "bob", &bob, "a revoked certificate (two-tier)");
    assert_in(&pg, "alice", &alice);
    // --no-reissue: keyward run leaves bob alone; status says so.
    env.run(&["run"]).code(0);
    assert_out(&pg, "bob", &client(&env, "bob"), "a held revoked certificate");
    let st = env.run(&["--format", "json", "status"]);
    assert_eq!(st.code, 3, "{}", st.stdout);
    assert!(st.stdout.contains("not reissued"), "{}", st.stdout);
    env.run(&["ca", "renew", "bob", "--force"]).code(0);
    assert_in(&pg, "bob", &client(&env, "bob"));
}
