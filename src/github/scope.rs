//! Where a secret goes on GitHub: the policy's [`GithubScope`] and the concrete
//! [`Target`] it resolves to with the configured owner, repository and organisation.
//!
//! This module owns the URL paths of each scope (with every path segment
//! percent-encoded) and the key under which the sync state records a scope. It makes
//! no requests.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use super::GithubError;
use super::config::GithubConfig;

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

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::All => "all",
            Visibility::Private => "private",
            Visibility::Selected => "selected",
        }
    }
}

/// A scope made concrete: which repository, environment or organisation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Target {
    Repository { owner: String, repo: String },
    Environment { owner: String, repo: String, environment: String },
    Organization { org: String },
}

/// Everything but unreserved characters is encoded, so an environment called
/// `prod/eu #2` stays one path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

pub(crate) fn enc(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

impl Target {
    /// Resolves a policy scope with the `[github]` settings.
    pub fn resolve(scope: &GithubScope, config: &GithubConfig) -> Result<Target, GithubError> {
        let repo = || -> Result<(String, String), GithubError> {
            match (&config.owner, &config.repository) {
                (Some(o), Some(r)) => Ok((o.clone(), r.clone())),
                _ => Err(GithubError::Config {
                    key: "github.owner / github.repository".into(),
                    message: "a policy sends secrets to the repository or one of its environments, but keyward.toml does not name it: set owner = \"…\" and repository = \"…\" in [github]".into(),
                }),
            }
        };
        Ok(match scope {
            GithubScope::Repository => {
                let (owner, repo) = repo()?;
                Target::Repository { owner, repo }
            }
            GithubScope::Environment { environment } => {
                if environment.trim().is_empty() {
                    return Err(GithubError::Config {
                        key: "policies: github environment".into(),
                        message: "an environment scope has an empty name".into(),
                    });
                }
                let (owner, repo) = repo()?;
                Target::Environment { owner, repo, environment: environment.clone() }
            }
            GithubScope::Organization { .. } => {
                match config.organization.as_ref().or(config.owner.as_ref()) {
                    Some(org) => Target::Organization { org: org.clone() },
                    None => return Err(GithubError::Config {
                        key: "github.organization".into(),
                        message: "a policy sends secrets to the organisation, but keyward.toml names none: set organization = \"…\" (or owner) in [github]".into(),
                    }),
                }
            }
        })
    }

    /// The key under which the sync state records this scope.
    pub fn key(&self) -> String {
        match self {
            Target::Repository { owner, repo } => format!("repository:{owner}/{repo}"),
            Target::Environment { owner, repo, environment } => {
                format!("environment:{owner}/{repo}:{environment}")
            }
            Target::Organization { org } => format!("organization:{org}"),
        }
    }

    /// The API path of this scope's secrets, without a trailing slash.
    pub fn secrets_path(&self) -> String {
        match self {
            Target::Repository { owner, repo } => {
                format!("/repos/{}/{}/actions/secrets", enc(owner), enc(repo))
            }
            Target::Environment { owner, repo, environment } => format!(
                "/repos/{}/{}/environments/{}/secrets",
                enc(owner),
                enc(repo),
                enc(environment)
            ),
            Target::Organization { org } => format!("/orgs/{}/actions/secrets", enc(org)),
        }
    }

    pub fn secret_path(&self, name: &str) -> String {
        format!("{}/{}", self.secrets_path(), enc(name))
    }

    /// GitHub's limit on the number of secrets in this scope.
    pub fn max_secrets(&self) -> usize {
        match self {
            Target::Organization { .. } => 1000,
            _ => 100,
        }
    }

    /// The fine-grained permission GitHub asks for on this scope's secrets.
    pub fn permission(&self) -> &'static str {
        match self {
            Target::Repository { .. } => "Secrets",
            Target::Environment { .. } => "Environments",
            Target::Organization { .. } => "Organization secrets",
        }
    }

    pub fn is_organization(&self) -> bool {
        matches!(self, Target::Organization { .. })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Repository { owner, repo } => write!(f, "repository {owner}/{repo}"),
            Target::Environment { owner, repo, environment } => {
                write!(f, "environment {environment:?} of {owner}/{repo}")
            }
            Target::Organization { org } => write!(f, "organisation {org}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_names_are_one_encoded_segment() {
        let t = Target::Environment {
            owner: "pazpaz".into(),
            repo: "app".into(),
            environment: "prod/eu #2".into(),
        };
        assert_eq!(t.secrets_path(), "/repos/pazpaz/app/environments/prod%2Feu%20%232/secrets");
        assert_eq!(t.secret_path("A_B"), format!("{}/A_B", t.secrets_path()));
    }

    #[test]
    fn scope_serde_shape_is_stable() {
        let s: GithubScope =
            toml::from_str("scope = \"environment\"\nenvironment = \"production\"").unwrap();
        assert_eq!(s, GithubScope::Environment { environment: "production".into() });
        let o: GithubScope = toml::from_str(
            "scope = \"organization\"\nvisibility = \"selected\"\nselected_repositories = [\"app\"]",
        )
        .unwrap();
        assert!(matches!(o, GithubScope::Organization { visibility: Visibility::Selected, .. }));
        let d: GithubScope = toml::from_str("scope = \"organization\"").unwrap();
        assert!(matches!(d, GithubScope::Organization { visibility: Visibility::Private, .. }));
    }
}
