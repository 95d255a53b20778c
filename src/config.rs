//! keyward.toml and the TOML files it points at (`ca/*.toml`, `policies/*.toml`).
//!
//! Every file is parsed with unknown keys rejected; every error names the file, the
//! line and column, and the key. Relative paths in a config are relative to the
//! folder of the config file. This module reads configuration only; it writes nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::Exit;

/// Where keyward looks when neither `--config` nor `$KEYWARD_CONFIG` is given.
pub const DEFAULT_CONFIG: &str = "/etc/keyward/keyward.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no configuration at {path}: run 'keyward init --dir DIR' to write one, or pass --config PATH"
    )]
    NotFound { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}:{column}: {message}")]
    Parse { path: PathBuf, line: usize, column: usize, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid { path: PathBuf, key: String, message: String },
}

impl ConfigError {
    pub fn exit(&self) -> Exit {
        Exit::Usage
    }

    pub fn invalid(path: &Path, key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid { path: path.to_path_buf(), key: key.into(), message: message.into() }
    }
}

/// Parses one TOML file into `T`, with file:line:column errors.
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::NotFound { path: path.to_path_buf() });
        }
        Err(source) => {
            return Err(ConfigError::Read { path: path.to_path_buf(), source });
        }
    };
    parse_toml(path, &text)
}

/// Parses TOML text that came from `path` (used for messages only).
pub fn parse_toml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = match e.span() {
            Some(span) => line_col(text, span.start),
            None => (1, 1),
        };
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().trim().replace('\n', "; "),
        }
    })
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// All `*.toml` files of a folder, sorted by name, so that loading is deterministic.
pub fn toml_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|source| ConfigError::Read { path: dir.to_path_buf(), source })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|source| ConfigError::Read { path: dir.to_path_buf(), source })?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// keyward.toml as written. Each module owns the type of its own section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub dr: DrConfig,
    pub ca: Option<crate::ca::CaConfig>,
    pub secrets: Option<crate::secrets::SecretsConfig>,
    pub github: Option<crate::github::GithubConfig>,
    pub acme: Option<crate::acme::AcmeConfig>,
    pub backup: Option<crate::backup::BackupConfig>,
    #[serde(default)]
    pub metrics: MetricsConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// The state folder (mode 0700). Default: `$STATE_DIRECTORY` (systemd), else
    /// /var/lib/keyward.
    pub dir: Option<PathBuf>,
    /// How long a mutating command waits for another run's lock before exiting 75.
    #[serde(default = "default_lock_wait")]
    pub lock_wait_seconds: u64,
}

fn default_lock_wait() -> u64 {
    30
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig { dir: None, lock_wait_seconds: default_lock_wait() }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The audit log (JSON Lines). Default: `audit.jsonl` in the state folder.
    pub file: Option<PathBuf>,
}

/// The offline disaster-recovery identity's public side.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrConfig {
    /// age recipients (`age1…`) of the DR identity.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// A file of recipients, one per line (`#` comments allowed).
    pub recipients_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// node_exporter textfile written at the end of every run (mode 0644).
    pub textfile: Option<PathBuf>,
}

/// A loaded configuration: the file, where it came from, and its folder.
#[derive(Debug)]
pub struct Config {
    pub file: ConfigFile,
    pub path: PathBuf,
    pub dir: PathBuf,
}

impl Config {
    /// Loads `path`, or `$KEYWARD_CONFIG` / the default when `None` (clap already
    /// applied `$KEYWARD_CONFIG`).
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let path = path.map_or_else(|| PathBuf::from(DEFAULT_CONFIG), Path::to_path_buf);
        let path = if path.is_absolute() {
            path
        } else {
            std::env::current_dir()
                .map_err(|source| ConfigError::Read { path: path.clone(), source })?
                .join(path)
        };
        let file: ConfigFile = load_toml(&path)?;
        let dir = path.parent().map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        let config = Config { file, path, dir };
        config.validate()?;
        Ok(config)
    }

    /// A path from the config, made absolute against the config's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        resolve(&self.dir, p)
    }

    pub fn state_dir(&self) -> PathBuf {
        match &self.file.state.dir {
            Some(d) => self.resolve(d),
            None => std::env::var_os("STATE_DIRECTORY")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/var/lib/keyward")),
        }
    }

    pub fn audit_file(&self) -> PathBuf {
        match &self.file.audit.file {
            Some(f) => self.resolve(f),
            None => self.state_dir().join("audit.jsonl"),
        }
    }

    pub fn lock_wait(&self) -> Duration {
        Duration::from_secs(self.file.state.lock_wait_seconds)
    }

    /// The DR recipients, from the inline list and the recipients file.
    pub fn dr_recipients(&self) -> Result<Vec<String>, ConfigError> {
        let mut out = self.file.dr.recipients.clone();
        if let Some(f) = &self.file.dr.recipients_file {
            let path = self.resolve(f);
            let text = std::fs::read_to_string(&path)
                .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
            out.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        Ok(out)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(acme) = &self.file.acme {
            acme.validate(&self.path)?;
        }
        for (i, r) in self.file.dr.recipients.iter().enumerate() {
            if r.parse::<age::x25519::Recipient>().is_err() {
                return Err(ConfigError::invalid(
                    &self.path,
                    format!("dr.recipients[{i}]"),
                    format!(
                        "{r:?} is not an age X25519 recipient (age1…); 'keyward backup keygen' makes one"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// `p` made absolute against `base` unless it already is.
pub fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = "[state]\ndir = \"s\"\nlock_wiat_seconds = 3\n";
        let err = parse_toml::<ConfigFile>(Path::new("/x/keyward.toml"), text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/x/keyward.toml:3:1:"), "{msg}");
        assert!(msg.contains("lock_wiat_seconds"), "{msg}");
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse_toml::<ConfigFile>(Path::new("k.toml"), "[state\n").unwrap_err();
        assert!(matches!(err, ConfigError::Parse { line: 1, .. }), "{err}");
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
