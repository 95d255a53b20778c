//! PostgreSQL over verified TLS, with an admin credential: `keyward run` creates the
//! role's first password itself (no import), and a server that allows TLS only still
//! gets the rotation.

mod common;

use std::process::Command;

use common::Env;
use common::pg::Postgres;

fn openssl(args: &[&str], dir: &std::path::Path) {
    let bin = common::require_tool("openssl", "apt-get install -y openssl");
    let out = Command::new(bin).args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A self-signed CA (`ca.key`, `ca.crt`) in `dir`.
fn make_ca(dir: &std::path::Path, cn: &str) {
    let subject = format!("/CN={cn}");
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
        dir,
    );
}

fn login_tls(pg: &Postgres, ca: &std::path::Path, user: &str, password: &str) -> bool {
    Command::new(common::pg::bin_dir().join("psql"))
        .args(["-X", "-w", "-A", "-t", "-c", "SELECT 1"])
        .arg(format!(
            "host=127.0.0.1 port={} user={user} dbname=postgres sslmode=verify-full sslrootcert={}",
            pg.port,
            ca.display()
        ))
        .env("PGPASSWORD", password)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn admin_credential_over_verified_tls_creates_and_rotates() {
    let mut pg = Postgres::init();
    let (uid, gid) = common::pg::server_user();
    std::os::unix::fs::chown(pg.dir.path(), Some(uid), Some(gid)).unwrap();
    let certs = tempfile::tempdir().unwrap();
    let d = certs.path();
    make_ca(d, "keyward test CA");
    openssl(
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
        d,
    );
    std::fs::write(d.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n").unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.crt",
        ],
        d,
    );
    for f in ["server.crt", "server.key"] {
        let to = pg.data().join(f);
        std::fs::copy(d.join(f), &to).unwrap();
        std::os::unix::fs::chown(&to, Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    pg.conf("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\npassword_encryption = 'scram-sha-256'");
    // TLS only: a plaintext connection is refused.
    pg.hba("hostssl all all 127.0.0.1/32 scram-sha-256");
    pg.start();
    pg.psql_admin("ALTER ROLE postgres PASSWORD 'admin-pw-for-tests'");
    pg.psql_admin("CREATE ROLE pazpaz LOGIN PASSWORD 'unknown-to-keyward'");

    let env = Env::init();
    let admin_file = env.path("pg-admin.pass");
    std::fs::write(&admin_file, "admin-pw-for-tests\n").unwrap();
    std::fs::set_permissions(&admin_file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .unwrap();
    let ca = d.join("ca.crt");
    let mut config = std::fs::read_to_string(env.config()).unwrap();
    config.push_str(&format!(
        "\n[secrets.postgres.pazpaz]\nhost = \"127.0.0.1\"\nport = {}\nadmin_user = \"postgres\"\nadmin_password_file = \"pg-admin.pass\"\nssl_ca_file = \"{}\"\n",
        pg.port,
        ca.display()
    ));
    std::fs::write(env.config(), config).unwrap();

    env.run(&["run"]).code(0);
    let v1 = env.run(&["secrets", "get", "POSTGRES_PASSWORD"]).stdout;
    assert_eq!(v1.len(), 32);
    assert!(login_tls(&pg, &ca, "pazpaz", &v1), "the generated password does not log in");
    assert!(!login_tls(&pg, &ca, "pazpaz", "unknown-to-keyward"));
    env.run(&["secrets", "rotate", "POSTGRES_PASSWORD"]).code(0);
    let v2 = env.run(&["secrets", "get", "POSTGRES_PASSWORD"]).stdout;
    assert!(login_tls(&pg, &ca, "pazpaz", &v2));
    assert!(!login_tls(&pg, &ca, "pazpaz", &v1));

    // A CA that did not sign the server's certificate: refused, nothing changes.
    let other = tempfile::tempdir().unwrap();
    make_ca(other.path(), "other CA");
    let text = std::fs::read_to_string(env.config()).unwrap();
    std::fs::write(
        env.config(),
        text.replace(&ca.display().to_string(), &other.path().join("ca.crt").display().to_string()),
    )
    .unwrap();
    let r = env.run(&["secrets", "rotate", "POSTGRES_PASSWORD"]);
    r.code(1);
    assert!(
        r.stdout.contains("cannot reach PostgreSQL") && r.stdout.contains("still current"),
        "{}",
        r.stdout
    );
    assert!(login_tls(&pg, &ca, "pazpaz", &v2));
}
