//! `keyward secrets …` and `keyward report …`.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

use super::Global;
use crate::{Error, Exit};

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Names, versions, last rotated, due date (no values)
    List,
    /// Two-phase rotation: stage, apply, verify, promote
    Rotate {
        names: Vec<String>,
        /// Every secret whose rotation is due
        #[arg(long, conflicts_with = "names")]
        due: bool,
        #[arg(long)]
        dry_run: bool,
    },
    /// Make the previous version current again and re-apply it to every target
    Rollback { name: String },
    /// Import a value from stdin (third-party keys keyward cannot generate)
    Set { name: String },
    /// Print the current value (refuses on a terminal without --reveal)
    Get {
        name: String,
        #[arg(long)]
        reveal: bool,
    },
    /// Markdown reference of every secret (no values)
    Docs {
        /// Write to this file instead of stdout
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Read the policies from this folder instead of the configuration's
        #[arg(long, value_name = "DIR")]
        policies: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Is every required secret present? (never prints a value)
    Presence {
        #[arg(long, value_enum)]
        source: SourceArg,
        /// Check the secrets required in this environment [default: secrets.environment, else any]
        #[arg(long)]
        environment: Option<String>,
        /// Read the policies from this folder (no keyward.toml needed for --source env)
        #[arg(long, value_name = "DIR")]
        policies: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SourceArg {
    Env,
    Github,
    State,
}

pub fn dispatch(cmd: SecretsCommand, global: &Global) -> Result<Exit, Error> {
    use crate::output::Format::{Human, Json};
    use crate::secrets::commands;
    match cmd {
        SecretsCommand::List => {
            global.require_format("secrets list", &[Human, Json])?;
            commands::list(&global.context("secrets list")?)
        }
        SecretsCommand::Rotate { names, due, dry_run } => {
            global.require_format("secrets rotate", &[Human, Json])?;
            commands::rotate(&global.context("secrets rotate")?, &names, due, dry_run)
        }
        SecretsCommand::Rollback { name } => {
            global.require_format("secrets rollback", &[Human, Json])?;
            commands::rollback(&global.context("secrets rollback")?, &name)
        }
        SecretsCommand::Set { name } => {
            global.require_format("secrets set", &[Human, Json])?;
            commands::set(&global.context("secrets set")?, &name)
        }
        SecretsCommand::Get { name, reveal } => {
            // The value is the output: never inside a JSON document.
            global.require_format("secrets get", &[Human])?;
            commands::get(&global.context("secrets get")?, &name, reveal)
        }
        SecretsCommand::Docs { output, policies } => {
            global.require_format("secrets docs", &[Human, Json])?;
            let dir = match policies {
                Some(d) => d,
                None => policy_dir(global, "secrets docs")?,
            };
            commands::docs(&dir, output.as_deref(), global.format)
        }
    }
}

/// The policy folder of the configuration.
fn policy_dir(global: &Global, command: &str) -> Result<PathBuf, Error> {
    let ctx = global.context(command)?;
    let config =
        ctx.config.file.secrets.as_ref().ok_or(crate::secrets::SecretsError::NotConfigured)?;
    Ok(crate::secrets::policy_dir(&ctx, config))
}

pub fn dispatch_report(cmd: ReportCommand, global: &Global) -> Result<Exit, Error> {
    use crate::output::Format::{Github, Human, Json};
    match cmd {
        ReportCommand::Presence { source, environment, policies } => {
            global.require_format("report presence", &[Human, Json, Github])?;
            let now = crate::util::now();
            // CI can run this from a checkout without a keyward.toml: --policies DIR.
            let (policies, ctx) = match policies {
                Some(dir) if matches!(source, SourceArg::Env) => {
                    (crate::secrets::Policies::load_dir(&dir)?, None)
                }
                explicit => {
                    let ctx = global.context("report presence")?;
                    let config = ctx
                        .config
                        .file
                        .secrets
                        .as_ref()
                        .ok_or(crate::secrets::SecretsError::NotConfigured)?;
                    let dir = explicit.unwrap_or_else(|| crate::secrets::policy_dir(&ctx, config));
                    let policies = crate::secrets::Policies::load_dir(&dir)?;
                    (policies, Some(ctx))
                }
            };
            let environment = environment.or_else(|| {
                ctx.as_ref()
                    .and_then(|c| c.config.file.secrets.as_ref())
                    .and_then(|s| s.environment.clone())
            });
            let report = match source {
                SourceArg::Env => crate::report::presence(
                    &policies,
                    environment.as_deref(),
                    &crate::report::EnvSource,
                    now,
                )?,
                SourceArg::State => {
                    let ctx = ctx.ok_or_else(|| {
                        Error::Usage("--source state needs the configuration".into())
                    })?;
                    let src = crate::report::StateSource::load(&ctx)?;
                    crate::report::presence(&policies, environment.as_deref(), &src, now)?
                }
                SourceArg::Github => {
                    let ctx = ctx.ok_or_else(|| {
                        Error::Usage(
                            "--source github needs the configuration (its [github] section)".into(),
                        )
                    })?;
                    let src =
                        crate::report::GithubSource::load(&ctx, &policies, environment.as_deref())?;
                    crate::report::presence(&policies, environment.as_deref(), &src, now)?
                }
            };
            crate::report::emit(&report, global.format)
        }
    }
}
