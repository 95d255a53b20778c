//! Secret policies: `policies/*.toml`, one `[[secret]]` table per secret.
//!
//! A policy names a secret, says how to generate it, how often to rotate it, where it
//! goes (env file keys, GitHub scopes, a PostgreSQL role, hook commands) and in which
//! environments it is required. This module parses and validates policies, with errors
//! that name the file, the line and the key. It holds no values and writes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::SecretsError;
use super::generate::Generator;
use crate::config::{ConfigError, line_col};
use crate::github::GithubScope;

/// The rotation period when a policy names none.
pub const DEFAULT_ROTATION_DAYS: u32 = 90;

/// A policy file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    secret: Vec<RawPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: Spanned<String>,
    description: String,
    generator: Spanned<Generator>,
    #[serde(default)]
    rotation_days: Option<Spanned<u32>>,
    #[serde(default)]
    required_in: Vec<Spanned<String>>,
    #[serde(default)]
    env: Vec<Spanned<EnvTarget>>,
    #[serde(default)]
    github: Vec<GithubScope>,
    #[serde(default)]
    postgres: Option<Spanned<PostgresTarget>>,
    #[serde(default)]
    hooks: Vec<Spanned<String>>,
}

/// A key in a Docker Compose env file. `file` names an entry of `[secrets.env_files]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvTarget {
    pub file: String,
    /// The variable name; defaults to the secret's name.
    #[serde(default)]
    pub key: Option<String>,
}

/// A PostgreSQL role whose password this secret is. `connection` names an entry of
/// `[secrets.postgres]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresTarget {
    pub connection: String,
    pub role: String,
}

/// One validated policy.
#[derive(Debug, Clone, Serialize)]
pub struct Policy {
    pub name: String,
    pub description: String,
    pub generator: Generator,
    /// 0 means never due (e.g. a Sentry DSN).
    pub rotation_days: u32,
    pub required_in: Vec<String>,
    pub env: Vec<EnvTarget>,
    pub github: Vec<GithubScope>,
    pub postgres: Option<PostgresTarget>,
    pub hooks: Vec<String>,
    /// Where it was defined, for messages.
    #[serde(skip)]
    pub source: PathBuf,
    #[serde(skip)]
    pub line: usize,
}

impl Policy {
    pub fn env_key<'a>(&'a self, t: &'a EnvTarget) -> &'a str {
        t.key.as_deref().unwrap_or(&self.name)
    }

    /// Whether this secret is required in `environment` (every environment it names,
    /// when `None`).
    pub fn required(&self, environment: Option<&str>) -> bool {
        match environment {
            Some(e) => self.required_in.iter().any(|r| r == e),
            None => !self.required_in.is_empty(),
        }
    }

    pub fn rotates(&self) -> bool {
        self.rotation_days > 0
    }
}

/// Every policy of a folder, in file then definition order.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    pub list: Vec<Policy>,
    index: BTreeMap<String, usize>,
}

impl Policies {
    pub fn get(&self, name: &str) -> Option<&Policy> {
        self.index.get(name).map(|&i| &self.list[i])
    }

    pub fn iter(&self) -> impl Iterator<Item = &Policy> {
        self.list.iter()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Loads every `*.toml` of `dir`.
    pub fn load_dir(dir: &Path) -> Result<Policies, SecretsError> {
        if !dir.is_dir() {
            return Err(SecretsError::NoPolicies { dir: dir.to_path_buf() });
        }
        let mut out = Policies::default();
        for file in crate::config::toml_files(dir)? {
            let text = std::fs::read_to_string(&file)
                .map_err(|source| ConfigError::Read { path: file.clone(), source })?;
            out.add_text(&file, &text)?;
        }
        Ok(out)
    }

    /// Parses and validates one file's text, adding its policies.
    pub fn add_text(&mut self, path: &Path, text: &str) -> Result<(), SecretsError> {
        let file: PolicyFile = crate::config::parse_toml(path, text)?;
        // Line starts, so that each policy's line is a binary search, not a scan.
        let lines: Vec<usize> =
            std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        for raw in file.secret {
            let policy = validate(path, text, &lines, raw)?;
            if let Some(&i) = self.index.get(&policy.policy.name) {
                let first = &self.list[i];
                return Err(at(
                    path,
                    text,
                    policy.line_span,
                    "secret.name",
                    format!(
                        "{:?} is already defined at {}:{}; each secret has one policy",
                        policy.policy.name,
                        first.source.display(),
                        first.line
                    ),
                ));
            }
            self.index.insert(policy.policy.name.clone(), self.list.len());
            self.list.push(policy.policy);
        }
        Ok(())
    }
}

struct Validated {
    policy: Policy,
    line_span: usize,
}

fn at(path: &Path, text: &str, offset: usize, key: &str, message: String) -> SecretsError {
    let (line, column) = line_col(text, offset);
    SecretsError::Config(ConfigError::Parse {
        path: path.to_path_buf(),
        line,
        column,
        message: format!("{key}: {message}"),
    })
}

/// GitHub's secret-name rules: `[A-Z0-9_]`, no leading digit, not `GITHUB_`.
/// (GitHub also accepts lower case and folds it; policies use the upper-case form.)
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a secret name cannot be empty".into());
    }
    if let Some(c) =
        name.chars().find(|c| !(c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(format!(
            "{name:?} contains {c:?}: secret names use only A-Z, 0-9 and _ (GitHub's rule)"
        ));
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("{name:?} starts with a digit, which GitHub does not allow"));
    }
    if name.starts_with("GITHUB_") {
        return Err(format!("{name:?} starts with GITHUB_, a prefix GitHub reserves"));
    }
    Ok(())
}

/// Environment names: what GitHub environments and `--environment` use.
fn check_environment(env: &str) -> Result<(), String> {
    if env.is_empty()
        || !env.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "{env:?} is not an environment name: use letters, digits, '-', '_' or '.'"
        ));
    }
    Ok(())
}

/// Names of env-file entries, connections and hooks in keyward.toml.
fn check_ref(r: &str) -> Result<(), String> {
    if r.is_empty() || !r.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')) {
        return Err(format!("{r:?} is not a name: use letters, digits, '-' or '_'"));
    }
    Ok(())
}

fn validate(
    path: &Path,
    text: &str,
    lines: &[usize],
    raw: RawPolicy,
) -> Result<Validated, SecretsError> {
    let name_at = raw.name.span().start;
    let name = raw.name.into_inner();
    check_name(&name).map_err(|m| at(path, text, name_at, "secret.name", m))?;
    let err = |offset: usize, key: &str, m: String| {
        at(path, text, offset, &format!("secret {name}: {key}"), m)
    };
    if raw.description.trim().is_empty() {
        return Err(err(name_at, "description", "describe what the secret is for".into()));
    }
    let gen_at = raw.generator.span().start;
    let generator = raw.generator.into_inner();
    generator.validate().map_err(|m| err(gen_at, "generator", m))?;
    let rotation_days = match raw.rotation_days {
        Some(r) => {
            let at_ = r.span().start;
            let days = r.into_inner();
            if days > 3650 {
                return Err(err(
                    at_,
                    "rotation_days",
                    format!("{days} days is more than ten years; use 0 for never"),
                ));
            }
            days
        }
        None => DEFAULT_ROTATION_DAYS,
    };
    let mut required_in = Vec::new();
    for e in raw.required_in {
        let a = e.span().start;
        let e = e.into_inner();
        check_environment(&e).map_err(|m| err(a, "required_in", m))?;
        if !required_in.contains(&e) {
            required_in.push(e);
        }
    }
    let mut env = Vec::new();
    for t in raw.env {
        let a = t.span().start;
        let t = t.into_inner();
        check_ref(&t.file).map_err(|m| err(a, "env.file", m))?;
        if let Some(k) = &t.key {
            check_env_key(k).map_err(|m| err(a, "env.key", m))?;
        }
        if env.contains(&t) {
            return Err(err(a, "env", "the same env target is listed twice".into()));
        }
        env.push(t);
    }
    let postgres = match raw.postgres {
        Some(p) => {
            let a = p.span().start;
            let p = p.into_inner();
            check_ref(&p.connection).map_err(|m| err(a, "postgres.connection", m))?;
            if p.role.is_empty() || p.role.len() > 63 || p.role.contains('\0') {
                return Err(err(
                    a,
                    "postgres.role",
                    "a PostgreSQL role name has 1 to 63 bytes".into(),
                ));
            }
            if !matches!(generator, Generator::Password { .. } | Generator::Imported) {
                return Err(err(
                    a,
                    "postgres",
                    "a PostgreSQL password target needs a password generator (or imported)".into(),
                ));
            }
            Some(p)
        }
        None => None,
    };
    let mut hooks = Vec::new();
    for h in raw.hooks {
        let a = h.span().start;
        let h = h.into_inner();
        check_ref(&h).map_err(|m| err(a, "hooks", m))?;
        hooks.push(h);
    }
    let line = lines.partition_point(|&start| start <= name_at);
    Ok(Validated {
        policy: Policy {
            name,
            description: raw.description.trim().to_string(),
            generator,
            rotation_days,
            required_in,
            env,
            github: raw.github,
            postgres,
            hooks,
            source: path.to_path_buf(),
            line,
        },
        line_span: name_at,
    })
}

/// Variable names a Compose env file accepts.
pub fn check_env_key(k: &str) -> Result<(), String> {
    let ok = !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-');
    if ok { Ok(()) } else { Err(format!("{k:?} is not an environment variable name")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Policies, SecretsError> {
        let mut p = Policies::default();
        p.add_text(Path::new("/p/app.toml"), text)?;
        Ok(p)
    }

    const GOOD: &str = r#"
[[secret]]
name = "SECRET_KEY"
description = "JWT signing key"
generator = { kind = "base64", bytes = 32 }
required_in = ["production"]
env = [{ file = "app" }]
github = [{ scope = "environment", environment = "production" }]
"#;

    #[test]
    fn a_good_policy_loads_with_defaults() {
        let p = parse(GOOD).unwrap();
        let s = p.get("SECRET_KEY").unwrap();
        assert_eq!(s.rotation_days, 90);
        assert_eq!(s.line, 3);
        assert_eq!(s.env_key(&s.env[0]), "SECRET_KEY");
        assert!(s.required(Some("production")));
        assert!(!s.required(Some("staging")));
    }

    #[test]
    fn name_rules_name_file_line_and_key() {
        for (bad, why) in [
            ("secret_key", "contains"),
            ("1KEY", "digit"),
            ("GITHUB_TOKEN", "GITHUB_"),
            ("MY-KEY", "contains"),
            ("", "empty"),
        ] {
            let text = GOOD.replace("\"SECRET_KEY\"", &format!("{bad:?}"));
            let msg = parse(&text).unwrap_err().to_string();
            assert!(msg.starts_with("/p/app.toml:3:8: secret.name:"), "{msg}");
            assert!(msg.contains(why), "{msg}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_generators_are_refused() {
        let msg = parse(&GOOD.replace("required_in", "requierd_in")).unwrap_err().to_string();
        assert!(msg.contains("/p/app.toml:6:") && msg.contains("requierd_in"), "{msg}");
        let msg = parse(&GOOD.replace("bytes = 32", "bytes = 4")).unwrap_err().to_string();
        assert!(msg.contains(":5:") && msg.contains("generator"), "{msg}");
        let msg = parse(&GOOD.replace("\"base64\"", "\"rot13\"")).unwrap_err().to_string();
        assert!(msg.contains(":5:"), "{msg}");
    }

    #[test]
    fn duplicates_are_refused() {
        let text = format!("{GOOD}\n{GOOD}");
        let msg = parse(&text).unwrap_err().to_string();
        assert!(msg.contains("already defined at /p/app.toml:3"), "{msg}");
    }

    #[test]
    fn postgres_needs_a_password_generator() {
        let text =
            GOOD.replace("env = [", "postgres = { connection = \"db\", role = \"app\" }\nenv = [");
        let msg = parse(&text).unwrap_err().to_string();
        assert!(msg.contains("password generator"), "{msg}");
    }
}
