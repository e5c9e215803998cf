//! A tenant extract in the backup container (`crate::backup::archive`),
//! scope `{"tenant": ID}`, entries `meta.db` and `telemetry.db`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use ferrule_core::TenantId;
use rusqlite::Connection;

use super::{MoveError, archive_tenant};
use crate::backup::archive::{
    ArchiveReader, ArchiveWriter, EntrySink, ExpectScope, Manifest, Scope,
};
use crate::embedded::META_DB;
use crate::telemetry::embedded::FILE as TELEMETRY_DB;

/// Writes tenant `tenant` of the data directory `data_dir` (a server may
/// be running on it) as a tenant archive into `out`; `scratch` holds the
/// extract meanwhile. Returns the manifest written.
pub fn write_archive<W: Write>(
    data_dir: &Path,
    tenant: &TenantId,
    scratch: &Path,
    out: W,
) -> Result<(Manifest, W), MoveError> {
    let mut counts = archive_tenant(data_dir, tenant, scratch)?;
    let meta = scratch.join(META_DB);
    let telemetry = scratch.join(TELEMETRY_DB);
    let telemetry_counts = count_telemetry(&telemetry)?;
    counts.extend(telemetry_counts);
    let manifest = Manifest::new(
        Scope::Tenant(tenant.to_string()),
        user_version(&meta)?,
        user_version(&telemetry)?,
        counts,
    );
    let mut writer = ArchiveWriter::new(out, &manifest)?;
    writer.append_file(META_DB, &meta)?;
    writer.append_file(TELEMETRY_DB, &telemetry)?;
    Ok((manifest, writer.finish()?))
}

fn user_version(path: &Path) -> Result<u32, MoveError> {
    let conn = Connection::open(path)?;
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

/// Series, sealed points and events of a telemetry extract.
fn count_telemetry(path: &Path) -> Result<BTreeMap<String, u64>, MoveError> {
    let conn = Connection::open(path)?;
    let mut counts = BTreeMap::new();
    for (name, sql) in [
        ("series", "SELECT count(*) FROM series"),
        (
            "sealed_points",
            "SELECT coalesce(sum(points), 0) FROM chunks",
        ),
        ("events", "SELECT count(*) FROM events"),
    ] {
        let n: i64 = conn.query_row(sql, [], |r| r.get(0))?;
        counts.insert(name.to_owned(), n as u64);
    }
    Ok(counts)
}

/// Reads and verifies the tenant archive at `archive`, writing its two
/// files into `dir` (created). Nothing in `dir` is to be used unless this
/// returns `Ok`: only then was every byte checked.
pub fn unpack_archive(archive: &Path, dir: &Path) -> Result<Manifest, MoveError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| MoveError::Invalid(format!("creating {}: {e}", dir.display())))?;
    let file = File::open(archive)
        .map_err(|e| MoveError::Invalid(format!("opening {}: {e}", archive.display())))?;
    let mut sink = TenantFiles {
        dir: dir.to_path_buf(),
        seen: Vec::new(),
    };
    let manifest = ArchiveReader::new(io::BufReader::new(file))
        .expect_scope(ExpectScope::Tenant)
        .read(&mut sink)?;
    for name in [META_DB, TELEMETRY_DB] {
        if !sink.seen.iter().any(|s| s == name) {
            return Err(MoveError::Invalid(format!("it has no {name}")));
        }
    }
    // Checksums prove the bytes are those written, not that SQLite can
    // read them; checked before the extract is migrated or imported.
    for name in [META_DB, TELEMETRY_DB] {
        crate::backup::restore::integrity_check(&dir.join(name)).map_err(|detail| {
            MoveError::Invalid(format!(
                "its {name} is damaged (SQLite's integrity check: {detail}); its checksum \
                 matches, so the data was damaged before the archive was made: make it again \
                 from a healthy source"
            ))
        })?;
    }
    let Scope::Tenant(id) = &manifest.scope else {
        return Err(MoveError::Invalid("it is not a tenant archive".into()));
    };
    let holds = crate::embedded::extract_tenant_id(&dir.join(META_DB))?;
    if holds.as_str() != id {
        return Err(MoveError::Invalid(format!(
            "its manifest names tenant {id} but its meta.db holds tenant {holds}"
        )));
    }
    Ok(manifest)
}

/// Takes the two files a tenant archive holds, and nothing else.
struct TenantFiles {
    dir: PathBuf,
    seen: Vec<String>,
}

impl EntrySink for TenantFiles {
    fn entry(&mut self, name: &str, _size: u64, data: &mut dyn Read) -> io::Result<()> {
        if name != META_DB && name != TELEMETRY_DB || self.seen.iter().any(|s| s == name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a tenant archive holds meta.db and telemetry.db once each, not {name:?}"),
            ));
        }
        self.seen.push(name.to_owned());
        let mut out = File::create(self.dir.join(name))?;
        io::copy(data, &mut out)?;
        out.sync_all()
    }
}
