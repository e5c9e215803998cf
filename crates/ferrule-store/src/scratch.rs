//! Scratch directories of backups and tenant moves that clean up after an
//! owner that was killed.
//!
//! A backup's snapshot copies and an import's unpacked archive live in a
//! scratch directory (`.ferrule-snapshot-*`, `.ferrule-tenant-*`,
//! `.tenant-import-*`; a restore's `.ferrule-restore-*` inside its target) removed when the work ends — unless the process is
//! killed, when the copies (every tenant's data, secrets' hashes included)
//! stay on disk. So each scratch directory holds a lock file, locked (the
//! same OS file lock as the data directory's `ferrule.lock`) for as long as
//! its owner lives; the kernel releases the lock when the owner dies. Before
//! a new scratch directory is made, and when a server starts, [`sweep`]
//! removes the sibling scratch directories whose lock it can take.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Name prefixes of the scratch directories [`sweep`] looks at.
pub const PREFIXES: &[&str] = &[
    ".ferrule-snapshot-",
    ".ferrule-tenant-",
    ".tenant-import-",
    ".ferrule-restore-",
];

/// The lock file inside each scratch directory.
const LOCK_FILE: &str = "owner.lock";

/// A scratch directory without a lock file is either one whose owner is
/// between making it and locking it (microseconds), or one left by a
/// version without lock files: only the second is this old.
const UNLOCKED_GRACE: Duration = Duration::from_secs(60);

/// A scratch directory, locked while this lives, removed when dropped.
#[derive(Debug)]
pub struct ScratchDir {
    // Dropped first: the directory goes while its lock is still held.
    dir: tempfile::TempDir,
    _lock: File,
}

impl ScratchDir {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Sweeps `parent` (see [`sweep`]), then makes a scratch directory named
/// `prefix…` in it and locks it.
pub fn create(parent: &Path, prefix: &str) -> io::Result<ScratchDir> {
    sweep(parent);
    let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(parent)?;
    // Locked under another name, then renamed into place: a sweeper never
    // sees `owner.lock` unlocked while its owner lives.
    let pending = dir.path().join("owner.lock.new");
    let lock = File::options()
        .write(true)
        .create_new(true)
        .open(&pending)?;
    lock.try_lock().map_err(io::Error::from)?;
    fs::rename(&pending, dir.path().join(LOCK_FILE))?;
    Ok(ScratchDir { dir, _lock: lock })
}

/// Removes the scratch directories in `parent` whose owner is gone (their
/// lock can be taken), logging one line for each; returns them. A live
/// owner's directory is never touched. Failures are logged, not returned:
/// a sweep never stops the work that asked for it.
pub fn sweep(parent: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(parent) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        // Not a symbolic link: never follow one out of `parent`.
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        match abandoned(&path) {
            Ok(Some(lock)) => {
                // Removed while we hold its lock, so no one else sweeps it too.
                match fs::remove_dir_all(&path) {
                    // Another sweeper took it first.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Ok(()) => {
                        tracing::warn!(path = %path.display(), "removed the scratch directory of a backup or tenant import that was interrupted");
                        removed.push(path);
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot remove the scratch directory of an interrupted backup or tenant import; remove it by hand");
                    }
                }
                drop(lock);
            }
            Ok(None) => {}
            // Gone meanwhile: its owner finished, or another sweeper.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot tell whether a scratch directory is still in use; leaving it");
            }
        }
    }
    removed
}

/// Whether the scratch directory `dir` is abandoned: then its lock, held
/// (or, for an old directory without one, a placeholder).
fn abandoned(dir: &Path) -> io::Result<Option<Option<File>>> {
    match File::open(dir.join(LOCK_FILE)) {
        Ok(lock) => match lock.try_lock() {
            Ok(()) => Ok(Some(Some(lock))),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(e),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let age = fs::symlink_metadata(dir)?
                .modified()?
                .elapsed()
                .unwrap_or_default();
            Ok((age > UNLOCKED_GRACE).then_some(None))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// What a killed owner leaves: the directory and its lock file, which
    /// nobody holds any more.
    fn left_by_a_killed_owner(parent: &Path, name: &str) -> PathBuf {
        let dir = parent.join(name);
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join(LOCK_FILE), b"").unwrap();
        fs::write(dir.join("meta.db"), b"copy").unwrap();
        dir
    }

    #[test]
    fn a_dead_owners_scratch_goes_and_a_live_ones_stays() {
        let tmp = tempfile::tempdir().unwrap();
        let live = create(tmp.path(), ".ferrule-snapshot-").unwrap();
        fs::write(live.path().join("meta.db"), b"copy").unwrap();
        let dead = left_by_a_killed_owner(tmp.path(), ".tenant-import-dead");
        let dead_tenant = left_by_a_killed_owner(tmp.path(), ".ferrule-tenant-dead");
        // Not ours: same look, other name.
        let other = left_by_a_killed_owner(tmp.path(), ".other-dead");

        let removed = sweep(tmp.path());
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(!dead.exists() && !dead_tenant.exists());
        assert!(other.exists());
        assert!(live.path().join("meta.db").exists(), "a live scratch stays");

        // A new scratch directory sweeps its siblings first, and leaves the
        // live one alone.
        let dead = left_by_a_killed_owner(tmp.path(), ".ferrule-snapshot-dead");
        let second = create(tmp.path(), ".ferrule-snapshot-").unwrap();
        assert!(!dead.exists());
        assert!(live.path().join("meta.db").exists());
        let (live_path, second_path) = (live.path().to_owned(), second.path().to_owned());
        drop(live);
        drop(second);
        assert!(!live_path.exists() && !second_path.exists());
        assert_eq!(names(tmp.path()), [".other-dead"]);
    }

    #[test]
    fn a_scratch_without_a_lock_file_goes_only_when_old() {
        let tmp = tempfile::tempdir().unwrap();
        let young = tmp.path().join(".ferrule-snapshot-young");
        fs::create_dir(&young).unwrap();
        assert!(sweep(tmp.path()).is_empty());
        assert!(young.exists(), "maybe its owner is about to lock it");

        let old = tmp.path().join(".ferrule-snapshot-old");
        fs::create_dir(&old).unwrap();
        let long_ago = std::time::SystemTime::now() - 2 * UNLOCKED_GRACE;
        File::open(&old).unwrap().set_modified(long_ago).unwrap();
        assert_eq!(sweep(tmp.path()), [old]);
        assert!(!tmp.path().join(".ferrule-snapshot-old").exists());
        assert!(young.exists());
    }
}
