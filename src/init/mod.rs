//! `keyward init`: writes a working starter configuration with PazPaz's defaults.
//!
//! The files are the repository's own `policies/` and `ca/` definitions, embedded at
//! build time, and a keyward.toml that keeps state and outputs under the chosen folder
//! so the result runs unprivileged. Existing files are never overwritten.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::Exit;
use crate::output::Human;
use crate::store::{FileMode, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(
        "{path} already exists; keyward init never overwrites: choose another --dir or move it away"
    )]
    Exists { path: PathBuf },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl InitError {
    pub fn exit(&self) -> Exit {
        match self {
            InitError::Exists { .. } => Exit::Usage,
            InitError::Store(e) => e.exit(),
        }
    }
}

/// Every file `init` writes: path relative to the folder, and content.
pub const FILES: &[(&str, &str)] = &[
    ("keyward.toml", include_str!("keyward.toml")),
    ("ca/postgres-server.toml", include_str!("../../ca/postgres-server.toml")),
    ("ca/postgres-client.toml", include_str!("../../ca/postgres-client.toml")),
    ("ca/minio-server.toml", include_str!("../../ca/minio-server.toml")),
    ("policies/application.toml", include_str!("../../policies/application.toml")),
    ("policies/database.toml", include_str!("../../policies/database.toml")),
    ("policies/storage.toml", include_str!("../../policies/storage.toml")),
    ("policies/third-party.toml", include_str!("../../policies/third-party.toml")),
];

#[derive(Debug, Serialize)]
pub struct Written {
    pub dir: PathBuf,
    pub files: Vec<String>,
}

impl Human for Written {
    fn human(&self, out: &mut String) {
        for f in &self.files {
            out.push_str(&format!("wrote {}\n", self.dir.join(f).display()));
        }
        out.push_str(&format!(
            "next: keyward -c {} run\n",
            self.dir.join("keyward.toml").display()
        ));
    }
}

/// Writes the starter files into `dir`; refuses if any of them exists.
pub fn init(dir: &Path) -> Result<Written, InitError> {
    for (rel, _) in FILES {
        let path = dir.join(rel);
        if path.exists() {
            return Err(InitError::Exists { path });
        }
    }
    for (rel, content) in FILES {
        crate::store::atomic_write(&dir.join(rel), content.as_bytes(), FileMode::with_mode(0o644))?;
    }
    Ok(Written {
        dir: dir.to_path_buf(),
        files: FILES.iter().map(|(p, _)| p.to_string()).collect(),
    })
}
