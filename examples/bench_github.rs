//! Benchmark: sync 100 secrets of which 1 changed, against the local GitHub API
//! server; API requests and wall time for keyward beside `gh secret set -f FILE`
//! with the same 100 secrets (gh sends all of them, concurrently).
//!
//! Run: `cargo run --release --example bench_github` (needs `gh`: apt-get install gh).
//! Prints the median of 5 runs of each.

#[path = "../tests/support/github_server.rs"]
mod github_server;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use github_server::{GithubServer, TOKEN, repo_key};
use keyward::github::auth::Credential;
use keyward::github::{GithubConfig, GithubScope, SyncOptions, SyncState};
use keyward::secret::{SecretBytes, SecretString};
use keyward::secrets::GithubItem;

const N: usize = 100;
const RUNS: usize = 5;

fn items(changed: Option<(usize, u64)>) -> Vec<GithubItem> {
    (0..N)
        .map(|i| {
            let (version, value) = match changed {
                Some((c, v)) if c == i => (v, format!("rotated-{i}-{v}-{}", "x".repeat(40))),
                _ => (1, format!("value-{i}-{}", "x".repeat(40))),
            };
            GithubItem {
                name: format!("SECRET_{i:03}"),
                version,
                scopes: vec![GithubScope::Repository],
                value: SecretBytes::from(value),
            }
        })
        .collect()
}

fn median(mut v: Vec<(usize, Duration)>) -> (usize, Duration) {
    v.sort_by_key(|x| x.1);
    let t = v[v.len() / 2].1;
    let mut r: Vec<usize> = v.iter().map(|x| x.0).collect();
    r.sort_unstable();
    (r[r.len() / 2], t)
}

fn main() {
    let server = GithubServer::start();
    server.add_repo("pazpaz", "app");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = keyward::store::Store::open(&dir.path().join("state")).expect("state");
    let cred =
        Credential::Token { var: "GITHUB_TOKEN".into(), token: SecretString::new(TOKEN.into()) };
    // Production settings (1 s pause between writes, default retries and timeouts),
    // except the base URL.
    let config = GithubConfig {
        api_url: server.url(),
        owner: Some("pazpaz".into()),
        repository: Some("app".into()),
        ..GithubConfig::default()
    };
    // Setting the stage between measured runs needs no pause.
    let fill = GithubConfig {
        api_url: server.url(),
        owner: config.owner.clone(),
        repository: config.repository.clone(),
        pause_ms: 0,
        ..GithubConfig::default()
    };

    let run = |cfg: &GithubConfig, items: &[GithubItem]| -> (usize, Duration, u64) {
        let before = server.total();
        let start = Instant::now();
        let api = keyward::github::connect_with(cfg, &cred).expect("client");
        let mut state = SyncState::load(&store).expect("state");
        let (targets, _) = keyward::github::sync::plan_targets(items, cfg);
        let opts = SyncOptions { drift_check: cfg.drift_check, ..SyncOptions::default() };
        let report = keyward::github::sync::sync(&api, &targets, &mut state, opts);
        state.save(&store).expect("save");
        let took = start.elapsed();
        assert!(report.failed().is_empty(), "{:?}", report.failed());
        (server.total() - before, took, report.requests)
    };

    // The first sync sends all 100 (not measured).
    run(&fill, &items(None));

    let mut one = Vec::new();
    for k in 0..RUNS {
        let (req, t, client) = run(&config, &items(Some((k * 17 % N, 2 + k as u64))));
        assert_eq!(req as u64, client);
        one.push((req, t));
        // Back to the original values for the next run, unmeasured.
        run(&fill, &items(None));
    }
    let mut none = Vec::new();
    for _ in 0..RUNS {
        let (req, t, _) = run(&config, &items(None));
        none.push((req, t));
    }
    // The same with github.drift_check = "always": a scope with writes is listed too.
    let lazy = GithubConfig {
        drift_check: keyward::github::config::DriftCheck::Always,
        api_url: server.url(),
        owner: config.owner.clone(),
        repository: config.repository.clone(),
        ..GithubConfig::default()
    };
    let mut one_lazy = Vec::new();
    for k in 0..RUNS {
        let (req, t, _) = run(&lazy, &items(Some((k * 13 % N, 2 + k as u64))));
        one_lazy.push((req, t));
        run(&fill, &items(None));
    }

    // gh: the same 100 from a dotenv file.
    let gh = which("gh").unwrap_or_else(|| panic!("this benchmark needs gh: apt-get install gh"));
    let home = tempfile::tempdir().expect("temp dir");
    let file = home.path().join("secrets.env");
    let mut text = String::new();
    for it in &items(Some((0, 2))) {
        text.push_str(&format!("{}={}\n", it.name, it.value.as_str().unwrap_or_default()));
    }
    std::fs::write(&file, text).expect("write dotenv");
    let proxy = format!("http://127.0.0.1:{}", server.port);
    let mut ghs = Vec::new();
    for _ in 0..RUNS {
        let before = server.total();
        let start = Instant::now();
        let st = Command::new(&gh)
            .args(["secret", "set", "-f"])
            .arg(&file)
            .args(["-R", "pazpaz/app"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("GH_CONFIG_DIR", home.path().join("gh"))
            .env("GH_HOST", "github.localhost")
            .env("GH_TOKEN", TOKEN)
            .env("HTTP_PROXY", &proxy)
            .env("GH_NO_UPDATE_NOTIFIER", "1")
            .env("GH_PROMPT_DISABLED", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .expect("run gh");
        let took = start.elapsed();
        assert!(st.success(), "gh secret set -f failed");
        ghs.push((server.total() - before, took));
    }
    let received =
        server.received().iter().filter(|r| r.scope == repo_key("pazpaz", "app")).count();
    server.assert_faithful();

    let (r1, t1) = median(one);
    let (r0, t0) = median(none);
    let (rl, tl) = median(one_lazy);
    let (rg, tg) = median(ghs);
    println!(
        "GitHub Actions secrets: {N} in one repository, local GitHub API server, median of {RUNS}"
    );
    let row = |label: &str, req: usize, t: Duration| {
        println!("{label:<50} {req:>9} {:>9.1} ms", t.as_secs_f64() * 1e3);
    };
    println!("{:<50} {:>9} {:>12}", "", "requests", "wall time");
    row("keyward github sync, 1 changed (key+PUT)", r1, t1);
    row("keyward github sync, none changed (list)", r0, t0);
    row("keyward, 1 changed, drift_check=always", rl, tl);
    row("gh secret set -f FILE, same 100 (sends all)", rg, tg);
    println!("(sealed boxes opened by the server in total: {received})");
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(tool)).find(|p| p.is_file())
}
