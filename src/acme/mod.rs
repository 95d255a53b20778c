//! Placeholder for the acme capability; its issue fills it in.

use serde::Deserialize;

use crate::Exit;

/// The `[acme]` section of keyward.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {}

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {}

impl AcmeError {
    pub fn exit(&self) -> Exit {
        Exit::Failed
    }
}
