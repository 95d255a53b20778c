//! The DR export of keyward itself: export, restore on a "fresh machine" (another
//! folder), and the restored copy's status equals the original's exactly; refusals,
//! tampering and wrong keys leave the target untouched.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::{Env, require_tool, tree, tree_contains};

const NOW: &str = "2027-01-15T08:00:00Z";
const CANARY: &str = "state-canary-9d2f-secret-value";

fn write(path: &Path, body: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o7777
}

/// An installation with DR recipients, some state, a machine key outside the state
/// folder, and one finished run.
fn installation() -> (Env, std::path::PathBuf) {
    let env = Env::init();
    let dr_id = env.path("dr-identity.txt");
    let r = env.run(&["backup", "keygen", "-o", dr_id.to_str().unwrap()]);
    r.code(0);
    let recipient = r.stdout.trim().to_string();
    let toml = std::fs::read_to_string(env.config()).unwrap();
    let include = "dr_include = [\"machine.key\"]\n";
    let mut toml = if toml.contains("\n[backup]\n") {
        toml.replacen("\n[backup]\n", &format!("\n[backup]\n{include}"), 1)
    } else {
        format!("{toml}\n[backup]\n{include}")
    };
    toml.push_str(&format!("\n[dr]\nrecipients = [\"{recipient}\"]\n"));
    std::fs::write(env.config(), toml).unwrap();
    write(&env.path("machine.key"), "machine-key-bytes\n", 0o600);
    write(&env.path("state/secrets/store.json"), &format!("{{\"v\":\"{CANARY}\"}}\n"), 0o600);
    write(&env.path("state/ca/root.key.age"), "encrypted CA key\n", 0o600);
    std::fs::set_permissions(env.path("state/ca"), std::fs::Permissions::from_mode(0o700)).unwrap();
    write(&env.path("state/acme/account.json"), "{\"kid\":\"https://acme/acct/1\"}\n", 0o600);
    write(&env.path("ca/postgres-server.toml"), "# profile\n", 0o644);
    write(&env.path("policies/secrets.toml"), "# policies\n", 0o644);
    env.run_env(&["run"], &[("KEYWARD_NOW", NOW)]).code(0);
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
        "state/secrets/store.json",
        "state/ca/root.key.age",
        "state/acme/account.json",
        "state/last-run.json",
        "state/backup-signing.key",
        "ca/postgres-server.toml",
        "policies/secrets.toml",
    ] {
        let (a, b) = (env.path(rel), new_root.join(rel));
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "{rel}");
        assert_eq!(mode(&a), mode(&b), "mode of {rel}");
    }
    assert_eq!(mode(&new_root.join("state")), 0o700);
    assert_eq!(mode(&new_root.join("state/ca")), 0o700);
    assert!(!new_root.join("state/lock").exists());
    assert_eq!(status(&env, &new_config), original, "status of the restored copy");
    let v = env.run_env(&["audit", "verify"], &[("KEYWARD_CONFIG", new_config.to_str().unwrap())]);
    v.code(0);
    let log = std::fs::read_to_string(new_root.join("state/audit.jsonl")).unwrap();
    assert!(log.contains("restore-state"), "{log}");
    // No secret value anywhere it should not be.
    assert!(!r.stdout.contains(CANARY) && !r.stderr.contains(CANARY));
    assert!(!log.contains(CANARY));
    assert!(!std::fs::read_to_string(env.path("state/audit.jsonl")).unwrap().contains(CANARY));
    assert!(
        tree_contains(&new_root, CANARY.as_bytes())
            == vec![new_root.join("state/secrets/store.json")]
    );

    // A second restore over it is refused and changes nothing.
    let before = tree(fresh.path());
    let store_before = std::fs::read(new_root.join("state/secrets/store.json")).unwrap();
    let r = env.run_env(
        &["restore", "state", "-i", dr_id.to_str().unwrap(), export.to_str().unwrap()],
        &[("KEYWARD_CONFIG", new_config.to_str().unwrap())],
    );
    r.code(1);
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    assert_eq!(tree(fresh.path()), before);
    assert_eq!(std::fs::read(new_root.join("state/secrets/store.json")).unwrap(), store_before);
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
