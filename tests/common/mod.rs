//! Shared test helpers: running the keyward binary in a temp folder, finding the
//! real peers the tests need (failing with the install step when one is missing),
//! free loopback ports, and a PostgreSQL server started and stopped by the test.
#![allow(dead_code)]

pub mod pg;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The keyward binary built for this test run.
pub fn keyward_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keyward"))
}

/// Panics (never skips) when `tool` is not on PATH, naming the install step.
pub fn require_tool(tool: &str, install: &str) -> PathBuf {
    find_tool(tool).unwrap_or_else(|| {
        panic!(
            "this test needs `{tool}`, which is not installed: {install} (scripts/test installs it)"
        )
    })
}

pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file())
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().unwrap().port()
}

/// The result of one keyward invocation.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts the exit code, showing both streams when it differs.
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Run {
        assert_eq!(
            self.code, expected,
            "exit code {} (expected {expected})\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("stdout is not JSON ({e}):\n{}\n--- stderr\n{}", self.stdout, self.stderr)
        })
    }
}

/// A keyward installation in a temp folder: `keyward init` output plus helpers to run
/// commands against it.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub envs: Vec<(String, String)>,
}

impl Env {
    /// An empty temp folder (nothing initialised).
    pub fn empty() -> Env {
        Env { dir: tempfile::tempdir().expect("temp dir"), envs: Vec::new() }
    }

    /// A temp folder with `keyward init` done.
    pub fn init() -> Env {
        let env = Env::empty();
        env.run(&["init", "--dir", env.root().to_str().unwrap()]).code(0);
        env
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn config(&self) -> PathBuf {
        self.path("keyward.toml")
    }

    /// Removes tables (and their subtables) from keyward.toml, for a test that is about
    /// one capability and moves the clock: `env.drop_sections(&["ca", "secrets"])`.
    pub fn drop_sections(&self, names: &[&str]) {
        let text = std::fs::read_to_string(self.config()).unwrap();
        let mut out = String::new();
        let mut skip = false;
        for line in text.lines() {
            if line.starts_with('[') {
                let name = line.trim_start_matches('[').split([']', '.']).next().unwrap_or("");
                skip = names.contains(&name);
            }
            if !skip {
                out.push_str(line);
                out.push('\n');
            }
        }
        std::fs::write(self.config(), out).unwrap();
    }

    pub fn set_env(&mut self, k: &str, v: &str) {
        self.envs.push((k.into(), v.into()));
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(keyward_bin());
        c.args(args)
            .current_dir(self.root())
            .env("KEYWARD_CONFIG", self.config())
            .env_remove("KEYWARD_NOW")
            .stdin(Stdio::null());
        for (k, v) in &self.envs {
            c.env(k, v);
        }
        c
    }

    /// Runs keyward with `args` (the config comes from `$KEYWARD_CONFIG`).
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run keyward"))
    }

    /// Runs keyward with extra environment variables.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        Run::from(c.output().expect("run keyward"))
    }

    /// Runs keyward with `stdin` as its standard input.
    pub fn run_stdin(&self, args: &[&str], stdin: &[u8]) -> Run {
        use std::io::Write;
        let mut c = self.command(args);
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn keyward");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        Run::from(child.wait_with_output().unwrap())
    }

    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn keyward")
    }
}

/// Every file below `dir`, for "nothing written" checks.
pub fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                out.push(p.clone());
                if p.is_dir() && !p.is_symlink() {
                    walk(&p, out);
                }
            }
        }
    }
    walk(dir, &mut out);
    out.sort();
    out
}

/// Whether any file below `dir` contains `needle` (for canary checks).
pub fn tree_contains(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    tree(dir)
        .into_iter()
        .filter(|p| p.is_file())
        .filter(|p| {
            std::fs::read(p).map(|b| b.windows(needle.len()).any(|w| w == needle)).unwrap_or(false)
        })
        .collect()
}
