//! Deployment targets: a leaf's files laid out for PostgreSQL, libpq, MinIO or plain
//! PEM, written so that the folder changes as one set.
//!
//! Like Kubernetes' AtomicWriter: all files go into a fresh hidden generation folder
//! (`..kw_<content hash>`), are fsynced, and a `..data` symlink is swapped to it with
//! rename(2); the visible names are relative symlinks through `..data`. At every
//! moment, also across a crash, the target shows the complete old set or the complete
//! new set. Old generations are removed after the swap. Key files get the target's
//! owner, group and mode before they are visible. This module never logs file contents.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::CaError;
use super::profile::Layout;
use crate::secret::SecretBytes;

const DATA: &str = "..data";
const GEN_PREFIX: &str = "..kw_";

/// One file of a target, by its path inside the target.
pub struct File {
    pub rel: &'static str,
    pub bytes: SecretBytes,
    pub key: bool,
}

/// The PEMs a target is made of.
pub struct Material<'a> {
    pub cert: &'a str,
    pub key: &'a SecretBytes,
    /// Certificates after the leaf (the intermediate of a two-tier CA).
    pub chain: &'a str,
    /// Every trusted CA (current and previous).
    pub bundle: &'a str,
    /// Every trusted CA's CRL.
    pub crl: &'a str,
}

/// The files of `layout`.
pub fn files(layout: Layout, m: &Material<'_>) -> Vec<File> {
    let public = |rel: &'static str, s: String| File {
        rel,
        bytes: SecretBytes::new(s.into_bytes()),
        key: false,
    };
    let key = |rel: &'static str| File { rel, bytes: m.key.clone(), key: true };
    let full = format!("{}{}", m.cert, m.chain);
    match layout {
        Layout::PostgresServer => vec![
            public("server.crt", full),
            key("server.key"),
            public("root.crt", m.bundle.to_string()),
            public("root.crl", m.crl.to_string()),
        ],
        Layout::PostgresClient => vec![
            public("postgresql.crt", full),
            key("postgresql.key"),
            public("root.crt", m.bundle.to_string()),
        ],
        Layout::Minio => vec![
            public("public.crt", full),
            key("private.key"),
            public("CAs/ca.crt", m.bundle.to_string()),
        ],
        Layout::Pem => vec![
            public("cert.pem", m.cert.to_string()),
            public("chain.pem", m.chain.to_string()),
            public("fullchain.pem", full),
            key("key.pem"),
            public("ca.pem", m.bundle.to_string()),
        ],
    }
}

/// Who owns the files and how the key is protected.
#[derive(Debug, Clone, Copy)]
pub struct Ownership {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub key_mode: u32,
}

/// The generation a set of files would get: a hash of names, modes, owners and bytes.
pub fn generation_of(files: &[File], own: Ownership) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(format!("{:?}:{:?}:{:o}\n", own.uid, own.gid, own.key_mode).as_bytes());
    for f in files {
        ctx.update(f.rel.as_bytes());
        ctx.update(&(f.bytes.len() as u64).to_be_bytes());
        ctx.update(f.bytes.expose());
    }
    format!("{GEN_PREFIX}{}", &hex::encode(ctx.finish())[..16])
}

/// The generation `dir` currently shows, if any.
pub fn current_generation(dir: &Path) -> Option<String> {
    std::fs::read_link(dir.join(DATA)).ok().map(|p| p.to_string_lossy().into_owned())
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CaError + 'a {
    move |source| CaError::Io { op, path: path.to_path_buf(), source }
}

/// A target whose new generation is written but not yet shown.
pub struct Prepared {
    pub dir: PathBuf,
    pub generation: String,
    /// False when `..data` already shows this generation.
    fresh: bool,
    /// Files and folders to fsync before the swap.
    pub to_sync: Vec<PathBuf>,
    visible: Vec<&'static str>,
}

/// Writes the generation folder of `files` in `dir` (not yet fsynced, not yet shown).
pub fn prepare(dir: &Path, files: &[File], own: Ownership) -> Result<Prepared, CaError> {
    let gen_name = generation_of(files, own);
    std::fs::create_dir_all(dir).map_err(io("create folder", dir))?;
    let gen_dir = dir.join(&gen_name);
    let fresh = current_generation(dir).as_deref() != Some(gen_name.as_str());
    let mut to_sync = Vec::new();
    if fresh {
        if gen_dir.exists() {
            // A leftover of an interrupted deploy: never trust a half-written folder.
            std::fs::remove_dir_all(&gen_dir).map_err(io("remove", &gen_dir))?;
        }
        match write_generation(&gen_dir, files, own) {
            Ok(paths) => to_sync = paths,
            Err(e) => {
                // Never leave a half-written generation behind.
                let _ = std::fs::remove_dir_all(&gen_dir);
                return Err(e);
            }
        }
    }
    let mut visible: Vec<&'static str> =
        files.iter().map(|f| f.rel.split('/').next().unwrap_or(f.rel)).collect();
    visible.dedup();
    Ok(Prepared { dir: dir.to_path_buf(), generation: gen_name, fresh, to_sync, visible })
}

/// Shows a prepared (and fsynced) generation: swaps `..data` with rename(2), then makes
/// sure every visible name is a symlink through it.
pub fn commit(p: &Prepared) -> Result<(), CaError> {
    let dir = &p.dir;
    if p.fresh {
        let tmp = dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&p.generation, &tmp).map_err(io("create a symlink in", dir))?;
        std::fs::rename(&tmp, dir.join(DATA)).map_err(io("swap ..data in", dir))?;
        super::fault("deploy-data-swapped");
    }
    for name in &p.visible {
        let link = dir.join(name);
        let want = PathBuf::from(DATA).join(name);
        if std::fs::read_link(&link).ok().as_deref() == Some(want.as_path()) {
            continue;
        }
        let tmp = dir.join(format!(".{name}.kwtmp"));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&want, &tmp).map_err(io("create a symlink in", dir))?;
        if link.is_dir() && !link.is_symlink() {
            // A folder left by an older tool (e.g. MinIO's CAs/): replaced by the link.
            std::fs::remove_dir_all(&link).map_err(io("remove", &link))?;
        }
        std::fs::rename(&tmp, &link).map_err(io("rename into place", &link))?;
    }
    Ok(())
}

/// Removes the generations that `..data` no longer shows.
pub fn cleanup(p: &Prepared) {
    if let Ok(rd) = std::fs::read_dir(&p.dir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(GEN_PREFIX) && n != p.generation {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Deploys `files` to `dir` as one set; returns the generation now shown.
pub fn deploy(dir: &Path, files: &[File], own: Ownership) -> Result<String, CaError> {
    let p = prepare(dir, files, own)?;
    super::durable::sync_all(&p.to_sync)?;
    commit(&p)?;
    crate::store::fsync_dir(dir)?;
    cleanup(&p);
    Ok(p.generation)
}

fn write_generation(
    gen_dir: &Path,
    files: &[File],
    own: Ownership,
) -> Result<Vec<PathBuf>, CaError> {
    std::fs::DirBuilder::new().mode(0o755).create(gen_dir).map_err(io("create folder", gen_dir))?;
    std::fs::set_permissions(gen_dir, std::fs::Permissions::from_mode(0o755))
        .map_err(io("set the mode of", gen_dir))?;
    let mut written = vec![gen_dir.to_path_buf()];
    for f in files {
        let path = gen_dir.join(f.rel);
        if let Some(parent) = path.parent()
            && !parent.exists()
        {
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(parent)
                .map_err(io("create folder", parent))?;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))
                .map_err(io("set the mode of", parent))?;
            written.push(parent.to_path_buf());
        }
        let mode = if f.key { own.key_mode } else { 0o644 };
        super::durable::create(&path, f.bytes.expose(), mode, Some((own.uid, own.gid)))?;
        written.push(path);
    }
    if let Some(parent) = gen_dir.parent() {
        written.push(parent.to_path_buf());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn material_files(tag: &str) -> Vec<File> {
        let key = SecretBytes::from_slice(format!("KEY {tag}").as_bytes());
        let m = Material {
            cert: &format!("CERT {tag}\n"),
            key: &key,
            chain: "",
            bundle: "CA\n",
            crl: "CRL\n",
        };
        files(Layout::Minio, &m)
    }

    #[test]
    fn swaps_whole_sets_and_cleans_up() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("minio");
        let own = Ownership { uid: None, gid: None, key_mode: 0o600 };
        let g1 = deploy(&dir, &material_files("one"), own).unwrap();
        assert_eq!(std::fs::read(dir.join("public.crt")).unwrap(), b"CERT one\n");
        assert_eq!(std::fs::read(dir.join("CAs/ca.crt")).unwrap(), b"CA\n");
        let g2 = deploy(&dir, &material_files("two"), own).unwrap();
        assert_ne!(g1, g2);
        assert_eq!(std::fs::read(dir.join("private.key")).unwrap(), b"KEY two");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(dir.join("private.key")).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(dir.join("public.crt")).unwrap().mode() & 0o777, 0o644);
        assert!(
            std::fs::symlink_metadata(dir.join("public.crt")).unwrap().file_type().is_symlink()
        );
        // Only the current generation is left.
        let gens: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(GEN_PREFIX))
            .collect();
        assert_eq!(gens.len(), 1);
        // Deploying the same set again changes nothing.
        assert_eq!(deploy(&dir, &material_files("two"), own).unwrap(), g2);
    }
}
