//! Placeholder for the backup capability; its issue fills it in.

use serde::Deserialize;

use crate::Exit;

/// The `[backup]` section of keyward.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {}

impl BackupError {
    pub fn exit(&self) -> Exit {
        Exit::Failed
    }
}
