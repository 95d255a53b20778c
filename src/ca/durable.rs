//! Durable writes in batches: many files written first, then fsynced together (in
//! parallel, so the file system commits them in a few journal transactions instead of
//! one per file), then renamed or linked into place. The guarantees are those of one
//! fsync per file; only the waiting is shared. This module never logs file contents.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::CaError;

/// Enough threads that a batch of a few hundred files waits for two or three journal
/// commits, not one per file.
const THREADS: usize = 128;

/// fsyncs every path (files or folders), in parallel.
pub fn sync_all(paths: &[PathBuf]) -> Result<(), CaError> {
    let mut paths: Vec<&PathBuf> = paths.iter().collect();
    paths.sort();
    paths.dedup();
    if paths.is_empty() {
        return Ok(());
    }
    let one = |p: &Path| -> Result<(), CaError> {
        std::fs::File::open(p).and_then(|f| f.sync_all()).map_err(|source| CaError::Io {
            op: "fsync",
            path: p.to_path_buf(),
            source,
        })
    };
    if paths.len() == 1 {
        return one(paths[0]);
    }
    let chunk = paths.len().div_ceil(THREADS);
    std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .chunks(chunk)
            .map(|c| s.spawn(move || c.iter().try_for_each(|p| one(p))))
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join().unwrap_or_else(|_| {
                Err(CaError::Io {
                    op: "fsync",
                    path: PathBuf::new(),
                    source: std::io::Error::other("an fsync thread panicked"),
                })
            })
        })
    })
}

/// Creates a new file (never replacing one) with `mode` and, when given, owner and
/// group, and writes `bytes`. Not yet durable: the caller syncs it with [`sync_all`].
pub fn create(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(Option<u32>, Option<u32>)>,
) -> Result<(), CaError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| CaError::Io { op: "create", path: path.to_path_buf(), source })?;
    f.write_all(bytes).map_err(|source| CaError::Io {
        op: "write",
        path: path.to_path_buf(),
        source,
    })?;
    let (uid, gid) = owner.unwrap_or((None, None));
    let chown = |u: Option<u32>, g: Option<u32>| {
        std::os::unix::fs::fchown(&f, u, g).map_err(|source| CaError::Chown {
            path: path.to_path_buf(),
            uid,
            gid,
            source,
        })
    };
    // Group first, then the mode, then the owner: the mode is set while keyward still
    // owns the file, so the hardened unit needs CAP_CHOWN only (not CAP_FOWNER), and
    // group bits appear only once the group is final.
    if gid.is_some() {
        chown(None, gid)?;
    }
    f.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(|source| CaError::Io {
        op: "set the mode of",
        path: path.to_path_buf(),
        source,
    })?;
    if uid.is_some() {
        chown(uid, None)?;
    }
    Ok(())
}

/// Creates `dir` and missing parents with mode 0700 without waiting for the disk;
/// returns the folders whose entries changed (to fsync with the next batch). An
/// existing folder must be private.
pub fn mkdir_private(dir: &Path) -> Result<Vec<PathBuf>, CaError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.exists() {
        crate::store::ensure_private_dir(dir)?;
        return Ok(Vec::new());
    }
    let mut changed = Vec::new();
    if let Some(parent) = dir.parent() {
        changed.extend(mkdir_private(parent)?);
        changed.push(parent.to_path_buf());
    }
    std::fs::DirBuilder::new().mode(0o700).create(dir).map_err(|source| CaError::Io {
        op: "create folder",
        path: dir.to_path_buf(),
        source,
    })?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|source| CaError::Io { op: "set the mode of", path: dir.to_path_buf(), source })?;
    Ok(changed)
}

/// A temp file name beside `path`.
pub fn temp_beside(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.join(format!(".{name}.{}.tmp", std::process::id()))
}

/// `f` over `items` on up to [`THREADS`] threads, results in order. File-system work on many
/// small files waits mostly on the journal, which serves concurrent callers together.
pub fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if items.len() <= 1 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(THREADS);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| s.spawn(move || c.iter().map(f).collect::<Vec<R>>()))
            .collect();
        // A panic in a worker is a bug in keyward; re-raise it here.
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}
