//! `ferrule backup FILE` and `ferrule restore FILE`: the command-line ends of
//! `ferrule_store::backup`.
//!
//! A backup is written to `FILE.partial` and renamed to `FILE` only when
//! whole and synced, so an interrupted backup never leaves a `FILE` that
//! looks complete (and restore refuses the `.partial` as truncated). Backup
//! works beside a running server; restore needs an empty target and holds
//! its lock while it works, so no server starts on a half-restored
//! directory.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use ferrule_store::backup::restore::{check_target_empty, restore_full_with};
use ferrule_store::backup::{BackupError, Manifest, Progress, ProgressReader, write_full};

use crate::cli::{BackupArgs, RestoreArgs};
use crate::config::{Config, LogFormat, RawConfig};
use crate::data_dir;
use crate::progress::Reporter;

/// Test-only: caps how fast a backup is written, in bytes per second, so a
/// test can interrupt one mid-way.
const THROTTLE_ENV: &str = "FERRULE_TEST_BACKUP_BYTES_PER_SEC";

/// A failure the operator can fix (a bad file, a wrong target): exit code
/// 2, one line.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn refused(e: BackupError) -> anyhow::Error {
    match e {
        BackupError::Archive(_)
        | BackupError::NoData { .. }
        | BackupError::Damaged { .. }
        | BackupError::TargetNotEmpty { .. } => Refused(e.to_string()).into(),
        other => other.into(),
    }
}

fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<Refused>() {
            Some(r) => {
                eprintln!("error: {r}");
                ExitCode::from(2)
            }
            None => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// The configuration for a data-directory command: the same layers as
/// `serve` (file, env, flags).
pub fn load_config(
    file: Option<&Path>,
    data_dir: Option<PathBuf>,
    log_format: Option<LogFormat>,
) -> anyhow::Result<Config> {
    let mut flags = RawConfig {
        data_dir,
        ..RawConfig::default()
    };
    flags.log.format = log_format;
    let config = Config::load(file, &flags).map_err(|e| Refused(e.to_string()))?;
    crate::logging::init(config.log_format);
    Ok(config)
}

pub fn backup_main(args: BackupArgs) -> ExitCode {
    data_dir::private_umask();
    exit(backup(args))
}

pub fn restore_main(args: RestoreArgs) -> ExitCode {
    data_dir::private_umask();
    exit(restore(args))
}

fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref(), args.data_dir, args.log_format)?;
    let progress = Reporter::for_stderr(config.log_format);
    let started = Instant::now();
    if args.file.as_os_str() == "-" {
        let stdout = io::stdout().lock();
        let out = BufWriter::with_capacity(1 << 20, Throttled::from_env(stdout));
        let (_, manifest) =
            write_full(&config.data_dir, &std::env::temp_dir(), out, &progress).map_err(refused)?;
        report(&manifest, None, started);
        return Ok(());
    }
    if args.file.exists() {
        return Err(Refused(format!(
            "{} exists: choose another file name, or remove it first",
            args.file.display()
        ))
        .into());
    }
    let size = write_backup_file(&config.data_dir, &args.file, &progress)?;
    tracing::debug!(bytes = size.1, "backup written");
    report(&size.0, Some((&args.file, size.1)), started);
    Ok(())
}

/// Writes a full backup of `data_dir` to `file` through `file.partial`.
/// Returns the manifest and the file's size.
pub fn write_backup_file(
    data_dir: &Path,
    file: &Path,
    progress: &dyn Progress,
) -> anyhow::Result<(Manifest, u64)> {
    let partial = partial_path(file);
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let out = File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let written = write_full(
        data_dir,
        &parent,
        BufWriter::with_capacity(1 << 20, Throttled::from_env(out)),
        progress,
    );
    let (out, manifest) = match written {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(refused(e));
        }
    };
    let file_out = out
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", partial.display()))?
        .inner;
    file_out
        .sync_all()
        .with_context(|| format!("syncing {}", partial.display()))?;
    let size = file_out.metadata().map(|m| m.len()).unwrap_or(0);
    drop(file_out);
    std::fs::rename(&partial, file)
        .with_context(|| format!("renaming {} to {}", partial.display(), file.display()))?;
    File::open(&parent)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", parent.display()))?;
    Ok((manifest, size))
}

fn partial_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

fn report(manifest: &Manifest, file: Option<(&Path, u64)>, started: Instant) {
    let counts = manifest
        .counts
        .iter()
        .filter(|(k, _)| {
            matches!(
                k.as_str(),
                "tenants" | "users" | "devices" | "series" | "points" | "events"
            )
        })
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    match file {
        Some((path, bytes)) => {
            tracing::info!(file = %path.display(), bytes, seconds, counts = %counts, "backup written");
            eprintln!(
                "Backup written to {} ({bytes} bytes, {seconds} s): {counts}.",
                path.display()
            );
        }
        None => tracing::info!(seconds, counts = %counts, "backup written to stdout"),
    }
}

fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref(), args.data_dir, args.log_format)?;
    let target = config.data_dir.clone();
    let progress = Reporter::for_stderr(config.log_format);
    check_target_empty(&target).map_err(refused)?;
    let (input, total): (Box<dyn Read>, u64) = if args.file.as_os_str() == "-" {
        (Box::new(io::stdin().lock()), 0)
    } else {
        let file = File::open(&args.file).map_err(|e| {
            Refused(format!(
                "cannot open the backup {}: {e}",
                args.file.display()
            ))
        })?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        (Box::new(file), size)
    };
    let created = !target.exists();
    data_dir::create_private(&target).with_context(|| format!("creating {}", target.display()))?;
    // Holding the lock keeps a server off the directory until it is whole.
    let lock = match data_dir::try_lock(&target) {
        Ok(lock) => lock,
        Err(e) => {
            cleanup(&target, created);
            return Err(Refused(format!(
                "cannot lock {} for the restore ({e:?}): is a server starting on it?",
                target.display()
            ))
            .into());
        }
    };
    let started = Instant::now();
    progress.start("restore", total);
    let reader = ProgressReader::new(BufReader::with_capacity(1 << 20, input), &progress);
    let outcome = restore_full_with(reader, &target, &[data_dir::LOCK_FILE]);
    progress.finish();
    drop(lock);
    match outcome {
        Ok(manifest) => {
            let _ = std::fs::remove_file(target.join(data_dir::LOCK_FILE));
            let seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
            tracing::info!(data_dir = %target.display(), seconds, from = %manifest.created_at, "restored");
            eprintln!(
                "Restored the backup of {} (ferrule {}) into {}.",
                manifest.created_at,
                manifest.ferrule_version,
                target.display()
            );
            Ok(())
        }
        Err(e) => {
            cleanup(&target, created);
            Err(refused(e))
        }
    }
}

/// After a failed restore: only the lock file can be left, and the
/// directory itself when this restore created it.
fn cleanup(target: &Path, created: bool) {
    let _ = std::fs::remove_file(target.join(data_dir::LOCK_FILE));
    if created {
        let _ = std::fs::remove_dir(target);
    }
}

/// A writer that, when [`THROTTLE_ENV`] is set, writes no faster than it
/// says.
pub struct Throttled<W> {
    inner: W,
    bytes_per_sec: Option<u64>,
    started: Instant,
    written: u64,
}

impl<W> Throttled<W> {
    fn from_env(inner: W) -> Self {
        let bytes_per_sec = std::env::var(THROTTLE_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|v| *v > 0);
        Self {
            inner,
            bytes_per_sec,
            started: Instant::now(),
            written: 0,
        }
    }
}

impl<W: Write> Write for Throttled<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(rate) = self.bytes_per_sec else {
            return self.inner.write(buf);
        };
        let chunk = &buf[..buf.len().min(4096)];
        let n = self.inner.write(chunk)?;
        self.written += n as u64;
        let due = Duration::from_secs_f64(self.written as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(wait);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
