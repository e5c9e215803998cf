//! Backups of the embedded store.
//!
//! - [`archive`]: the container format (zstd-framed tar with a manifest and
//!   SHA-256 checksums), its writer and verifying reader.
//! - [`snapshot`]: a consistent copy of `meta.db` and `telemetry.db` taken
//!   beside a running server.
//! - [`write_full`] joins the two: snapshot, stream into an archive, delete
//!   the copies. [`restore::restore_full`] turns an archive back into a
//!   data directory.
//!
//! Long steps report to a [`Progress`], so the binary can draw a bar or log.

pub mod archive;
pub mod restore;
pub mod snapshot;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

pub use archive::{
    ArchiveError, ArchiveReader, ArchiveWriter, Checksums, DiscardSink, EntrySink, ExpectScope,
    Manifest, Scope,
};

/// Where long operations say how far they are, in bytes.
pub trait Progress: Sync {
    /// A phase starts (`snapshot`, `write`, …) with `total` bytes to go
    /// (0 when unknown).
    fn start(&self, phase: &str, total: u64);
    /// `bytes` more of the phase are done.
    fn advance(&self, bytes: u64);
    /// The phase is over.
    fn finish(&self);
}

/// Reports nothing.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// Why a backup or restore failed. Each message names the cause and the fix.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The data directory has no `meta.db`.
    #[error(
        "{} holds no Ferrule data (no meta.db): check --data-dir (or FERRULE_DATA_DIR)",
        dir.display()
    )]
    NoData { dir: PathBuf },
    /// Restore refuses to mix a backup into existing data.
    #[error(
        "the target data directory {} is not empty (it holds {entry}): restore into a new or empty directory",
        dir.display()
    )]
    TargetNotEmpty { dir: PathBuf, entry: String },
    /// The backup file itself is wrong (truncated, corrupted, newer, …).
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// A database in the backup fails SQLite's integrity check, though its
    /// checksum matched: it was damaged before it was backed up.
    #[error(
        "{file} in the backup is damaged (SQLite's integrity check: {detail}); its checksum \
         matches, so the data was damaged before this backup was taken: restore an older backup"
    )]
    Damaged { file: String, detail: String },
    /// SQLite failed while doing `what`.
    #[error("{what}: {source}")]
    Sqlite {
        what: String,
        #[source]
        source: rusqlite::Error,
    },
    /// The store failed while doing `what`.
    #[error("{what}: {source}")]
    Store {
        what: String,
        #[source]
        source: crate::StoreError,
    },
    /// The file system failed while doing `what`.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

impl BackupError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        BackupError::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn sqlite(what: impl Into<String>, source: rusqlite::Error) -> Self {
        BackupError::Sqlite {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn store(what: impl Into<String>, source: crate::StoreError) -> Self {
        BackupError::Store {
            what: what.into(),
            source,
        }
    }
}

/// Passes bytes through, reporting each read.
pub struct ProgressReader<'a, R> {
    inner: R,
    progress: &'a dyn Progress,
}

impl<'a, R> ProgressReader<'a, R> {
    pub fn new(inner: R, progress: &'a dyn Progress) -> Self {
        Self { inner, progress }
    }
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// Writes a full backup of `data_dir` into `out`: a consistent snapshot
/// (copied into a scratch directory inside `scratch_parent`, removed
/// afterwards), streamed through the archive writer. Returns the output and
/// the manifest written.
pub fn write_full<W: Write>(
    data_dir: &Path,
    scratch_parent: &Path,
    out: W,
    progress: &dyn Progress,
) -> Result<(W, Manifest), BackupError> {
    let snapshot = snapshot::take(data_dir, scratch_parent, progress)?;
    let manifest = Manifest::new(
        Scope::Full,
        snapshot.meta_schema,
        snapshot.telemetry_schema,
        snapshot.counts.clone(),
    );
    let files = snapshot.files();
    let mut total = 0;
    for (_, path) in &files {
        total += std::fs::metadata(path)
            .map_err(|e| BackupError::io(format!("stat {}", path.display()), e))?
            .len();
    }
    progress.start("write", total);
    let mut writer = ArchiveWriter::new(out, &manifest)?;
    for (name, path) in &files {
        let file = std::fs::File::open(path)
            .map_err(|e| BackupError::io(format!("open {}", path.display()), e))?;
        let size = file
            .metadata()
            .map_err(|e| BackupError::io(format!("stat {}", path.display()), e))?
            .len();
        let reader = ProgressReader::new(io::BufReader::with_capacity(1 << 20, file), progress);
        writer.append_reader(name, size, reader)?;
    }
    let out = writer.finish()?;
    progress.finish();
    drop(snapshot);
    Ok((out, manifest))
}
