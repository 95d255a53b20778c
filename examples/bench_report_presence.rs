//! Benchmark: `keyward report presence --source env` over 1,000 secrets, beside the
//! shell loop CI used before (`[ -n "${!NAME}" ] || echo "::error::…"` per name).
//!
//! Run: `cargo build --release && cargo run --release --example bench_report_presence`.
//! Prints the median of 31 runs of each, taken in turn (a millisecond-scale process is
//! at the mercy of the machine's noise; many interleaved runs make the median hold
//! still), and beside them the start of the process alone (`keyward --version`).
//! Figures go to docs/performance/secrets.md.

#[path = "common/mod.rs"]
mod common;

use std::process::{Command, Stdio};

use common::{keyward, time_interleaved};

const SECRETS: usize = 1000;
const RUNS: usize = 31;

/// Runs `cmd` once, checking its exit code.
fn run(cmd: &mut Command, expect: i32) {
    let out =
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(expect),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn main() {
    let kw = keyward();
    let tmp = tempfile::tempdir().unwrap();
    let policies = tmp.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let mut text = String::new();
    let mut names = Vec::new();
    for i in 0..SECRETS {
        let name = format!("BENCH_SECRET_{i:04}");
        text.push_str(&format!(
            "[[secret]]\nname = \"{name}\"\ndescription = \"benchmark secret {i}\"\ngenerator = {{ kind = \"base64\", bytes = 32 }}\nrequired_in = [\"production\"]\ngithub = [{{ scope = \"environment\", environment = \"production\" }}]\n\n"
        ));
        names.push(name);
    }
    std::fs::write(policies.join("bench.toml"), text).unwrap();
    // Every secret present but one, as in a CI job that forgot one.
    let vars: Vec<(String, String)> =
        names.iter().skip(1).map(|n| (n.clone(), "x".repeat(44))).collect();

    let mut k = Command::new(&kw);
    k.args([
        "report",
        "presence",
        "--source",
        "env",
        "--environment",
        "production",
        "--format",
        "github",
        "--policies",
    ])
    .arg(&policies)
    .envs(vars.iter().map(|(a, b)| (a, b)))
    .env_remove("GITHUB_STEP_SUMMARY");

    let script = format!(
        "missing=0; for n in {}; do if [ -z \"${{!n}}\" ]; then echo \"::error title=Missing secret::$n\"; missing=1; fi; done; [ $missing = 0 ] || exit 3",
        names.join(" ")
    );
    let mut b = Command::new("bash");
    b.args(["-c", &script]).envs(vars.iter().map(|(a, b)| (a, b)));
    let mut v = Command::new(&kw);
    v.arg("--version").envs(vars.iter().map(|(a, b)| (a, b)));
    let mut t0 = Command::new("true");
    t0.envs(vars.iter().map(|(a, b)| (a, b)));

    let t = time_interleaved(
        RUNS,
        &mut [
            Box::new(|| run(&mut k, 3)),
            Box::new(|| run(&mut b, 3)),
            Box::new(|| run(&mut v, 0)),
            Box::new(|| run(&mut t0, 0)),
        ],
    );
    let labels = [
        format!("keyward report presence --source env ({SECRETS} secrets)"),
        "bash loop over the same names (no policies, no report)".into(),
        "process start alone (keyward --version, same environment)".into(),
        "spawning /bin/true with the same environment (the harness)".into(),
    ];
    for (label, t) in labels.iter().zip(&t) {
        println!("{label:<62} median of {RUNS} = {}", t.ms());
    }
}
