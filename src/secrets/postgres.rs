//! PostgreSQL roles as a secret target.
//!
//! A role's password is changed with `ALTER ROLE … PASSWORD` over a real connection,
//! authenticated with a configured admin credential or with the role's own current
//! password. The password travels as a SCRAM-SHA-256 verifier computed here (as
//! libpq's `PQencryptPasswordConn` does), so the plaintext never crosses the wire and
//! never lands in the server's logs or `pg_stat_activity`. A change is verified by
//! logging in with the new password. This module never logs or formats a value; its
//! errors name the role and the server, never a password.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::secret::SecretBytes;

/// `[secrets.postgres.NAME]` in keyward.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConnection {
    /// Host name, IP address, or the folder of a Unix socket (starts with `/`).
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_dbname")]
    pub dbname: String,
    /// A role allowed to change the target role's password (CREATEROLE or superuser).
    /// Without it, keyward logs in as the target role with its current password.
    #[serde(default)]
    pub admin_user: Option<String>,
    /// File holding the admin's password (mode 0600).
    #[serde(default)]
    pub admin_password_file: Option<PathBuf>,
    /// When set, TLS is required and the server's certificate is verified against it.
    #[serde(default)]
    pub ssl_ca_file: Option<PathBuf>,
    #[serde(default = "default_timeout")]
    pub connect_timeout_seconds: u64,
}

fn default_port() -> u16 {
    5432
}
fn default_dbname() -> String {
    "postgres".into()
}
fn default_timeout() -> u64 {
    10
}

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("cannot reach PostgreSQL at {server}: {detail}")]
    Connect { server: String, detail: String },
    #[error("PostgreSQL at {server} refused the login of role \"{role}\" ({detail})")]
    Login { server: String, role: String, detail: String },
    #[error("PostgreSQL at {server} refused to change the password of role \"{role}\" ({detail})")]
    Alter { server: String, role: String, detail: String },
    #[error(
        "the connection to PostgreSQL at {server} broke while changing the password of role \"{role}\" ({detail}); the change may or may not have happened"
    )]
    AlterLost { server: String, role: String, detail: String },
    #[error("cannot read {path}: {detail}")]
    File { path: PathBuf, detail: String },
    #[error("cannot start the PostgreSQL client: {0}")]
    Runtime(String),
}

/// A resolved connection (paths absolute).
pub struct Server {
    pub name: String,
    pub conn: PostgresConnection,
}

impl Server {
    pub fn describe(&self) -> String {
        format!("{}:{} ('{}')", self.conn.host, self.conn.port, self.name)
    }

    fn config(&self, user: &str, password: &[u8]) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.conn.host)
            .port(self.conn.port)
            .dbname(&self.conn.dbname)
            .user(user)
            .password(password)
            .application_name("keyward")
            .connect_timeout(Duration::from_secs(self.conn.connect_timeout_seconds));
        if self.conn.ssl_ca_file.is_some() {
            c.ssl_mode(tokio_postgres::config::SslMode::Require);
        } else {
            c.ssl_mode(tokio_postgres::config::SslMode::Disable);
        }
        c
    }

    fn admin_password(&self) -> Result<Option<(String, SecretBytes)>, PgError> {
        let Some(user) = &self.conn.admin_user else { return Ok(None) };
        let Some(file) = &self.conn.admin_password_file else {
            return Err(PgError::File {
                path: PathBuf::from("admin_password_file"),
                detail: format!(
                    "[secrets.postgres.{}] names admin_user but no admin_password_file",
                    self.name
                ),
            });
        };
        let bytes = crate::store::read_private(file)
            .map_err(|e| PgError::File { path: file.clone(), detail: e.to_string() })?;
        let mut v = bytes;
        while v.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            v.pop();
        }
        Ok(Some((user.clone(), SecretBytes::new(v))))
    }

    fn runtime() -> Result<tokio::runtime::Runtime, PgError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PgError::Runtime(e.to_string()))
    }

    async fn connect(
        &self,
        user: &str,
        password: &[u8],
    ) -> Result<tokio_postgres::Client, PgError> {
        let config = self.config(user, password);
        let classify = |e: tokio_postgres::Error| {
            let detail = describe(&e);
            if e.as_db_error().is_some() {
                PgError::Login { server: self.describe(), role: user.to_string(), detail }
            } else {
                PgError::Connect { server: self.describe(), detail }
            }
        };
        let timeout = Duration::from_secs(self.conn.connect_timeout_seconds.max(1) * 2);
        let fut = async {
            match &self.conn.ssl_ca_file {
                Some(ca) => {
                    let tls = tls(ca)?;
                    let (client, connection) = config.connect(tls).await.map_err(classify)?;
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    Ok(client)
                }
                None => {
                    let (client, connection) =
                        config.connect(tokio_postgres::NoTls).await.map_err(classify)?;
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    Ok(client)
                }
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(PgError::Connect {
                server: self.describe(),
                detail: format!("no answer within {}s", timeout.as_secs()),
            }),
        }
    }

    /// Logs in as `role` with `password` and runs `SELECT 1`.
    pub fn check_login(&self, role: &str, password: &SecretBytes) -> Result<(), PgError> {
        Self::runtime()?.block_on(async {
            let client = self.connect(role, password.expose()).await?;
            client.simple_query("SELECT 1").await.map_err(|e| PgError::Login {
                server: self.describe(),
                role: role.to_string(),
                detail: describe(&e),
            })?;
            Ok(())
        })
    }

    /// Sets `role`'s password to `new`. Logs in as the admin when configured, else as
    /// the role itself with the first of `candidates` that works.
    pub fn set_password(
        &self,
        role: &str,
        candidates: &[&SecretBytes],
        new: &SecretBytes,
    ) -> Result<(), PgError> {
        let admin = self.admin_password()?;
        Self::runtime()?.block_on(async {
            let client = match &admin {
                Some((user, pw)) => self.connect(user, pw.expose()).await?,
                None => {
                    let mut last = None;
                    let mut client = None;
                    for c in candidates {
                        match self.connect(role, c.expose()).await {
                            Ok(cl) => {
                                client = Some(cl);
                                break;
                            }
                            Err(e @ PgError::Connect { .. }) => return Err(e),
                            Err(e) => last = Some(e),
                        }
                    }
                    match client {
                        Some(c) => c,
                        None => {
                            return Err(last.unwrap_or_else(|| PgError::Login {
                                server: self.describe(),
                                role: role.to_string(),
                                detail: "keyward has no password for it yet and no admin_user is configured".into(),
                            }));
                        }
                    }
                }
            };
            let verifier = postgres_protocol::password::scram_sha_256(new.expose());
            // ALTER ROLE takes no bind parameters; the verifier is base64, digits, '$'
            // and ':' only (postgres-protocol guarantees no quoting is needed), and the
            // role name is quoted as an identifier.
            let sql = format!("ALTER ROLE {} PASSWORD '{}'", quote_ident(role), verifier);
            client.simple_query(&sql).await.map_err(|e| {
                let (server, role, detail) = (self.describe(), role.to_string(), describe(&e));
                // A server error means the statement did not run; anything else leaves
                // the outcome unknown.
                if e.as_db_error().is_some() {
                    PgError::Alter { server, role, detail }
                } else {
                    PgError::AlterLost { server, role, detail }
                }
            })?;
            Ok(())
        })
    }
}

fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        }
    }
}

/// `"name"` with embedded quotes doubled.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn tls(ca: &Path) -> Result<tokio_postgres_rustls::MakeRustlsConnect, PgError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .map_err(|e| PgError::File { path: ca.to_path_buf(), detail: e.to_string() })?;
    for c in certs {
        let c = c.map_err(|e| PgError::File { path: ca.to_path_buf(), detail: e.to_string() })?;
        roots
            .add(c)
            .map_err(|e| PgError::File { path: ca.to_path_buf(), detail: e.to_string() })?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| PgError::Runtime(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("pazpaz"), "\"pazpaz\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn verifier_hides_the_password_and_needs_no_quoting() {
        let v = postgres_protocol::password::scram_sha_256(b"canary-pg");
        assert!(v.starts_with("SCRAM-SHA-256$4096:"), "{v}");
        assert!(!v.contains("canary") && !v.contains('\''));
    }
}
