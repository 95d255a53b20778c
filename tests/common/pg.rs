//! A real PostgreSQL server for tests: initdb and pg_ctl in a temp folder, on a free
//! loopback port, stopped when dropped. Under root (CI), the server runs as the
//! `postgres` user that Debian's package creates, since PostgreSQL refuses root.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const INSTALL: &str = "apt-get install -y postgresql";

/// Finds the server binaries (initdb, pg_ctl, postgres).
pub fn bin_dir() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").is_file() && dir.join("postgres").is_file() {
            return dir;
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").is_file())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!("this test needs a PostgreSQL server (initdb, pg_ctl), which is not installed: {INSTALL} (scripts/test installs it)")
    })
}

fn is_root() -> bool {
    nix::unistd::getuid().is_root()
}

/// The (uid, gid) the server runs as.
pub fn server_user() -> (u32, u32) {
    if is_root() {
        let u = nix::unistd::User::from_name("postgres")
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("running as root, the tests start PostgreSQL as the `postgres` user, which is missing: {INSTALL}"));
        (u.uid.as_raw(), u.gid.as_raw())
    } else {
        (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw())
    }
}

fn as_server_user(bin: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

pub struct Postgres {
    pub dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
    running: bool,
}

impl Postgres {
    /// initdb only; call [`Postgres::start`] after writing config and certificates.
    pub fn init() -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("temp dir");
        // The server user must reach its data folder inside our temp folder.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let (uid, gid) = server_user();
        std::os::unix::fs::chown(&data, Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        // The server user writes its log and its socket in folders of its own.
        for sub in ["log", "sock"] {
            let d = dir.path().join(sub);
            std::fs::create_dir(&d).unwrap();
            std::os::unix::fs::chown(&d, Some(uid), Some(gid)).unwrap();
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let out = as_server_user(&bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        Postgres { dir, port: super::free_port(), bin, running: false }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Appends lines to postgresql.conf.
    pub fn conf(&self, lines: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data().join("postgresql.conf"))
            .unwrap();
        writeln!(f, "{lines}").unwrap();
    }

    /// Replaces pg_hba.conf. A local socket line for the superuser is kept so the
    /// test can administer the server.
    pub fn hba(&self, lines: &str) {
        let text = format!("local all postgres trust\n{lines}\n");
        std::fs::write(self.data().join("pg_hba.conf"), text).unwrap();
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    pub fn start(&mut self) {
        let log = self.dir.path().join("log/server.log");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.socket_dir().display()
        );
        let out = as_server_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &opts, "start"])
            .output()
            .expect("run pg_ctl");
        if !out.status.success() {
            panic!(
                "PostgreSQL did not start: {}\n--- server log\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        self.running = true;
    }

    /// Runs SQL as the superuser over the local socket.
    pub fn psql_admin(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-h"])
            .arg(self.socket_dir())
            .args(["-p", &self.port.to_string(), "-d", "postgres", "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/server.log")).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        if self.running {
            let _ = as_server_user(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"])
                .output();
            self.running = false;
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A libpq client connection's outcome: `Ok(current_user)` or `Err(stderr)`.
pub type Login = Result<String, String>;

impl Postgres {
    /// The psql binary next to the server binaries.
    pub fn psql_bin(&self) -> PathBuf {
        self.bin.join("psql")
    }

    /// Connects over TCP to 127.0.0.1 with `sslmode` and the given files, as `user`,
    /// and returns `select current_user`.
    pub fn login(&self, user: &str, sslmode: &str, files: Option<(&Path, &Path, &Path)>) -> Login {
        let mut conninfo = format!(
            "host=127.0.0.1 port={} dbname=postgres user={user} sslmode={sslmode} connect_timeout=10",
            self.port
        );
        if let Some((root, cert, key)) = files {
            conninfo.push_str(&format!(
                " sslrootcert={} sslcert={} sslkey={}",
                root.display(),
                cert.display(),
                key.display()
            ));
        }
        let out = Command::new(self.psql_bin())
            .args(["-X", "-A", "-t", "-w", "-c", "select current_user", &conninfo])
            .env("PGSSLCRL", "")
            .env_remove("PGPASSWORD")
            .output()
            .expect("run psql");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// The postmaster's pid (to show that a reload did not restart the server).
    pub fn postmaster_pid(&self) -> String {
        std::fs::read_to_string(self.data().join("postmaster.pid"))
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    }
}
