//! GitHub Actions secrets; the GitHub issue fills this in. The scope type is shared
//! with the secret policies, which name where each secret goes.

use serde::{Deserialize, Serialize};

use crate::Exit;

/// The `[github]` section of keyward.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {}

/// Where on GitHub a secret goes, as a policy names it:
/// `github = [{ scope = "repository" }, { scope = "environment", environment = "production" }]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(tag = "scope", rename_all = "kebab-case", deny_unknown_fields)]
pub enum GithubScope {
    /// The configured repository's Actions secrets.
    Repository,
    /// A deployment environment of the configured repository.
    Environment { environment: String },
    /// The configured organisation's Actions secrets.
    Organization {
        #[serde(default)]
        visibility: Visibility,
        /// Repository names, for `visibility = "selected"`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        selected_repositories: Vec<String>,
    },
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Visibility {
    All,
    #[default]
    Private,
    Selected,
}

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("keyward.toml has no [github] section: add one with the repository and token settings")]
    NotConfigured,
}

impl GithubError {
    pub fn exit(&self) -> Exit {
        match self {
            GithubError::NotConfigured => Exit::Usage,
        }
    }
}
