//! Secret policies: `policies/*.toml`, one `[[secret]]` table per secret.
//!
//! A policy names a secret, says how to generate it, how often to rotate it, where it
//! goes (env file keys, GitHub scopes, a PostgreSQL role, hook commands) and in which
//! environments it is required. This module parses and validates policies, with errors
//! that name the file, the line and the key. It holds no values and writes nothing.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::SecretsError;
use super::generate::{Alphabet, Generator, NamedAlphabet};
use crate::config::ConfigError;
use crate::github::{GithubScope, Visibility};

/// The rotation period when a policy names none.
pub const DEFAULT_ROTATION_DAYS: u32 = 90;

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
    /// Where it was defined, for messages (shared by the policies of one file).
    #[serde(skip)]
    pub source: Arc<Path>,
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
    /// name → position in `list` (foldhash: names come from the repository's files).
    index: foldhash::HashMap<String, usize>,
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
        // Parts of at least 16 KiB: small enough that the parser's memory stays in a
        // few pages, large enough that setting up a parse is paid rarely.
        self.add_in_parts(path, text, 16 * 1024)
    }

    /// [`Policies::add_text`], parsing the text in parts of at least `part` bytes.
    fn add_in_parts(&mut self, path: &Path, text: &str, part: usize) -> Result<(), SecretsError> {
        let file = File::new(path, text);
        let before = self.list.len();
        // Offsets of the new policies' names, for the duplicate check.
        let mut names_at = Vec::new();
        // A few `[[secret]]` tables at a time keeps the parser's memory small and reused
        // (a thousand policies in one file parse in a few pages instead of hundreds,
        // which was most of `report presence`'s time in a fresh process). Any failure
        // there, including a header line that was really inside a multi-line string,
        // goes back to the whole file, which then decides and words the error.
        let in_parts = parts(text, part).is_some_and(|parts| {
            parts.into_iter().all(|range| file.read(range, &mut self.list, &mut names_at).is_ok())
        });
        if !in_parts {
            self.list.truncate(before);
            names_at.clear();
            file.read(0..text.len(), &mut self.list, &mut names_at)?;
        }
        self.index.reserve(self.list.len() - before);
        for (i, name_at) in (before..self.list.len()).zip(names_at) {
            let name = &self.list[i].name;
            if let Some(&first) = self.index.get(name) {
                let first = &self.list[first];
                let err = file.error_at(
                    name_at,
                    "secret.name",
                    format!(
                        "{name:?} is already defined at {}:{}; each secret has one policy",
                        first.source.display(),
                        first.line
                    ),
                );
                self.list.truncate(before);
                self.index.retain(|_, &mut i| i < before);
                return Err(err);
            }
            self.index.insert(name.clone(), i);
        }
        Ok(())
    }
}

/// Byte ranges of a policy file, each of at least `min` bytes (but the last) and each
/// beginning at a `[[secret]]` header line (the first also holds what comes before it);
/// `None` when the file is one range.
///
/// Parsing the ranges one by one gives the same policies as parsing the whole file
/// whenever every range parses: a line that reads `[[secret]]` is a header unless it is
/// inside a multi-line string, and then the range before it ends inside that string and
/// fails to parse.
fn parts(text: &str, min: usize) -> Option<Vec<std::ops::Range<usize>>> {
    const HEADER: &[u8] = b"[[secret]]";
    let bytes = text.as_bytes();
    let blank = |b: &[u8]| b.iter().all(|&c| matches!(c, b' ' | b'\t' | b'\r'));
    let mut starts = Vec::new();
    for at in memchr::memmem::find_iter(bytes, HEADER) {
        let line_start = memchr::memrchr(b'\n', &bytes[..at]).map_or(0, |i| i + 1);
        let rest = &bytes[at + HEADER.len()..];
        let line_end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        if blank(&bytes[line_start..at]) && blank(&rest[..line_end]) {
            starts.push(line_start);
        }
    }
    let mut ranges = Vec::new();
    let mut from = 0;
    for &start in starts.iter().skip(1) {
        if start - from >= min {
            ranges.push(from..start);
            from = start;
        }
    }
    ranges.push(from..text.len());
    (ranges.len() > 1).then_some(ranges)
}

/// One policy file being read: its path and text for messages.
///
/// Policies are read with toml-spanner, straight from its span-carrying tree: CI parses
/// every policy on every deploy (`report presence`), and this is several times faster
/// and smaller in memory than deserializing through serde. Every rule of the format —
/// required keys, unknown keys, types, variants — is checked here, and every error
/// names the file, the line and column, and the key.
struct File<'a> {
    path: &'a Path,
    shared_path: Arc<Path>,
    text: &'a str,
    /// Where the part being parsed starts in `text`: the parser's spans are relative
    /// to it.
    base: std::cell::Cell<u32>,
    /// The last offset whose line was asked for, and that line: policies come in
    /// order, so counting goes on from there instead of from the start.
    cursor: std::cell::Cell<(usize, usize)>,
}

type Item<'t, 'de> = &'t toml_spanner::Item<'de>;
type Table<'t, 'de> = &'t toml_spanner::Table<'de>;

/// The key an error is about: `secret NAME: KEY` once the name is known. Formatted
/// only when an error is made.
#[derive(Clone, Copy)]
struct Key<'k> {
    secret: Option<&'k str>,
    key: &'k str,
}

impl std::fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.secret, self.key) {
            (Some(name), "") => write!(f, "secret {name}"),
            (Some(name), key) => write!(f, "secret {name}: {key}"),
            (None, key) => f.write_str(key),
        }
    }
}

impl<'a> File<'a> {
    fn new(path: &'a Path, text: &'a str) -> File<'a> {
        File {
            path,
            shared_path: Arc::from(path),
            text,
            base: std::cell::Cell::new(0),
            cursor: std::cell::Cell::new((0, 1)),
        }
    }

    /// Parses `range` of the text and appends every policy of it to `out`, and the
    /// offset of its name in the text to `names_at`.
    fn read(
        &self,
        range: std::ops::Range<usize>,
        out: &mut Vec<Policy>,
        names_at: &mut Vec<u32>,
    ) -> Result<(), SecretsError> {
        let part = &self.text[range.clone()];
        self.base.set(range.start as u32);
        let arena = toml_spanner::Arena::new();
        let doc = toml_spanner::parse(part, &arena)
            .map_err(|e| self.error(e.span().start, "", e.message(part)))?;
        let root = doc.table();
        for (key, _) in root.iter() {
            if key.name != "secret" {
                return Err(self.error(
                    key.span.start,
                    "",
                    format!(
                        "unknown key `{}`: a policy file holds only [[secret]] tables",
                        key.name
                    ),
                ));
            }
        }
        let Some(secrets) = root.get("secret") else { return Ok(()) };
        let secrets =
            self.array(secrets, Key { secret: None, key: "secret" }, "[[secret]] tables")?;
        out.reserve(secrets.len());
        for item in secrets {
            let (policy, name_at) = self.policy(item)?;
            out.push(policy);
            names_at.push(name_at);
        }
        Ok(())
    }

    /// The 1-based line of a byte offset of the text.
    fn line_of(&self, offset: u32) -> usize {
        let offset = (offset as usize).min(self.text.len());
        let (from, line) = match self.cursor.get() {
            (at, line) if at <= offset => (at, line),
            _ => (0, 1),
        };
        let line = line + memchr::memchr_iter(b'\n', &self.text.as_bytes()[from..offset]).count();
        self.cursor.set((offset, line));
        line
    }

    /// An error at an offset of the part being parsed.
    fn error(&self, offset: u32, key: impl std::fmt::Display, message: String) -> SecretsError {
        self.error_at(self.base.get() + offset, key, message)
    }

    /// An error at an offset of the text.
    fn error_at(&self, offset: u32, key: impl std::fmt::Display, message: String) -> SecretsError {
        let line = self.line_of(offset);
        let before = &self.text.as_bytes()[..(offset as usize).min(self.text.len())];
        let start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&before[start..]).chars().count() + 1;
        let key = key.to_string();
        SecretsError::Config(ConfigError::Parse {
            path: self.path.to_path_buf(),
            line,
            column,
            message: if key.is_empty() { message } else { format!("{key}: {message}") },
        })
    }

    fn expected(&self, item: Item<'_, '_>, key: Key<'_>, what: &str) -> SecretsError {
        self.error(item.span().start, key, format!("expected {what}, found {}", item.type_str()))
    }

    fn str<'t>(&self, item: Item<'t, '_>, key: Key<'_>) -> Result<&'t str, SecretsError> {
        item.as_str().ok_or_else(|| self.expected(item, key, "a string"))
    }

    fn table<'t, 'de>(
        &self,
        item: Item<'t, 'de>,
        key: Key<'_>,
    ) -> Result<Table<'t, 'de>, SecretsError> {
        item.as_table().ok_or_else(|| self.expected(item, key, "a table"))
    }

    fn array<'t, 'de>(
        &self,
        item: Item<'t, 'de>,
        key: Key<'_>,
        what: &str,
    ) -> Result<&'t toml_spanner::Array<'de>, SecretsError> {
        item.as_array().ok_or_else(|| self.expected(item, key, what))
    }

    fn uint(&self, item: Item<'_, '_>, key: Key<'_>, max: u64) -> Result<u64, SecretsError> {
        match item.as_i128() {
            Some(v) if (0..=i128::from(max)).contains(&v) => Ok(v as u64),
            Some(v) => Err(self.error(
                item.span().start,
                key,
                format!("{v} is out of range: expected 0 to {max}"),
            )),
            None => Err(self.expected(item, key, "a non-negative integer")),
        }
    }

    /// A value that names none of the `known` variants.
    fn unknown(
        &self,
        item: Item<'_, '_>,
        key: Key<'_>,
        what: &str,
        value: &str,
        known: &[&str],
        or: Option<&str>,
    ) -> SecretsError {
        let known: Vec<String> =
            known.iter().map(|k| format!("{k:?}")).chain(or.map(String::from)).collect();
        let message = format!("unknown {what} {value:?}: expected one of {}", known.join(", "));
        self.error(item.span().start, key, message)
    }

    /// A key that must be in `table`; the error points at `at` (the table's owner).
    fn required<'t, 'de>(
        &self,
        table: Table<'t, 'de>,
        name: &str,
        at: u32,
        key: Key<'_>,
    ) -> Result<Item<'t, 'de>, SecretsError> {
        table.get(name).ok_or_else(|| self.error(at, key, format!("missing key `{name}`")))
    }

    /// Refuses any key of `table` that is not one of `known`.
    fn only(&self, table: Table<'_, '_>, known: &[&str], key: Key<'_>) -> Result<(), SecretsError> {
        match table.iter().find(|(k, _)| !known.contains(&k.name)) {
            None => Ok(()),
            Some((k, _)) => Err(self.error(
                k.span.start,
                key,
                format!(
                    "unknown key `{}`; expected one of {}",
                    k.name,
                    known.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }

    /// One `[[secret]]` table, validated; with the offset of its name in the text.
    fn policy(&self, item: Item<'_, '_>) -> Result<(Policy, u32), SecretsError> {
        const KNOWN: &[&str] = &[
            "name",
            "description",
            "generator",
            "rotation_days",
            "required_in",
            "env",
            "github",
            "postgres",
            "hooks",
        ];
        let anonymous = |key| Key { secret: None, key };
        let table = self.table(item, anonymous("secret"))?;
        let name_item = self.required(table, "name", table.span().start, anonymous("secret"))?;
        let name_at = name_item.span().start;
        let name = self.str(name_item, anonymous("secret.name"))?;
        check_name(name).map_err(|m| self.error(name_at, "secret.name", m))?;
        self.only(table, KNOWN, Key { secret: Some(name), key: "" })?;
        let key = |key| Key { secret: Some(name), key };

        let description = self
            .str(self.required(table, "description", name_at, key(""))?, key("description"))?
            .trim();
        if description.is_empty() {
            return Err(self.error(
                name_at,
                key("description"),
                "describe what the secret is for".into(),
            ));
        }
        let generator_item = self.required(table, "generator", name_at, key(""))?;
        let generator = self.generator(generator_item, key("generator"))?;
        generator
            .validate()
            .map_err(|m| self.error(generator_item.span().start, key("generator"), m))?;
        let rotation_days = match table.get("rotation_days") {
            Some(r) => {
                let days = self.uint(r, key("rotation_days"), u64::from(u32::MAX))?;
                if days > 3650 {
                    return Err(self.error(
                        r.span().start,
                        key("rotation_days"),
                        format!("{days} days is more than ten years; use 0 for never"),
                    ));
                }
                days as u32
            }
            None => DEFAULT_ROTATION_DAYS,
        };
        let mut required_in: Vec<String> = Vec::new();
        if let Some(r) = table.get("required_in") {
            for e in self.array(r, key("required_in"), "an array of strings")? {
                let env = self.str(e, key("required_in"))?;
                check_environment(env)
                    .map_err(|m| self.error(e.span().start, key("required_in"), m))?;
                if !required_in.iter().any(|r| r == env) {
                    required_in.push(env.to_string());
                }
            }
        }
        let mut env: Vec<EnvTarget> = Vec::new();
        if let Some(e) = table.get("env") {
            for t in self.array(e, key("env"), "an array of tables")? {
                let at = t.span().start;
                let t = self.table(t, key("env"))?;
                self.only(t, &["file", "key"], key("env"))?;
                let file = self.str(self.required(t, "file", at, key("env"))?, key("env.file"))?;
                check_ref(file).map_err(|m| self.error(at, key("env.file"), m))?;
                let env_key = match t.get("key") {
                    Some(k) => {
                        let k = self.str(k, key("env.key"))?;
                        check_env_key(k).map_err(|m| self.error(at, key("env.key"), m))?;
                        Some(k.to_string())
                    }
                    None => None,
                };
                let target = EnvTarget { file: file.to_string(), key: env_key };
                if env.contains(&target) {
                    return Err(self.error(
                        at,
                        key("env"),
                        "the same env target is listed twice".into(),
                    ));
                }
                env.push(target);
            }
        }
        let mut github = Vec::new();
        if let Some(g) = table.get("github") {
            for t in self.array(g, key("github"), "an array of tables")? {
                github.push(self.github_scope(t, key("github"))?);
            }
        }
        let postgres = match table.get("postgres") {
            Some(p) => {
                let at = p.span().start;
                let t = self.table(p, key("postgres"))?;
                self.only(t, &["connection", "role"], key("postgres"))?;
                let connection = self.str(
                    self.required(t, "connection", at, key("postgres"))?,
                    key("postgres.connection"),
                )?;
                let role =
                    self.str(self.required(t, "role", at, key("postgres"))?, key("postgres.role"))?;
                check_ref(connection).map_err(|m| self.error(at, key("postgres.connection"), m))?;
                if role.is_empty() || role.len() > 63 || role.contains('\0') {
                    return Err(self.error(
                        at,
                        key("postgres.role"),
                        "a PostgreSQL role name has 1 to 63 bytes".into(),
                    ));
                }
                if !matches!(generator, Generator::Password { .. } | Generator::Imported) {
                    return Err(self.error(
                        at,
                        key("postgres"),
                        "a PostgreSQL password target needs a password generator (or imported)"
                            .into(),
                    ));
                }
                Some(PostgresTarget { connection: connection.into(), role: role.into() })
            }
            None => None,
        };
        let mut hooks = Vec::new();
        if let Some(h) = table.get("hooks") {
            for hook in self.array(h, key("hooks"), "an array of strings")? {
                let name = self.str(hook, key("hooks"))?;
                check_ref(name).map_err(|m| self.error(hook.span().start, key("hooks"), m))?;
                hooks.push(name.to_string());
            }
        }
        let policy = Policy {
            name: name.to_string(),
            description: description.to_string(),
            generator,
            rotation_days,
            required_in,
            env,
            github,
            postgres,
            hooks,
            source: Arc::clone(&self.shared_path),
            line: self.line_of(self.base.get() + name_at),
        };
        Ok((policy, self.base.get() + name_at))
    }

    /// `generator = { kind = "…", … }`: the serde form of [`Generator`].
    fn generator(&self, item: Item<'_, '_>, key: Key<'_>) -> Result<Generator, SecretsError> {
        let at = item.span().start;
        let t = self.table(item, key)?;
        let kind_item = self.required(t, "kind", at, key)?;
        let (generator, known): (Generator, &[&str]) = match self.str(kind_item, key)? {
            kind @ ("base64" | "hex" | "base64url") => {
                let bytes = self.uint(self.required(t, "bytes", at, key)?, key, u32::MAX.into())?;
                let bytes = bytes as usize;
                let g = match kind {
                    "base64" => Generator::Base64 { bytes },
                    "hex" => Generator::Hex { bytes },
                    _ => Generator::Base64url { bytes },
                };
                (g, &["kind", "bytes"])
            }
            "password" => {
                let length =
                    self.uint(self.required(t, "length", at, key)?, key, u32::MAX.into())?;
                let alphabet = match t.get("alphabet") {
                    None => Alphabet::default(),
                    Some(a) => self.alphabet(a, key)?,
                };
                (
                    Generator::Password { length: length as usize, alphabet },
                    &["kind", "length", "alphabet"],
                )
            }
            "fernet" => (Generator::Fernet, &["kind"]),
            "imported" => (Generator::Imported, &["kind"]),
            other => {
                let kinds = ["base64", "hex", "base64url", "password", "fernet", "imported"];
                return Err(self.unknown(kind_item, key, "kind", other, &kinds, None));
            }
        };
        self.only(t, known, key)?;
        Ok(generator)
    }

    fn alphabet(&self, item: Item<'_, '_>, key: Key<'_>) -> Result<Alphabet, SecretsError> {
        if let Some(t) = item.as_table() {
            self.only(t, &["characters"], key)?;
            let characters =
                self.str(self.required(t, "characters", item.span().start, key)?, key)?;
            return Ok(Alphabet::Custom { characters: characters.to_string() });
        }
        let name = item.as_str().ok_or_else(|| {
            self.expected(item, key, "an alphabet name or { characters = \"…\" }")
        })?;
        let named = match name {
            "alphanumeric" => NamedAlphabet::Alphanumeric,
            "lower-alphanumeric" => NamedAlphabet::LowerAlphanumeric,
            "url-safe" => NamedAlphabet::UrlSafe,
            "hex" => NamedAlphabet::Hex,
            other => {
                let names = ["alphanumeric", "lower-alphanumeric", "url-safe", "hex"];
                let custom = r#"{ characters = "…" }"#;
                return Err(self.unknown(item, key, "alphabet", other, &names, Some(custom)));
            }
        };
        Ok(Alphabet::Named(named))
    }

    /// `github = [{ scope = "…", … }]`: the serde form of [`GithubScope`].
    fn github_scope(&self, item: Item<'_, '_>, key: Key<'_>) -> Result<GithubScope, SecretsError> {
        let at = item.span().start;
        let t = self.table(item, key)?;
        let scope_item = self.required(t, "scope", at, key)?;
        let (scope, known): (GithubScope, &[&str]) = match self.str(scope_item, key)? {
            "repository" => (GithubScope::Repository, &["scope"]),
            "environment" => {
                let e = self.str(self.required(t, "environment", at, key)?, key)?;
                (GithubScope::Environment { environment: e.to_string() }, &["scope", "environment"])
            }
            "organization" => {
                let visibility = match t.get("visibility") {
                    None => Visibility::default(),
                    Some(v) => match self.str(v, key)? {
                        "all" => Visibility::All,
                        "private" => Visibility::Private,
                        "selected" => Visibility::Selected,
                        other => {
                            let all = ["all", "private", "selected"];
                            return Err(self.unknown(v, key, "visibility", other, &all, None));
                        }
                    },
                };
                let mut selected_repositories = Vec::new();
                if let Some(r) = t.get("selected_repositories") {
                    for repo in self.array(r, key, "an array of strings")? {
                        selected_repositories.push(self.str(repo, key)?.to_string());
                    }
                }
                (
                    GithubScope::Organization { visibility, selected_repositories },
                    &["scope", "visibility", "selected_repositories"],
                )
            }
            other => {
                let scopes = ["repository", "environment", "organization"];
                return Err(self.unknown(scope_item, key, "scope", other, &scopes, None));
            }
        };
        self.only(t, known, key)?;
        Ok(scope)
    }
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

    /// Both ways of reading a text: in parts split at every header, and whole.
    fn both(text: &str) -> (String, String) {
        let read = |part| {
            let mut p = Policies::default();
            let r = p.add_in_parts(Path::new("/p/app.toml"), text, part).map(|()| p.list);
            format!("{r:?}")
        };
        (read(1), read(usize::MAX))
    }

    #[test]
    fn parts_read_the_same_policies_as_the_whole_file() {
        let real = [
            include_str!("../../policies/application.toml"),
            include_str!("../../policies/database.toml"),
            include_str!("../../policies/storage.toml"),
            include_str!("../../policies/third-party.toml"),
        ]
        .concat();
        // Headers with comments, indentation and CRLF; sub-tables written as headers;
        // `[[secret]]` lines inside multi-line strings (basic and literal), which are
        // no headers at all.
        let tricky = r#"# preamble
  [[secret]]
name = "INDENTED"
description = """
A description that quotes a policy:
[[secret]]
name = "NOT_A_SECRET"
"""
generator = { kind = "hex", bytes = 32 }
[[secret]] # a comment after the header
name = "COMMENTED"
description = '''
[[secret]]
'''
[secret.generator]
kind = "password"
length = 24
[[secret.github]]
scope = "environment"
environment = "production"
[[secret]]
name = "LAST"
description = "last"
generator = { kind = "fernet" }
"#;
        for text in [real.clone(), tricky.to_string(), tricky.replace('\n', "\r\n"), real + tricky]
        {
            let (parts, whole) = both(&text);
            assert!(whole.starts_with("Ok("), "{whole}");
            assert_eq!(parts, whole);
        }
        let p = parse(tricky).unwrap();
        assert_eq!(p.len(), 3);
        assert!(p.get("NOT_A_SECRET").is_none());
        assert!(p.get("INDENTED").unwrap().description.contains("[[secret]]"));
        assert_eq!(p.get("COMMENTED").unwrap().line, 11);
        assert_eq!(p.get("LAST").unwrap().line, 22);
    }

    #[test]
    fn an_error_in_a_later_part_names_its_line_in_the_file() {
        let text = format!("{GOOD}{}", GOOD.replace("SECRET_KEY", "OTHER").replace("32", "-1"));
        let (parts, whole) = both(&text);
        assert_eq!(parts, whole);
        assert!(parts.contains("line: 13, column: 40"), "{parts}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        /// Whatever the text, parts and the whole file agree: the same policies, or
        /// the same error.
        #[test]
        fn parts_and_whole_agree(lines in proptest::collection::vec(proptest::sample::select(vec![
            "[[secret]]",
            "  [[secret]]  ",
            "[[secret]] # c",
            "[[secret]]\r",
            "name = \"A\"",
            "name = \"B\"",
            "description = \"d\"",
            "description = \"\"\"",
            "description = '''",
            "\"\"\"",
            "'''",
            "generator = { kind = \"hex\", bytes = 32 }",
            "[secret.generator]",
            "kind = \"fernet\"",
            "[[secret.github]]",
            "scope = \"repository\"",
            "required_in = [\"production\"]",
            "other = 1",
            "[other]",
            "# [[secret]]",
            "",
        ]), 0..40)) {
            let text = lines.join("\n");
            let (parts, whole) = both(&text);
            proptest::prop_assert_eq!(parts, whole);
        }
    }
}
