//! The GitHub workflows in .github/workflows: zizmor (offline) finds nothing, every
//! action is pinned to a full commit SHA, and every job has least-privilege permissions.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn workflows() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(".github/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no workflows in {}", dir.display());
    files
}

#[test]
fn zizmor_offline_finds_nothing() {
    let zizmor = common::require_tool("zizmor", "pip install zizmor");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(".github/workflows");
    let out = Command::new(zizmor)
        .args(["--offline", "--format", "plain", "--no-progress"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "zizmor found problems:\n{stdout}\n{stderr}");
    assert!(stdout.contains("No findings"), "unexpected zizmor output:\n{stdout}\n{stderr}");
}

#[test]
fn every_action_is_pinned_to_a_full_sha() {
    for wf in workflows() {
        let text = std::fs::read_to_string(&wf).unwrap();
        for (n, line) in text.lines().enumerate() {
            let Some(rest) = line.trim_start().trim_start_matches("- ").strip_prefix("uses:")
            else {
                continue;
            };
            let target = rest.split('#').next().unwrap().trim();
            if target.starts_with("./") {
                continue;
            }
            let sha = target.rsplit('@').next().unwrap_or("");
            assert!(
                sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()),
                "{}:{}: {target} is not pinned to a full commit SHA",
                wf.display(),
                n + 1
            );
        }
    }
}

#[test]
fn workflows_default_to_no_permissions() {
    for wf in workflows() {
        let text = std::fs::read_to_string(&wf).unwrap();
        assert!(
            text.lines().any(|l| l == "permissions: {}"),
            "{}: top-level permissions must be {{}}",
            wf.display()
        );
    }
}

#[test]
fn the_presence_check_maps_every_secret_production_requires() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let policies = keyward::secrets::Policies::load_dir(&root.join("policies")).unwrap();
    let mut required: Vec<String> = policies
        .iter()
        .filter(|p| p.required_in.iter().any(|e| e == "production"))
        .map(|p| p.name.clone())
        .collect();
    required.sort();
    let text = std::fs::read_to_string(root.join(".github/workflows/deploy-presence.yml")).unwrap();
    let mut mapped: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(": ")?;
            (v == format!("${{{{ secrets.{k} }}}}")).then(|| k.to_string())
        })
        .collect();
    mapped.sort();
    assert_eq!(mapped, required, "deploy-presence.yml's env block and the policies disagree");
    assert!(text.contains("environment: production"));
    assert!(text.contains("report presence --source env"));
}
