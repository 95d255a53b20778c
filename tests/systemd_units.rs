//! The systemd units in systemd/: they verify, and keyward.service is hardened to an
//! exposure of at most 2.0 by `systemd-analyze security`.

mod common;

use std::path::Path;
use std::process::Command;

const UNITS: &[&str] =
    &["keyward.service", "keyward.timer", "keyward-reload@.path", "keyward-reload@.service"];

/// Copies the units into a temp folder with ExecStart pointing at the built binary
/// (systemd-analyze verify checks that the command exists and is executable).
fn units_in_temp() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    for u in UNITS {
        let text =
            std::fs::read_to_string(src.join(u)).unwrap_or_else(|e| panic!("systemd/{u}: {e}"));
        let text = text.replace("/usr/bin/keyward", common::keyward_bin().to_str().unwrap());
        std::fs::write(dir.path().join(u), text).unwrap();
    }
    dir
}

fn analyze() -> std::path::PathBuf {
    common::require_tool("systemd-analyze", "apt-get install -y systemd")
}

#[test]
fn units_verify() {
    let bin = analyze();
    let dir = units_in_temp();
    let mut cmd = Command::new(&bin);
    cmd.args(["verify", "--recursive-errors=no", "--man=no"]).current_dir(dir.path());
    for u in ["keyward.service", "keyward.timer"] {
        cmd.arg(format!("./{u}"));
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify failed:\n{stderr}");
    // Warnings about our own units count as failures too.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("keyward")).collect();
    assert!(ours.is_empty(), "systemd-analyze verify warns:\n{}", ours.join("\n"));
}

#[test]
fn service_exposure_is_at_most_2() {
    let bin = analyze();
    let dir = units_in_temp();
    let out = Command::new(&bin)
        .args(["security", "--offline=yes", "./keyward.service"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level for keyward.service"))
        .unwrap_or_else(|| panic!("no exposure line in:\n{text}"));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score from {line:?}"));
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{text}");
}

#[test]
fn timer_runs_twice_a_day_persistently() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/keyward.timer"),
    )
    .unwrap();
    assert!(text.contains("OnCalendar=*-*-* 00,12:00:00"));
    assert!(text.contains("Persistent=true"));
    assert!(text.contains("RandomizedDelaySec="));
    let bin = analyze();
    let out = Command::new(&bin)
        .args(["calendar", "--iterations=2", "*-*-* 00,12:00:00"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
