//! Issuing one certificate against the same local Pebble: keyward beside certbot and
//! lego (Debian packages), median wall and CPU time of 5 runs each, all in one run.
//!
//! Every run starts from empty state (account registration + order + http-01 through
//! the tool's own standalone listener), so the three do the same work.
//!
//!   scripts/fetch-deb pebble trixie && apt-get install certbot lego
//!   cargo build --release && cargo run --release --example bench_acme

#[allow(dead_code)]
mod common {
    pub fn free_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        l.local_addr().unwrap().port()
    }
    pub fn require_tool(tool: &str, install: &str) -> std::path::PathBuf {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("the benchmark needs `{tool}`: {install}"))
    }
}
#[path = "../tests/support/pebble.rs"]
mod pebble;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 5;

fn children_cpu() -> Duration {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(u.user_time()) + tv(u.system_time())
}

/// Runs `cmd`, returns (wall, cpu of it and its children).
fn measure(name: &str, mut cmd: Command) -> (Duration, Duration) {
    let cpu0 = children_cpu();
    let t0 = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    let wall = t0.elapsed();
    let cpu = children_cpu() - cpu0;
    if !out.status.success() {
        panic!(
            "{name} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (wall, cpu)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn keyward_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/release/examples/bench_acme -> target/release/keyward
    let bin = exe.parent().and_then(Path::parent).unwrap().join("keyward");
    if !bin.is_file() {
        panic!("{} is missing: run 'cargo build --release' first", bin.display());
    }
    bin
}

fn main() {
    let certbot = common::require_tool("certbot", "apt-get install certbot");
    let lego = common::require_tool("lego", "apt-get install lego");
    let keyward = keyward_bin();
    let tmp = tempfile::tempdir().unwrap();
    let http_port = common::free_port();
    let peers = tmp.path().join("peers");
    std::fs::create_dir_all(&peers).unwrap();
    let pebble = pebble::Pebble::start(
        &peers,
        pebble::PebbleOpts { http_port, nonce_reject: 0, ..Default::default() },
    );
    let dir = pebble.directory();
    let ca = pebble.tls.ca_file.clone();
    println!(
        "Pebble 2.6 at {dir} (PEBBLE_VA_NOSLEEP=1), http-01 standalone on 127.0.0.1:{http_port}, {RUNS} runs each\n"
    );

    let mut results: Vec<(&str, Vec<Duration>, Vec<Duration>)> = Vec::new();
    for tool in ["keyward", "certbot", "lego"] {
        let (mut walls, mut cpus) = (Vec::new(), Vec::new());
        for i in 0..RUNS {
            let work = tmp.path().join(format!("{tool}-{i}"));
            std::fs::create_dir_all(&work).unwrap();
            let domain = format!("{tool}-{i}.bench.pazpaz.test");
            let cmd = match tool {
                "keyward" => {
                    let init = Command::new(&keyward)
                        .args(["init", "--dir", work.to_str().unwrap()])
                        .output()
                        .unwrap();
                    assert!(init.status.success());
                    let cfg = work.join("keyward.toml");
                    let mut text = std::fs::read_to_string(&cfg).unwrap();
                    text.push_str(&format!(
                        "\n[acme]\ndirectory = \"{dir}\"\nca_file = \"{}\"\noutput_dir = \"letsencrypt\"\n\n[[acme.certificate]]\nname = \"bench\"\ndomains = [\"{domain}\"]\nchallenge = {{ type = \"standalone\", listen = \"127.0.0.1:{http_port}\" }}\n",
                        ca.display()
                    ));
                    std::fs::write(&cfg, text).unwrap();
                    let mut c = Command::new(&keyward);
                    c.args(["-q", "-c", cfg.to_str().unwrap(), "acme", "renew"]);
                    c
                }
                "certbot" => {
                    let mut c = Command::new(&certbot);
                    c.args(["certonly", "--standalone", "--non-interactive", "--agree-tos"])
                        .args(["--register-unsafely-without-email", "--server", &dir])
                        .args([
                            "--http-01-port",
                            &http_port.to_string(),
                            "--http-01-address",
                            "127.0.0.1",
                        ])
                        .args(["--config-dir", work.join("etc").to_str().unwrap()])
                        .args(["--work-dir", work.join("work").to_str().unwrap()])
                        .args(["--logs-dir", work.join("logs").to_str().unwrap()])
                        .args(["--key-type", "ecdsa", "-d", &domain])
                        .env("REQUESTS_CA_BUNDLE", &ca);
                    c
                }
                _ => {
                    let mut c = Command::new(&lego);
                    c.args(["--server", &dir, "--accept-tos", "--email", "bench@pazpaz.test"])
                        .args(["--path", work.to_str().unwrap(), "--http"])
                        .args(["--http.port", &format!("127.0.0.1:{http_port}")])
                        .args(["--key-type", "ec256", "--domains", &domain, "run"])
                        .env("LEGO_CA_CERTIFICATES", &ca);
                    c
                }
            };
            let (w, c) = measure(tool, cmd);
            walls.push(w);
            cpus.push(c);
        }
        results.push((tool, walls, cpus));
    }

    println!("{:<8}  {:>14}  {:>14}", "tool", "median wall", "median CPU");
    let mut med = Vec::new();
    for (tool, walls, cpus) in &results {
        let (w, c) = (median(walls.clone()), median(cpus.clone()));
        println!(
            "{tool:<8}  {:>11.1} ms  {:>11.1} ms",
            w.as_secs_f64() * 1e3,
            c.as_secs_f64() * 1e3
        );
        med.push((*tool, w, c));
    }
    let (kw, kc) = (med[0].1, med[0].2);
    let fastest = med[1].1.min(med[2].1);
    let certbot_cpu = med[1].2;
    println!(
        "\nwall: keyward {:.1} ms vs fastest other {:.1} ms -> {}",
        kw.as_secs_f64() * 1e3,
        fastest.as_secs_f64() * 1e3,
        if kw <= fastest { "target met" } else { "target MISSED" }
    );
    println!(
        "CPU: keyward {:.1} ms vs certbot/5 {:.1} ms -> {}",
        kc.as_secs_f64() * 1e3,
        certbot_cpu.as_secs_f64() * 1e3 / 5.0,
        if kc * 5 <= certbot_cpu { "target met" } else { "target MISSED" }
    );
}
