//! The `[github]` section of keyward.toml: where the API is, which repository and
//! organisation, how keyward authenticates, and how gently it writes.
//!
//! This module only reads and checks settings; it makes no requests and reads no
//! token (that is [`super::auth`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// The `[github]` section of keyward.toml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// REST API base: `https://api.github.com`, or `https://HOST/api/v3` for GitHub
    /// Enterprise Server.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// The repository's owner (user or organisation).
    pub owner: Option<String>,
    /// The repository whose secrets and environments keyward syncs.
    pub repository: Option<String>,
    /// The organisation for `scope = "organization"` (default: `owner`).
    #[serde(alias = "organisation")]
    pub organization: Option<String>,
    /// The environment variable that holds the token (default `GITHUB_TOKEN`).
    #[serde(default = "default_token_env")]
    pub token_env: String,
    /// GitHub App authentication instead of a token.
    pub app: Option<AppConfig>,
    /// Pause between mutative requests (PUT, DELETE). GitHub asks for at least one
    /// second between them.
    #[serde(default = "default_pause_ms")]
    pub pause_ms: u64,
    /// Timeout of one request (connect and read), in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// How often a request that failed with a 5xx or a dropped connection is retried.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// First wait after a secondary rate limit without `retry-after`; doubled on each
    /// further one. GitHub asks for at least a minute.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// The longest keyward waits for a rate limit to reset before giving up on a request.
    #[serde(default = "default_max_wait")]
    pub max_wait_seconds: u64,
    /// When keyward lists a scope to catch changes made behind its back.
    #[serde(default)]
    pub drift_check: DriftCheck,
}

/// When the drift check (one list request per scope) is made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DriftCheck {
    /// Every sync lists every scope: a change on GitHub is caught on the next sync,
    /// at one list request more in a scope that also has something to write.
    Always,
    /// The default: a scope with something to write is not listed (public key + PUT
    /// only); its drift is caught on the next sync with nothing to write there, which
    /// is nearly every run, since values change only when rotated.
    #[default]
    WhenUnchanged,
}

/// A GitHub App installation: keyward signs a JWT with the app's key and exchanges
/// it for an installation token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub app_id: u64,
    pub installation_id: u64,
    /// The app's private key (PEM, mode 0600).
    pub private_key_file: PathBuf,
}

fn default_api_url() -> String {
    DEFAULT_API_URL.to_string()
}
fn default_token_env() -> String {
    "GITHUB_TOKEN".to_string()
}
fn default_pause_ms() -> u64 {
    1000
}
fn default_timeout() -> u64 {
    30
}
fn default_retries() -> u32 {
    3
}
fn default_backoff_ms() -> u64 {
    60_000
}
fn default_max_wait() -> u64 {
    900
}

impl Default for GithubConfig {
    fn default() -> Self {
        GithubConfig {
            api_url: default_api_url(),
            owner: None,
            repository: None,
            organization: None,
            token_env: default_token_env(),
            app: None,
            pause_ms: default_pause_ms(),
            timeout_seconds: default_timeout(),
            retries: default_retries(),
            backoff_ms: default_backoff_ms(),
            max_wait_seconds: default_max_wait(),
            drift_check: DriftCheck::default(),
        }
    }
}

/// No setting waits longer than a day (absurd values would overflow the clock).
const DAY: u64 = 86_400;

impl GithubConfig {
    pub fn pause(&self) -> Duration {
        Duration::from_millis(self.pause_ms.min(DAY * 1000))
    }
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds.clamp(1, DAY))
    }
    pub fn backoff(&self) -> Duration {
        Duration::from_millis(self.backoff_ms.min(DAY * 1000))
    }
    pub fn max_wait(&self) -> Duration {
        Duration::from_secs(self.max_wait_seconds.min(DAY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_githubs_guidance() {
        let c: GithubConfig = toml::from_str("owner = \"pazpaz\"\nrepository = \"app\"").unwrap();
        assert_eq!(c.api_url, DEFAULT_API_URL);
        assert_eq!(c.token_env, "GITHUB_TOKEN");
        assert!(c.pause() >= Duration::from_secs(1));
        assert!(c.backoff() >= Duration::from_secs(60));
    }

    #[test]
    fn unknown_keys_are_refused_and_organisation_is_accepted() {
        assert!(toml::from_str::<GithubConfig>("tokn_env = \"X\"").is_err());
        let c: GithubConfig = toml::from_str("organisation = \"pazpaz\"").unwrap();
        assert_eq!(c.organization.as_deref(), Some("pazpaz"));
    }
}
