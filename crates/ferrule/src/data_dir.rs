//! The data directory: private to the server's user, and held by one server
//! at a time.
//!
//! It holds every password and token hash and every tenant's data, so it is
//! created 0700 and its files 0600 — by a process umask of 077, set before
//! anything is created, so that files SQLite makes later (`-wal`, `-shm`)
//! are private from their first byte — and an existing directory is
//! tightened to those modes at start.

use std::fs::File;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, umask};

/// The lock file that keeps two servers off one data directory.
pub const LOCK_FILE: &str = "ferrule.lock";

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// Makes everything this process creates private to its user. Call before
/// anything is created.
pub fn private_umask() {
    umask(Mode::from_bits_truncate(0o077));
}

/// Creates the data directory (0700) if needed, and tightens an existing
/// one and everything in it (directories 0700, files 0600). An entry that
/// cannot be tightened (another owner) is logged, not fatal: the server can
/// still run, and the operator learns which path to fix.
pub fn create_private(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (path, e) in tighten(dir) {
        tracing::warn!(path = %path.display(), error = %e, "cannot restrict the permissions of a data directory entry to its owner");
    }
    Ok(())
}

/// Tightens `dir` and what it holds; returns the entries that failed.
/// Symbolic links are left alone (their modes mean nothing, and following
/// them would change files outside the directory).
fn tighten(dir: &Path) -> Vec<(PathBuf, io::Error)> {
    let mut failed = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        if let Err(e) = set_mode(&d, DIR_MODE) {
            failed.push((d.clone(), e));
        }
        let entries = match std::fs::read_dir(&d) {
            Ok(entries) => entries,
            Err(e) => {
                failed.push((d, e));
                continue;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => dirs.push(path),
                Ok(t) if t.is_file() => {
                    if let Err(e) = set_mode(&path, FILE_MODE) {
                        failed.push((path, e));
                    }
                }
                Ok(_) => {}
                Err(e) => failed.push((path, e)),
            }
        }
    }
    failed
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    let current = std::fs::symlink_metadata(path)?.permissions().mode() & 0o777;
    if current == mode {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Why the data directory could not be locked.
#[derive(Debug)]
pub enum LockError {
    /// Another process (a running server) holds it.
    Held,
    Io(io::Error),
}

/// Takes the exclusive lock on the data directory, held as long as the
/// returned file is open.
pub fn try_lock(dir: &Path) -> Result<File, LockError> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .map_err(LockError::Io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Held),
        Err(std::fs::TryLockError::Error(e)) => Err(LockError::Io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_directory_is_tightened_without_following_links() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, b"x").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("meta.db"), b"x").unwrap();
        std::fs::write(dir.join("sub/f"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();
        for p in [&dir, &dir.join("sub")] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        create_private(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("sub")), 0o700);
        assert_eq!(mode(&dir.join("meta.db")), 0o600);
        assert_eq!(mode(&dir.join("sub/f")), 0o600);
        assert_eq!(
            mode(&outside),
            0o644,
            "a link's target is not ours to change"
        );
    }

    #[test]
    fn a_held_lock_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let held = try_lock(tmp.path()).unwrap();
        assert!(matches!(try_lock(tmp.path()), Err(LockError::Held)));
        drop(held);
        assert!(try_lock(tmp.path()).is_ok());
    }
}
