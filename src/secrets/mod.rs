//! Secrets; the secrets issue fills this in.

use serde::Deserialize;

use crate::github::GithubScope;
use crate::secret::SecretBytes;
use crate::{Context, Exit};

/// The `[secrets]` section of keyward.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {}

impl SecretsError {
    pub fn exit(&self) -> Exit {
        Exit::Failed
    }
}

/// A secret's current value and the GitHub scopes its policy sends it to.
/// The GitHub sync reads these; it never sees pending or previous versions.
pub struct GithubItem {
    pub name: String,
    pub version: u64,
    pub scopes: Vec<GithubScope>,
    pub value: SecretBytes,
}

/// Every secret whose policy names GitHub scopes, with its current value.
pub fn github_items(_ctx: &Context) -> Result<Vec<GithubItem>, SecretsError> {
    Ok(Vec::new())
}
