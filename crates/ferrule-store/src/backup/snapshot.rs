//! A consistent copy of both databases of a data directory, taken while a
//! server may be writing to them.
//!
//! Both files must show the same instant, or a restored server would hold
//! telemetry of a device its metadata never had. So: take the write lock of
//! both (`BEGIN IMMEDIATE` on two extra connections), start a read
//! transaction on a source connection of each, release the write locks —
//! writers waited only for those few statements — and copy each database
//! with SQLite's online backup API from the source connection, which keeps
//! reading the snapshot its transaction pinned while writers go on in the
//! WAL. The server's `ferrule.lock` is not taken: this works beside a
//! running server as well as on a stopped data directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::{BackupError, Progress};
use crate::embedded::META_DB;
use crate::telemetry::embedded::FILE as TELEMETRY_DB;

/// Longer than either store's own busy timeout, so a writer's transaction
/// in progress is waited out, not failed.
const LOCK_WAIT: Duration = Duration::from_secs(15);

/// Pages copied per backup step: with 4 KiB pages, 16 MiB between progress
/// reports.
const PAGES_PER_STEP: i32 = 4096;

/// The copies, in a scratch directory removed when this is dropped.
#[derive(Debug)]
pub struct Snapshot {
    scratch: crate::scratch::ScratchDir,
    /// `user_version` of the copied `meta.db`.
    pub meta_schema: u32,
    /// `user_version` of the copied `telemetry.db` (0 when there is none).
    pub telemetry_schema: u32,
    /// What the copies hold, for the manifest.
    pub counts: BTreeMap<String, u64>,
    has_telemetry: bool,
}

impl Snapshot {
    /// The copied `meta.db`.
    pub fn meta_path(&self) -> PathBuf {
        self.scratch.path().join(META_DB)
    }

    /// The copied `telemetry.db`, if the data directory had one.
    pub fn telemetry_path(&self) -> Option<PathBuf> {
        self.has_telemetry
            .then(|| self.scratch.path().join(TELEMETRY_DB))
    }

    /// Entry name and path of each copy, in archive order.
    pub fn files(&self) -> Vec<(&'static str, PathBuf)> {
        let mut files = vec![(META_DB, self.meta_path())];
        if let Some(t) = self.telemetry_path() {
            files.push((TELEMETRY_DB, t));
        }
        files
    }
}

/// Copies `data_dir`'s databases into a new scratch directory inside
/// `scratch_parent` (put it on the disk the backup goes to).
pub fn take(
    data_dir: &Path,
    scratch_parent: &Path,
    progress: &dyn Progress,
) -> Result<Snapshot, BackupError> {
    let meta_path = data_dir.join(META_DB);
    if !meta_path.is_file() {
        return Err(BackupError::NoData {
            dir: data_dir.to_path_buf(),
        });
    }
    let telemetry_path = data_dir.join(TELEMETRY_DB);
    let has_telemetry = telemetry_path.is_file();

    // Locked while it lives: a killed backup's copies are swept later.
    let scratch = crate::scratch::create(scratch_parent, ".ferrule-snapshot-").map_err(|e| {
        BackupError::io(
            format!("create a scratch directory in {}", scratch_parent.display()),
            e,
        )
    })?;

    let meta_source = open_source(&meta_path)?;
    let telemetry_source = has_telemetry
        .then(|| open_source(&telemetry_path))
        .transpose()?;
    pin_snapshot(
        &meta_path,
        &meta_source,
        telemetry_source
            .as_ref()
            .map(|c| (telemetry_path.as_path(), c)),
    )?;

    let mut sizes = vec![page_bytes(&meta_source)?];
    if let Some(t) = &telemetry_source {
        sizes.push(page_bytes(t)?);
    }
    progress.start("snapshot", sizes.iter().sum());
    copy(&meta_source, &scratch.path().join(META_DB), progress)?;
    if let Some(t) = &telemetry_source {
        copy(t, &scratch.path().join(TELEMETRY_DB), progress)?;
    }
    progress.finish();
    drop(meta_source);
    drop(telemetry_source);

    let meta_copy = open_copy(&scratch.path().join(META_DB))?;
    let meta_schema = crate::embedded::schema_version(&meta_copy)
        .map_err(|e| BackupError::store("read the schema version of meta.db", e))?;
    let mut counts = meta_counts(&meta_copy)?;
    let mut telemetry_schema = 0;
    if has_telemetry {
        let copy = open_copy(&scratch.path().join(TELEMETRY_DB))?;
        telemetry_schema = copy
            .pragma_query_value(None, "user_version", |r| r.get::<_, u32>(0))
            .map_err(|e| BackupError::sqlite("read the schema version of telemetry.db", e))?;
        counts.extend(telemetry_counts(&copy)?);
    }
    Ok(Snapshot {
        scratch,
        meta_schema,
        telemetry_schema,
        counts,
        has_telemetry,
    })
}

fn open_source(path: &Path) -> Result<Connection, BackupError> {
    // Read-write: a reader of a WAL database may need to create `-shm`.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| BackupError::sqlite(format!("open {}", path.display()), e))?;
    conn.busy_timeout(LOCK_WAIT)
        .map_err(|e| BackupError::sqlite(format!("configure {}", path.display()), e))?;
    Ok(conn)
}

fn open_copy(path: &Path) -> Result<Connection, BackupError> {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| BackupError::sqlite(format!("open the copy {}", path.display()), e))
}

/// Pins the same instant in both sources: see the module doc.
fn pin_snapshot(
    meta_path: &Path,
    meta: &Connection,
    telemetry: Option<(&Path, &Connection)>,
) -> Result<(), BackupError> {
    let meta_lock = open_source(meta_path)?;
    let telemetry_lock = telemetry.map(|(p, _)| open_source(p)).transpose()?;
    let begin = |conn: &Connection, what: &str| {
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| BackupError::sqlite(format!("pause the writers of {what}"), e))
    };
    let read = |conn: &Connection, what: &str| {
        conn.execute_batch("BEGIN")
            .and_then(|()| conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(())))
            .map_err(|e| BackupError::sqlite(format!("start reading {what}"), e))
    };
    begin(&meta_lock, META_DB)?;
    if let Some(lock) = &telemetry_lock {
        begin(lock, TELEMETRY_DB)?;
    }
    let pinned = read(meta, META_DB).and_then(|()| match telemetry {
        Some((_, conn)) => read(conn, TELEMETRY_DB),
        None => Ok(()),
    });
    // Writers resume here, whatever happened above.
    if let Some(lock) = &telemetry_lock {
        let _ = lock.execute_batch("ROLLBACK");
    }
    let _ = meta_lock.execute_batch("ROLLBACK");
    pinned
}

fn page_bytes(conn: &Connection) -> Result<u64, BackupError> {
    let pages: u64 = conn
        .pragma_query_value(None, "page_count", |r| r.get(0))
        .map_err(|e| BackupError::sqlite("read the page count", e))?;
    let size: u64 = conn
        .pragma_query_value(None, "page_size", |r| r.get(0))
        .map_err(|e| BackupError::sqlite("read the page size", e))?;
    Ok(pages * size)
}

/// Copies the snapshot `source`'s read transaction holds into `target`,
/// without its free pages.
///
/// SQLite's backup API copies every page, free ones too, and free pages
/// still hold what was deleted (sealed points' log rows, deleted devices'
/// rows): a backup would carry deleted data and, on a telemetry file, be
/// mostly garbage. So the API copies into a private raw file first (the only
/// way to read the pinned snapshot while writers go on) and `VACUUM INTO`
/// writes the live rows of that copy into `target`.
fn copy(source: &Connection, target: &Path, progress: &dyn Progress) -> Result<(), BackupError> {
    let what = || format!("copy into {}", target.display());
    let raw_path = raw_copy_path(target);
    let mut raw = Connection::open(&raw_path).map_err(|e| BackupError::sqlite(what(), e))?;
    // A scratch file: if we crash it is thrown away, so no need to sync.
    raw.execute_batch("PRAGMA synchronous = OFF")
        .map_err(|e| BackupError::sqlite(what(), e))?;
    let page_size: u64 = source
        .pragma_query_value(None, "page_size", |r| r.get(0))
        .map_err(|e| BackupError::sqlite(what(), e))?;
    {
        let backup = Backup::new(source, &mut raw).map_err(|e| BackupError::sqlite(what(), e))?;
        let mut copied = 0u64;
        loop {
            let step = backup
                .step(PAGES_PER_STEP)
                .map_err(|e| BackupError::sqlite(what(), e))?;
            let p = backup.progress();
            let done = (p.pagecount - p.remaining).max(0) as u64;
            progress.advance(done.saturating_sub(copied) * page_size);
            copied = done;
            match step {
                StepResult::Done => break,
                StepResult::More => {}
                // Our source holds a read transaction and nobody else knows
                // the target: a busy step only means "try again".
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
    // The copy carries the source's WAL mode in its header; the compact
    // file is to be a single self-contained file.
    raw.execute_batch("PRAGMA journal_mode = DELETE")
        .map_err(|e| BackupError::sqlite(what(), e))?;
    let target_text = target.to_str().ok_or_else(|| {
        BackupError::io(
            what(),
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a UTF-8 path"),
        )
    })?;
    raw.execute("VACUUM INTO ?1", [target_text])
        .map_err(|e| BackupError::sqlite(what(), e))?;
    raw.close()
        .map_err(|(_, e)| BackupError::sqlite(what(), e))?;
    std::fs::remove_file(&raw_path)
        .map_err(|e| BackupError::io(format!("remove {}", raw_path.display()), e))?;
    let compact = Connection::open(target).map_err(|e| BackupError::sqlite(what(), e))?;
    compact
        .execute_batch("PRAGMA journal_mode = DELETE")
        .map_err(|e| BackupError::sqlite(what(), e))?;
    compact
        .close()
        .map_err(|(_, e)| BackupError::sqlite(what(), e))?;
    Ok(())
}

/// `meta.db` → `meta.db.raw`, beside it in the scratch directory.
fn raw_copy_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(".raw");
    target.with_file_name(name)
}

/// Tables counted in the manifest, under the names people know them by.
/// Tables a schema version does not have yet are left out.
const META_COUNTS: &[(&str, &str)] = &[
    ("tenants", "tenants"),
    ("users", "users"),
    ("api_keys", "api_keys"),
    ("devices", "devices"),
    ("device_credentials", "device_credentials"),
    ("acl_rules", "acl_rules"),
    ("sessions", "mqtt_sessions"),
    ("queued_messages", "mqtt_session_messages"),
    ("retained", "mqtt_retained"),
    ("twins", "twins"),
    ("commands", "commands"),
    ("profiles", "device_profiles"),
    ("rules", "rules"),
    ("alarms", "alarms"),
    ("dashboards", "dashboards"),
    ("apps", "apps"),
];

fn table_exists(conn: &Connection, table: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |r| r.get(0),
    )
}

fn meta_counts(conn: &Connection) -> Result<BTreeMap<String, u64>, BackupError> {
    let mut counts = BTreeMap::new();
    for (name, table) in META_COUNTS {
        let count = || -> rusqlite::Result<Option<u64>> {
            if !table_exists(conn, table)? {
                return Ok(None);
            }
            // `table` comes from the list above, never from input.
            conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .map(Some)
        };
        if let Some(n) = count().map_err(|e| BackupError::sqlite(format!("count {name}"), e))? {
            counts.insert(name.to_string(), n);
        }
    }
    Ok(counts)
}

fn telemetry_counts(conn: &Connection) -> Result<BTreeMap<String, u64>, BackupError> {
    let mut counts = BTreeMap::new();
    let series: u64 = conn
        .query_row("SELECT count(*) FROM series", [], |r| r.get(0))
        .map_err(|e| BackupError::sqlite("count series", e))?;
    counts.insert("series".into(), series);
    let events: u64 = conn
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .map_err(|e| BackupError::sqlite("count events", e))?;
    counts.insert("events".into(), events);
    let points = crate::telemetry::embedded::counts::stored_points(conn)
        .map_err(|e| BackupError::sqlite("count points", e))?;
    counts.insert("points".into(), points);
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::NoProgress;

    /// Deleted rows live on in SQLite's free pages; a snapshot must not
    /// carry them (nor the space).
    #[test]
    fn a_snapshot_holds_no_deleted_data_and_no_free_pages() {
        let data = tempfile::tempdir().unwrap();
        drop(crate::embedded::EmbeddedStore::open(data.path()).unwrap());
        let conn = Connection::open(data.path().join(META_DB)).unwrap();
        let secret = "deleted-tenant-secret-7f3a9c";
        // Enough rows to fill pages that become free once deleted.
        for i in 0..2_000 {
            conn.execute(
                "INSERT INTO tenants (id, name, created_at) VALUES (?1, ?2, 0)",
                (format!("gone-{i}"), format!("{secret} {i}")),
            )
            .unwrap();
        }
        conn.execute("INSERT INTO tenants VALUES ('kept', 'Kept', 0)", [])
            .unwrap();
        conn.execute("DELETE FROM tenants WHERE id LIKE 'gone-%'", [])
            .unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        let free: u64 = conn
            .pragma_query_value(None, "freelist_count", |r| r.get(0))
            .unwrap();
        assert!(free > 0, "the source has free pages to leave behind");

        let scratch = tempfile::tempdir().unwrap();
        let snap = take(data.path(), scratch.path(), &NoProgress).unwrap();
        let bytes = std::fs::read(snap.meta_path()).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "deleted rows' text in the snapshot"
        );
        let copy = open_copy(&snap.meta_path()).unwrap();
        let free: u64 = copy
            .pragma_query_value(None, "freelist_count", |r| r.get(0))
            .unwrap();
        assert_eq!(free, 0);
        let mode: String = copy
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "delete", "a self-contained file");
        assert_eq!(snap.counts["tenants"], 1);
        assert_eq!(snap.meta_schema, crate::embedded::SCHEMA_VERSION);
        // Only the finished copy (beside the scratch directory's lock) is
        // left: no raw copy.
        let mut names: Vec<_> = std::fs::read_dir(snap.scratch.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !n.ends_with(".lock"))
            .collect();
        names.sort();
        assert_eq!(names, [META_DB]);
    }
}
