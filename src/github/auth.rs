//! How keyward proves itself to GitHub: a token from the environment variable the
//! config names, or a GitHub App installation (app id, installation id, private
//! key → JWT → installation token, which octocrab requests and refreshes).
//!
//! Credentials are read here and handed to octocrab only; they are never logged, never
//! put in an error message, and the credential type has no `Debug`.

use std::path::{Path, PathBuf};

use octocrab::Octocrab;
use octocrab::models::{AppId, InstallationId};

use super::GithubError;
use super::config::GithubConfig;
use crate::secret::SecretString;

/// Which credential keyward uses, for messages (never the credential itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthKind {
    Token { var: String },
    App { app_id: u64, installation_id: u64 },
}

impl AuthKind {
    /// Names the credential in a message.
    pub fn describe(&self) -> String {
        match self {
            AuthKind::Token { var } => format!("the token in ${var}"),
            AuthKind::App { app_id, installation_id } => {
                format!("GitHub App {app_id} (installation {installation_id})")
            }
        }
    }

    /// What to do when GitHub rejects the credential.
    pub fn renew_hint(&self) -> String {
        match self {
            AuthKind::Token { var } => format!(
                "the token is invalid, expired or revoked: create a new one (fine-grained, with the permissions below) and export it in ${var}"
            ),
            AuthKind::App { .. } => "the app's JWT or installation token was refused: check github.app.app_id, installation_id and private_key_file (the key must be the app's current private key) and that the app is still installed".to_string(),
        }
    }
}

/// The credential keyward presents. No `Debug`: it holds a token or a private key.
pub enum Credential {
    Token { var: String, token: SecretString },
    App { app_id: u64, installation_id: u64, key_pem: SecretString, path: PathBuf },
}

/// Reads the configured credential: the token from its environment variable, or
/// the GitHub App's private key file (which must be 0600).
pub fn credential(config: &GithubConfig, dir: &Path) -> Result<Credential, GithubError> {
    match &config.app {
        None => {
            let var = config.token_env.clone();
            let token = match std::env::var(&var) {
                Ok(t) if !t.trim().is_empty() => SecretString::new(t.trim().to_string()),
                _ => return Err(GithubError::NoToken { var }),
            };
            Ok(Credential::Token { var, token })
        }
        Some(app) => {
            let path = crate::config::resolve(dir, &app.private_key_file);
            crate::store::check_private(&path)
                .map_err(|e| GithubError::AppKey { path: path.clone(), detail: e.to_string() })?;
            let key_pem =
                SecretString::new(std::fs::read_to_string(&path).map_err(|e| {
                    GithubError::AppKey { path: path.clone(), detail: e.to_string() }
                })?);
            Ok(Credential::App {
                app_id: app.app_id,
                installation_id: app.installation_id,
                key_pem,
                path,
            })
        }
    }
}

/// Builds the octocrab client for the configuration: base URL, timeouts, no
/// retries of its own (keyward's rate-limit policy decides), and the credential.
pub fn client(
    config: &GithubConfig,
    cred: &Credential,
) -> Result<(Octocrab, AuthKind), GithubError> {
    let builder = || -> Result<_, GithubError> {
        Octocrab::builder()
            .base_uri(config.api_url.trim_end_matches('/'))
            .map_err(|e| GithubError::Config {
                key: "github.api_url".into(),
                message: format!("{:?} is not a URL ({e})", config.api_url),
            })
            .map(|b| {
                b.add_retry_config(octocrab::service::middleware::retry::RetryConfig::None)
                    .set_connect_timeout(Some(config.timeout()))
                    .set_read_timeout(Some(config.timeout()))
                    .set_write_timeout(Some(config.timeout()))
            })
    };
    let build_err = |e: octocrab::Error| GithubError::Client { detail: e.to_string() };
    match cred {
        Credential::Token { var, token } => {
            let crab =
                builder()?.personal_token(token.expose().to_string()).build().map_err(build_err)?;
            Ok((crab, AuthKind::Token { var: var.clone() }))
        }
        Credential::App { app_id, installation_id, key_pem, path } => {
            let crab = builder()?
                .app_from_rsa_pem(AppId(*app_id), key_pem.expose().as_bytes())
                .map_err(|_| GithubError::AppKey {
                    path: path.clone(),
                    detail: "not an RSA private key in PEM form (download a new one from the app's settings)".into(),
                })?
                .build()
                .map_err(build_err)?;
            let crab = crab.installation(InstallationId(*installation_id)).map_err(build_err)?;
            Ok((crab, AuthKind::App { app_id: *app_id, installation_id: *installation_id }))
        }
    }
}
