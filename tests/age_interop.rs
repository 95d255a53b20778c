//! Interoperability with the stock age CLI (Debian package `age`), both directions:
//! X25519 recipients, passphrases (age reads those from a terminal only, so it runs
//! under a pty made by util-linux `script`) and ASCII armor, at the sizes around the
//! 64 KiB chunk boundary and a multi-batch file.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{keyward_bin, require_tool};

const SIZES: &[usize] = &[0, 1, 65535, 65536, 65537, 10 * 1024 * 1024 + 3];
const PASS: &str = "correct horse battery staple 7f3a";

fn age() -> PathBuf {
    require_tool("age", "apt-get install age")
}

fn data(n: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_u32 ^ n as u32;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.stdin(Stdio::null()).output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn keyward(args: &[&str]) -> Command {
    let mut c = Command::new(keyward_bin());
    c.args(args)
        .env_remove("KEYWARD_PASSPHRASE")
        .env("KEYWARD_CONFIG", "/nonexistent/keyward.toml");
    c
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `cmd` under a pty and types `lines` into it (age's passphrase prompt).
fn with_pty(cmd: &str, lines: &[&str]) {
    require_tool("script", "apt-get install bsdutils");
    let mut child = Command::new("script")
        .args(["-qec", cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn script");
    let mut stdin = child.stdin.take().unwrap();
    for l in lines {
        std::thread::sleep(Duration::from_millis(400));
        stdin.write_all(format!("{l}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert!(
        out.status.success(),
        "{cmd} under a pty failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
}

fn setup() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let id = dir.path().join("id.txt");
    let out = run(keyward(&["backup", "keygen", "-o", s(&id)]).current_dir(dir.path()));
    let recipient = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(recipient.starts_with("age1"), "{recipient}");
    (dir, id, recipient)
}

#[test]
fn x25519_both_directions_at_every_size() {
    let age = age();
    let (dir, id, recipient) = setup();
    // An identity made by age-keygen too.
    let age_id = dir.path().join("age-id.txt");
    run(Command::new(require_tool("age-keygen", "apt-get install age")).args(["-o", s(&age_id)]));
    let age_recipient = run(Command::new("age-keygen").args(["-y", s(&age_id)])).stdout;
    let age_recipient = String::from_utf8(age_recipient).unwrap().trim().to_string();
    for &n in SIZES {
        let plain = dir.path().join(format!("p{n}"));
        std::fs::write(&plain, data(n)).unwrap();
        for armor in [false, true] {
            let a = if armor { "-a" } else { "" };
            // keyward → age
            let ct = dir.path().join(format!("k{n}{a}.age"));
            let mut args =
                vec!["backup", "encrypt", "-r", &recipient, "-r", &age_recipient, "-o", s(&ct)];
            if armor {
                args.push("-a");
            }
            args.push(s(&plain));
            run(&mut keyward(&args));
            for identity in [&id, &age_id] {
                let out = run(Command::new(&age).args(["-d", "-i", s(identity), s(&ct)])).stdout;
                assert!(out == data(n), "age decrypting keyward's {n}-byte file (armor {armor})");
            }
            // age → keyward
            let ct2 = dir.path().join(format!("a{n}{a}.age"));
            let mut args = vec!["-e", "-r", recipient.as_str(), "-o", s(&ct2)];
            if armor {
                args.push("-a");
            }
            args.push(s(&plain));
            run(Command::new(&age).args(&args));
            let out = dir.path().join(format!("d{n}{a}"));
            run(&mut keyward(&["backup", "decrypt", "-i", s(&id), "-o", s(&out), s(&ct2)]));
            assert!(
                std::fs::read(&out).unwrap() == data(n),
                "keyward decrypting age's {n}-byte file"
            );
            // And to stdout.
            let o = run(&mut keyward(&["backup", "decrypt", "-i", s(&id), s(&ct2)])).stdout;
            assert!(o == data(n));
        }
    }
}

#[test]
fn passphrase_both_directions_at_every_size() {
    let age = age();
    let dir = tempfile::tempdir().unwrap();
    let pass_file = dir.path().join("pass");
    std::fs::write(&pass_file, format!("{PASS}\n")).unwrap();
    for &n in SIZES {
        let plain = dir.path().join(format!("p{n}"));
        std::fs::write(&plain, data(n)).unwrap();
        let armor = n == 65536;
        // keyward → age (age asks on the terminal).
        let ct = dir.path().join(format!("k{n}.age"));
        let mut args = vec![
            "backup",
            "encrypt",
            "--passphrase-file",
            s(&pass_file),
            "--work-factor",
            "14",
            "-o",
            s(&ct),
        ];
        if armor {
            args.push("-a");
        }
        args.push(s(&plain));
        run(&mut keyward(&args));
        let out = dir.path().join(format!("ad{n}"));
        with_pty(&format!("{} -d -o '{}' '{}'", age.display(), s(&out), s(&ct)), &[PASS]);
        // age opens its -o file lazily: for an empty plaintext it creates none.
        let got = match std::fs::read(&out) {
            Err(e) if n == 0 && e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            r => r.unwrap(),
        };
        assert!(got == data(n), "age decrypting keyward's passphrase file ({n})");
        // age → keyward (from a file, and from $KEYWARD_PASSPHRASE).
        let ct2 = dir.path().join(format!("a{n}.age"));
        let a = if armor { "-a " } else { "" };
        with_pty(
            &format!("{} -p {a}-o '{}' '{}'", age.display(), s(&ct2), s(&plain)),
            &[PASS, PASS],
        );
        let o =
            run(&mut keyward(&["backup", "decrypt", "--passphrase-file", s(&pass_file), s(&ct2)]))
                .stdout;
        assert!(o == data(n), "keyward decrypting age's passphrase file ({n})");
        if n == 1 {
            let o = run(keyward(&["backup", "decrypt", s(&ct2)]).env("KEYWARD_PASSPHRASE", PASS))
                .stdout;
            assert!(o == data(n));
        }
    }
}

#[test]
fn stock_age_refuses_the_aes_variant_cleanly() {
    let age = age();
    let (dir, id, recipient) = setup();
    let plain = dir.path().join("p");
    std::fs::write(&plain, data(70000)).unwrap();
    let ct = dir.path().join("c.kw");
    run(&mut keyward(&[
        "backup",
        "encrypt",
        "--cipher",
        "aes-256-gcm",
        "-r",
        &recipient,
        "-o",
        s(&ct),
        s(&plain),
    ]));
    let head = std::fs::read(&ct).unwrap();
    assert!(head.starts_with(b"keyward.pazpaz/backup/v1-aes-256-gcm\n-> X25519 "));
    let out = Command::new(&age).args(["-d", "-i", s(&id), s(&ct)]).output().unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "age released data from the AES variant");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("intro") || err.contains("header"), "{err}");
    // keyward detects the format by itself.
    let o = run(&mut keyward(&["backup", "decrypt", "-i", s(&id), s(&ct)])).stdout;
    assert!(o == data(70000));
}
