//! `keyward backup …` on the command line: integrity of the output file and of stdout,
//! provenance signatures against forgers, passphrase handling, exit codes and the audit
//! log. The age CLI checks that signed backups stay standard age files.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Env, Run, keyward_bin, require_tool, tree};
use keyward::backup::header::{Header, Stanza, Version};
use keyward::backup::stream::{CHUNK, CT_CHUNK, Cipher};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn kw(dir: &Path, args: &[&str]) -> Run {
    kw_env(dir, args, &[])
}

fn kw_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = Command::new(keyward_bin());
    c.args(args)
        .current_dir(dir)
        .env("KEYWARD_CONFIG", dir.join("no-config.toml"))
        .env_remove("KEYWARD_PASSPHRASE")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn kw_bytes(dir: &Path, args: &[&str]) -> (i32, Vec<u8>, String) {
    let out = Command::new(keyward_bin())
        .args(args)
        .current_dir(dir)
        .env("KEYWARD_CONFIG", dir.join("no-config.toml"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

struct Fixture {
    dir: tempfile::TempDir,
    id: PathBuf,
    recipient: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let id = dir.path().join("id.txt");
    let r = kw(dir.path(), &["backup", "keygen", "-o", s(&id)]);
    r.code(0);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&id).unwrap().mode() & 0o777, 0o600);
    Fixture { recipient: r.stdout.trim().to_string(), id, dir }
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

fn header_len(ct: &[u8]) -> usize {
    Header::parse(ct).unwrap().len + 16
}

#[test]
fn keygen_never_overwrites_and_prints_only_the_recipient() {
    let f = fixture();
    let secret = std::fs::read_to_string(&f.id).unwrap();
    let key_line = secret.lines().find(|l| l.starts_with("AGE-SECRET-KEY-1")).unwrap();
    assert!(secret.contains(&format!("# public key: {}", f.recipient)));
    let r = kw(f.dir.path(), &["backup", "keygen", "-o", s(&f.id)]);
    r.code(2);
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&f.id).unwrap(), secret);
    assert!(!r.stdout.contains(key_line) && !r.stderr.contains(key_line));
    // Without -o (stdout is a pipe here) the identity goes to stdout, the recipient to stderr.
    let r = kw(f.dir.path(), &["backup", "keygen"]);
    r.code(0);
    assert!(r.stdout.contains("AGE-SECRET-KEY-1"));
    assert!(r.stderr.starts_with("public key: age1"), "{}", r.stderr);
    // JSON: never with the identity in it.
    let r = kw(f.dir.path(), &["--format", "json", "backup", "keygen"]);
    r.code(2);
    assert!(!r.stdout.contains("AGE-SECRET-KEY"));
    let p = f.dir.path().join("id2.txt");
    let doc = kw(f.dir.path(), &["--format", "json", "backup", "keygen", "-o", s(&p)]).json();
    assert!(doc["recipient"].as_str().unwrap().starts_with("age1"));
}

#[test]
fn a_failed_decrypt_to_a_file_leaves_nothing_behind() {
    let f = fixture();
    let d = f.dir.path();
    let plain = d.join("plain");
    std::fs::write(&plain, data(3 * CHUNK + 100)).unwrap();
    let ct_path = d.join("c.age");
    kw(d, &["backup", "encrypt", "-r", &f.recipient, "-o", s(&ct_path), s(&plain)]).code(0);
    let ct = std::fs::read(&ct_path).unwrap();
    let h = header_len(&ct);
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated mid-chunk", ct[..h + CT_CHUNK + 500].to_vec()),
        ("truncated at a chunk boundary", ct[..h + 2 * CT_CHUNK].to_vec()),
        ("missing final chunk", ct[..h + 3 * CT_CHUNK].to_vec()),
        ("header only", ct[..h].to_vec()),
    ];
    let mut flip = ct.clone();
    flip[h + CT_CHUNK + 7] ^= 0x80;
    cases.push(("bit flip in the payload", flip));
    let mut hflip = ct.clone();
    hflip[30] ^= 0x01;
    cases.push(("bit flip in the header", hflip));
    let mut swap = ct.clone();
    let (a, b) = swap[h..].split_at_mut(CT_CHUNK);
    a.swap_with_slice(&mut b[..CT_CHUNK]);
    cases.push(("chunks swapped", swap));
    let mut app = ct.clone();
    app.extend_from_slice(b"appended");
    cases.push(("data appended", app));
    for (what, bytes) in cases {
        let bad = d.join("bad.age");
        std::fs::write(&bad, &bytes).unwrap();
        let out = d.join("restored.sql");
        let before = tree(d);
        let r = kw(d, &["backup", "decrypt", "-i", s(&f.id), "-o", s(&out), s(&bad)]);
        r.code(1);
        assert!(!out.exists(), "{what}: output file left behind");
        assert_eq!(tree(d), before, "{what}: temp files left behind");
        assert!(r.stderr.starts_with("error: "), "{what}: {}", r.stderr);
        let r = kw(d, &["backup", "verify", "-i", s(&f.id), s(&bad)]);
        r.code(1);
    }
    // The intact file decrypts.
    let out = d.join("restored.sql");
    kw(d, &["backup", "decrypt", "-i", s(&f.id), "-o", s(&out), s(&ct_path)]).code(0);
    assert!(std::fs::read(&out).unwrap() == data(3 * CHUNK + 100));
}

#[test]
fn a_late_failure_on_stdout_says_to_discard_the_output() {
    let f = fixture();
    let d = f.dir.path();
    let n = 40 * CHUNK + 9;
    let plain = d.join("plain");
    std::fs::write(&plain, data(n)).unwrap();
    let ct_path = d.join("c.age");
    kw(d, &["backup", "encrypt", "-r", &f.recipient, "-o", s(&ct_path), s(&plain)]).code(0);
    let mut ct = std::fs::read(&ct_path).unwrap();
    let last = ct.len() - 3;
    ct[last] ^= 1;
    std::fs::write(&ct_path, &ct).unwrap();
    let (code, out, err) = kw_bytes(d, &["backup", "decrypt", "-i", s(&f.id), s(&ct_path)]);
    assert_eq!(code, 1, "{err}");
    assert!(!out.is_empty() && out.len() < n, "the authenticated prefix is streamed");
    assert!(out[..] == data(n)[..out.len()]);
    assert!(err.contains("MUST BE DISCARDED"), "{err}");
    assert!(err.contains(&format!("{} bytes", out.len())), "{err}");
}

#[test]
fn recipients_files_stdin_and_quiet_stderr() {
    let f = fixture();
    let d = f.dir.path();
    let rf = d.join("recipients.txt");
    std::fs::write(&rf, format!("# DR key\n{}\n\n", f.recipient)).unwrap();
    let plain = data(100_000);
    let mut child = Command::new(keyward_bin())
        .args(["backup", "encrypt", "-R", s(&rf)])
        .env("KEYWARD_CONFIG", d.join("none.toml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&plain).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "no progress or chatter off a terminal: {:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ct = d.join("c.age");
    std::fs::write(&ct, &out.stdout).unwrap();
    let (code, got, _) = kw_bytes(d, &["backup", "decrypt", "-i", s(&f.id), "-"]);
    // stdin is /dev/null here: no chunks.
    assert_eq!(code, 1);
    assert!(got.is_empty());
    let (code, got, err) = kw_bytes(d, &["backup", "decrypt", "-i", s(&f.id), s(&ct)]);
    assert_eq!(code, 0, "{err}");
    assert!(got == plain);
    // Bad recipients are usage errors naming the line.
    std::fs::write(&rf, "age1notakey\n").unwrap();
    let r = kw(d, &["backup", "encrypt", "-R", s(&rf), "-o", "x.age", s(&ct)]);
    r.code(2);
    assert!(r.stderr.contains("recipients.txt:1"), "{}", r.stderr);
    assert!(!d.join("x.age").exists());
}

#[test]
fn identities_wrong_and_post_quantum() {
    let f = fixture();
    let other = fixture();
    let d = f.dir.path();
    std::fs::write(d.join("p"), b"hello").unwrap();
    kw(d, &["backup", "encrypt", "-r", &f.recipient, "-o", "c.age", "p"]).code(0);
    let r = kw(d, &["backup", "decrypt", "-i", s(&other.id), "c.age"]);
    r.code(1);
    assert!(r.stderr.contains("none of the identities"), "{}", r.stderr);
    let r = kw(d, &["backup", "decrypt", "c.age"]);
    r.code(1);
    assert!(r.stderr.contains("-i"), "{}", r.stderr);
    std::fs::write(
        d.join("pq.txt"),
        "AGE-SECRET-KEY-PQ-1HZLGZUPT4ETPKDEV8HSGFDCYZ4E522W0A7PU2LHT8EH9W6YLNC3SW78XKG\n",
    )
    .unwrap();
    let r = kw(d, &["backup", "decrypt", "-i", "pq.txt", "c.age"]);
    r.code(2);
    assert!(r.stderr.contains("post-quantum"), "{}", r.stderr);
    assert!(!r.stderr.contains("HZLGZUPT"), "the key must not be echoed");
}

#[test]
fn passphrases_never_leak_and_the_work_factor_is_capped() {
    let f = fixture();
    let d = f.dir.path();
    let canary = "pass-canary-5c1e-zebra";
    std::fs::write(d.join("pass"), format!("{canary}\n")).unwrap();
    std::fs::write(d.join("p"), data(70_000)).unwrap();
    let r = kw(
        d,
        &[
            "backup",
            "encrypt",
            "--passphrase-file",
            "pass",
            "--work-factor",
            "14",
            "-o",
            "c.age",
            "p",
        ],
    );
    r.code(0);
    // A passphrase cannot be combined with recipients (age's scrypt-alone rule).
    let r2 = kw(
        d,
        &["backup", "encrypt", "--passphrase-file", "pass", "-r", &f.recipient, "-o", "x.age", "p"],
    );
    r2.code(2);
    assert!(r2.stderr.contains("alone"), "{}", r2.stderr);
    // A work factor that stock age would refuse is refused at encryption.
    let r6 = kw(
        d,
        &[
            "backup",
            "encrypt",
            "--passphrase-file",
            "pass",
            "--work-factor",
            "23",
            "-o",
            "y.age",
            "p",
        ],
    );
    r6.code(2);
    assert!(r6.stderr.contains("10–22"), "{}", r6.stderr);
    assert!(!d.join("y.age").exists());
    // Capped below the file's factor: refused with the way out.
    let r3 = kw(
        d,
        &["backup", "decrypt", "--passphrase-file", "pass", "--max-work-factor", "13", "c.age"],
    );
    r3.code(1);
    assert!(r3.stderr.contains("--max-work-factor 14"), "{}", r3.stderr);
    let (code, out, _) = kw_bytes(d, &["backup", "decrypt", "--passphrase-file", "pass", "c.age"]);
    assert_eq!(code, 0);
    assert!(out == data(70_000));
    // Wrong passphrase, from the environment.
    let r4 = kw_env(d, &["backup", "decrypt", "c.age"], &[("KEYWARD_PASSPHRASE", "wrong")]);
    r4.code(1);
    assert!(r4.stderr.contains("passphrase is wrong"), "{}", r4.stderr);
    // No terminal, no file, no variable: a clear error.
    let r5 = kw(d, &["backup", "decrypt", "c.age"]);
    r5.code(2);
    assert!(r5.stderr.contains("--passphrase-file"), "{}", r5.stderr);
    for r in [&r, &r2, &r3, &r4, &r5] {
        assert!(!r.stdout.contains(canary) && !r.stderr.contains(canary));
    }
}

/// A forger who knows only the public recipient builds a backup with a copied signature.
fn forge(recipient: &str, sig: Stanza, plaintext: &[u8]) -> Vec<u8> {
    use age::Recipient as _;
    let r: age::x25519::Recipient = recipient.parse().unwrap();
    let fk = [42u8; 16];
    let (stanzas, _) = r.wrap_file_key(&age_core::format::FileKey::new(Box::new(fk))).unwrap();
    let mut st: Vec<Stanza> =
        stanzas.into_iter().map(|s| Stanza { tag: s.tag, args: s.args, body: s.body }).collect();
    st.push(sig);
    let h = Header::build(Version::AgeV1, st, &fk);
    let nonce = [7u8; 16];
    let key = age_core::primitives::hkdf(&nonce, b"payload", &fk);
    let mut out = h.to_bytes();
    out.extend_from_slice(&nonce);
    keyward::backup::stream::encrypt(
        Cipher::ChaCha20Poly1305,
        &key,
        &mut &plaintext[..],
        &mut out,
        None,
    )
    .unwrap();
    out
}

#[test]
fn provenance_signatures_tell_real_backups_from_forgeries() {
    let env = Env::init();
    let f = fixture();
    let d = env.root();
    let signer = env.run(&["backup", "signer"]);
    signer.code(0);
    let key = signer.stdout.trim().to_string();
    assert!(key.starts_with("keyward-ed25519:"), "{key}");
    std::fs::write(d.join("dump.sql"), data(200_000)).unwrap();
    env.run(&["backup", "encrypt", "--sign", "-r", &f.recipient, "-o", "real.age", "dump.sql"])
        .code(0);
    let id = s(&f.id);
    let ok = env.run(&["backup", "verify", "-i", id, "--signer", &key, "real.age"]);
    ok.code(0);
    assert!(ok.stdout.contains("signed by the trusted key"), "{}", ok.stdout);
    // Still a standard age file.
    let age = require_tool("age", "apt-get install age");
    let out = Command::new(age).args(["-d", "-i", id, s(&d.join("real.age"))]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout == data(200_000));
    // Unsigned, by someone with the recipient.
    env.run(&["backup", "encrypt", "-r", &f.recipient, "-o", "unsigned.age", "dump.sql"]).code(0);
    let r = env.run(&["backup", "verify", "-i", id, "--signer", &key, "unsigned.age"]);
    r.code(1);
    assert!(r.stderr.contains("not signed"), "{}", r.stderr);
    // A copied signature stanza on a forged header.
    let real = std::fs::read(d.join("real.age")).unwrap();
    let h = Header::parse(&real).unwrap();
    let sig = h.stanzas.last().unwrap().clone();
    assert_eq!(sig.tag, "keyward-ed25519");
    std::fs::write(d.join("forged.age"), forge(&f.recipient, sig, b"DROP TABLE patients;"))
        .unwrap();
    for cmd in ["verify", "decrypt"] {
        let r = env.run(&["backup", cmd, "-i", id, "--signer", &key, "forged.age"]);
        r.code(1);
        assert!(r.stderr.contains("does not verify"), "{}", r.stderr);
        assert!(!r.stdout.contains("DROP TABLE"));
    }
    // Signed by another server.
    let other = Env::init();
    let other_key = other.run(&["backup", "signer"]).stdout.trim().to_string();
    let r = env
        .run(&["backup", "decrypt", "-i", id, "--signer", &other_key, "-o", "x.sql", "real.age"]);
    r.code(1);
    assert!(r.stderr.contains("not by the trusted key"), "{}", r.stderr);
    assert!(!d.join("x.sql").exists());
    // The audit log records the key creation and the signed encryption, never a key.
    let log = std::fs::read_to_string(env.path("state/audit.jsonl")).unwrap();
    assert!(log.contains("create-signing-key") && log.contains("\"encrypt\""), "{log}");
    let pk8 = std::fs::read(env.path("state/backup-signing.key")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(env.path("state/backup-signing.key")).unwrap().mode() & 0o777,
        0o600
    );
    assert!(!log.contains(&hex::encode(&pk8[16..48])));
    env.run(&["audit", "verify"]).code(0);
}

#[test]
fn json_documents_and_binary_to_terminal_rules() {
    let f = fixture();
    let d = f.dir.path();
    std::fs::write(d.join("p"), data(1000)).unwrap();
    let doc = kw(
        d,
        &["--format", "json", "backup", "encrypt", "-a", "-r", &f.recipient, "-o", "c.age", "p"],
    )
    .json();
    assert_eq!(doc["format"], "age-v1");
    assert_eq!(doc["plaintext_bytes"], 1000);
    assert!(
        std::fs::read_to_string(d.join("c.age"))
            .unwrap()
            .starts_with("-----BEGIN AGE ENCRYPTED FILE-----\n")
    );
    let doc = kw(d, &["--format", "json", "backup", "verify", "-i", s(&f.id), "c.age"]).json();
    assert_eq!(doc["ok"], true);
    kw(d, &["--format", "prometheus", "backup", "verify", "-i", s(&f.id), "c.age"]).code(2);
}

#[test]
fn a_progress_bar_on_a_terminal_only() {
    // Under a pty (util-linux `script`) stderr is a terminal: the bar is drawn there.
    require_tool("script", "apt-get install bsdutils");
    let f = fixture();
    let d = f.dir.path();
    std::fs::write(d.join("big"), data(48 << 20)).unwrap();
    let cmd = format!(
        "{} backup encrypt -r {} -o {} {}",
        keyward_bin().display(),
        f.recipient,
        s(&d.join("big.age")),
        s(&d.join("big"))
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("KEYWARD_CONFIG", d.join("none.toml"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("MiB"), "no progress bar on the terminal: {shown:?}");
    // The same command with -q, and off a terminal, prints nothing.
    let out = Command::new("script")
        .args(["-qec", &format!("{cmd} -q"), "/dev/null"])
        .env("KEYWARD_CONFIG", d.join("none.toml"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(out.stdout.is_empty(), "{:?}", String::from_utf8_lossy(&out.stdout));
    let r = kw(d, &["backup", "encrypt", "-r", &f.recipient, "-o", "big2.age", "big"]);
    r.code(0);
    assert!(r.stderr.is_empty() && r.stdout.is_empty());
}

/// Runs keyward with `input` on stdin; returns exit code, stdout and stderr.
fn kw_piped(dir: &Path, args: &[&str], input: &Path) -> (i32, Vec<u8>, String) {
    let out = Command::new(keyward_bin())
        .args(args)
        .current_dir(dir)
        .env("KEYWARD_CONFIG", dir.join("no-config.toml"))
        .stdin(std::fs::File::open(input).unwrap())
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// File to file, every core works at its own offsets; through pipes, chunks stream in
/// order. Both must make files the other (and age) reads, and refuse damage with the
/// same words.
#[test]
fn files_and_pipes_take_different_paths_to_the_same_results() {
    let f = fixture();
    let d = f.dir.path();
    // Several of the file path's batches, and a short final chunk.
    let n = 9 * CHUNK + 123;
    let plain = d.join("plain");
    std::fs::write(&plain, data(n)).unwrap();
    for cipher in ["age", "aes-256-gcm"] {
        let by_file = d.join("f.age");
        kw(
            d,
            &[
                "backup",
                "encrypt",
                "--cipher",
                cipher,
                "-r",
                &f.recipient,
                "-o",
                s(&by_file),
                s(&plain),
            ],
        )
        .code(0);
        let (code, piped, err) =
            kw_piped(d, &["backup", "encrypt", "--cipher", cipher, "-r", &f.recipient], &plain);
        assert_eq!(code, 0, "{err}");
        let by_pipe = d.join("p.age");
        std::fs::write(&by_pipe, &piped).unwrap();
        assert_eq!(std::fs::metadata(&by_file).unwrap().len(), piped.len() as u64);
        for ct in [&by_file, &by_pipe] {
            let out = d.join("out");
            kw(d, &["backup", "decrypt", "-i", s(&f.id), "-o", s(&out), s(ct)]).code(0);
            assert!(std::fs::read(&out).unwrap() == data(n), "{cipher}: decrypted to a file");
            let (code, got, err) = kw_piped(d, &["backup", "decrypt", "-i", s(&f.id)], ct);
            assert_eq!(code, 0, "{err}");
            assert!(got == data(n), "{cipher}: decrypted through a pipe");
            kw(d, &["backup", "verify", "-i", s(&f.id), s(ct)]).code(0);
        }
        let ct = std::fs::read(&by_file).unwrap();
        let h = header_len(&ct);
        let mut damaged: Vec<(&str, Vec<u8>)> = vec![
            ("cut at a chunk boundary", ct[..h + 6 * CT_CHUNK].to_vec()),
            ("cut inside a chunk", ct[..h + 7 * CT_CHUNK + 9].to_vec()),
        ];
        let mut flip = ct.clone();
        flip[h + 5 * CT_CHUNK + 1] ^= 4;
        damaged.push(("bit flip in chunk 5", flip));
        let mut swap = ct.clone();
        let (a, b) = swap[h + 2 * CT_CHUNK..].split_at_mut(CT_CHUNK);
        a.swap_with_slice(&mut b[..CT_CHUNK]);
        damaged.push(("chunks 2 and 3 swapped", swap));
        let mut more = ct.clone();
        more.extend_from_slice(&[0u8; 40]);
        damaged.push(("data appended", more));
        for (what, bytes) in damaged {
            let bad = d.join("bad.age");
            std::fs::write(&bad, &bytes).unwrap();
            let out = d.join("restored");
            let by_file = kw(d, &["backup", "decrypt", "-i", s(&f.id), "-o", s(&out), s(&bad)]);
            by_file.code(1);
            assert!(!out.exists(), "{cipher}, {what}: output left behind");
            let (code, _, by_pipe) = kw_piped(d, &["backup", "decrypt", "-i", s(&f.id)], &bad);
            assert_eq!(code, 1, "{cipher}, {what}");
            // The same finding; only the note on what was written differs.
            let finding = |e: &str| e.split("; ").next().unwrap().to_string();
            assert_eq!(finding(&by_file.stderr), finding(&by_pipe), "{cipher}, {what}");
            assert!(by_file.stderr.contains("no output file was written"), "{}", by_file.stderr);
        }
    }
}
