//! How keyward proves itself to GitHub: a token from the environment variable the
//! config names, or a GitHub App installation (app id, installation id, private
//! key → JWT → installation token, which octocrab requests and refreshes).
//!
//! Credentials are read here and handed to octocrab only; they are never logged, never
//! put in an error message, and the credential type has no `Debug`.

use std::path::PathBuf;

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

/// Builds the octocrab client for the configuration: base URL, timeouts, no
/// retries of its own (keyward's rate-limit policy decides), and the credential.
pub fn client(
    config: &GithubConfig,
    base: &crate::config::Config,
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
    match &config.app {
        None => {
            let var = config.token_env.clone();
            let token = token_from_env(&var)?;
            let crab =
                builder()?.personal_token(token.expose().to_string()).build().map_err(build_err)?;
            Ok((crab, AuthKind::Token { var }))
        }
        Some(app) => {
            let path: PathBuf = base.resolve(&app.private_key_file);
            crate::store::check_private(&path)
                .map_err(|e| GithubError::AppKey { path: path.clone(), detail: e.to_string() })?;
            let pem =
                SecretString::new(std::fs::read_to_string(&path).map_err(|e| {
                    GithubError::AppKey { path: path.clone(), detail: e.to_string() }
                })?);
            let crab = builder()?
                .app_from_rsa_pem(AppId(app.app_id), pem.expose().as_bytes())
                .map_err(|_| GithubError::AppKey {
                    path: path.clone(),
                    detail: "not an RSA private key in PEM form (download a new one from the app's settings)".into(),
                })?
                .build()
                .map_err(build_err)?;
            let crab = crab.installation(InstallationId(app.installation_id)).map_err(build_err)?;
            Ok((crab, AuthKind::App { app_id: app.app_id, installation_id: app.installation_id }))
        }
    }
}

fn token_from_env(var: &str) -> Result<SecretString, GithubError> {
    match std::env::var(var) {
        Ok(t) if !t.trim().is_empty() => Ok(SecretString::new(t.trim().to_string())),
        _ => Err(GithubError::NoToken { var: var.to_string() }),
    }
}
