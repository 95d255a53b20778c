//! Placeholder for the secrets capability; its issue fills it in.

use serde::Deserialize;

use crate::Exit;

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
