//! The disaster-recovery export of keyward itself, and its restore on a fresh machine.
//!
//! `backup state` packs the state folder (CA keys, secret store, ACME account, audit log,
//! last run — everything but the run lock), keyward.toml, the `ca/` and `policies/`
//! folders beside it and the `[backup] dr_include` files into a tar archive with a
//! manifest (path, mode, size, SHA-256 of every file), encrypts it to the DR recipients
//! as a standard age v1 file and signs it with the server's key. `restore state`
//! decrypts and checks the whole archive against its manifest before it writes
//! anything, refuses to overwrite an existing installation unless forced (and then
//! moves the old state folder aside), restores modes, and audits. Nothing here prints
//! or logs file contents.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::keys::{self, Identity, Recipient};
use super::{BackupError, Cipher, DecryptOptions, EncryptOptions};
use crate::audit::{AuditLog, Object, Outcome};
use crate::config::{Config, ConfigFile};
use crate::output::{Format, Human};
use crate::store::FileMode;
use crate::{Context, Error, Exit};

pub const MANIFEST: &str = "manifest.json";
pub const FORMAT: &str = "keyward-state-export/1";
/// A decrypted export larger than this is refused (it cannot be keyward's state).
const MAX_ARCHIVE: u64 = 4 << 30;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive (`config/…`, `state/…`, `extra/N/…`).
    pub archive: String,
    /// `file` or `dir`.
    pub kind: String,
    pub mode: u32,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub sha256: String,
    /// For `extra/…` files: the path as configured (relative to keyward.toml's folder
    /// unless absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_to: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub created: String,
    pub host: String,
    pub keyward_version: String,
    pub entries: Vec<Entry>,
}

struct Collected {
    entries: Vec<Entry>,
    data: BTreeMap<String, Vec<u8>>,
}

fn add_file(
    c: &mut Collected,
    archive: String,
    path: &Path,
    restore_to: Option<PathBuf>,
) -> Result<(), BackupError> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| BackupError::io("inspect", path, e))?;
    if !meta.is_file() {
        return Err(BackupError::State(format!(
            "{} is not a regular file; the DR export carries only files and folders: remove it or fix [backup] dr_include",
            path.display()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| BackupError::io("read", path, e))?;
    c.entries.push(Entry {
        archive: archive.clone(),
        kind: "file".into(),
        mode: meta.mode() & 0o7777,
        size: bytes.len() as u64,
        sha256: crate::util::sha256_hex(&bytes),
        restore_to,
    });
    c.data.insert(archive, bytes);
    Ok(())
}

fn add_tree(c: &mut Collected, prefix: &str, dir: &Path, skip: &[&str]) -> Result<(), BackupError> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| BackupError::io("list", dir, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BackupError::io("list", dir, e))?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let name = e.file_name().to_string_lossy().into_owned();
        if skip.contains(&name.as_str()) {
            continue;
        }
        let path = e.path();
        let archive = format!("{prefix}/{name}");
        let meta =
            std::fs::symlink_metadata(&path).map_err(|e| BackupError::io("inspect", &path, e))?;
        if meta.is_dir() {
            c.entries.push(Entry {
                archive: archive.clone(),
                kind: "dir".into(),
                mode: meta.mode() & 0o7777,
                size: 0,
                sha256: String::new(),
                restore_to: None,
            });
            add_tree(c, &archive, &path, &[])?;
        } else {
            add_file(c, archive, &path, None)?;
        }
    }
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn is_under(p: &Path, dir: &Path) -> bool {
    p.starts_with(dir)
}

/// Packs everything the export carries.
fn collect(ctx: &Context) -> Result<Collected, BackupError> {
    let mut c = Collected { entries: Vec::new(), data: BTreeMap::new() };
    add_file(&mut c, "config/keyward.toml".into(), &ctx.config.path, None)?;
    for sub in ["ca", "policies"] {
        let d = ctx.config.dir.join(sub);
        if d.is_dir() {
            let meta = std::fs::metadata(&d).map_err(|e| BackupError::io("inspect", &d, e))?;
            c.entries.push(Entry {
                archive: format!("config/{sub}"),
                kind: "dir".into(),
                mode: meta.mode() & 0o7777,
                size: 0,
                sha256: String::new(),
                restore_to: None,
            });
            add_tree(&mut c, &format!("config/{sub}"), &d, &[])?;
        }
    }
    let state = ctx.store.root();
    // The state folder may sit inside the config folder (keyward init's layout): the
    // `ca`/`policies` walk never enters it because it only walks those two folders.
    add_tree(&mut c, "state", state, &["lock"])?;
    // (configured path, whether it may be missing)
    let mut extras: Vec<(PathBuf, bool)> = Vec::new();
    let audit = ctx.config.audit_file();
    if !is_under(&audit, state) {
        let configured = ctx.config.file.audit.file.clone().unwrap_or(audit.clone());
        extras.push((configured.clone(), true));
        extras.push((configured.with_extension("head"), true));
    }
    if let Some(b) = &ctx.config.file.backup {
        extras.extend(b.dr_include.iter().map(|p| (p.clone(), false)));
    }
    // The machine key decrypts the secret store and the ACME account key: without it
    // the export restores nothing usable. It lives outside the state folder by design;
    // it is restored to the path keyward.toml names (a systemd credential's content
    // becomes that file, to be sealed again on the new host).
    let machine_key: PathBuf = ctx
        .config
        .file
        .secrets
        .as_ref()
        .and_then(|s| s.machine_key.clone())
        .unwrap_or_else(|| PathBuf::from(crate::secrets::DEFAULT_MACHINE_KEY));
    let machine_key_source = crate::secrets::machine_key_path(ctx).ok();
    for (i, (configured, optional)) in extras.into_iter().enumerate() {
        let path = ctx.config.resolve(&configured);
        if optional && !path.exists() {
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        add_file(&mut c, format!("extra/{i}/{name}"), &path, Some(configured))?;
    }
    if let Some(source) = machine_key_source.filter(|p| p.is_file()) {
        let listed =
            c.entries.iter().any(|e| e.restore_to.as_deref() == Some(machine_key.as_path()));
        if !listed {
            add_file(&mut c, "extra/machine-key/machine.key".into(), &source, Some(machine_key))?;
        }
    }
    Ok(c)
}

fn tar_bytes(manifest: &Manifest, c: &Collected) -> Result<Vec<u8>, BackupError> {
    let mut b = tar::Builder::new(Vec::new());
    let io_err = |e: std::io::Error| BackupError::State(format!("cannot build the archive: {e}"));
    let mjson = serde_json::to_vec_pretty(manifest)
        .map_err(|e| BackupError::State(format!("cannot encode the manifest: {e}")))?;
    let mut h = tar::Header::new_ustar();
    h.set_size(mjson.len() as u64);
    h.set_mode(0o600);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, MANIFEST, &mjson[..]).map_err(io_err)?;
    for e in &c.entries {
        let mut h = tar::Header::new_ustar();
        h.set_mode(e.mode);
        if e.kind == "dir" {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            b.append_data(&mut h, &e.archive, std::io::empty()).map_err(io_err)?;
        } else {
            let data = &c.data[&e.archive];
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, &e.archive, &data[..]).map_err(io_err)?;
        }
    }
    b.into_inner().map_err(io_err)
}

#[derive(Serialize)]
struct Exported {
    file: PathBuf,
    files: usize,
    bytes: u64,
    recipients: usize,
    signed_by: String,
    sha256: String,
}

impl Human for Exported {
    fn human(&self, out: &mut String) {
        out.push_str(&format!(
            "wrote {} ({} files, {} bytes of state) for {} DR recipient(s), signed by {}\nrestore it with: keyward -c /etc/keyward/keyward.toml restore state -i DR_IDENTITY {}\n",
            self.file.display(),
            self.files,
            self.bytes,
            self.recipients,
            self.signed_by,
            self.file.display()
        ));
    }
}

/// `keyward backup state -o FILE`.
pub fn export(ctx: &Context, output: &Path) -> Result<Exit, Error> {
    let _lock = ctx.lock()?;
    let dr = ctx.config.dr_recipients()?;
    if dr.is_empty() {
        return Err(BackupError::Usage(format!(
            "{}: no DR recipients: add [dr] recipients = [\"age1…\"] (the offline DR identity's public key, from 'keyward backup keygen')",
            ctx.config.path.display()
        ))
        .into());
    }
    let recipients: Vec<Recipient> =
        dr.iter().map(|r| keys::parse_recipient(r, "dr.recipients")).collect::<Result<_, _>>()?;
    let (key, _) = super::command::signing_key(ctx, true)?;
    let result = (|| {
        let c = collect(ctx)?;
        let manifest = Manifest {
            format: FORMAT.into(),
            created: crate::util::fmt_time(ctx.now),
            host: hostname(),
            keyward_version: env!("CARGO_PKG_VERSION").into(),
            entries: c.entries.clone(),
        };
        let tar = tar_bytes(&manifest, &c)?;
        let opts = EncryptOptions {
            cipher: Cipher::ChaCha20Poly1305,
            recipients,
            armor: false,
            signer: Some(&key),
        };
        let mut out = Vec::new();
        super::encrypt_stream(&opts, &mut &tar[..], &mut out, None)?;
        crate::store::atomic_write(output, &out, FileMode::PRIVATE)?;
        let files = c.entries.iter().filter(|e| e.kind == "file").count();
        Ok::<_, BackupError>(Exported {
            file: output.to_path_buf(),
            files,
            bytes: c.entries.iter().map(|e| e.size).sum(),
            recipients: dr.len(),
            signed_by: keys::signer_string(&key.public()),
            sha256: crate::util::sha256_hex(&out),
        })
    })();
    match result {
        Ok(done) => {
            ctx.audit.append(
                "export-state",
                Object::new("dr-export", output.display().to_string())
                    .fingerprint(done.sha256.clone()),
                Outcome::Ok,
                Some(&format!("{} files for {} DR recipient(s)", done.files, done.recipients)),
            )?;
            crate::output::emit(ctx.format, &done)
        }
        Err(e) => {
            let _ = ctx.audit.append(
                "export-state",
                Object::new("dr-export", output.display().to_string()),
                Outcome::Failed,
                Some(&e.to_string()),
            );
            Err(e.into())
        }
    }
}

/// A checked archive, in memory.
struct Checked {
    manifest: Manifest,
    files: BTreeMap<String, Vec<u8>>,
}

fn safe_archive_path(p: &str) -> bool {
    let path = Path::new(p);
    !p.is_empty()
        && path.components().all(|c| matches!(c, Component::Normal(_)))
        && (p == MANIFEST
            || p.starts_with("config/")
            || p.starts_with("state/")
            || p.starts_with("extra/"))
}

fn check_archive(tar_bytes: &[u8]) -> Result<Checked, BackupError> {
    let bad = |m: String| {
        BackupError::State(format!("the DR export's archive is invalid: {m}; nothing was restored"))
    };
    let mut archive = tar::Archive::new(tar_bytes);
    let mut files = BTreeMap::new();
    let mut dirs = BTreeMap::new();
    let mut manifest: Option<Manifest> = None;
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let path = entry
            .path()
            .map_err(|e| bad(e.to_string()))?
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        if !safe_archive_path(&path) {
            return Err(bad(format!("unexpected path {path:?}")));
        }
        match entry.header().entry_type() {
            tar::EntryType::Regular => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).map_err(|e| bad(e.to_string()))?;
                if path == MANIFEST {
                    manifest = Some(
                        serde_json::from_slice(&data).map_err(|e| bad(format!("manifest: {e}")))?,
                    );
                } else if files.insert(path.clone(), data).is_some() {
                    return Err(bad(format!("{path} appears twice")));
                }
            }
            tar::EntryType::Directory => {
                dirs.insert(path, ());
            }
            t => return Err(bad(format!("{path} is a {t:?}, not a file or folder"))),
        }
    }
    let manifest = manifest.ok_or_else(|| bad("no manifest.json".into()))?;
    if manifest.format != FORMAT {
        return Err(bad(format!("format {:?}, expected {FORMAT:?}", manifest.format)));
    }
    let mut listed = 0;
    for e in &manifest.entries {
        if !safe_archive_path(&e.archive) || e.mode & !0o7777 != 0 {
            return Err(bad(format!("manifest entry {:?}", e.archive)));
        }
        match e.kind.as_str() {
            "file" => {
                listed += 1;
                let data = files
                    .get(&e.archive)
                    .ok_or_else(|| bad(format!("{} is missing", e.archive)))?;
                if data.len() as u64 != e.size || crate::util::sha256_hex(data) != e.sha256 {
                    return Err(bad(format!("{} does not match its checksum", e.archive)));
                }
                if e.archive.starts_with("extra/") && e.restore_to.is_none() {
                    return Err(bad(format!("{} has no restore path", e.archive)));
                }
            }
            "dir" => {
                if !dirs.contains_key(&e.archive) {
                    return Err(bad(format!("folder {} is missing", e.archive)));
                }
            }
            k => return Err(bad(format!("unknown entry kind {k:?}"))),
        }
    }
    if listed != files.len() {
        return Err(bad("the archive holds files its manifest does not list".into()));
    }
    if !files.contains_key("config/keyward.toml") {
        return Err(bad("no config/keyward.toml".into()));
    }
    Ok(Checked { manifest, files })
}

pub struct RestoreArgs {
    pub config: PathBuf,
    pub identities: Vec<PathBuf>,
    pub signer: Option<String>,
    pub force: bool,
    pub file: PathBuf,
    pub format: Format,
}

#[derive(Serialize)]
struct Restored {
    file: PathBuf,
    config: PathBuf,
    state_dir: PathBuf,
    files: usize,
    exported: String,
    host: String,
    signed_by: Option<String>,
    signer_trusted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_state_moved_to: Option<PathBuf>,
}

impl Human for Restored {
    fn human(&self, out: &mut String) {
        out.push_str(&format!(
            "restored {} files from {} (exported {} on {})\n  config: {}\n  state:  {}\n",
            self.files,
            self.file.display(),
            self.exported,
            if self.host.is_empty() { "?" } else { &self.host },
            self.config.display(),
            self.state_dir.display()
        ));
        match (&self.signed_by, self.signer_trusted) {
            (Some(s), true) => out.push_str(&format!("  signed by the trusted key {s}\n")),
            (Some(s), false) => out.push_str(&format!(
                "  signed by {s} (compare it with the server's key; pass --signer to require it)\n"
            )),
            (None, _) => out.push_str("  UNSIGNED export\n"),
        }
        if let Some(p) = &self.previous_state_moved_to {
            out.push_str(&format!("  the previous state folder was moved to {}\n", p.display()));
        }
        out.push_str(&format!("next: keyward -c {} status\n", self.config.display()));
    }
}

struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() as u64 + buf.len() as u64 > MAX_ARCHIVE {
            return Err(std::io::Error::other("the DR export is larger than 4 GiB"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn non_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p).map(|mut d| d.next().is_some()).unwrap_or(false)
}

/// `keyward restore state`.
pub fn restore(a: RestoreArgs) -> Result<Exit, Error> {
    let mut identities: Vec<Identity> = Vec::new();
    for f in &a.identities {
        identities.extend(keys::identities_file(f)?);
    }
    if identities.is_empty() {
        return Err(BackupError::Usage(
            "restore state needs the DR identity: pass -i DR_IDENTITY_FILE".into(),
        )
        .into());
    }
    let signer = a.signer.as_deref().map(keys::parse_signer).transpose()?;
    let opts = DecryptOptions { identities, signer, ..DecryptOptions::default() };
    let input = std::fs::File::open(&a.file).map_err(|e| BackupError::io("open", &a.file, e))?;
    // 1. Decrypt and authenticate everything, in memory.
    let mut plain = Capped(Vec::new());
    let report = super::decrypt_stream(Box::new(input), &mut plain, &opts, None)?;
    // 2. Check the archive against its manifest.
    let checked = check_archive(&plain.0)?;
    // 3. Where things go, from the restored configuration placed at the target path.
    let config_path = if a.config.is_absolute() {
        a.config.clone()
    } else {
        std::env::current_dir()
            .map_err(|e| BackupError::io("find", Path::new("."), e))?
            .join(&a.config)
    };
    let config_dir = config_path.parent().map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let toml_text =
        String::from_utf8(checked.files["config/keyward.toml"].clone()).map_err(|_| {
            BackupError::State(
                "the exported keyward.toml is not UTF-8; nothing was restored".into(),
            )
        })?;
    let file: ConfigFile = crate::config::parse_toml(&config_path, &toml_text)?;
    let config = Config { file, path: config_path.clone(), dir: config_dir.clone() };
    let state_dir = config.state_dir();
    let mut targets: Vec<(PathBuf, &Entry)> = Vec::new();
    for e in &checked.manifest.entries {
        let target = if let Some(rest) = e.archive.strip_prefix("config/") {
            if rest == "keyward.toml" { config_path.clone() } else { config_dir.join(rest) }
        } else if let Some(rest) = e.archive.strip_prefix("state/") {
            state_dir.join(rest)
        } else {
            // Checked above: extra entries carry their configured path.
            config.resolve(e.restore_to.as_deref().unwrap_or(Path::new("")))
        };
        targets.push((target, e));
    }
    // 4. Refuse to overwrite an existing installation unless forced.
    let mut existing: Vec<PathBuf> = Vec::new();
    if non_empty_dir(&state_dir) {
        existing.push(state_dir.clone());
    }
    for (t, e) in &targets {
        if e.kind == "file" && t.exists() && !t.starts_with(&state_dir) {
            existing.push(t.clone());
        }
    }
    let mut moved = None;
    if !existing.is_empty() {
        if !a.force {
            return Err(BackupError::State(format!(
                "refusing to overwrite an existing keyward installation ({}); nothing was restored: restore on a fresh machine, or pass --force (the existing state folder is then moved aside, not deleted)",
                existing.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ))
            .into());
        }
        if non_empty_dir(&state_dir) {
            let stamp = crate::util::now().format("%Y%m%dT%H%M%SZ");
            let aside = state_dir.with_file_name(format!(
                "{}.before-restore-{stamp}",
                state_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            ));
            std::fs::rename(&state_dir, &aside)
                .map_err(|e| BackupError::io("move aside", &state_dir, e))?;
            moved = Some(aside);
        }
    }
    // 5. Write: folders first (with their modes), then files atomically.
    crate::store::ensure_private_dir(&state_dir).map_err(BackupError::from)?;
    for (t, e) in targets.iter().filter(|(_, e)| e.kind == "dir") {
        std::fs::create_dir_all(t).map_err(|err| BackupError::io("create folder", t, err))?;
        std::fs::set_permissions(t, std::fs::Permissions::from_mode(e.mode))
            .map_err(|err| BackupError::io("set the mode of", t, err))?;
    }
    for (t, e) in targets.iter().filter(|(_, e)| e.kind == "file") {
        let data = &checked.files[&e.archive];
        crate::store::atomic_write(t, data, FileMode::with_mode(e.mode))
            .map_err(BackupError::from)?;
    }
    // 6. Audit, in the restored log (continuing its chain).
    let audit = AuditLog::new(config.audit_file(), "restore state");
    audit.append(
        "restore-state",
        Object::new("dr-export", a.file.display().to_string()),
        Outcome::Ok,
        Some(&format!(
            "{} files, exported {} on {}",
            targets.iter().filter(|(_, e)| e.kind == "file").count(),
            checked.manifest.created,
            checked.manifest.host
        )),
    )?;
    let done = Restored {
        file: a.file.clone(),
        config: config_path,
        state_dir,
        files: checked.files.len(),
        exported: checked.manifest.created.clone(),
        host: checked.manifest.host.clone(),
        signed_by: report.signed_by,
        signer_trusted: report.signer_trusted,
        previous_state_moved_to: moved,
    };
    crate::output::emit(a.format, &done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths_are_confined() {
        assert!(safe_archive_path("state/ca/key.pem"));
        assert!(safe_archive_path(MANIFEST));
        assert!(!safe_archive_path("../etc/passwd"));
        assert!(!safe_archive_path("/etc/passwd"));
        assert!(!safe_archive_path("state/../../x"));
        assert!(!safe_archive_path("other/x"));
    }

    #[test]
    fn tampered_or_unlisted_entries_are_refused() {
        let mut c = Collected { entries: Vec::new(), data: BTreeMap::new() };
        c.entries.push(Entry {
            archive: "config/keyward.toml".into(),
            kind: "file".into(),
            mode: 0o644,
            size: 3,
            sha256: crate::util::sha256_hex(b"a=1"),
            restore_to: None,
        });
        c.data.insert("config/keyward.toml".into(), b"a=1".to_vec());
        let m = Manifest {
            format: FORMAT.into(),
            created: "t".into(),
            host: "h".into(),
            keyward_version: "0".into(),
            entries: c.entries.clone(),
        };
        assert!(check_archive(&tar_bytes(&m, &c).unwrap()).is_ok());
        let mut bad = m.clone();
        bad.entries[0].sha256 = crate::util::sha256_hex(b"other");
        assert!(check_archive(&tar_bytes(&bad, &c).unwrap()).is_err());
        let mut extra = Collected { entries: c.entries.clone(), data: c.data.clone() };
        extra.entries.push(Entry { archive: "state/x".into(), ..c.entries[0].clone() });
        extra.data.insert("state/x".into(), b"a=1".to_vec());
        // The manifest does not list state/x.
        assert!(check_archive(&tar_bytes(&m, &extra).unwrap()).is_err());
    }
}
