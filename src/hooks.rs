//! Running operator-configured commands: reload hooks, deploy hooks, secret hooks.
//!
//! A hook is an argv list (no shell unless the operator writes `sh -c …`). A secret
//! value reaches a hook only on its stdin, never in argv or the environment. Every hook
//! has a timeout after which it and its process group are killed. A non-zero exit, a
//! timeout or a failure to start is an error that the caller must report, never skip.
//! Hook output goes to keyward's stderr with the hook's name in front, never to stdout.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::secret::SecretBytes;

/// A configured command.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    /// argv: the program and its arguments.
    pub command: Vec<String>,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

fn default_timeout() -> u64 {
    60
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error(
        "hook '{name}' has an empty command; give its argv, e.g. command = [\"systemctl\", \"reload\", \"nginx\"]"
    )]
    Empty { name: String },
    #[error(
        "hook '{name}' ({program}) could not start: {source}; check the command path in the configuration"
    )]
    Spawn { name: String, program: String, source: std::io::Error },
    #[error("hook '{name}' ({program}) exited with {status}{tail}")]
    Failed { name: String, program: String, status: String, tail: String },
    #[error(
        "hook '{name}' ({program}) did not finish within {seconds}s and was killed; raise timeout_seconds or fix the command"
    )]
    Timeout { name: String, program: String, seconds: u64 },
}

/// What a hook gets besides its argv.
#[derive(Default)]
pub struct Input<'a> {
    /// Written to the hook's stdin, then stdin is closed. The only way a value reaches a hook.
    pub stdin: Option<&'a SecretBytes>,
    /// Extra environment variables (names, paths, domains: never values).
    pub env: Vec<(String, String)>,
}

/// Runs `hook`, named `name` in messages, and waits for it.
pub fn run(name: &str, hook: &Hook, input: Input<'_>) -> Result<(), HookError> {
    let Some((program, args)) = hook.command.split_first() else {
        return Err(HookError::Empty { name: name.to_string() });
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(input.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(if input.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills the whole tree.
        .process_group(0);
    let mut child = cmd.spawn().map_err(|source| HookError::Spawn {
        name: name.to_string(),
        program: program.clone(),
        source,
    })?;
    if let (Some(value), Some(mut stdin)) = (input.stdin, child.stdin.take()) {
        // A hook that does not read its stdin is not an error.
        let _ = stdin.write_all(value.expose());
    }
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut buf);
        }
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut buf);
        }
        buf
    });
    let deadline = Instant::now() + Duration::from_secs(hook.timeout_seconds);
    let mut poll = Backoff(Duration::from_micros(200));
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                return Err(HookError::Timeout {
                    name: name.to_string(),
                    program: program.clone(),
                    seconds: hook.timeout_seconds,
                });
            }
            // Most hooks finish within milliseconds: poll fast first, then back off.
            Ok(None) => std::thread::sleep(poll.next()),
            Err(source) => {
                return Err(HookError::Spawn {
                    name: name.to_string(),
                    program: program.clone(),
                    source,
                });
            }
        }
    };
    let output = reader.join().unwrap_or_default();
    let text = String::from_utf8_lossy(&output);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        crate::info!("hook {name}: {line}");
    }
    if status.success() {
        Ok(())
    } else {
        let last: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = match last.last() {
            Some(l) => format!(": {}", l.chars().take(300).collect::<String>()),
            None => String::new(),
        };
        Err(HookError::Failed {
            name: name.to_string(),
            program: program.clone(),
            status: status.to_string(),
            tail,
        })
    }
}

/// Poll interval for a running hook: doubles from 200 µs up to 10 ms.
struct Backoff(Duration);

impl Backoff {
    fn next(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(Duration::from_millis(10));
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(cmd: &[&str], timeout: u64) -> Hook {
        Hook { command: cmd.iter().map(|s| s.to_string()).collect(), timeout_seconds: timeout }
    }

    #[test]
    fn value_goes_to_stdin_only() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("got");
        let script = format!("cat > {}", out.display());
        let v = SecretBytes::from_slice(b"canary-stdin");
        run("t", &hook(&["sh", "-c", &script], 5), Input { stdin: Some(&v), env: vec![] }).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"canary-stdin");
    }

    #[test]
    fn failure_and_timeout_are_errors() {
        let e = run("t", &hook(&["sh", "-c", "echo boom >&2; exit 3"], 5), Input::default())
            .unwrap_err();
        assert!(e.to_string().contains("exit status: 3"), "{e}");
        assert!(e.to_string().contains("boom"), "{e}");
        let e = run("t", &hook(&["sleep", "10"], 1), Input::default()).unwrap_err();
        assert!(matches!(e, HookError::Timeout { .. }), "{e}");
        let e = run("t", &hook(&["/nonexistent/x"], 1), Input::default()).unwrap_err();
        assert!(matches!(e, HookError::Spawn { .. }), "{e}");
    }
}
