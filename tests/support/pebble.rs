//! Real ACME peers for the tests: Pebble (the ACME test server), pebble-challtestsrv
//! (its DNS server, where dns-01 hooks publish TXT records) and nginx, each started on
//! loopback on free ports in a temp folder and stopped on drop.
//!
//! Pebble 2.6 (with renewal information) comes from Debian trixie via
//! `scripts/fetch-deb pebble trixie`; Pebble 2.4 (no renewal information) is Debian 12's `pebble`
//! package. A missing peer fails the test naming the install step.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::common::require_tool;

/// A free loopback port never handed out before in this process: tests run in
/// parallel, and a port one test was given and released must not reach another test's
/// server (a standalone listener answering 404 for someone else's token).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = super::common::free_port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Pebble 2.6 and pebble-challtestsrv unpacked by `scripts/fetch-deb pebble trixie`.
pub fn pebble26_dir() -> PathBuf {
    let dir = std::env::var_os("KEYWARD_PEBBLE_DIR").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-tools/pebble-trixie")
    });
    let bin = dir.join("usr/bin");
    if !bin.join("pebble").is_file() || !bin.join("pebble-challtestsrv").is_file() {
        panic!(
            "Pebble 2.6 is not in {}: run scripts/fetch-deb pebble trixie (scripts/test runs it), which fetches Debian trixie's pebble package",
            dir.display()
        );
    }
    bin
}

/// Which Pebble to run.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Debian trixie's 2.6: serves renewalInfo.
    V26,
    /// Debian 12's 2.4: no renewal information.
    V24,
}

/// A throwaway PKI for Pebble's own TLS listener.
pub struct Tls {
    pub ca_pem: String,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Tls {
    pub fn make(dir: &Path) -> Tls {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, "keyward test TLS CA");
        ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut leaf =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        leaf.distinguished_name.push(rcgen::DnType::CommonName, "pebble");
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        let ca_file = dir.join("tls-ca.pem");
        let cert_file = dir.join("tls-cert.pem");
        let key_file = dir.join("tls-key.pem");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        Tls { ca_pem: ca_cert.pem(), ca_file, cert_file, key_file }
    }
}

/// A running process, killed on drop.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    pub name: &'static str,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Proc {
    let out = std::fs::File::create(&log).unwrap();
    let err = out.try_clone().unwrap();
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    Proc { child, log, name }
}

/// Waits until `port` accepts connections, or panics with the log.
pub fn wait_port(p: &mut Proc, port: u16) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = p.child.try_wait() {
            panic!(
                "{} exited with {status}:\n{}",
                p.name,
                std::fs::read_to_string(&p.log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    panic!(
        "{} did not listen on {port}:\n{}",
        p.name,
        std::fs::read_to_string(&p.log).unwrap_or_default()
    );
}

/// pebble-challtestsrv: the DNS server Pebble asks (every A query answers 127.0.0.1).
pub struct ChallSrv {
    pub proc: Proc,
    pub dns_port: u16,
    pub mgmt_port: u16,
}

impl ChallSrv {
    pub fn start(dir: &Path) -> ChallSrv {
        let bin = pebble26_dir().join("pebble-challtestsrv");
        let dns_port = free_port();
        let mgmt_port = free_port();
        let mut cmd = Command::new(bin);
        cmd.args([
            "-dns01",
            &format!("127.0.0.1:{dns_port}"),
            "-management",
            &format!("127.0.0.1:{mgmt_port}"),
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-doh",
            "",
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
        ]);
        let mut proc = spawn("pebble-challtestsrv", cmd, dir.join("challtestsrv.log"));
        wait_port(&mut proc, mgmt_port);
        ChallSrv { proc, dns_port, mgmt_port }
    }

    /// The management URL, for dns hooks (`/set-txt`, `/clear-txt`).
    pub fn mgmt(&self) -> String {
        format!("http://127.0.0.1:{}", self.mgmt_port)
    }
}

/// Options for one Pebble.
pub struct PebbleOpts {
    pub version: Version,
    /// The port Pebble's VA connects to for http-01 (nginx or keyward's listener).
    pub http_port: u16,
    pub validity_seconds: u64,
    pub nonce_reject: u32,
    pub eab: Option<(String, String)>,
}

impl Default for PebbleOpts {
    fn default() -> Self {
        PebbleOpts {
            version: Version::V26,
            http_port: free_port(),
            validity_seconds: 90 * 86400,
            nonce_reject: 0,
            eab: None,
        }
    }
}

pub struct Pebble {
    pub proc: Proc,
    pub port: u16,
    /// Where Pebble's VA sends http-01 requests.
    pub http_port: u16,
    pub mgmt_port: u16,
    pub tls: Tls,
    pub challsrv: ChallSrv,
}

impl Pebble {
    pub fn start(dir: &Path, opts: PebbleOpts) -> Pebble {
        let bin = match opts.version {
            Version::V26 => pebble26_dir().join("pebble"),
            Version::V24 => {
                let p = PathBuf::from("/usr/bin/pebble");
                if !p.is_file() {
                    require_tool("pebble-2.4", "apt-get install pebble (Debian 12's Pebble 2.4)");
                }
                p
            }
        };
        let challsrv = ChallSrv::start(dir);
        let tls = Tls::make(dir);
        let port = free_port();
        let mgmt_port = free_port();
        let mut pebble = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
            "certificate": tls.cert_file,
            "privateKey": tls.key_file,
            "httpPort": opts.http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": opts.eab.is_some(),
            "retryAfter": { "authz": 1, "order": 1 },
            "certificateValidityPeriod": opts.validity_seconds,
        });
        if let Some((kid, key)) = &opts.eab {
            pebble["externalAccountMACKeys"] = serde_json::json!({ kid: key });
        }
        let config = dir.join("pebble-config.json");
        std::fs::write(
            &config,
            serde_json::to_vec_pretty(&serde_json::json!({ "pebble": pebble })).unwrap(),
        )
        .unwrap();
        let mut cmd = Command::new(bin);
        cmd.args(["-config", config.to_str().unwrap(), "-strict", "-dnsserver"])
            .arg(format!("127.0.0.1:{}", challsrv.dns_port))
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", opts.nonce_reject.to_string())
            // Still reuses a valid authorization 1% of the time (Pebble makes a new
            // one only when `rand.Intn(100) > percent`): a test whose renewal must
            // meet a challenge orders a name never validated before.
            .env("PEBBLE_AUTHZREUSE", "0");
        let mut proc = spawn("pebble", cmd, dir.join("pebble.log"));
        wait_port(&mut proc, port);
        wait_port(&mut proc, mgmt_port);
        Pebble { proc, port, http_port: opts.http_port, mgmt_port, tls, challsrv }
    }

    /// A Pebble whose peers live in `root/peers`.
    pub fn start_in(root: &Path, opts: PebbleOpts) -> Pebble {
        let peers = root.join("peers");
        std::fs::create_dir_all(&peers).unwrap();
        Pebble::start(&peers, opts)
    }

    /// The challenge entry for keyward's own http-01 listener on Pebble's http port.
    pub fn standalone(&self) -> String {
        format!("{{ type = \"standalone\", listen = \"127.0.0.1:{}\" }}", self.http_port)
    }

    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// Pebble's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.proc.log).unwrap_or_default()
    }

    /// Requests Pebble's ACME listener has handled so far (one log line each).
    pub fn requests(&self) -> usize {
        self.log().lines().filter(|l| l.contains("-> calling handler()")).count()
    }

    /// The root that signs Pebble's issued chains (management API `/roots/0`).
    pub fn root_pem(&self) -> String {
        let (status, body) = https_get(self.mgmt_port, "127.0.0.1", "/roots/0", &self.tls.ca_pem);
        assert_eq!(status, 200, "{body}");
        body
    }
}

fn roots(pem: &str) -> rustls::RootCertStore {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    roots
}

fn tls_client(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots(ca_pem))
            .with_no_client_auth(),
    )
}

/// A TLS handshake with `127.0.0.1:port` as `server_name`, validated against `ca_pem`;
/// returns the peer's chain (DER) or the error.
pub fn tls_connect(port: u16, server_name: &str, ca_pem: &str) -> Result<Vec<Vec<u8>>, String> {
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(tls_client(ca_pem), name).unwrap();
    let mut sock = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(|e| e.to_string())?;
    }
    Ok(conn.peer_certificates().unwrap_or_default().iter().map(|c| c.to_vec()).collect())
}

/// GET over TLS validated against `ca_pem`; (status, body).
pub fn https_get(port: u16, server_name: &str, path: &str, ca_pem: &str) -> (u16, String) {
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(tls_client(ca_pem), name).unwrap();
    let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    write!(tls, "GET {path} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// nginx on loopback: serves `webroot` for /.well-known/acme-challenge/ on
/// `http_port`, and whatever `conf.d/*.conf` adds (the TLS server after a deploy).
pub struct Nginx {
    pub proc: Proc,
    pub dir: PathBuf,
    pub http_port: u16,
}

impl Drop for Nginx {
    /// SIGTERM to the master, which stops its workers before it exits (a SIGKILL would
    /// leave the workers running).
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.proc.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.proc.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Nginx {
    pub fn start(dir: &Path, http_port: u16, webroot: &Path) -> Nginx {
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .unwrap_or_else(|| require_tool("nginx", "apt-get install nginx"));
        let dir = dir.join("nginx");
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let user = if nix::unistd::geteuid().is_root() { "user root;\n" } else { "" };
        let conf = format!(
            "{user}daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\nevents {{ worker_connections 64; }}\nhttp {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n  fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n  server {{\n    listen 127.0.0.1:{http_port};\n    location /.well-known/acme-challenge/ {{ root {w}; default_type text/plain; }}\n  }}\n  include {d}/conf.d/*.conf;\n}}\n",
            d = dir.display(),
            w = webroot.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let mut cmd = Command::new(&nginx);
        cmd.args(["-p", dir.to_str().unwrap(), "-c", dir.join("nginx.conf").to_str().unwrap()]);
        let mut proc = spawn("nginx", cmd, dir.join("stdout.log"));
        wait_port(&mut proc, http_port);
        Nginx { proc, dir, http_port }
    }

    /// The argv that reloads this nginx (for a deploy hook).
    pub fn reload_argv(&self) -> Vec<String> {
        let nginx =
            if Path::new("/usr/sbin/nginx").is_file() { "/usr/sbin/nginx" } else { "nginx" };
        vec![
            nginx.to_string(),
            "-p".into(),
            self.dir.display().to_string(),
            "-c".into(),
            self.dir.join("nginx.conf").display().to_string(),
            "-s".into(),
            "reload".into(),
        ]
    }
}

/// Polls `f` until it is true or `secs` pass.
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
