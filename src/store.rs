//! The state folder: atomic files, private modes, and the run lock.
//!
//! Everything keyward persists goes through here: a write is a temp file in the same
//! folder, fsync, rename over the target, fsync of the folder, so a crash leaves
//! either the old or the new file and never a torn one. Key material and state are
//! refused when their mode lets group or others read them. The store does not know
//! what the files mean; the modules that own them do. It must never log file contents.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Exit;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error(
        "{path} has mode {mode:04o}, which lets {who} read it; keyward refuses to use it: run 'chmod {fix:04o} {path}' (and check who else may have read it)"
    )]
    InsecureMode { path: PathBuf, mode: u32, who: &'static str, fix: u32 },
    #[error(
        "another keyward holds the lock {path} ({holder}); waited {waited}s: try again when it is done, or raise state.lock_wait_seconds"
    )]
    Locked { path: PathBuf, holder: String, waited: u64 },
    #[error(
        "{path} is damaged ({detail}); restore it from the DR export ('keyward restore state') or remove it if it can be rebuilt"
    )]
    Corrupt { path: PathBuf, detail: String },
}

impl StoreError {
    pub fn exit(&self) -> Exit {
        match self {
            StoreError::Locked { .. } => Exit::Locked,
            StoreError::InsecureMode { .. } => Exit::Usage,
            StoreError::Io { .. } | StoreError::Corrupt { .. } => Exit::Failed,
        }
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io { op, path: path.to_path_buf(), source }
}

/// Mode, owner and group of a file keyward writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode {
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl FileMode {
    /// 0600, owned by the caller: key material and state.
    pub const PRIVATE: FileMode = FileMode { mode: 0o600, uid: None, gid: None };
    /// 0644: certificates, CRLs, metrics.
    pub const PUBLIC: FileMode = FileMode { mode: 0o644, uid: None, gid: None };

    pub const fn with_mode(mode: u32) -> FileMode {
        FileMode { mode, uid: None, gid: None }
    }
}

/// Writes `bytes` to `path` atomically: temp file in the same folder (created with
/// the final mode, so the content is never readable by others even for a moment),
/// fsync, chown, rename, fsync of the folder.
pub fn atomic_write(path: &Path, bytes: &[u8], mode: FileMode) -> Result<(), StoreError> {
    write_replace(path, bytes, mode, true)
}

/// Like [`atomic_write`] (never a torn file), but without the fsyncs, for files that
/// are rewritten on every run and only report (the metrics textfile, the last-run
/// record): after a crash they may show the previous run, never a half-written one.
/// Never for keys, secrets, certificates or state that later work depends on.
pub fn replace_unsynced(path: &Path, bytes: &[u8], mode: FileMode) -> Result<(), StoreError> {
    write_replace(path, bytes, mode, false)
}

fn write_replace(
    path: &Path,
    bytes: &[u8],
    mode: FileMode,
    durable: bool,
) -> Result<(), StoreError> {
    let dir = parent(path);
    fs::create_dir_all(dir).map_err(io("create folder", dir))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(mode.mode & 0o700))
        .tempfile_in(dir)
        .map_err(io("create a temp file in", dir))?;
    tmp.write_all(bytes).map_err(io("write", tmp.path()))?;
    if durable {
        tmp.as_file().sync_all().map_err(io("fsync", tmp.path()))?;
    }
    // Group first, then the mode, then the owner: the mode is set while keyward still
    // owns the file (so it needs CAP_CHOWN only, not CAP_FOWNER), and group/other bits
    // appear only once the group is final.
    if mode.gid.is_some() {
        std::os::unix::fs::fchown(tmp.as_file(), None, mode.gid)
            .map_err(io("change the group of", path))?;
    }
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode.mode))
        .map_err(io("set the mode of", path))?;
    if mode.uid.is_some() {
        std::os::unix::fs::fchown(tmp.as_file(), mode.uid, None)
            .map_err(io("change the owner of", path))?;
    }
    tmp.persist(path).map_err(|e| StoreError::Io {
        op: "rename into place",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    if durable { fsync_dir(dir) } else { Ok(()) }
}

/// fsync of a folder, so that a rename in it survives a crash.
pub fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("fsync folder", dir))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates `dir` (and parents) with mode 0700 if missing; refuses an existing one that
/// group or others can enter.
pub fn ensure_private_dir(dir: &Path) -> Result<(), StoreError> {
    match fs::metadata(dir) {
        Ok(meta) => check_mode(dir, meta.mode(), 0o077, 0o700),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io("create folder", dir))?;
            // DirBuilder's mode is filtered by the umask; set it exactly.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(io("set the mode of", dir))?;
            if let Some(p) = dir.parent() {
                fsync_dir(p)?;
            }
            Ok(())
        }
        Err(e) => Err(StoreError::Io { op: "inspect", path: dir.to_path_buf(), source: e }),
    }
}

/// Refuses key material that group or others can read.
pub fn check_private(path: &Path) -> Result<(), StoreError> {
    let meta = fs::metadata(path).map_err(io("inspect", path))?;
    check_mode(path, meta.mode(), 0o077, 0o600)
}

/// Refuses a key file unless it is 0600, or 0640 owned by root (PostgreSQL's rule for
/// a key that a root-owned file gives the database group), when `allow_root_group`.
pub fn check_key_file(path: &Path, allow_root_group: bool) -> Result<(), StoreError> {
    let meta = fs::metadata(path).map_err(io("inspect", path))?;
    let mode = meta.mode() & 0o7777;
    if allow_root_group && meta.uid() == 0 && mode & 0o037 == 0 {
        return Ok(());
    }
    check_mode(path, meta.mode(), 0o077, 0o600)
}

fn check_mode(path: &Path, mode: u32, forbidden: u32, fix: u32) -> Result<(), StoreError> {
    let mode = mode & 0o7777;
    if mode & forbidden == 0 {
        return Ok(());
    }
    let who = if mode & 0o007 != 0 { "everyone" } else { "its group" };
    Err(StoreError::InsecureMode { path: path.to_path_buf(), mode, who, fix })
}

/// Reads a file that must exist and be private.
pub fn read_private(path: &Path) -> Result<Vec<u8>, StoreError> {
    let mut f = File::open(path).map_err(io("open", path))?;
    let meta = f.metadata().map_err(io("inspect", path))?;
    check_mode(path, meta.mode(), 0o077, 0o600)?;
    let mut buf = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut buf).map_err(io("read", path))?;
    Ok(buf)
}

/// The state folder.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating it 0700 if missing) the state folder.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        ensure_private_dir(root)?;
        Ok(Store { root: root.to_path_buf() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A path inside the state folder.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    /// Reads a JSON state file; `None` when it does not exist yet.
    pub fn read_json<T: DeserializeOwned>(
        &self,
        rel: impl AsRef<Path>,
    ) -> Result<Option<T>, StoreError> {
        let path = self.path(rel);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::Io { op: "read", path, source });
            }
        };
        let meta = fs::metadata(&path).map_err(io("inspect", &path))?;
        check_mode(&path, meta.mode(), 0o077, 0o600)?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt { path, detail: e.to_string() })
    }

    /// Writes a JSON state file atomically, mode 0600.
    pub fn write_json<T: Serialize>(
        &self,
        rel: impl AsRef<Path>,
        value: &T,
    ) -> Result<(), StoreError> {
        let path = self.path(rel);
        let mut bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| StoreError::Corrupt { path: path.clone(), detail: e.to_string() })?;
        bytes.push(b'\n');
        if let Some(dir) = path.parent() {
            ensure_private_dir(dir)?;
        }
        atomic_write(&path, &bytes, FileMode::PRIVATE)
    }

    /// Takes the run lock, waiting up to `wait` for another holder to finish.
    pub fn lock(&self, wait: Duration, command: &str) -> Result<LockGuard, StoreError> {
        let path = self.path("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io("open", &path))?;
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) => {
                    if start.elapsed() >= wait {
                        let mut holder = String::new();
                        let _ = File::open(&path).and_then(|mut f| f.read_to_string(&mut holder));
                        let holder = holder.trim();
                        return Err(StoreError::Locked {
                            path,
                            holder: if holder.is_empty() {
                                "unknown holder".into()
                            } else {
                                holder.to_string()
                            },
                            waited: wait.as_secs(),
                        });
                    }
                    std::thread::sleep(
                        Duration::from_millis(50)
                            .min(wait.saturating_sub(start.elapsed()))
                            .max(Duration::from_millis(1)),
                    );
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(StoreError::Io { op: "lock", path, source: e });
                }
            }
        }
        // Who holds it, for the next caller's error message. Not secret.
        let holder = format!(
            "pid {} uid {} running 'keyward {}' since {}",
            std::process::id(),
            crate::util::uid(),
            command,
            crate::util::fmt_time(chrono::Utc::now())
        );
        file.set_len(0).map_err(io("write", &path))?;
        file.write_all(holder.as_bytes()).map_err(io("write", &path))?;
        Ok(LockGuard { file, path })
    }
}

/// The held run lock; released on drop (and by the kernel if the process dies).
#[derive(Debug)]
pub struct LockGuard {
    file: File,
    path: PathBuf,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
        let _ = &self.path;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        atomic_write(&p, b"one", FileMode::PRIVATE).unwrap();
        atomic_write(&p, b"two", FileMode::PRIVATE).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o600);
        // No temp files left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn insecure_modes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        atomic_write(&p, b"x", FileMode::with_mode(0o644)).unwrap();
        let err = check_private(&p).unwrap_err();
        assert!(err.to_string().contains("chmod 0600"), "{err}");
        assert_eq!(err.exit(), Exit::Usage);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(check_private(&p).is_err());
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        check_private(&p).unwrap();
        assert!(read_private(&p).is_ok());
    }

    #[test]
    fn private_dir_is_created_0700_and_open_dirs_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path().join("state");
        Store::open(&s).unwrap();
        assert_eq!(fs::metadata(&s).unwrap().mode() & 0o777, 0o700);
        fs::set_permissions(&s, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(Store::open(&s), Err(StoreError::InsecureMode { .. })));
    }

    #[test]
    fn second_lock_waits_then_names_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        let held = store.lock(Duration::from_secs(0), "run").unwrap();
        let err = store.lock(Duration::from_millis(120), "secrets rotate").unwrap_err();
        assert_eq!(err.exit(), Exit::Locked);
        let msg = err.to_string();
        assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");
        assert!(msg.contains("'keyward run'"), "{msg}");
        drop(held);
        store.lock(Duration::from_secs(0), "run").unwrap();
    }

    #[test]
    fn json_round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        assert_eq!(store.read_json::<Vec<u32>>("x.json").unwrap(), None);
        store.write_json("x.json", &vec![1u32, 2]).unwrap();
        assert_eq!(store.read_json::<Vec<u32>>("x.json").unwrap(), Some(vec![1, 2]));
        fs::write(store.path("x.json"), b"{nope").unwrap();
        assert!(matches!(store.read_json::<Vec<u32>>("x.json"), Err(StoreError::Corrupt { .. })));
    }
}
