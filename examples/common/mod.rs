//! Timing helpers shared by the benchmark programs: median wall-clock time of several
//! runs, and the CPU time (user + system) the child processes used, which a busy
//! machine does not inflate the way it inflates wall time.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};

pub const RUNS: usize = 5;

/// Median wall time and median child CPU time of `RUNS` runs of `f` (after one warm-up).
pub struct Timing {
    pub wall: Duration,
    pub cpu: Duration,
}

impl Timing {
    pub fn ms(&self) -> String {
        format!(
            "{:.1} ms (CPU {:.1} ms)",
            self.wall.as_secs_f64() * 1e3,
            self.cpu.as_secs_f64() * 1e3
        )
    }
}

fn children_cpu() -> Duration {
    let u = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    let tv =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    tv(u.user_time()) + tv(u.system_time())
}

pub fn time(f: impl FnMut()) -> Timing {
    time_interleaved(RUNS, &mut [Box::new(f)]).remove(0)
}

/// Median wall and CPU time of `runs` runs of each of `fs` (after one warm-up of
/// each), taken in turn, so that a noisy spell of the machine hits every one alike.
pub fn time_interleaved(runs: usize, fs: &mut [Box<dyn FnMut() + '_>]) -> Vec<Timing> {
    for f in fs.iter_mut() {
        f();
    }
    let mut wall = vec![Vec::new(); fs.len()];
    let mut cpu = vec![Vec::new(); fs.len()];
    for _ in 0..runs {
        for (k, f) in fs.iter_mut().enumerate() {
            let c = children_cpu();
            let t = Instant::now();
            f();
            wall[k].push(t.elapsed());
            cpu[k].push(children_cpu() - c);
        }
    }
    wall.iter_mut()
        .zip(cpu.iter_mut())
        .map(|(w, c)| {
            w.sort();
            c.sort();
            Timing { wall: w[runs / 2], cpu: c[runs / 2] }
        })
        .collect()
}

/// The release binary next to this example.
pub fn keyward() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/release/examples/bench_… → target/release/keyward
    let bin = exe.parent().and_then(Path::parent).map(|d| d.join("keyward")).expect("target dir");
    assert!(bin.is_file(), "build the binary first: cargo build --release ({})", bin.display());
    bin
}
