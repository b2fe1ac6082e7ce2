//! An auditor's trusted state: the latest checkpoint it verified, kept in a
//! directory, replaced atomically (write, fsync, rename, fsync the
//! directory), and any evidence it collected.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::{AuditError, Evidence};

/// The state directory of one followed log.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

fn local(what: &str, path: &Path, error: std::io::Error) -> AuditError {
    AuditError::Local(format!("{what} {}: {error}", path.display()))
}

/// Writes `bytes` to `path` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AuditError> {
    let dir = path
        .parent()
        .ok_or_else(|| AuditError::Local(format!("{} has no directory", path.display())))?;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(|e| local("cannot write", &tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| local("cannot write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| local("cannot replace", path, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| local("cannot sync", dir, e))?;
    Ok(())
}

impl StateDir {
    /// Opens (creating if needed) the state directory `dir`.
    pub fn open(dir: &Path) -> Result<Self, AuditError> {
        std::fs::create_dir_all(dir).map_err(|e| local("cannot create", dir, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn checkpoint_path(&self) -> PathBuf {
        self.dir.join("checkpoint")
    }

    /// The trusted checkpoint, if any.
    pub fn trusted(&self) -> Result<Option<Vec<u8>>, AuditError> {
        let path = self.checkpoint_path();
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(local("cannot read", &path, e)),
        }
    }

    /// Replaces the trusted checkpoint.
    pub fn trust(&self, note: &[u8]) -> Result<(), AuditError> {
        write_atomic(&self.checkpoint_path(), note)
    }

    /// Keeps `evidence` in a new file and returns its path.
    pub fn keep_evidence(&self, evidence: &Evidence) -> Result<PathBuf, AuditError> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = self.dir.join(format!("evidence-{stamp}.txt"));
        write_atomic(&path, evidence.to_string().as_bytes())?;
        Ok(path)
    }
}
