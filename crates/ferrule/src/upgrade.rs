//! Safe upgrades at `serve` start: a data directory from a newer release is
//! refused before anything touches it, and one from an older release is
//! backed up whole before any schema migration runs, next to the data
//! directory as `DATA_DIR.pre-migration-vM.T-TIME.ferrule-backup` (M and T
//! the meta and telemetry schema versions found). If that backup cannot be
//! written, the server does not start: migrating without a way back is what
//! this exists to prevent.

use std::path::{Path, PathBuf};

use ferrule_store::embedded::{self, META_DB};
use ferrule_store::telemetry::embedded as telemetry;
use rusqlite::{Connection, OpenFlags};

use crate::config::LogFormat;
use crate::progress::Reporter;
use crate::startup::StartupError;

const DATA_DIR: &str = "data_dir (--data-dir, FERRULE_DATA_DIR)";

/// Schema version of an existing database file; `None` when there is none
/// (or it is empty: a store that never got its schema).
fn version_of(path: &Path) -> anyhow::Result<Option<u32>> {
    if !path.is_file() {
        return Ok(None);
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let v: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    Ok((v > 0).then_some(v))
}

/// Runs before the stores open (the data directory's lock is held).
/// Returns the automatic backup written, if a migration is coming.
pub fn prepare(data_dir: &Path, log_format: LogFormat) -> anyhow::Result<Option<PathBuf>> {
    let meta = version_of(&data_dir.join(META_DB))
        .map_err(|e| StartupError::new(DATA_DIR, format!("cannot read {META_DB}: {e}")))?;
    let tel = version_of(&data_dir.join(telemetry::FILE)).map_err(|e| {
        StartupError::new(DATA_DIR, format!("cannot read {}: {e}", telemetry::FILE))
    })?;
    for (name, found, ours) in [
        (META_DB, meta, embedded::SCHEMA_VERSION),
        (telemetry::FILE, tel, telemetry::SCHEMA_VERSION),
    ] {
        if let Some(found) = found.filter(|v| *v > ours) {
            return Err(StartupError::new(
                DATA_DIR,
                format!(
                    "{} was written by a newer Ferrule release ({name} schema version {found}; \
                     this binary, ferrule {}, reads up to {ours}): run a newer ferrule, or \
                     restore a backup made for this release into an empty data directory",
                    data_dir.display(),
                    env!("CARGO_PKG_VERSION")
                ),
            )
            .into());
        }
    }
    let migrating = meta.is_some_and(|v| v < embedded::SCHEMA_VERSION)
        || tel.is_some_and(|v| v < telemetry::SCHEMA_VERSION);
    if !migrating {
        return Ok(None);
    }
    let path = backup_path(data_dir, meta.unwrap_or(0), tel.unwrap_or(0))?;
    tracing::info!(
        meta_schema = meta,
        telemetry_schema = tel,
        backup = %path.display(),
        "an older data directory: writing a backup before migrating it"
    );
    let progress = Reporter::for_stderr(log_format);
    match crate::backup::write_backup_file(data_dir, &path, &progress) {
        Ok((_, bytes)) => {
            tracing::info!(backup = %path.display(), bytes, "pre-migration backup written");
            Ok(Some(path))
        }
        Err(e) => Err(StartupError::new(
            DATA_DIR,
            format!(
                "the data directory needs a schema migration, and the backup before it could \
                 not be written to {}: {e:#}; make room there (or fix its permissions) and start again",
                path.display()
            ),
        )
        .into()),
    }
}

/// `PARENT/NAME.pre-migration-vM.T-20261204T190000Z.ferrule-backup`.
fn backup_path(data_dir: &Path, meta: u32, tel: u32) -> anyhow::Result<PathBuf> {
    let dir = data_dir.canonicalize().map_err(|e| {
        StartupError::new(
            DATA_DIR,
            format!("cannot resolve {}: {e}", data_dir.display()),
        )
    })?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ferrule-data".into());
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
    Ok(parent.join(format!(
        "{name}.pre-migration-v{meta}.{tel}-{stamp}.ferrule-backup"
    )))
}
