//! Placeholder for the internal CA; its issue fills it in.

use serde::Deserialize;

use crate::Exit;

/// The `[ca]` section of keyward.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {}

#[derive(Debug, thiserror::Error)]
pub enum CaError {}

impl CaError {
    pub fn exit(&self) -> Exit {
        Exit::Failed
    }
}

/// The CA's part of `keyward run`.
pub fn run_due(ctx: &crate::Context, _dry_run: bool) -> crate::run::Step {
    if ctx.config.file.ca.is_none() {
        return crate::run::Step::unconfigured("ca");
    }
    crate::run::Step::new("ca")
}

/// The CA's lines of `keyward status`.
pub fn status(_ctx: &crate::Context) -> Result<Vec<crate::status::Item>, crate::Error> {
    Ok(Vec::new())
}
