//! Benchmark: `keyward run` when nothing is due, over 200 secrets (and the internal
//! CA's certificates when this build has a CA), beside `certbot renew` with nothing
//! due on one dummy lineage — what operators run on the timer today.
//!
//! Run: `cargo build --release && cargo run --release --example bench_secrets_run`
//! (needs `certbot` and `openssl`: `apt-get install -y certbot openssl`).
//! Prints the median of 5 runs of each. Figures go to docs/performance/secrets.md.

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{RUNS, keyward, time};

const SECRETS: usize = 200;
const CERTIFICATES: usize = 50;

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.stdin(Stdio::null()).output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// 200 policies with an env-file target each, created once by a real `keyward run`.
fn secrets_part(dir: &Path) {
    let policies = dir.join("policies");
    for f in std::fs::read_dir(&policies).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let mut text = String::new();
    for i in 0..SECRETS {
        text.push_str(&format!(
            "[[secret]]\nname = \"BENCH_SECRET_{i:03}\"\ndescription = \"benchmark secret {i}\"\ngenerator = {{ kind = \"base64\", bytes = 32 }}\nrequired_in = [\"production\"]\nenv = [{{ file = \"pazpaz\" }}]\ngithub = [{{ scope = \"environment\", environment = \"production\" }}]\n\n"
        ));
    }
    std::fs::write(policies.join("bench.toml"), text).unwrap();
}

/// The CA's part: the CA (made by the first run, or by `ca init` here) and 50 leaves.
/// A build without the CA answers "not implemented" (exit 2) and the benchmark says so.
fn certificates_part(kw: &Path, config: &Path) -> usize {
    let probe =
        Command::new(kw).args(["-c", config.to_str().unwrap(), "ca", "init"]).output().unwrap();
    let exists = String::from_utf8_lossy(&probe.stderr).contains("a CA already exists");
    if !probe.status.success() && !exists {
        return 0;
    }
    for i in 0..CERTIFICATES {
        run(Command::new(kw).args([
            "-c",
            config.to_str().unwrap(),
            "ca",
            "issue",
            "postgres-client",
            "--name",
            &format!("bench-{i}"),
        ]));
    }
    CERTIFICATES
}

/// One certbot lineage, valid for 89 more days, so `certbot renew` has nothing due.
fn certbot_lineage(dir: &Path) -> Vec<String> {
    let conf = dir.join("etc");
    let archive = conf.join("archive/bench.example");
    let live = conf.join("live/bench.example");
    std::fs::create_dir_all(&archive).unwrap();
    std::fs::create_dir_all(&live).unwrap();
    std::fs::create_dir_all(conf.join("renewal")).unwrap();
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "89",
            "-subj",
            "/CN=bench.example",
            "-keyout",
        ])
        .arg(archive.join("privkey1.pem"))
        .arg("-out")
        .arg(archive.join("cert1.pem")));
    std::fs::copy(archive.join("cert1.pem"), archive.join("chain1.pem")).unwrap();
    std::fs::copy(archive.join("cert1.pem"), archive.join("fullchain1.pem")).unwrap();
    for f in ["cert", "privkey", "chain", "fullchain"] {
        std::os::unix::fs::symlink(
            archive.join(format!("{f}1.pem")),
            live.join(format!("{f}.pem")),
        )
        .unwrap();
    }
    std::fs::write(
        conf.join("renewal/bench.example.conf"),
        format!(
            "version = 2.1.0\narchive_dir = {a}\ncert = {l}/cert.pem\nprivkey = {l}/privkey.pem\nchain = {l}/chain.pem\nfullchain = {l}/fullchain.pem\n\n[renewalparams]\nauthenticator = webroot\nwebroot_path = {w}\nserver = https://acme-v02.api.letsencrypt.org/directory\nkey_type = ecdsa\n",
            a = archive.display(),
            l = live.display(),
            w = dir.join("www").display()
        ),
    )
    .unwrap();
    vec![
        "renew".into(),
        "--config-dir".into(),
        conf.display().to_string(),
        "--work-dir".into(),
        dir.join("work").display().to_string(),
        "--logs-dir".into(),
        dir.join("logs").display().to_string(),
        "--no-random-sleep-on-renew".into(),
        "--non-interactive".into(),
    ]
}

fn main() {
    let kw = keyward();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kw");
    run(Command::new(&kw).args(["init", "--dir"]).arg(&dir));
    secrets_part(&dir);
    let config = dir.join("keyward.toml");
    let t = Instant::now();
    run(Command::new(&kw).arg("-c").arg(&config).arg("run"));
    eprintln!("created {SECRETS} secrets in {:.1?}", t.elapsed());
    let certs = certificates_part(&kw, &config);
    let out = run(Command::new(&kw).arg("-c").arg(&config).arg("run"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing was due"), "something was due");

    let keyward_run = time(|| {
        run(Command::new(&kw).arg("-c").arg(&config).arg("run"));
    });
    // Where the time goes: the same work without the run record (plan), and the run
    // record alone (a configuration without secrets: lock, last-run.json, audit record,
    // each fsynced), and starting the process.
    let keyward_plan = time(|| {
        run(Command::new(&kw).arg("-c").arg(&config).arg("plan"));
    });
    let bare = tmp.path().join("bare");
    run(Command::new(&kw).args(["init", "--dir"]).arg(&bare));
    let bare_config = bare.join("keyward.toml");
    let text = std::fs::read_to_string(&bare_config).unwrap();
    let cut = text.find("[secrets]").unwrap_or(text.len());
    std::fs::write(&bare_config, &text[..cut]).unwrap();
    let record_only = time(|| {
        run(Command::new(&kw).arg("-c").arg(&bare_config).arg("run"));
    });
    let start_only = time(|| {
        run(Command::new(&kw).arg("--version"));
    });

    let certbot = which("certbot");
    let certbot_time = certbot.map(|cb| {
        let args = certbot_lineage(tmp.path());
        let out = run(Command::new(&cb).args(&args));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("not yet due"), "certbot had something to do:\n{text}");
        time(|| {
            run(Command::new(&cb).args(&args));
        })
    });

    println!(
        "keyward run, nothing due ({SECRETS} secrets, {certs} certificates{}): median of {RUNS} = {}",
        if certs == 0 { "; this build has no CA yet" } else { "" },
        keyward_run.ms()
    );
    println!(
        "  process start alone (keyward --version):                     median of {RUNS} = {}",
        start_only.ms()
    );
    println!(
        "  the same plan, no writes (keyward plan):                      median of {RUNS} = {}",
        keyward_plan.ms()
    );
    println!(
        "  the run record alone (no [secrets]: lock, last-run, audit):   median of {RUNS} = {}",
        record_only.ms()
    );
    match certbot_time {
        Some(t) => println!(
            "certbot renew, nothing due (1 lineage):                        median of {RUNS} = {}",
            t.ms()
        ),
        None => println!("certbot renew: not installed (apt-get install -y certbot)"),
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(tool)).find(|p| p.is_file())
}
