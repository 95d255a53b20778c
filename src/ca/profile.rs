//! Leaf profiles (`ca/*.toml`): what a certificate says (usage, validity, key type,
//! key usage), which leaves the profile declares, and where each leaf is deployed.
//!
//! A profile describes leaf certificates only: asking for CA:TRUE or a CA key usage
//! is refused. Every error names the file, line, column and key. This module parses and
//! validates; it reads no state and writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::CaError;
use super::config::{CaConfig, KeyType};

/// What the certificate is for: its extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Usage {
    /// TLS server (serverAuth).
    Server,
    /// TLS client (clientAuth).
    Client,
}

/// How a target folder is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// server.crt (leaf + chain), server.key, root.crt (client CA bundle), root.crl.
    PostgresServer,
    /// postgresql.crt (leaf + chain), postgresql.key, root.crt (server CA bundle).
    PostgresClient,
    /// public.crt (leaf + chain), private.key, CAs/ca.crt.
    Minio,
    /// cert.pem, chain.pem, fullchain.pem, key.pem, ca.pem.
    Pem,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::PostgresServer => "postgres-server",
            Layout::PostgresClient => "postgres-client",
            Layout::Minio => "minio",
            Layout::Pem => "pem",
        }
    }
}

/// Key usage bits a leaf may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyUsage {
    DigitalSignature,
    KeyEncipherment,
    KeyAgreement,
    NonRepudiation,
}

impl KeyUsage {
    pub(crate) fn rcgen(self) -> rcgen::KeyUsagePurpose {
        match self {
            KeyUsage::DigitalSignature => rcgen::KeyUsagePurpose::DigitalSignature,
            KeyUsage::KeyEncipherment => rcgen::KeyUsagePurpose::KeyEncipherment,
            KeyUsage::KeyAgreement => rcgen::KeyUsagePurpose::KeyAgreement,
            KeyUsage::NonRepudiation => rcgen::KeyUsagePurpose::ContentCommitment,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    description: String,
    usage: Usage,
    validity_days: Spanned<u32>,
    key_type: Option<KeyType>,
    /// Only here to refuse it with a clear message.
    is_ca: Option<Spanned<bool>>,
    key_usage: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    leaf: Vec<RawLeaf>,
    #[serde(default)]
    target: Vec<RawTarget>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLeaf {
    name: Spanned<String>,
    common_name: Option<Spanned<String>>,
    #[serde(default)]
    sans: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    dir: Spanned<String>,
    layout: Layout,
    owner: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
    key_mode: Option<Spanned<String>>,
    reload: Option<Spanned<String>>,
}

/// One validated profile.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub name: String,
    pub path: PathBuf,
    pub description: String,
    pub usage: Usage,
    pub validity_days: u32,
    pub key_type: KeyType,
    pub key_usage: Vec<KeyUsage>,
    pub leaves: Vec<LeafSpec>,
    pub targets: Vec<Target>,
}

/// A leaf: declared by a profile, or issued ad hoc with `ca issue PROFILE --name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeafSpec {
    pub name: String,
    pub common_name: String,
    pub sans: Vec<String>,
}

/// Where and how a leaf is deployed.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// Relative to `deploy_root` unless absolute; `{name}` and `{common_name}` expand.
    pub dir: String,
    pub layout: Layout,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub key_mode: u32,
    pub reload: Option<String>,
}

impl Target {
    /// The target folder of `leaf`, absolute.
    pub fn dir_for(&self, deploy_root: &Path, leaf: &LeafSpec) -> PathBuf {
        let rel =
            self.dir.replace("{name}", &leaf.name).replace("{common_name}", &leaf.common_name);
        crate::config::resolve(deploy_root, Path::new(&rel))
    }
}

/// All profiles of the `profiles` folder, by name (the file stem).
#[derive(Debug, Clone, Default)]
pub struct Profiles {
    pub by_name: BTreeMap<String, Profile>,
}

impl Profiles {
    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.by_name.get(name)
    }

    /// Every declared leaf with its profile.
    pub fn declared(&self) -> impl Iterator<Item = (&Profile, &LeafSpec)> {
        self.by_name.values().flat_map(|p| p.leaves.iter().map(move |l| (p, l)))
    }

    pub fn find_leaf(&self, name: &str) -> Option<(&Profile, &LeafSpec)> {
        self.declared().find(|(_, l)| l.name == name)
    }
}

fn err(
    path: &Path,
    text: &str,
    span: std::ops::Range<usize>,
    key: String,
    message: String,
) -> CaError {
    let (line, column) = crate::config::line_col(text, span.start);
    CaError::Profile { path: path.to_path_buf(), line, column, key, message }
}

/// Loads and validates every profile in `dir`.
pub fn load(dir: &Path, cfg: &CaConfig) -> Result<Profiles, CaError> {
    let mut out = Profiles::default();
    let files = crate::config::toml_files(dir)?;
    let mut leaf_names: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in files {
        let text = std::fs::read_to_string(&path)
            .map_err(|source| crate::config::ConfigError::Read { path: path.clone(), source })?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        check_name(&name).map_err(|m| CaError::Profile {
            path: path.clone(),
            line: 1,
            column: 1,
            key: "(file name)".into(),
            message: m,
        })?;
        let profile = parse(&path, &name, &text, cfg)?;
        for leaf in &profile.leaves {
            if let Some(other) = leaf_names.insert(leaf.name.clone(), path.clone()) {
                return Err(CaError::Profile {
                    path: path.clone(),
                    line: 1,
                    column: 1,
                    key: "leaf.name".into(),
                    message: format!(
                        "leaf {:?} is also declared in {}; leaf names must be unique",
                        leaf.name,
                        other.display()
                    ),
                });
            }
        }
        out.by_name.insert(name, profile);
    }
    // Two leaves deploying to one folder would overwrite each other.
    let mut dirs: BTreeMap<String, String> = BTreeMap::new();
    for (p, leaf) in out.declared() {
        for t in &p.targets {
            let d = t.dir_for(Path::new(""), leaf).to_string_lossy().into_owned();
            if let Some(other) = dirs.insert(d.clone(), leaf.name.clone()) {
                return Err(CaError::Profile {
                    path: p.path.clone(),
                    line: 1,
                    column: 1,
                    key: "target.dir".into(),
                    message: format!(
                        "leaves {other:?} and {:?} would both deploy to {d:?}; give each its own folder",
                        leaf.name
                    ),
                });
            }
        }
    }
    Ok(out)
}

/// Parses one profile's text.
pub fn parse(path: &Path, name: &str, text: &str, cfg: &CaConfig) -> Result<Profile, CaError> {
    let raw: RawProfile = crate::config::parse_toml(path, text)?;
    if let Some(is_ca) = &raw.is_ca
        && *is_ca.get_ref()
    {
        return Err(err(
                path,
                text,
                is_ca.span(),
                "is_ca".into(),
                "a profile issues leaf certificates only: CA:TRUE is refused (the CA itself is made by 'keyward ca init'); remove is_ca".into(),
            ));
    }
    let v = *raw.validity_days.get_ref();
    if v == 0 || v > cfg.ca_validity_days {
        return Err(err(
            path,
            text,
            raw.validity_days.span(),
            "validity_days".into(),
            format!(
                "{v} days is out of range: a leaf lives at least 1 day and at most as long as the CA (ca.ca_validity_days = {})",
                cfg.ca_validity_days
            ),
        ));
    }
    let mut key_usage = Vec::new();
    for (i, ku) in raw.key_usage.iter().flatten().enumerate() {
        let k = match ku.get_ref().as_str() {
            "digital_signature" => KeyUsage::DigitalSignature,
            "key_encipherment" => KeyUsage::KeyEncipherment,
            "key_agreement" => KeyUsage::KeyAgreement,
            "non_repudiation" => KeyUsage::NonRepudiation,
            "key_cert_sign" | "crl_sign" | "keyCertSign" | "cRLSign" => {
                return Err(err(
                    path,
                    text,
                    ku.span(),
                    format!("key_usage[{i}]"),
                    format!(
                        "{:?} is a CA key usage: a profile issues leaf certificates only and cannot sign certificates or CRLs",
                        ku.get_ref()
                    ),
                ));
            }
            other => {
                return Err(err(
                    path,
                    text,
                    ku.span(),
                    format!("key_usage[{i}]"),
                    format!(
                        "unknown key usage {other:?}: use digital_signature, key_encipherment, key_agreement or non_repudiation"
                    ),
                ));
            }
        };
        if !key_usage.contains(&k) {
            key_usage.push(k);
        }
    }
    if key_usage.is_empty() {
        key_usage.push(KeyUsage::DigitalSignature);
    }
    let mut leaves = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, l) in raw.leaf.iter().enumerate() {
        let lname = l.name.get_ref().clone();
        check_name(&lname)
            .map_err(|m| err(path, text, l.name.span(), format!("leaf[{i}].name"), m))?;
        if !seen.insert(lname.clone()) {
            return Err(err(
                path,
                text,
                l.name.span(),
                format!("leaf[{i}].name"),
                format!("leaf {lname:?} is declared twice"),
            ));
        }
        let cn = l.common_name.as_ref().map_or_else(|| lname.clone(), |c| c.get_ref().clone());
        if cn.is_empty() || cn.len() > 64 {
            let span = l.common_name.as_ref().map_or(l.name.span(), |c| c.span());
            return Err(err(
                path,
                text,
                span,
                format!("leaf[{i}].common_name"),
                "a common name has 1 to 64 characters".into(),
            ));
        }
        let mut sans = Vec::new();
        for (j, s) in l.sans.iter().enumerate() {
            check_san(s.get_ref())
                .map_err(|m| err(path, text, s.span(), format!("leaf[{i}].sans[{j}]"), m))?;
            sans.push(s.get_ref().clone());
        }
        if raw.usage == Usage::Server && sans.is_empty() {
            return Err(err(
                path,
                text,
                l.name.span(),
                format!("leaf[{i}].sans"),
                "a server certificate needs at least one SAN (clients verify the host name against it), e.g. sans = [\"db\", \"localhost\", \"127.0.0.1\"]".into(),
            ));
        }
        leaves.push(LeafSpec { name: lname, common_name: cn, sans });
    }
    let mut targets = Vec::new();
    for (i, t) in raw.target.iter().enumerate() {
        targets.push(target(path, text, i, t, cfg, leaves.len())?);
    }
    Ok(Profile {
        name: name.to_string(),
        path: path.to_path_buf(),
        description: raw.description,
        usage: raw.usage,
        validity_days: v,
        key_type: raw.key_type.unwrap_or(cfg.key_type),
        key_usage,
        leaves,
        targets,
    })
}

fn target(
    path: &Path,
    text: &str,
    i: usize,
    t: &RawTarget,
    cfg: &CaConfig,
    leaves: usize,
) -> Result<Target, CaError> {
    let key = |k: &str| format!("target[{i}].{k}");
    let dir = t.dir.get_ref();
    if dir.is_empty() || Path::new(dir).components().any(|c| c == std::path::Component::ParentDir) {
        return Err(err(
            path,
            text,
            t.dir.span(),
            key("dir"),
            "a target folder must be non-empty and must not contain '..'".into(),
        ));
    }
    let stripped = dir.replace("{name}", "").replace("{common_name}", "");
    if stripped.contains('{') || stripped.contains('}') {
        return Err(err(
            path,
            text,
            t.dir.span(),
            key("dir"),
            "unknown placeholder: only {name} and {common_name} expand".into(),
        ));
    }
    if leaves > 1 && !dir.contains("{name}") && !dir.contains("{common_name}") {
        return Err(err(
            path,
            text,
            t.dir.span(),
            key("dir"),
            "this profile declares several leaves: the folder needs {name} so they do not overwrite each other".into(),
        ));
    }
    let mut uid = None;
    let mut gid = None;
    if let Some(o) = &t.owner {
        let u = resolve_user(o.get_ref());
        match u {
            Some(u) => uid = Some(u),
            None if cfg.chown => {
                return Err(err(
                    path,
                    text,
                    o.span(),
                    key("owner"),
                    format!("no user {:?} on this machine (ca.chown = true needs it)", o.get_ref()),
                ));
            }
            None => {}
        }
    }
    if let Some(g) = &t.group {
        match resolve_group(g.get_ref()) {
            Some(g) => gid = Some(g),
            None if cfg.chown => {
                return Err(err(
                    path,
                    text,
                    g.span(),
                    key("group"),
                    format!(
                        "no group {:?} on this machine (ca.chown = true needs it)",
                        g.get_ref()
                    ),
                ));
            }
            None => {}
        }
    }
    let key_mode = match &t.key_mode {
        None => 0o600,
        Some(m) => {
            let mode = u32::from_str_radix(m.get_ref().trim_start_matches("0o"), 8).ok();
            match mode {
                Some(mode @ (0o600 | 0o400)) => mode,
                Some(mode @ (0o640 | 0o440)) => {
                    let root_owned = t
                        .owner
                        .as_ref()
                        .is_some_and(|o| o.get_ref() == "root" || o.get_ref() == "0");
                    if !root_owned || t.group.is_none() {
                        return Err(err(
                            path,
                            text,
                            m.span(),
                            key("key_mode"),
                            format!(
                                "key mode {mode:04o} lets a group read the key: allowed only for a root-owned key with a group (PostgreSQL's rule: owner = \"root\", group = \"postgres\"); otherwise use \"0600\" owned by the service user"
                            ),
                        ));
                    }
                    mode
                }
                _ => {
                    return Err(err(
                        path,
                        text,
                        m.span(),
                        key("key_mode"),
                        format!(
                            "key mode {:?} is refused: a private key is \"0600\" (or \"0640\" root-owned with a group)",
                            m.get_ref()
                        ),
                    ));
                }
            }
        }
    };
    if let Some(r) = &t.reload
        && !cfg.hooks.contains_key(r.get_ref())
    {
        let known: Vec<&str> = cfg.hooks.keys().map(String::as_str).collect();
        return Err(err(
            path,
            text,
            r.span(),
            key("reload"),
            format!(
                "no hook {:?} in keyward.toml [ca.hooks]; defined: {}",
                r.get_ref(),
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ),
        ));
    }
    Ok(Target {
        dir: dir.clone(),
        layout: t.layout,
        owner: t.owner.as_ref().map(|o| o.get_ref().clone()),
        group: t.group.as_ref().map(|g| g.get_ref().clone()),
        uid,
        gid,
        key_mode,
        reload: t.reload.as_ref().map(|r| r.get_ref().clone()),
    })
}

fn resolve_user(s: &str) -> Option<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return Some(n);
    }
    nix::unistd::User::from_name(s).ok().flatten().map(|u| u.uid.as_raw())
}

fn resolve_group(s: &str) -> Option<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return Some(n);
    }
    nix::unistd::Group::from_name(s).ok().flatten().map(|g| g.gid.as_raw())
}

/// Leaf and profile names become file names: keep them plain.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid name: 1 to 64 characters of letters, digits, '-', '_' and '.', not starting with '.'"
        ))
    }
}

/// A SAN is an IP address or a DNS name (a leading `*.` wildcard allowed).
pub fn check_san(s: &str) -> Result<(), String> {
    if s.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let host = s.strip_prefix("*.").unwrap_or(s);
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok { Ok(()) } else { Err(format!("{s:?} is neither an IP address nor a DNS name")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Profile, CaError> {
        let mut cfg = CaConfig::default();
        cfg.hooks.insert(
            "pg".into(),
            crate::hooks::Hook { command: vec!["true".into()], timeout_seconds: 5 },
        );
        parse(Path::new("/p/x.toml"), "x", text, &cfg)
    }

    const BASE: &str = "description = \"d\"\nusage = \"server\"\nvalidity_days = 90\n";

    #[test]
    fn valid_profile_parses() {
        let p = parse_str(&format!(
            "{BASE}[[leaf]]\nname = \"a\"\nsans = [\"db\", \"127.0.0.1\"]\n[[target]]\ndir = \"pg/{{name}}\"\nlayout = \"postgres-server\"\nreload = \"pg\"\n"
        ))
        .unwrap();
        assert_eq!(p.leaves[0].common_name, "a");
        assert_eq!(p.targets[0].key_mode, 0o600);
        assert_eq!(p.key_usage, vec![KeyUsage::DigitalSignature]);
    }

    #[test]
    fn ca_true_is_refused_with_line() {
        let e = parse_str(&format!("{BASE}is_ca = true\n")).unwrap_err();
        let m = e.to_string();
        assert!(m.starts_with("/p/x.toml:4:"), "{m}");
        assert!(m.contains("CA:TRUE"), "{m}");
        let e = parse_str(&format!("{BASE}key_usage = [\"key_cert_sign\"]\n")).unwrap_err();
        assert!(e.to_string().contains("CA key usage"), "{e}");
        assert_eq!(e.exit(), crate::Exit::Usage);
    }

    #[test]
    fn group_readable_key_needs_root_and_group() {
        let t = |extra: &str| {
            parse_str(&format!(
                "{BASE}[[leaf]]\nname = \"a\"\nsans = [\"db\"]\n[[target]]\ndir = \"d\"\nlayout = \"pem\"\n{extra}"
            ))
        };
        let e = t("key_mode = \"0640\"\n").unwrap_err();
        assert!(e.to_string().contains("target[0].key_mode"), "{e}");
        assert!(t("key_mode = \"0644\"\n").is_err());
        assert!(t("owner = \"root\"\ngroup = \"0\"\nkey_mode = \"0640\"\n").is_ok());
        let e = t("reload = \"nope\"\n").unwrap_err();
        assert!(e.to_string().contains("no hook"), "{e}");
    }

    #[test]
    fn unknown_key_and_bad_san() {
        let e = parse_str(&format!("{BASE}colour = 1\n")).unwrap_err();
        assert!(e.to_string().contains("/p/x.toml:4:1"), "{e}");
        let e = parse_str(&format!("{BASE}[[leaf]]\nname = \"a\"\nsans = [\"bad host\"]\n"))
            .unwrap_err();
        assert!(e.to_string().contains("leaf[0].sans[0]"), "{e}");
    }
}
