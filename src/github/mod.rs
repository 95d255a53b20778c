//! Placeholder for the github capability; its issue fills it in.

use serde::Deserialize;

use crate::Exit;

/// The `[github]` section of keyward.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {}

#[derive(Debug, thiserror::Error)]
pub enum GithubError {}

impl GithubError {
    pub fn exit(&self) -> Exit {
        Exit::Failed
    }
}
