//! The runbooks in docs/runbooks are executable: every ```sh block of a runbook runs,
//! in order, in one bash with `set -euo pipefail`, in a sandbox (a temp folder with
//! `keyward init` done, `keyward` on PATH, `$KEYWARD_CONFIG` pointing at the sandbox).
//! A runbook whose commands stop working fails CI. Blocks marked ```sh drill are run
//! too: they prepare the sandbox the way a rehearsal does (a first run, a stand-in for
//! the offline DR identity) and the runbook says so. Blocks marked ```text are shown to
//! the operator but not run (they need peers a sandbox does not have, such as GitHub).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The ```sh blocks of a Markdown file, in order.
fn shell_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if matches!(line.trim_start(), "```sh" | "```sh drill") => {
                current = Some(String::new())
            }
            Some(block) if line.trim_start() == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    assert!(current.is_none(), "unterminated ```sh block");
    blocks
}

fn runbooks() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/runbooks");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md") && !p.ends_with("README.md"))
        .collect();
    files.sort();
    files
}

fn run_runbook(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let blocks = shell_blocks(&text);
    assert!(!blocks.is_empty(), "{} has no ```sh block to run", path.display());
    let env = common::Env::init();
    let bin_dir = common::keyward_bin().parent().unwrap().to_path_buf();
    let path_var = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut script = String::from("set -euo pipefail\n");
    for (i, b) in blocks.iter().enumerate() {
        script.push_str(&format!("echo '--- block {}' >&2\n{b}", i + 1));
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(env.root())
        .env("PATH", path_var)
        .env("KEYWARD_CONFIG", env.config())
        .env("RUNBOOK_SANDBOX", env.root())
        .env_remove("KEYWARD_NOW")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "runbook {} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_runbook_runs() {
    let books = runbooks();
    assert!(!books.is_empty(), "docs/runbooks has no runbook");
    for book in books {
        run_runbook(&book);
    }
}

#[test]
fn block_extraction() {
    let md = "intro\n```sh\necho a\n```\n```text\nnot run\n```\n```sh drill\necho b\n```\n";
    assert_eq!(shell_blocks(md), vec!["echo a\n".to_string(), "echo b\n".to_string()]);
}

#[test]
fn runbook_links_resolve() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/runbooks");
    for book in runbooks().into_iter().chain([dir.join("README.md")]) {
        let text = std::fs::read_to_string(&book).unwrap();
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let target = &rest[..rest.find(')').unwrap_or(0)];
            if target.starts_with("http") || target.starts_with('#') || target.is_empty() {
                continue;
            }
            let path = dir.join(target.split('#').next().unwrap());
            assert!(path.exists(), "{}: link to {target}, which does not exist", book.display());
        }
    }
}
