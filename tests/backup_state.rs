//! The DR export of keyward itself: export, restore on a "fresh machine" (another
//! folder), and the restored copy's status equals the original's exactly; refusals,
//! tampering and wrong keys leave the target untouched.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{Env, require_tool, tree, tree_contains};

const NOW: &str = "2027-01-15T08:00:00Z";
const CANARY: &str = "state-canary-9d2f-secret-value";

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o7777
}

/// A real installation: the starter config with DR recipients, one finished run (the
/// CA, its leaves and every generated secret), an imported secret holding the canary,
/// and the machine key outside the state folder (the export must carry it unasked).
fn installation() -> (Env, std::path::PathBuf) {
    let env = Env::init();
    let dr_id = env.path("dr-identity.txt");
    let r = env.run(&["backup", "keygen", "-o", dr_id.to_str().unwrap()]);
    r.code(0);
    let recipient = r.stdout.trim().to_string();
    let mut toml = std::fs::read_to_string(env.config()).unwrap();
    toml.push_str(&format!("\n[dr]\nrecipients = [\"{recipient}\"]\n"));
    std::fs::write(env.config(), toml).unwrap();
    env.run_env(&["run"], &[("KEYWARD_NOW", NOW)]).code(0);
    let r = env.run_stdin(&["secrets", "set", "SMTP_PASSWORD"], CANARY.as_bytes());
    r.code(0);
    // The demo's env file holds the value in clear (that is its purpose); the export
    // covers keyward's own files, where the canary must only ever be encrypted.
    assert!(env.path("machine.key").is_file());
    (env, dr_id)
}

fn status(env: &Env, config: &Path) -> String {
    let r = env.run_env(
        &["--format", "json", "status"],
        &[("KEYWARD_NOW", NOW), ("KEYWARD_CONFIG", config.to_str().unwrap())],
    );
    r.code(0);
    r.stdout
}

#[test]
fn export_and_restore_on_a_fresh_machine() {
    let (env, dr_id) = installation();
    let export = env.path("dr-export.age");
    let r = env.run(&["backup", "state", "-o", export.to_str().unwrap()]);
    r.code(0);
    assert!(r.stdout.contains("restore it with"), "{}", r.stdout);
    assert_eq!(mode(&export), 0o600);
    // A standard age file the stock CLI opens with the DR identity: a tar inside.
    let age = require_tool("age", "apt-get install age");
    let out = std::process::Command::new(age)
        .args(["-d", "-i", dr_id.to_str().unwrap(), export.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(&out.stdout[257..262], b"ustar");
    let original = status(&env, &env.config());

    // The fresh machine: an empty folder.
    let fresh = tempfile::tempdir().unwrap();
    let new_config = fresh.path().join("etc/keyward.toml");
    let r = env.run_env(
        &["restore", "state", "-i", dr_id.to_str().unwrap(), export.to_str().unwrap()],
        &[("KEYWARD_CONFIG", new_config.to_str().unwrap())],
    );
    r.code(0);
    assert!(r.stdout.contains("signed by keyward-ed25519:"), "{}", r.stdout);
    let new_root = fresh.path().join("etc");
    for rel in [
        "keyward.toml",
        "machine.key",
        "state/secrets/vault.json",
        "state/ca/manifest.json",
        "state/ca/index.json",
        "state/last-run.json",
        "state/backup-signing.key",
        "ca/postgres-server.toml",
        "policies/database.toml",
    ] {
        let (a, b) = (env.path(rel), new_root.join(rel));
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "{rel}");
        assert_eq!(mode(&a), mode(&b), "mode of {rel}");
    }
    assert_eq!(mode(&new_root.join("state")), 0o700);
    assert_eq!(mode(&new_root.join("state/ca")), 0o700);
    assert!(!new_root.join("state/lock").exists());
    assert_eq!(status(&env, &new_config), original, "status of the restored copy");
    // The restored machine key opens the restored store: the same values come back.
    for name in ["SMTP_PASSWORD", "SECRET_KEY", "POSTGRES_PASSWORD"] {
        let a = env.run(&["secrets", "get", name]);
        let b = env.run_env(
            &["secrets", "get", name],
            &[("KEYWARD_CONFIG", new_config.to_str().unwrap())],
        );
        a.code(0);
        b.code(0);
        assert_eq!(a.stdout, b.stdout, "{name}");
    }
    let v = env.run_env(&["audit", "verify"], &[("KEYWARD_CONFIG", new_config.to_str().unwrap())]);
    v.code(0);
    let log = std::fs::read_to_string(new_root.join("state/audit.jsonl")).unwrap();
    assert!(log.contains("restore-state"), "{log}");
    // No secret value anywhere it should not be.
    assert!(!r.stdout.contains(CANARY) && !r.stderr.contains(CANARY));
    assert!(!log.contains(CANARY));
    assert!(!std::fs::read_to_string(env.path("state/audit.jsonl")).unwrap().contains(CANARY));
    assert_eq!(tree_contains(&new_root, CANARY.as_bytes()), Vec::<std::path::PathBuf>::new());
    assert!(!tree_contains(&env.path("state"), CANARY.as_bytes()).iter().any(|_| true));

    // A second restore over it is refused and changes nothing.
    let before = tree(fresh.path());
    let store_before = std::fs::read(new_root.join("state/secrets/vault.json")).unwrap();
    let r = env.run_env(
        &["restore", "state", "-i", dr_id.to_str().unwrap(), export.to_str().unwrap()],
        &[("KEYWARD_CONFIG", new_config.to_str().unwrap())],
    );
    r.code(1);
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    assert_eq!(tree(fresh.path()), before);
    assert_eq!(std::fs::read(new_root.join("state/secrets/vault.json")).unwrap(), store_before);
    // With --force the old state is moved aside, not deleted.
    let r = env.run_env(
        &["restore", "state", "--force", "-i", dr_id.to_str().unwrap(), export.to_str().unwrap()],
        &[("KEYWARD_CONFIG", new_config.to_str().unwrap())],
    );
    r.code(0);
    let aside: Vec<_> = std::fs::read_dir(&new_root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("state.before-restore-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(status(&env, &new_config), original);
}

#[test]
fn tampered_exports_and_wrong_keys_restore_nothing() {
    let (env, dr_id) = installation();
    let export = env.path("dr-export.age");
    env.run(&["backup", "state", "-o", export.to_str().unwrap()]).code(0);
    let mut bytes = std::fs::read(&export).unwrap();
    let n = bytes.len();
    bytes[n - 20] ^= 4;
    let bad = env.path("tampered.age");
    std::fs::write(&bad, &bytes).unwrap();
    let other_id = env.path("other.txt");
    env.run(&["backup", "keygen", "-o", other_id.to_str().unwrap()]).code(0);
    let fresh = tempfile::tempdir().unwrap();
    let cfg = fresh.path().join("keyward.toml");
    for (file, id) in [(&bad, &dr_id), (&export, &other_id)] {
        let r = env.run_env(
            &["restore", "state", "-i", id.to_str().unwrap(), file.to_str().unwrap()],
            &[("KEYWARD_CONFIG", cfg.to_str().unwrap())],
        );
        r.code(1);
        assert!(tree(fresh.path()).is_empty(), "nothing may be written: {}", r.stderr);
    }
    // A signer that is not the server's.
    let r = env.run_env(
        &[
            "restore",
            "state",
            "--signer",
            "keyward-ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "-i",
            dr_id.to_str().unwrap(),
            export.to_str().unwrap(),
        ],
        &[("KEYWARD_CONFIG", cfg.to_str().unwrap())],
    );
    r.code(1);
    assert!(tree(fresh.path()).is_empty());
}

#[test]
fn export_needs_dr_recipients() {
    let env = Env::init();
    let r = env.run(&["backup", "state", "-o", env.path("x.age").to_str().unwrap()]);
    r.code(2);
    assert!(r.stderr.contains("[dr] recipients"), "{}", r.stderr);
    assert!(!env.path("x.age").exists());
}
