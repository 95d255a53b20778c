//! Backup throughput and memory, keyward beside its baselines, in one run.
//!
//! ```text
//! cargo build --release && cargo run --release --example bench_backup -- [--gib 1] [--runs 5] [--rss-gib 4] [--dir /work/tmp-bench]
//! ```
//! A file of `--gib` GiB is encrypted and decrypted file → file by keyward (age v1 and
//! aes-256-gcm), by the age CLI, and copied by `cat` (the I/O bound); each figure is the
//! median of `--runs` runs, interleaved so that machine noise hits every tool alike;
//! "vs age CLI" divides the medians, "best vs best" each tool's fastest run.
//! Three ways: outputs left in the page cache (keyward `--no-fsync`, like age and cat),
//! durable (keyward's default fsync; the others' outputs fsynced inside the timing), and
//! to /dev/null (no output file: what the cipher and the read path cost alone).
//! Then peak RSS (VmHWM, sampled) of keyward and age encrypting and decrypting a
//! `--rss-gib` GiB file. Big files go under `--dir` and are deleted at the end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Args {
    gib: u64,
    runs: usize,
    rss_gib: u64,
    dir: PathBuf,
}

fn args() -> Args {
    let mut a = Args { gib: 1, runs: 5, rss_gib: 4, dir: PathBuf::from("/work/tmp-bench") };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--gib" => a.gib = v.parse().expect("--gib N"),
            "--runs" => a.runs = v.parse().expect("--runs N"),
            "--rss-gib" => a.rss_gib = v.parse().expect("--rss-gib N"),
            "--dir" => a.dir = PathBuf::from(v),
            _ => panic!("unknown option {k}"),
        }
    }
    a
}

fn tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|p| p.is_file()))
        .unwrap_or_else(|| panic!("{name} is not installed (apt-get install {name})"))
}

fn keyward() -> PathBuf {
    // target/release/examples/bench_backup → target/release/keyward
    let exe = std::env::current_exe().expect("own path");
    let bin = exe.parent().and_then(Path::parent).map(|d| d.join("keyward")).expect("target dir");
    assert!(bin.is_file(), "{} is missing: run 'cargo build --release' first", bin.display());
    bin
}

/// Writes `size` bytes of incompressible pseudo-random data.
fn make_input(path: &Path, size: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for w in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
}

fn run_checked(cmd: &mut Command) {
    let out = cmd.stdin(Stdio::null()).output().expect("spawn");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// CPU seconds (user + system) of all waited-for children so far, from /proc/self/stat.
fn children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name in parentheses; cutime and cstime are 16 and 17.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(16) + ticks(17)) / 100.0
}

fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Peak resident memory of a running child, sampled from /proc until it exits.
fn peak_rss(mut child: Child) -> u64 {
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    loop {
        let hwm = std::fs::read_to_string(&status).ok().and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        });
        peak = peak.max(hwm.unwrap_or(0));
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "the measured command failed");
            return peak;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() {
    let a = args();
    let kw = keyward();
    let age = tool("age");
    let cat = tool("cat");
    std::fs::create_dir_all(&a.dir).unwrap();
    let d = &a.dir;
    let p = |n: &str| d.join(n).to_str().unwrap().to_string();
    let id = d.join("id.txt");
    let _ = std::fs::remove_file(&id);
    let out = Command::new(&kw).args(["backup", "keygen", "-o", &p("id.txt")]).output().unwrap();
    let recipient = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let size = a.gib << 30;
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", load().trim());
    println!(
        "input: {} GiB, {} runs each (median), {} cores",
        a.gib,
        a.runs,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    make_input(&d.join("in"), size);
    // Encrypted inputs for the decrypt runs.
    run_checked(Command::new(&kw).args([
        "backup",
        "encrypt",
        "-r",
        &recipient,
        "-o",
        &p("in.age"),
        &p("in"),
    ]));
    run_checked(Command::new(&kw).args([
        "backup",
        "encrypt",
        "--cipher",
        "aes-256-gcm",
        "-r",
        &recipient,
        "-o",
        &p("in.kwaes"),
        &p("in"),
    ]));
    run_checked(Command::new(&age).args(["-r", &recipient, "-o", &p("in.byage"), &p("in")]));

    // Three modes: 0 file → file in the page cache (keyward --no-fsync, like age and cat);
    // 1 file → file, durable (keyward's default fsync; the others' output fsynced inside
    // the timing); 2 file → /dev/null (no output file: the compute and read path alone).
    type Make = Box<dyn Fn(u8) -> Command>;
    fn build(bin: &Path, args: &[String], mode: u8, keyward: bool) -> Command {
        let mut c = Command::new(bin);
        let mut skip = false;
        for a in args {
            if skip {
                skip = false;
                continue;
            }
            if mode == 2 && a == "-o" {
                skip = true;
                continue;
            }
            c.arg(a);
        }
        if keyward && mode == 0 {
            c.arg("--no-fsync");
        }
        if mode == 2 {
            c.stdout(std::fs::File::create("/dev/null").unwrap());
        }
        c
    }
    let op = |bin: &PathBuf, args: &[&str]| -> Make {
        let (bin, args) = (bin.clone(), args.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        let keyward = bin.ends_with("keyward");
        Box::new(move |mode| build(&bin, &args, mode, keyward))
    };
    let (r, id_s, i, o) = (recipient.clone(), p("id.txt"), p("in"), p("out"));
    let (in_age, in_aes, in_byage) = (p("in.age"), p("in.kwaes"), p("in.byage"));
    // Each tool with the file it reads.
    let ops: Vec<(&str, Make, &str)> = vec![
        (
            "cat (I/O bound)",
            {
                let (cat, i, o) = (cat.clone(), i.clone(), o.clone());
                Box::new(move |mode| {
                    let mut c = Command::new(&cat);
                    c.arg(&i);
                    let target = if mode == 2 { "/dev/null" } else { o.as_str() };
                    c.stdout(std::fs::File::create(target).unwrap());
                    c
                })
            },
            &i,
        ),
        ("keyward encrypt (age v1)", op(&kw, &["backup", "encrypt", "-r", &r, "-o", &o, &i]), &i),
        (
            "keyward decrypt (age v1)",
            op(&kw, &["backup", "decrypt", "-i", &id_s, "-o", &o, &in_age]),
            &in_age,
        ),
        (
            "keyward encrypt (aes-256-gcm)",
            op(&kw, &["backup", "encrypt", "--cipher", "aes-256-gcm", "-r", &r, "-o", &o, &i]),
            &i,
        ),
        (
            "keyward decrypt (aes-256-gcm)",
            op(&kw, &["backup", "decrypt", "-i", &id_s, "-o", &o, &in_aes]),
            &in_aes,
        ),
        ("age CLI encrypt", op(&age, &["-r", &r, "-o", &o, &i]), &i),
        ("age CLI decrypt", op(&age, &["-d", "-i", &id_s, "-o", &o, &in_byage]), &in_byage),
    ];
    let mibs = |t: Duration| size as f64 / (1 << 20) as f64 / t.as_secs_f64();
    for mode in [0u8, 1, 2] {
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); ops.len()];
        let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); ops.len()];
        for round in 0..a.runs {
            // Each round starts with the next tool, so that no tool always follows the
            // same one.
            for k in (0..ops.len()).map(|j| (j + round) % ops.len()) {
                let (name, make, input) = &ops[k];
                let _ = std::fs::remove_file(d.join("out"));
                // Every run starts with nothing dirty (the previous run's output is
                // written back now, not by kernel threads competing with this run) and
                // with its whole input in the page cache (this machine evicts pages
                // that were not touched for some seconds).
                nix::unistd::sync();
                std::io::copy(&mut std::fs::File::open(input).unwrap(), &mut std::io::sink())
                    .unwrap();
                let start = Instant::now();
                let cpu_before = children_cpu();
                run_checked(&mut make(mode));
                cpu[k].push(children_cpu() - cpu_before);
                if mode == 1 && !name.starts_with("keyward") {
                    std::fs::File::open(d.join("out")).unwrap().sync_all().unwrap();
                }
                times[k].push(start.elapsed());
            }
        }
        let range: Vec<(f64, f64)> = times
            .iter()
            .map(|t| {
                let s = t.iter().map(Duration::as_secs_f64);
                (s.clone().fold(f64::MAX, f64::min), s.fold(0.0, f64::max))
            })
            .collect();
        let med: Vec<Duration> = times.into_iter().map(median).collect();
        let cpu: Vec<f64> = cpu.into_iter().map(median_f).collect();
        let (age_enc, age_dec) = (mibs(med[5]), mibs(med[6]));
        let title = ["file → file, page cache", "file → file, durable (fsync)", "file → /dev/null"];
        println!(
            "\n{:<32} {:>10} {:>10} {:>12} {:>8} {:>14} {:>12}",
            title[mode as usize],
            "median s",
            "MiB/s",
            "vs age CLI",
            "CPU s",
            "min–max s",
            "best vs best"
        );
        for (k, (name, ..)) in ops.iter().enumerate() {
            let (base, base_best) = if name.contains("decrypt") {
                (age_dec, range[6].0)
            } else {
                (age_enc, range[5].0)
            };
            // The ratio of medians, and a harder one: each tool's fastest run.
            let (ratio, best) = if name.starts_with("cat") {
                (String::from("-"), String::from("-"))
            } else {
                (format!("{:.2}x", mibs(med[k]) / base), format!("{:.2}x", base_best / range[k].0))
            };
            println!(
                "{:<32} {:>10.3} {:>10.0} {:>12} {:>8.2} {:>14} {:>12}",
                name,
                med[k].as_secs_f64(),
                mibs(med[k]),
                ratio,
                cpu[k],
                format!("{:.2}–{:.2}", range[k].0, range[k].1),
                best
            );
        }
    }
    for f in ["out", "in", "in.age", "in.kwaes", "in.byage"] {
        let _ = std::fs::remove_file(d.join(f));
    }

    // Peak memory on a large input.
    let big = a.rss_gib << 30;
    make_input(&d.join("big"), big);
    let null = || std::fs::File::create("/dev/null").unwrap();
    let spawn = |c: &mut Command| c.stdin(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap();
    let kw_enc = peak_rss(spawn(Command::new(&kw).args([
        "backup",
        "encrypt",
        "-r",
        &recipient,
        "-o",
        &p("big.age"),
        &p("big"),
    ])));
    let kw_dec = peak_rss(spawn(
        Command::new(&kw)
            .args(["backup", "decrypt", "-i", &p("id.txt"), &p("big.age")])
            .stdout(null()),
    ));
    let _ = std::fs::remove_file(d.join("big.age"));
    let kw_aes = peak_rss(spawn(
        Command::new(&kw)
            .args(["backup", "encrypt", "--cipher", "aes-256-gcm", "-r", &recipient, &p("big")])
            .stdout(null()),
    ));
    let age_enc_rss =
        peak_rss(spawn(Command::new(&age).args(["-r", &recipient, &p("big")]).stdout(null())));
    println!("\npeak RSS on a {} GiB input (VmHWM)", a.rss_gib);
    println!("{:<40} {:>8.1} MiB", "keyward encrypt (age v1, file → file)", kw_enc as f64 / 1024.0);
    println!("{:<40} {:>8.1} MiB", "keyward decrypt (age v1, → stdout)", kw_dec as f64 / 1024.0);
    println!(
        "{:<40} {:>8.1} MiB",
        "keyward encrypt (aes-256-gcm, → stdout)",
        kw_aes as f64 / 1024.0
    );
    println!("{:<40} {:>8.1} MiB", "age CLI encrypt (→ stdout)", age_enc_rss as f64 / 1024.0);
    println!("\nload average at end: {}", load().trim());
    for f in ["big", "big.age", "id.txt"] {
        let _ = std::fs::remove_file(d.join(f));
    }
    let _ = std::fs::remove_dir(d);
}
