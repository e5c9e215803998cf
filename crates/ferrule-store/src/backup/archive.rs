//! The backup container: a tar stream inside zstd frames (frame checksums
//! on).
//!
//! Entries, in order:
//! 1. `manifest.json` — a [`Manifest`]: format, the release and schema
//!    versions that wrote it, when, its [`Scope`] and counts of what it holds.
//! 2. data entries (`meta.db`, `telemetry.db`, or whatever a scope needs),
//!    each a plain file name.
//! 3. `checksums.json` — a [`Checksums`]: the SHA-256 of every entry before
//!    it, by name, and `all`, the SHA-256 over the list `name  sha256\n` of
//!    every entry in order (so it covers every byte through the per-entry
//!    sums).
//!
//! Write with [`ArchiveWriter`] (streams into any `Write`; entries stream from
//! any `Read`, never held whole in memory). Read with [`ArchiveReader`]: it
//! streams each data entry to an [`EntrySink`] while hashing it, and only
//! when [`ArchiveReader::read`] returns `Ok` is every byte the sink saw
//! verified. A sink must therefore write into a scratch place and make it
//! visible only after that. Every failure is an [`ArchiveError`] whose
//! message names what is wrong (the entry, the offset, the versions).
//!
//! ```no_run
//! # use ferrule_store::backup::archive::*;
//! # fn demo(out: std::fs::File, input: std::fs::File) -> Result<(), ArchiveError> {
//! let manifest = Manifest::new(Scope::Full, 9, 3, Default::default());
//! let mut writer = ArchiveWriter::new(out, &manifest)?;
//! writer.append_file("meta.db", std::path::Path::new("/tmp/snap/meta.db"))?;
//! let _out = writer.finish()?;
//!
//! let manifest = ArchiveReader::new(input)
//!     .expect_scope(ExpectScope::Full)
//!     .read(&mut DiscardSink)?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The container format this release writes and the newest it reads.
pub const FORMAT: u32 = 1;
/// Name of the first entry.
pub const MANIFEST: &str = "manifest.json";
/// Name of the last entry.
pub const CHECKSUMS: &str = "checksums.json";
/// The release writing backups, recorded in every manifest.
pub const FERRULE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Bound on `manifest.json` and `checksums.json`: both are small, and a
/// hostile file must not make us buffer gigabytes.
const MAX_JSON_ENTRY: u64 = 1 << 20;

/// zstd level: 3 is zstd's default, fast enough to keep up with the disk.
const DEFAULT_LEVEL: i32 = 3;

/// What a backup holds: everything, or one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The whole data directory (`"full"` in the manifest).
    Full,
    /// One tenant (`{"tenant": "ID"}` in the manifest).
    Tenant(String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Full => f.write_str("a full backup"),
            Scope::Tenant(id) => write!(f, "a backup of tenant {id}"),
        }
    }
}

/// The scope a reader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectScope {
    /// Any scope.
    Any,
    /// Only [`Scope::Full`].
    Full,
    /// Only a [`Scope::Tenant`] backup, of any tenant.
    Tenant,
}

impl fmt::Display for ExpectScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExpectScope::Any => "any backup",
            ExpectScope::Full => "a full backup",
            ExpectScope::Tenant => "a tenant backup",
        })
    }
}

/// The first entry: what wrote the backup and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Container format ([`FORMAT`] when written by this release).
    pub format: u32,
    /// Release that wrote it.
    pub ferrule_version: String,
    /// `meta.db` schema version (`user_version`) of the data inside.
    pub meta_schema: u32,
    /// `telemetry.db` schema version of the data inside.
    pub telemetry_schema: u32,
    /// RFC 3339 time the snapshot was taken.
    pub created_at: String,
    pub scope: Scope,
    /// Rows of each kind inside (`tenants`, `devices`, `points`, …): for
    /// people and for checks after a restore; open-ended so a scope can add
    /// its own.
    pub counts: BTreeMap<String, u64>,
}

impl Manifest {
    /// A manifest of this release, stamped now.
    pub fn new(
        scope: Scope,
        meta_schema: u32,
        telemetry_schema: u32,
        counts: BTreeMap<String, u64>,
    ) -> Self {
        Self {
            format: FORMAT,
            ferrule_version: FERRULE_VERSION.to_string(),
            meta_schema,
            telemetry_schema,
            created_at: jiff::Timestamp::now().to_string(),
            scope,
            counts,
        }
    }
}

/// The last entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksums {
    /// Entry name → lowercase hex SHA-256 of its bytes.
    pub entries: BTreeMap<String, String>,
    /// SHA-256 over `name  sha256\n` of every entry, in archive order.
    pub all: String,
}

/// Why a backup could not be written or read. Messages name the cause and
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Not a zstd stream, or no manifest first.
    #[error("not a Ferrule backup: {reason}")]
    NotABackup { reason: String },
    /// The stream ended early (a partial file, an interrupted copy).
    #[error(
        "the backup is truncated: it ends {where_} at byte {offset} of the file; \
         it is incomplete (an interrupted backup or copy): use a complete backup"
    )]
    Truncated { where_: String, offset: u64 },
    /// Bytes differ from what was written.
    #[error("the backup is corrupted in entry {entry}: {detail}; use another copy of the backup")]
    Corrupted { entry: String, detail: String },
    /// Written by a release this one cannot read.
    #[error(
        "the backup is from a newer release: written by ferrule {backup_version} ({backup}), \
         this is ferrule {ours_version} ({ours}): restore it with ferrule {backup_version} or newer"
    )]
    NewerRelease {
        backup_version: String,
        backup: String,
        ours_version: String,
        ours: String,
    },
    /// A full backup where a tenant one was wanted, or the reverse.
    #[error("the file is {found}, but {expected} is needed here")]
    ScopeMismatch { expected: ExpectScope, found: Scope },
    /// The entry name is not one a backup may hold (the writer refuses it
    /// too, so a reader seeing it means a forged file).
    #[error("entry name {0:?} is not allowed in a backup (plain file names only)")]
    BadEntryName(String),
    /// Reading the input or writing the output failed for reasons of its own.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

impl ArchiveError {
    fn io(what: impl Into<String>, source: io::Error) -> Self {
        ArchiveError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Entry names are plain file names: nothing a sink could turn into a path
/// outside its own directory.
fn valid_entry_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Running SHA-256s of one entry and of the list of entries.
struct Digests {
    entries: BTreeMap<String, String>,
    order: Sha256,
}

impl Digests {
    fn new() -> Self {
        Self {
            entries: BTreeMap::new(),
            order: Sha256::new(),
        }
    }

    fn record(&mut self, name: &str, sum: String) {
        self.order.update(format!("{name}  {sum}\n").as_bytes());
        self.entries.insert(name.to_string(), sum);
    }

    fn finish(self) -> Checksums {
        Checksums {
            entries: self.entries,
            all: hex::encode(self.order.finalize()),
        }
    }
}

/// Hashes what passes through a reader.
struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Streams a backup into `W`.
pub struct ArchiveWriter<W: Write> {
    tar: tar::Builder<zstd::Encoder<'static, W>>,
    digests: Digests,
    mtime: u64,
}

impl<W: Write> ArchiveWriter<W> {
    /// Starts a backup and writes its manifest.
    pub fn new(out: W, manifest: &Manifest) -> Result<Self, ArchiveError> {
        Self::with_level(out, manifest, DEFAULT_LEVEL)
    }

    /// As [`ArchiveWriter::new`] with a zstd level (1 fastest … 19).
    pub fn with_level(out: W, manifest: &Manifest, level: i32) -> Result<Self, ArchiveError> {
        let mut encoder = zstd::Encoder::new(out, level)
            .map_err(|e| ArchiveError::io("start the zstd stream", e))?;
        encoder
            .include_checksum(true)
            .map_err(|e| ArchiveError::io("enable zstd checksums", e))?;
        let mtime = manifest
            .created_at
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_second().max(0) as u64)
            .unwrap_or(0);
        let mut writer = Self {
            tar: tar::Builder::new(encoder),
            digests: Digests::new(),
            mtime,
        };
        let json = serde_json::to_vec_pretty(manifest).expect("a manifest serialises");
        writer.append_reader(MANIFEST, json.len() as u64, json.as_slice())?;
        Ok(writer)
    }

    /// Appends an entry of `size` bytes read from `data`.
    pub fn append_reader(
        &mut self,
        name: &str,
        size: u64,
        data: impl Read,
    ) -> Result<(), ArchiveError> {
        if !valid_entry_name(name) || (name == CHECKSUMS) {
            return Err(ArchiveError::BadEntryName(name.to_string()));
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o600);
        header.set_mtime(self.mtime);
        header.set_entry_type(tar::EntryType::Regular);
        let mut hashing = HashingReader {
            inner: data.take(size),
            hash: Sha256::new(),
        };
        self.tar
            .append_data(&mut header, name, &mut hashing)
            .map_err(|e| ArchiveError::io(format!("write entry {name}"), e))?;
        self.digests
            .record(name, hex::encode(hashing.hash.finalize()));
        Ok(())
    }

    /// Appends the file at `path` as entry `name`, streamed.
    pub fn append_file(&mut self, name: &str, path: &Path) -> Result<(), ArchiveError> {
        let file = File::open(path)
            .map_err(|e| ArchiveError::io(format!("open {}", path.display()), e))?;
        let size = file
            .metadata()
            .map_err(|e| ArchiveError::io(format!("stat {}", path.display()), e))?
            .len();
        self.append_reader(name, size, BufReader::with_capacity(1 << 20, file))
    }

    /// Writes `checksums.json`, ends the tar and zstd streams and hands back
    /// the output (not flushed to disk: the caller decides about `fsync`).
    pub fn finish(mut self) -> Result<W, ArchiveError> {
        let sums = self.digests.finish();
        let json = serde_json::to_vec_pretty(&sums).expect("checksums serialise");
        let mut header = tar::Header::new_gnu();
        header.set_size(json.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(self.mtime);
        header.set_entry_type(tar::EntryType::Regular);
        self.tar
            .append_data(&mut header, CHECKSUMS, json.as_slice())
            .map_err(|e| ArchiveError::io("write checksums.json", e))?;
        let encoder = self
            .tar
            .into_inner()
            .map_err(|e| ArchiveError::io("end the tar stream", e))?;
        let mut out = encoder
            .finish()
            .map_err(|e| ArchiveError::io("end the zstd stream", e))?;
        out.flush()
            .map_err(|e| ArchiveError::io("flush the backup", e))?;
        Ok(out)
    }
}

/// Where a reader sends what it reads. Nothing it receives is verified
/// until [`ArchiveReader::read`] returns `Ok`.
pub trait EntrySink {
    /// The manifest, after its version and scope checks passed. Refuse here
    /// (e.g. counts or tenant that do not fit) to stop before any data.
    fn manifest(&mut self, _manifest: &Manifest) -> Result<(), ArchiveError> {
        Ok(())
    }

    /// One data entry of `size` bytes. Read it to its end (what is left
    /// unread is still hashed). An `Err` stops reading.
    fn entry(&mut self, name: &str, size: u64, data: &mut dyn Read) -> io::Result<()>;
}

/// A sink that reads and drops everything: verifies a backup.
#[derive(Debug, Default)]
pub struct DiscardSink;

impl EntrySink for DiscardSink {
    fn entry(&mut self, _name: &str, _size: u64, data: &mut dyn Read) -> io::Result<()> {
        io::copy(data, &mut io::sink())?;
        Ok(())
    }
}

/// Counts the bytes taken from the file, so an error can say where.
struct CountingReader<R> {
    inner: R,
    offset: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Reads and verifies a backup from `R`.
pub struct ArchiveReader<R: Read> {
    input: R,
    expect: ExpectScope,
    meta_schema: u32,
    telemetry_schema: u32,
}

impl<R: Read> ArchiveReader<R> {
    /// A reader accepting any scope, and schema versions up to this
    /// release's.
    pub fn new(input: R) -> Self {
        Self {
            input,
            expect: ExpectScope::Any,
            meta_schema: crate::embedded::SCHEMA_VERSION,
            telemetry_schema: crate::telemetry::embedded::SCHEMA_VERSION,
        }
    }

    /// Refuses backups of another scope with [`ArchiveError::ScopeMismatch`].
    pub fn expect_scope(mut self, expect: ExpectScope) -> Self {
        self.expect = expect;
        self
    }

    /// Reads the whole backup, handing each data entry to `sink`, and
    /// verifies every checksum. Returns the manifest.
    pub fn read(self, sink: &mut dyn EntrySink) -> Result<Manifest, ArchiveError> {
        let mut input = CountingReader {
            inner: self.input,
            offset: 0,
        };
        let mut magic = [0u8; 4];
        if let Err(e) = input.read_exact(&mut magic) {
            return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
                ArchiveError::NotABackup {
                    reason: format!("the file is only {} bytes long", input.offset),
                }
            } else {
                ArchiveError::io("read the backup", e)
            });
        }
        if magic != [0x28, 0xb5, 0x2f, 0xfd] {
            return Err(ArchiveError::NotABackup {
                reason: "it does not start with a zstd frame (a Ferrule backup is a \
                         .ferrule-backup file made by `ferrule backup`)"
                    .into(),
            });
        }
        let rejoined = io::Cursor::new(magic).chain(input);
        let decoder = zstd::Decoder::new(rejoined)
            .map_err(|e| ArchiveError::io("start the zstd stream", e))?;
        let mut archive = tar::Archive::new(decoder);
        let limits = Limits {
            meta_schema: self.meta_schema,
            telemetry_schema: self.telemetry_schema,
            expect: self.expect,
        };
        let outcome = read_entries(&mut archive, &limits, sink);
        let mut decoder = archive.into_inner();
        // Past the tar end lie its padding and the zstd frame's own
        // checksum: read them so a damaged or cut tail is noticed too.
        let outcome = outcome.and_then(|manifest| {
            io::copy(&mut decoder, &mut io::sink())
                .map(|_| manifest)
                .map_err(|error| Failure::Stream {
                    where_: format!("after {CHECKSUMS}"),
                    entry: CHECKSUMS.into(),
                    error,
                })
        });
        let input = decoder.finish().into_inner().into_inner().1;
        match outcome {
            Ok(manifest) => Ok(manifest),
            Err(Failure::Archive(e)) => Err(e),
            Err(Failure::Stream {
                where_,
                entry,
                error,
            }) => Err(classify(where_, entry, error, input.offset)),
        }
    }
}

struct Limits {
    meta_schema: u32,
    telemetry_schema: u32,
    expect: ExpectScope,
}

/// A failure while the stream was being read, classified once we know
/// whether the file ran out.
enum Failure {
    Archive(ArchiveError),
    Stream {
        where_: String,
        entry: String,
        error: io::Error,
    },
}

impl From<ArchiveError> for Failure {
    fn from(e: ArchiveError) -> Self {
        Failure::Archive(e)
    }
}

/// A short file shows as an unexpected end (from zstd mid-frame, or from
/// tar mid-entry); anything else the decoder says is damage.
fn classify(where_: String, entry: String, error: io::Error, offset: u64) -> ArchiveError {
    if error.kind() == io::ErrorKind::UnexpectedEof {
        ArchiveError::Truncated { where_, offset }
    } else {
        ArchiveError::Corrupted {
            entry,
            detail: format!("the compressed stream is damaged ({error})"),
        }
    }
}

/// Hands the sink the entry's bytes and notes whether an error came from
/// the stream or from the sink.
struct Tapped<'a, R> {
    inner: HashingReader<&'a mut R>,
    stream_error: Option<io::Error>,
}

impl<R: Read> Read for Tapped<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => Ok(n),
            Err(e) => {
                let kind = e.kind();
                let text = e.to_string();
                self.stream_error = Some(e);
                Err(io::Error::new(kind, text))
            }
        }
    }
}

fn read_entries<R: Read>(
    archive: &mut tar::Archive<R>,
    limits: &Limits,
    sink: &mut dyn EntrySink,
) -> Result<Manifest, Failure> {
    let stream = |where_: String, entry: &str, error: io::Error| Failure::Stream {
        where_,
        entry: entry.to_string(),
        error,
    };
    let mut entries = archive
        .entries()
        .map_err(|e| stream("at the start".into(), MANIFEST, e))?;
    let mut digests = Digests::new();
    let mut manifest: Option<Manifest> = None;
    let mut last = String::from("before the first entry");
    let mut last_name = MANIFEST.to_string();
    loop {
        let next = entries.next();
        let Some(entry) = next else {
            // The tar stream ended cleanly but without checksums: the writer
            // never finished.
            return Err(Failure::Stream {
                where_: format!("{last}, before {CHECKSUMS}"),
                entry: last_name,
                error: io::Error::new(io::ErrorKind::UnexpectedEof, "no checksums"),
            });
        };
        let mut entry = entry
            .map_err(|e| stream(format!("{last}, in the next entry's header"), &last_name, e))?;
        let name = entry
            .path_bytes()
            .iter()
            .map(|&b| b as char)
            .collect::<String>();
        if !valid_entry_name(&name) {
            return Err(ArchiveError::BadEntryName(name).into());
        }
        if digests.entries.contains_key(&name) {
            return Err(ArchiveError::Corrupted {
                entry: name,
                detail: "the entry appears twice".into(),
            }
            .into());
        }
        let size = entry.size();
        let where_ = format!("in entry {name}");
        let Some(found_manifest) = &manifest else {
            if name != MANIFEST {
                return Err(ArchiveError::NotABackup {
                    reason: format!("its first entry is {name}, not {MANIFEST}"),
                }
                .into());
            }
            let bytes = read_small(&mut entry, size, &name).map_err(|e| match e {
                Failure::Stream { error, .. } => stream(where_.clone(), &name, error),
                other => other,
            })?;
            digests.record(&name, hex::encode(Sha256::digest(&bytes)));
            let found = parse_manifest(&bytes, limits)?;
            sink.manifest(&found)?;
            manifest = Some(found);
            last = format!("after entry {name}");
            last_name = name;
            continue;
        };
        if name == CHECKSUMS {
            let bytes = read_small(&mut entry, size, &name)?;
            let sums: Checksums =
                serde_json::from_slice(&bytes).map_err(|e| ArchiveError::Corrupted {
                    entry: CHECKSUMS.into(),
                    detail: format!("it is not valid JSON ({e})"),
                })?;
            verify_checksums(&digests, &sums)?;
            // Nothing may follow the checksums; reading on also makes the
            // zstd decoder check the frame's own checksum at its end.
            match entries.next() {
                None => {}
                Some(Ok(extra)) => {
                    let extra = String::from_utf8_lossy(&extra.path_bytes()).into_owned();
                    return Err(ArchiveError::Corrupted {
                        entry: extra,
                        detail: format!("an entry follows {CHECKSUMS}"),
                    }
                    .into());
                }
                Some(Err(e)) => return Err(stream(format!("after {CHECKSUMS}"), CHECKSUMS, e)),
            }
            return Ok(found_manifest.clone());
        } else {
            let mut tapped = Tapped {
                inner: HashingReader {
                    inner: &mut entry,
                    hash: Sha256::new(),
                },
                stream_error: None,
            };
            let sunk = sink.entry(&name, size, &mut tapped);
            if let Some(error) = tapped.stream_error.take() {
                return Err(stream(where_, &name, error));
            }
            if let Err(e) = sunk {
                return Err(ArchiveError::io(format!("store entry {name}"), e).into());
            }
            // What the sink left unread still counts.
            io::copy(&mut tapped, &mut io::sink()).map_err(|e| stream(where_.clone(), &name, e))?;
            if let Some(error) = tapped.stream_error.take() {
                return Err(stream(where_, &name, error));
            }
            digests.record(&name, hex::encode(tapped.inner.hash.finalize()));
        }
        last = format!("after entry {name}");
        last_name = name;
    }
}

/// Reads a JSON entry, bounded.
fn read_small(entry: &mut impl Read, size: u64, name: &str) -> Result<Vec<u8>, Failure> {
    if size > MAX_JSON_ENTRY {
        return Err(ArchiveError::Corrupted {
            entry: name.into(),
            detail: format!("it claims {size} bytes, more than {MAX_JSON_ENTRY} allowed"),
        }
        .into());
    }
    let mut bytes = Vec::with_capacity(size as usize);
    entry
        .take(MAX_JSON_ENTRY)
        .read_to_end(&mut bytes)
        .map_err(|error| Failure::Stream {
            where_: format!("in entry {name}"),
            entry: name.into(),
            error,
        })?;
    Ok(bytes)
}

fn parse_manifest(bytes: &[u8], limits: &Limits) -> Result<Manifest, ArchiveError> {
    // Version fields first: a newer release may have changed the rest.
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ArchiveError::NotABackup {
            reason: format!("{MANIFEST} is not valid JSON ({e})"),
        })?;
    let number = |key: &str| value.get(key).and_then(|v| v.as_u64());
    let format = number("format").ok_or_else(|| ArchiveError::NotABackup {
        reason: format!("{MANIFEST} has no format number"),
    })?;
    let backup_version = value
        .get("ferrule_version")
        .and_then(|v| v.as_str())
        .unwrap_or("(unknown)")
        .to_string();
    let meta = number("meta_schema").unwrap_or(0);
    let telemetry = number("telemetry_schema").unwrap_or(0);
    if format > u64::from(FORMAT)
        || meta > u64::from(limits.meta_schema)
        || telemetry > u64::from(limits.telemetry_schema)
    {
        return Err(ArchiveError::NewerRelease {
            backup_version,
            backup: format!(
                "backup format {format}, meta schema {meta}, telemetry schema {telemetry}"
            ),
            ours_version: FERRULE_VERSION.into(),
            ours: format!(
                "backup format {FORMAT}, meta schema {}, telemetry schema {}",
                limits.meta_schema, limits.telemetry_schema
            ),
        });
    }
    let manifest: Manifest =
        serde_json::from_value(value).map_err(|e| ArchiveError::NotABackup {
            reason: format!("{MANIFEST} is not a Ferrule manifest ({e})"),
        })?;
    let fits = matches!(
        (limits.expect, &manifest.scope),
        (ExpectScope::Any, _)
            | (ExpectScope::Full, Scope::Full)
            | (ExpectScope::Tenant, Scope::Tenant(_))
    );
    if !fits {
        return Err(ArchiveError::ScopeMismatch {
            expected: limits.expect,
            found: manifest.scope.clone(),
        });
    }
    Ok(manifest)
}

fn verify_checksums(read: &Digests, written: &Checksums) -> Result<(), ArchiveError> {
    for (name, sum) in &read.entries {
        match written.entries.get(name) {
            Some(expected) if expected == sum => {}
            Some(_) => {
                return Err(ArchiveError::Corrupted {
                    entry: name.clone(),
                    detail: "its SHA-256 differs from the one recorded in checksums.json".into(),
                });
            }
            None => {
                return Err(ArchiveError::Corrupted {
                    entry: name.clone(),
                    detail: "checksums.json does not list it".into(),
                });
            }
        }
    }
    if let Some(missing) = written
        .entries
        .keys()
        .find(|n| !read.entries.contains_key(*n))
    {
        return Err(ArchiveError::Corrupted {
            entry: missing.clone(),
            detail: "checksums.json lists it but the backup does not hold it".into(),
        });
    }
    if hex::encode(read.order.clone().finalize()) != written.all {
        return Err(ArchiveError::Corrupted {
            entry: CHECKSUMS.into(),
            detail: "the checksum over all entries differs".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects entries in memory.
    #[derive(Debug, Default)]
    struct Collect(Vec<(String, Vec<u8>)>);

    impl EntrySink for Collect {
        fn entry(&mut self, name: &str, _size: u64, data: &mut dyn Read) -> io::Result<()> {
            let mut bytes = Vec::new();
            data.read_to_end(&mut bytes)?;
            self.0.push((name.to_string(), bytes));
            Ok(())
        }
    }

    fn pseudo_random(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 7) as u8
            })
            .collect()
    }

    fn sample(scope: Scope) -> (Manifest, Vec<u8>) {
        let counts = BTreeMap::from([("devices".to_string(), 2), ("points".to_string(), 40)]);
        let manifest = Manifest::new(scope, 9, 3, counts);
        let mut writer = ArchiveWriter::new(Vec::new(), &manifest).unwrap();
        let meta = pseudo_random(300_000);
        writer
            .append_reader("meta.db", meta.len() as u64, meta.as_slice())
            .unwrap();
        writer
            .append_reader("telemetry.db", 5, &b"hello"[..])
            .unwrap();
        (manifest, writer.finish().unwrap())
    }

    fn read(bytes: &[u8]) -> Result<(Manifest, Collect), ArchiveError> {
        let mut sink = Collect::default();
        let manifest = ArchiveReader::new(bytes).read(&mut sink)?;
        Ok((manifest, sink))
    }

    #[test]
    fn round_trip_keeps_manifest_and_entries() {
        let (manifest, bytes) = sample(Scope::Full);
        let (read_back, sink) = read(&bytes).unwrap();
        assert_eq!(read_back, manifest);
        assert_eq!(sink.0.len(), 2);
        assert_eq!(sink.0[0].0, "meta.db");
        assert_eq!(sink.0[0].1, pseudo_random(300_000));
        assert_eq!(sink.0[1], ("telemetry.db".to_string(), b"hello".to_vec()));
    }

    #[test]
    fn manifest_scope_has_the_documented_shape() {
        let (manifest, _) = sample(Scope::Tenant("acme".into()));
        let json = serde_json::to_value(&manifest).unwrap();
        assert_eq!(json["scope"], serde_json::json!({"tenant": "acme"}));
        assert_eq!(json["format"], 1);
        let (manifest, _) = sample(Scope::Full);
        assert_eq!(serde_json::to_value(&manifest).unwrap()["scope"], "full");
    }

    #[test]
    fn every_truncation_is_refused_as_truncated() {
        let (_, bytes) = sample(Scope::Full);
        for cut in (5..bytes.len())
            .step_by(bytes.len() / 37 + 1)
            .chain([bytes.len() - 1])
        {
            match read(&bytes[..cut]) {
                Err(ArchiveError::Truncated { offset, .. }) => {
                    assert_eq!(offset, cut as u64, "cut at {cut}")
                }
                other => panic!("cut at {cut}: expected Truncated, got {:?}", other.err()),
            }
        }
    }

    #[test]
    fn a_flipped_byte_is_detected() {
        let (_, bytes) = sample(Scope::Full);
        for at in (6..bytes.len()).step_by(bytes.len() / 29 + 1) {
            let mut bad = bytes.clone();
            bad[at] ^= 0x20;
            let err = read(&bad).expect_err(&format!("flip at {at} went unnoticed"));
            assert!(
                matches!(
                    err,
                    ArchiveError::Corrupted { .. }
                        | ArchiveError::Truncated { .. }
                        | ArchiveError::NotABackup { .. }
                ),
                "flip at {at}: {err}"
            );
        }
    }

    #[test]
    fn a_changed_entry_is_named() {
        // Same container, a different payload: only the SHA-256 can tell.
        let manifest = Manifest::new(Scope::Full, 9, 3, BTreeMap::new());
        let mut writer = ArchiveWriter::new(Vec::new(), &manifest).unwrap();
        writer.append_reader("meta.db", 3, &b"abc"[..]).unwrap();
        writer.digests.entries.insert("meta.db".into(), "00".into());
        let bytes = writer.finish().unwrap();
        match read(&bytes) {
            Err(ArchiveError::Corrupted { entry, .. }) => assert_eq!(entry, "meta.db"),
            other => panic!("expected Corrupted, got {:?}", other.err()),
        }
    }

    #[test]
    fn a_newer_format_or_schema_is_refused_with_both_versions() {
        for (format, meta) in [
            (FORMAT + 1, 9),
            (FORMAT, crate::embedded::SCHEMA_VERSION + 1),
        ] {
            let mut manifest = Manifest::new(Scope::Full, meta, 3, BTreeMap::new());
            manifest.format = format;
            manifest.ferrule_version = "9.0.0".into();
            let bytes = ArchiveWriter::new(Vec::new(), &manifest)
                .unwrap()
                .finish()
                .unwrap();
            let err = read(&bytes).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, ArchiveError::NewerRelease { .. }), "{text}");
            assert!(
                text.contains("9.0.0") && text.contains(FERRULE_VERSION),
                "{text}"
            );
        }
    }

    #[test]
    fn scope_mismatch_is_refused() {
        let (_, bytes) = sample(Scope::Tenant("acme".into()));
        let err = ArchiveReader::new(bytes.as_slice())
            .expect_scope(ExpectScope::Full)
            .read(&mut DiscardSink)
            .unwrap_err();
        assert!(matches!(err, ArchiveError::ScopeMismatch { .. }), "{err}");
        assert!(err.to_string().contains("tenant acme"), "{err}");
        let (_, bytes) = sample(Scope::Full);
        let err = ArchiveReader::new(bytes.as_slice())
            .expect_scope(ExpectScope::Tenant)
            .read(&mut DiscardSink)
            .unwrap_err();
        assert!(matches!(err, ArchiveError::ScopeMismatch { .. }), "{err}");
    }

    #[test]
    fn other_files_are_not_backups() {
        for bytes in [&b""[..], b"SQLite format 3\0", b"\x28\xb5\x2f\xfd"] {
            let err = read(bytes).unwrap_err();
            assert!(
                matches!(
                    err,
                    ArchiveError::NotABackup { .. } | ArchiveError::Truncated { .. }
                ),
                "{err}"
            );
        }
        // A zstd-compressed tar without a manifest.
        let mut tar = tar::Builder::new(zstd::Encoder::new(Vec::new(), 1).unwrap());
        let mut header = tar::Header::new_gnu();
        header.set_size(2);
        tar.append_data(&mut header, "notes.txt", &b"hi"[..])
            .unwrap();
        let bytes = tar.into_inner().unwrap().finish().unwrap();
        let err = read(&bytes).unwrap_err();
        assert!(matches!(err, ArchiveError::NotABackup { .. }), "{err}");
        assert!(err.to_string().contains("notes.txt"), "{err}");
    }

    #[test]
    fn entry_names_must_be_plain() {
        let manifest = Manifest::new(Scope::Full, 9, 3, BTreeMap::new());
        let mut writer = ArchiveWriter::new(Vec::new(), &manifest).unwrap();
        for name in ["../etc/passwd", "a/b", ".hidden", "", CHECKSUMS] {
            assert!(matches!(
                writer.append_reader(name, 0, &b""[..]),
                Err(ArchiveError::BadEntryName(_))
            ));
        }
    }

    #[test]
    fn a_failing_sink_is_not_called_corruption() {
        struct Full;
        impl EntrySink for Full {
            fn entry(&mut self, _: &str, _: u64, _: &mut dyn Read) -> io::Result<()> {
                Err(io::Error::other("no space left"))
            }
        }
        let (_, bytes) = sample(Scope::Full);
        let err = ArchiveReader::new(bytes.as_slice())
            .read(&mut Full)
            .unwrap_err();
        assert!(matches!(err, ArchiveError::Io { .. }), "{err}");
        assert!(err.to_string().contains("meta.db"), "{err}");
    }
}
