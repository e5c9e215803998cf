//! Restoring a full backup into an empty data directory.
//!
//! Entries are extracted into a scratch directory inside the target, so
//! the final renames stay on one file system; only once the reader has
//! verified every checksum do the files move into place. Any failure
//! removes the scratch directory, and the target itself when restore
//! created it: nothing that looks like data is left behind.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};

use super::BackupError;
use super::archive::{ArchiveError, ArchiveReader, EntrySink, ExpectScope, Manifest};
use crate::embedded::META_DB;
use crate::telemetry::embedded::FILE as TELEMETRY_DB;

/// Entries a full backup holds.
const FULL_ENTRIES: [&str; 2] = [META_DB, TELEMETRY_DB];

/// Refuses a target that holds anything. A missing target is fine.
pub fn check_target_empty(target: &Path) -> Result<(), BackupError> {
    check_target_empty_but(target, &[])
}

/// As [`check_target_empty`], ignoring the files named in `ignore` (the
/// lock file a caller took).
fn check_target_empty_but(target: &Path, ignore: &[&str]) -> Result<(), BackupError> {
    // A restore that was killed left its scratch directory here; it is not
    // data, and refusing the target for it would leave the user to find and
    // delete it. A restore still running keeps its own (locked) one.
    crate::scratch::sweep(target);
    let entries = match fs::read_dir(target) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BackupError::io(format!("open {}", target.display()), e)),
    };
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| BackupError::io(format!("list {}", target.display()), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !ignore.contains(&name.as_str()) {
            names.push(name);
        }
    }
    names.sort();
    match names.into_iter().next() {
        None => Ok(()),
        Some(entry) => Err(BackupError::TargetNotEmpty {
            dir: target.to_path_buf(),
            entry,
        }),
    }
}

/// Writes each entry to a file in the scratch directory.
struct ScratchSink<'a> {
    dir: &'a Path,
    written: Vec<&'static str>,
}

impl EntrySink for ScratchSink<'_> {
    fn entry(&mut self, name: &str, _size: u64, data: &mut dyn Read) -> io::Result<()> {
        let Some(known) = FULL_ENTRIES.iter().find(|n| **n == name) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a full backup holds only meta.db and telemetry.db, not {name}"),
            ));
        };
        let file = File::create(self.dir.join(name))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        io::copy(data, &mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        self.written.push(known);
        Ok(())
    }
}

/// Restores the full backup read from `input` into `target`, which must be
/// missing or empty. Checksums, versions and scope are verified before
/// anything appears in `target`. Returns the backup's manifest.
pub fn restore_full(input: impl Read, target: &Path) -> Result<Manifest, BackupError> {
    restore_full_with(input, target, &[])
}

/// As [`restore_full`], accepting the files named in `ignore` in the
/// target (a lock file the caller holds on it).
pub fn restore_full_with(
    input: impl Read,
    target: &Path,
    ignore: &[&str],
) -> Result<Manifest, BackupError> {
    check_target_empty_but(target, ignore)?;
    let created = !target.exists();
    fs::create_dir_all(target)
        .map_err(|e| BackupError::io(format!("create {}", target.display()), e))?;
    let outcome = extract(input, target);
    if outcome.is_err() && created {
        let _ = fs::remove_dir(target);
    }
    outcome
}

fn extract(input: impl Read, target: &Path) -> Result<Manifest, BackupError> {
    let scratch = crate::scratch::create(target, ".ferrule-restore-").map_err(|e| {
        BackupError::io(
            format!("create a scratch directory in {}", target.display()),
            e,
        )
    })?;
    let mut sink = ScratchSink {
        dir: scratch.path(),
        written: Vec::new(),
    };
    let manifest = ArchiveReader::new(input)
        .expect_scope(ExpectScope::Full)
        .read(&mut sink)?;
    if !sink.written.contains(&META_DB) {
        return Err(ArchiveError::Corrupted {
            entry: META_DB.into(),
            detail: "a full backup must hold it, and this one does not".into(),
        }
        .into());
    }
    // Checksums prove the bytes are those written, not that SQLite can
    // read them: a database damaged on the source backs up "fine".
    for name in &sink.written {
        integrity_check(&scratch.path().join(name)).map_err(|detail| BackupError::Damaged {
            file: (*name).to_owned(),
            detail,
        })?;
    }
    let mut moved: Vec<PathBuf> = Vec::new();
    for name in &sink.written {
        let to = target.join(name);
        if let Err(e) = fs::rename(scratch.path().join(name), &to) {
            for path in &moved {
                let _ = fs::remove_file(path);
            }
            return Err(BackupError::io(
                format!("move {name} into {}", target.display()),
                e,
            ));
        }
        moved.push(to);
    }
    // The renames must survive a crash as a whole directory.
    File::open(target)
        .and_then(|d| d.sync_all())
        .map_err(|e| BackupError::io(format!("sync {}", target.display()), e))?;
    drop(scratch);
    Ok(manifest)
}

/// Runs `PRAGMA integrity_check` on the database at `path` (read-only);
/// on failure, SQLite's first message.
pub fn integrity_check(path: &Path) -> Result<(), String> {
    let check = || -> rusqlite::Result<Option<String>> {
        let conn = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let mut q = conn.prepare("PRAGMA integrity_check")?;
        let mut rows = q.query([])?;
        let first: Option<String> = match rows.next()? {
            Some(row) => Some(row.get(0)?),
            None => None,
        };
        Ok(first.filter(|m| m != "ok"))
    };
    match check() {
        Ok(None) => Ok(()),
        // The first message may open with a `*** in database main ***` line.
        Ok(Some(message)) => Err(message
            .lines()
            .find(|l| !l.trim().is_empty() && !l.starts_with("***"))
            .unwrap_or(&message)
            .to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// Test support: damages the b-tree page of `table` in the database at
/// `path`, as a bad disk would — the file still reads, SQLite cannot make
/// sense of that page.
#[cfg(test)]
pub(crate) fn damage_table(path: &Path, table: &str) {
    let (root, page_size): (u64, u64) = {
        let conn = rusqlite::Connection::open(path).unwrap();
        let root = conn
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        let size = conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .unwrap();
        (root, size)
    };
    assert!(root > 1, "page 1 holds the file header");
    let mut bytes = fs::read(path).unwrap();
    let at = ((root - 1) * page_size) as usize;
    bytes[at..at + 12].fill(0xff);
    fs::write(path, bytes).unwrap();
}

#[cfg(test)]
mod tests {
    use super::super::{NoProgress, write_full};
    use super::*;

    fn data_dir_with_rows(dir: &Path) {
        let store = crate::embedded::EmbeddedStore::open(dir).unwrap();
        drop(store);
        let conn = rusqlite::Connection::open(dir.join(META_DB)).unwrap();
        conn.execute(
            "INSERT INTO tenants (id, name, created_at) VALUES ('acme', 'Acme', 1)",
            [],
        )
        .unwrap();
    }

    #[test]
    fn a_backup_restores_into_an_empty_dir_and_not_into_a_full_one() {
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("source");
        data_dir_with_rows(&source);
        let (bytes, manifest) = write_full(&source, tmp.path(), Vec::new(), &NoProgress).unwrap();
        assert_eq!(manifest.counts["tenants"], 1);
        assert_eq!(manifest.meta_schema, crate::embedded::SCHEMA_VERSION);
        // No scratch left beside the output.
        let left: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["source"]);

        let target = tmp.path().join("restored");
        restore_full(bytes.as_slice(), &target).unwrap();
        let conn = rusqlite::Connection::open(target.join(META_DB)).unwrap();
        let tenants: i64 = conn
            .query_row("SELECT count(*) FROM tenants WHERE id = 'acme'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(tenants, 1);
        let names: Vec<_> = fs::read_dir(&target)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [META_DB]);

        let err = restore_full(bytes.as_slice(), &target).unwrap_err();
        assert!(matches!(err, BackupError::TargetNotEmpty { .. }), "{err}");
        assert!(err.to_string().contains("meta.db"), "{err}");
    }

    /// A restore killed half way left `.ferrule-restore-*` (with copies of
    /// every tenant's data) in its target: the next restore removes it
    /// instead of refusing the target as not empty.
    #[test]
    fn a_killed_restores_scratch_is_swept_by_the_next_restore() {
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("source");
        data_dir_with_rows(&source);
        let (bytes, _) = write_full(&source, tmp.path(), Vec::new(), &NoProgress).unwrap();
        let target = tmp.path().join("restored");
        let stale = target.join(".ferrule-restore-killed");
        fs::create_dir_all(&stale).unwrap();
        // Its owner is dead: the lock file is there, locked by nobody.
        fs::write(stale.join("owner.lock"), b"").unwrap();
        fs::write(stale.join(META_DB), b"half a database").unwrap();
        restore_full(bytes.as_slice(), &target).unwrap();
        assert!(!stale.exists());
        let mut names: Vec<_> = fs::read_dir(&target)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [META_DB]);
    }

    #[test]
    fn a_failed_restore_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("source");
        data_dir_with_rows(&source);
        let (bytes, _) = write_full(&source, tmp.path(), Vec::new(), &NoProgress).unwrap();
        let target = tmp.path().join("restored");
        let err = restore_full(&bytes[..bytes.len() - 10], &target).unwrap_err();
        assert!(
            matches!(err, BackupError::Archive(ArchiveError::Truncated { .. })),
            "{err}"
        );
        assert!(!target.exists());
        // An existing empty target stays, empty.
        fs::create_dir(&target).unwrap();
        restore_full(&bytes[..bytes.len() / 2], &target).unwrap_err();
        assert_eq!(fs::read_dir(&target).unwrap().count(), 0);
    }

    #[test]
    fn a_backup_whose_checksums_match_but_whose_database_is_damaged_is_refused() {
        use super::super::archive::{ArchiveWriter, Scope};
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("source");
        data_dir_with_rows(&source);
        let (bytes, manifest) = write_full(&source, tmp.path(), Vec::new(), &NoProgress).unwrap();
        // The copy the backup holds, damaged, then archived again: every
        // checksum is that of the damaged bytes.
        let good = tmp.path().join("good");
        restore_full(bytes.as_slice(), &good).unwrap();
        let meta = good.join(META_DB);
        integrity_check(&meta).unwrap();
        damage_table(&meta, "tenants");
        let detail = integrity_check(&meta).unwrap_err();
        let mut writer = ArchiveWriter::new(
            Vec::new(),
            &Manifest::new(
                Scope::Full,
                manifest.meta_schema,
                manifest.telemetry_schema,
                manifest.counts.clone(),
            ),
        )
        .unwrap();
        writer.append_file(META_DB, &meta).unwrap();
        let damaged = writer.finish().unwrap();

        let target = tmp.path().join("restored");
        let err = restore_full(damaged.as_slice(), &target).unwrap_err();
        assert!(matches!(err, BackupError::Damaged { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.starts_with("meta.db in the backup is damaged"),
            "{message}"
        );
        assert!(message.contains(&detail), "{message}");
        assert!(!detail.starts_with("***") && !detail.is_empty(), "{detail}");
        assert!(!target.exists(), "a refused restore leaves nothing");
        // Into an existing empty directory: it stays, empty.
        fs::create_dir(&target).unwrap();
        restore_full(damaged.as_slice(), &target).unwrap_err();
        assert_eq!(fs::read_dir(&target).unwrap().count(), 0);
    }
}
