//! Answering the server's challenges: http-01 through a webroot that nginx serves,
//! http-01 from keyward's own listener, dns-01 through an operator's hook.
//!
//! A [`Provisioner`] sets up each challenge response and removes every one of them
//! afterwards, whether validation succeeded or not. Key authorizations are not secret
//! (the server publishes the token and anyone can fetch the file), but they still go to
//! a hook on stdin and in its environment only, never in argv.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use instant_acme::ChallengeType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::AcmeError;
use super::config::ChallengeConfig;
use crate::hooks::{self, Input};
use crate::secret::SecretBytes;

const WELL_KNOWN: &str = ".well-known/acme-challenge";

/// Sets up and tears down the challenge responses of one order.
pub struct Provisioner<'a> {
    name: &'a str,
    config: &'a ChallengeConfig,
    files: Vec<PathBuf>,
    server: Option<Standalone>,
    records: Vec<(String, String, String)>,
}

struct Standalone {
    tokens: Arc<Mutex<HashMap<String, String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl<'a> Provisioner<'a> {
    /// Prepares; for standalone, binds the listener now so a busy port fails early.
    pub async fn new(name: &'a str, config: &'a ChallengeConfig) -> Result<Self, AcmeError> {
        let server = match config {
            ChallengeConfig::Standalone { listen } => Some(Standalone::start(name, listen).await?),
            _ => None,
        };
        Ok(Provisioner { name, config, files: Vec::new(), server, records: Vec::new() })
    }

    pub fn challenge_type(&self) -> ChallengeType {
        match self.config {
            ChallengeConfig::DnsHook { .. } => ChallengeType::Dns01,
            _ => ChallengeType::Http01,
        }
    }

    /// Publishes the response for `domain` (the bare name, without `*.`).
    pub fn present(
        &mut self,
        domain: &str,
        token: &str,
        key_authorization: &str,
        dns_value: &str,
    ) -> Result<(), AcmeError> {
        if token.is_empty()
            || !token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(AcmeError::Protocol {
                url: String::new(),
                op: "read the challenge".into(),
                detail: format!("the server sent a token that is not base64url: {token:?}"),
            });
        }
        match self.config {
            ChallengeConfig::Webroot { webroot } => {
                if !webroot.is_dir() {
                    return Err(AcmeError::Webroot {
                        name: self.name.to_string(),
                        path: webroot.clone(),
                        detail: "does not exist or is not a folder".into(),
                    });
                }
                let dir = webroot.join(WELL_KNOWN);
                let mut d = webroot.clone();
                for part in [".well-known", "acme-challenge"] {
                    d = d.join(part);
                    if !d.exists() {
                        std::fs::create_dir(&d).map_err(|e| AcmeError::Webroot {
                            name: self.name.to_string(),
                            path: d.clone(),
                            detail: e.to_string(),
                        })?;
                        let _ =
                            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755));
                    }
                }
                let path = dir.join(token);
                crate::store::atomic_write(
                    &path,
                    key_authorization.as_bytes(),
                    crate::store::FileMode::PUBLIC,
                )
                .map_err(|e| AcmeError::Webroot {
                    name: self.name.to_string(),
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
                self.files.push(path);
            }
            ChallengeConfig::Standalone { .. } => {
                if let Some(s) = &self.server {
                    s.tokens
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(token.to_string(), key_authorization.to_string());
                }
            }
            ChallengeConfig::DnsHook { hook, .. } => {
                let record = format!("_acme-challenge.{domain}");
                run_dns_hook(self.name, hook, "present", domain, &record, dns_value)?;
                self.records.push((domain.to_string(), record, dns_value.to_string()));
            }
        }
        Ok(())
    }

    /// Waits for DNS propagation when configured.
    pub async fn settle(&self) {
        if let ChallengeConfig::DnsHook { propagation_seconds, .. } = self.config
            && *propagation_seconds > 0
            && !self.records.is_empty()
        {
            crate::info!("acme {}: waiting {propagation_seconds}s for DNS propagation", self.name);
            tokio::time::sleep(std::time::Duration::from_secs(*propagation_seconds)).await;
        }
    }

    /// Removes every response; failures are warnings (the order's result stands).
    pub fn cleanup(&mut self) {
        for f in self.files.drain(..) {
            if let Err(e) = std::fs::remove_file(&f)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                crate::warn!("acme {}: cannot remove {}: {e}", self.name, f.display());
            }
        }
        if let Some(s) = self.server.take() {
            s.task.abort();
        }
        if let ChallengeConfig::DnsHook { hook, .. } = self.config {
            for (domain, record, value) in std::mem::take(&mut self.records) {
                if let Err(e) = run_dns_hook(self.name, hook, "cleanup", &domain, &record, &value) {
                    crate::warn!(
                        "acme {}: removing the TXT record {record} failed: {e}",
                        self.name
                    );
                }
            }
        }
    }

    /// What an operator should check when the server could not validate `domain`.
    pub fn fix(&self, domain: &str) -> String {
        match self.config {
            ChallengeConfig::Webroot { webroot } => format!(
                "check that the web server answers http://{domain}/{WELL_KNOWN}/… from {}/{WELL_KNOWN}/ (nginx: location /{WELL_KNOWN}/ {{ root {}; }}) and that port 80 is reachable from the internet",
                webroot.display(),
                webroot.display()
            ),
            ChallengeConfig::Standalone { listen } => format!(
                "keyward listened on {listen} during validation: check that port 80 of {domain} reaches that address (firewall, NAT, another server on the port)"
            ),
            ChallengeConfig::DnsHook { .. } => format!(
                "check that the dns hook published the TXT record _acme-challenge.{domain} on the authoritative servers, and raise propagation_seconds if it takes time to appear"
            ),
        }
    }
}

impl Drop for Provisioner<'_> {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn run_dns_hook(
    name: &str,
    hook: &hooks::Hook,
    action: &str,
    domain: &str,
    record: &str,
    value: &str,
) -> Result<(), AcmeError> {
    let stdin = SecretBytes::from_slice(format!("{value}\n").as_bytes());
    let env = vec![
        ("KEYWARD_ACME_ACTION".to_string(), action.to_string()),
        ("KEYWARD_ACME_CERTIFICATE".to_string(), name.to_string()),
        ("KEYWARD_ACME_DOMAIN".to_string(), domain.to_string()),
        ("KEYWARD_ACME_RECORD".to_string(), record.to_string()),
        ("KEYWARD_ACME_VALUE".to_string(), value.to_string()),
        // certbot's manual-hook names, so existing hook scripts keep working.
        ("CERTBOT_DOMAIN".to_string(), domain.to_string()),
        ("CERTBOT_VALIDATION".to_string(), value.to_string()),
    ];
    hooks::run(&format!("{name} dns-01 {action}"), hook, Input { stdin: Some(&stdin), env })
        .map_err(|e| AcmeError::Hook {
            name: name.to_string(),
            stage: "dns-01",
            source: Box::new(e),
        })
}

impl Standalone {
    async fn start(name: &str, listen: &str) -> Result<Standalone, AcmeError> {
        let addr: SocketAddr = listen.parse().map_err(|_| AcmeError::Listen {
            name: name.to_string(),
            addr: listen.to_string(),
            detail: "not an address:port".into(),
        })?;
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|e| AcmeError::Listen {
                name: name.to_string(),
                addr: listen.to_string(),
                detail: e.to_string(),
            })?;
        let tokens: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let shared = tokens.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let tokens = shared.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        serve_one(stream, tokens),
                    )
                    .await;
                });
            }
        });
        Ok(Standalone { tokens, task })
    }
}

/// Answers one HTTP/1.x request: the key authorization for a known token, else 404.
async fn serve_one(
    mut stream: tokio::net::TcpStream,
    tokens: Arc<Mutex<HashMap<String, String>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > 16 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let prefix = format!("/{WELL_KNOWN}/");
    let body = if method == "GET" || method == "HEAD" {
        target
            .strip_prefix(&prefix)
            .and_then(|t| tokens.lock().unwrap_or_else(|p| p.into_inner()).get(t).cloned())
    } else {
        None
    };
    let response = match body {
        Some(b) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            b.len(),
            if method == "HEAD" { "" } else { b.as_str() }
        ),
        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn standalone_answers_known_tokens_only() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let cfg = ChallengeConfig::Standalone { listen: format!("127.0.0.1:{port}") };
        let mut p = Provisioner::new("t", &cfg).await.unwrap();
        p.present("a.example", "tok_en-1", "tok_en-1.thumb", "").unwrap();
        let get = |path: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: a.example\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let ok = get("/.well-known/acme-challenge/tok_en-1").await;
        assert!(ok.starts_with("HTTP/1.1 200") && ok.ends_with("tok_en-1.thumb"), "{ok}");
        let nf = get("/.well-known/acme-challenge/other").await;
        assert!(nf.starts_with("HTTP/1.1 404"), "{nf}");
        p.cleanup();
    }

    #[test]
    fn webroot_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ChallengeConfig::Webroot { webroot: dir.path().to_path_buf() };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut p = rt.block_on(Provisioner::new("t", &cfg)).unwrap();
        p.present("a.example", "abc", "abc.t", "").unwrap();
        let f = dir.path().join(".well-known/acme-challenge/abc");
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "abc.t");
        assert!(p.present("a.example", "../x", "v", "").is_err());
        p.cleanup();
        assert!(!f.exists());
    }
}
