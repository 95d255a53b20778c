//! Benchmark: the whole internal PKI — CA, postgres-server, minio-server and 20
//! postgres-client certificates, written, fsynced and deployed — made by keyward's
//! library, against the same certificates made by openssl CLI calls
//! (benches/pki-openssl.sh). Median of 5 runs each, both in one run.
//!
//!   cargo run --release --example bench_pki

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use keyward::Context;
use keyward::output::Format;
use keyward::run::ActionResult;

const CLIENTS: usize = 20;
const RUNS: usize = 5;

fn clients_profile() -> String {
    let mut s =
        String::from("description = \"bench clients\"\nusage = \"client\"\nvalidity_days = 365\n");
    for i in 1..=CLIENTS {
        s.push_str(&format!("[[leaf]]\nname = \"role{i:02}\"\n"));
    }
    s.push_str("[[target]]\ndir = \"postgres/clients/{name}\"\nlayout = \"postgres-client\"\n");
    s
}

fn check(ca: &keyward::ca::Ca<'_>, what: &str) {
    let failed: Vec<_> =
        ca.actions.iter().filter(|a| matches!(a.result, ActionResult::Failed { .. })).collect();
    assert!(failed.is_empty(), "{what}: {failed:?}");
}

/// One fresh PKI with keyward; returns (build time, regenerate time).
/// The embedded profiles without reload hooks (the openssl script has none to run).
fn setup(dir: &Path) {
    keyward::init::init(dir).expect("init");
    std::fs::write(dir.join("ca/postgres-client.toml"), clients_profile()).unwrap();
    for p in ["ca/postgres-server.toml", "ca/minio-server.toml"] {
        let t = std::fs::read_to_string(dir.join(p)).unwrap();
        let t: String =
            t.lines().filter(|l| !l.starts_with("reload")).map(|l| format!("{l}\n")).collect();
        std::fs::write(dir.join(p), t).unwrap();
    }
}

fn keyward_once(dir: &Path) -> (Duration, Duration) {
    setup(dir);
    let cfg = dir.join("keyward.toml");

    let start = Instant::now();
    let ctx = Context::load(Some(&cfg), Format::Json, "run").expect("load");
    let lock = ctx.lock().expect("lock");
    let mut ca = keyward::ca::Ca::open(&ctx, false).expect("open");
    ca.reconcile().expect("build");
    let build = start.elapsed();
    check(&ca, "build");
    assert_eq!(ca.index.leaves.len(), CLIENTS + 2);
    drop(lock);

    let start = Instant::now();
    let ctx = Context::load(Some(&cfg), Format::Json, "ca regenerate").expect("load");
    let _lock = ctx.lock().expect("lock");
    let mut ca = keyward::ca::Ca::open(&ctx, false).expect("open");
    ca.regenerate(true, None, None).expect("regenerate");
    let regen = start.elapsed();
    check(&ca, "regenerate");
    (build, regen)
}

/// `keyward run`'s CA step with nothing due, on a PKI of `leaves` client leaves.
fn nothing_due(leaves: usize) -> Duration {
    let d = tempfile::tempdir().unwrap();
    setup(d.path());
    let mut s = clients_profile();
    for i in CLIENTS + 1..=leaves {
        s = s.replacen("[[target]]", &format!("[[leaf]]\nname = \"role{i:02}\"\n[[target]]"), 1);
    }
    std::fs::write(d.path().join("ca/postgres-client.toml"), s).unwrap();
    let cfg = d.path().join("keyward.toml");
    let once = || {
        let start = Instant::now();
        let ctx = Context::load(Some(&cfg), Format::Json, "run").expect("load");
        let _lock = ctx.lock().expect("lock");
        let mut ca = keyward::ca::Ca::open(&ctx, false).expect("open");
        ca.reconcile().expect("run");
        (start.elapsed(), ca.actions.len())
    };
    once();
    let mut v = Vec::new();
    for _ in 0..RUNS {
        let (t, n) = once();
        assert_eq!(n, 0, "something was due");
        v.push(t);
    }
    median(v)
}

fn openssl_once(dir: &Path, sync: bool) -> Duration {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pki-openssl.sh");
    let start = Instant::now();
    let mut cmd = Command::new("bash");
    if !sync {
        cmd.env("NOSYNC", "1");
    }
    let st = cmd
        .arg(&script)
        .arg(dir)
        .arg(CLIENTS.to_string())
        .status()
        .expect("run benches/pki-openssl.sh (needs openssl)");
    let t = start.elapsed();
    assert!(st.success(), "benches/pki-openssl.sh failed");
    t
}

/// Latency of one fsync on the benchmark's file system right now (context for the
/// figures: keyward's time is mostly waiting for the disk).
fn fsync_latency() -> Duration {
    use std::io::Write;
    let d = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(d.path().join("probe")).unwrap();
    let mut v = Vec::new();
    for _ in 0..RUNS {
        f.write_all(b"x").unwrap();
        let t = Instant::now();
        f.sync_all().unwrap();
        v.push(t.elapsed());
    }
    median(v)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let (mut build, mut regen, mut openssl, mut unsynced) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Every folder is kept until the end: deleting hundreds of files between runs
    // would make the next run's file creations slower (ext4 inode allocation).
    let mut keep = Vec::new();
    for _ in 0..RUNS {
        let d = tempfile::tempdir().unwrap();
        let (b, r) = keyward_once(d.path());
        build.push(b);
        regen.push(r);
        keep.push(d);
        let d = tempfile::tempdir().unwrap();
        openssl.push(openssl_once(d.path(), true));
        keep.push(d);
        let d = tempfile::tempdir().unwrap();
        unsynced.push(openssl_once(d.path(), false));
        keep.push(d);
    }
    let (b, r, o, u) = (median(build), median(regen), median(openssl), median(unsynced));
    let idle = nothing_due(48);
    drop(keep);
    let fsync = fsync_latency();
    println!(
        "internal PKI: CA + postgres-server + minio-server + {CLIENTS} postgres-client certificates, written, fsynced, deployed (median of {RUNS})"
    );
    println!("  openssl CLI (benches/pki-openssl.sh)       {:>9.1} ms", ms(o));
    println!("  openssl CLI, without the fsyncs (NOSYNC=1) {:>9.1} ms", ms(u));
    println!(
        "  keyward, first run (CA + every leaf)       {:>9.1} ms   {:>6.1}x faster",
        ms(b),
        ms(o) / ms(b)
    );
    println!(
        "  keyward, ca regenerate (transition + all)  {:>9.1} ms   {:>6.1}x faster",
        ms(r),
        ms(o) / ms(r)
    );
    println!("  keyward run's CA step, nothing due, 50 leaves {:>6.2} ms", ms(idle));
    println!(
        "  (one fsync on this file system: {:.1} ms; no reload hooks on either side)",
        ms(fsync)
    );
}
