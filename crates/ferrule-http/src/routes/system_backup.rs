//! `POST /api/v1/system/backup`: the same full backup as `ferrule backup`,
//! streamed as the response body, for admins. One runs at a time: a second
//! request gets 503 with `Retry-After` while the first streams.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use ferrule_store::backup::{NoProgress, write_full};
use tokio::sync::mpsc;

use crate::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;

/// Bytes gathered before a piece of the body is sent.
const PIECE: usize = 256 * 1024;

/// Seconds a refused second backup is told to wait.
const RETRY_AFTER: u64 = 30;

/// What the backup route needs: the data directory of the embedded store,
/// and whether a backup is running.
#[derive(Clone, Debug)]
pub struct SystemBackup {
    data_dir: PathBuf,
    running: Arc<AtomicBool>,
}

impl SystemBackup {
    /// Backups of the embedded store in `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            running: Arc::default(),
        }
    }

    fn try_start(&self) -> Option<Running> {
        self.running
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Running(self.running.clone()))
    }
}

/// Marks the backup as running until dropped (also when the client goes
/// away mid-stream).
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Hands what the archive writer writes to the response body, in pieces;
/// blocks while the client reads slowly, fails once it has gone.
struct BodyWriter {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
}

impl BodyWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE)));
        self.tx
            .blocking_send(Ok(piece))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for BodyWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIECE {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// Streams a full backup of the server's data (every tenant).
#[utoipa::path(post, operation_id = "backupSystem", path = "/api/v1/system/backup", tag = "ops",
    responses(
        (status = 200, description = "A full backup (`ferrule backup` format: zstd-compressed tar with a manifest and checksums), streamed; restore it with `ferrule restore FILE`", content_type = "application/zstd"),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 503, description = "A backup is already running (see Retry-After), or the store cannot be backed up", body = Problem)))]
pub async fn backup(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require_admin_to("backups need the admin role")?;
    let Some(backups) = state.backups.clone() else {
        return Err(ApiError::Unavailable(
            "backups are available with the embedded store only".into(),
        ));
    };
    let Some(running) = backups.try_start() else {
        return Err(ApiError::Busy {
            detail: "a backup is already running; retry when it has finished".into(),
            retry_after: RETRY_AFTER,
        });
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let _running = running;
        let out = BodyWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(PIECE),
        };
        // The snapshot's scratch copies go inside the data directory: the
        // one place the server is sure to be allowed to write.
        match write_full(&backups.data_dir, &backups.data_dir, out, &NoProgress) {
            Ok((_, manifest)) => {
                tracing::info!(counts = ?manifest.counts, "backup streamed over HTTP");
            }
            Err(e) => {
                // Headers are gone: cut the body so the client sees an
                // incomplete transfer (and restore a truncated file).
                tracing::error!(error = %e, "backup over HTTP failed");
                let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece, rx))
    });
    let name = format!(
        "attachment; filename=\"ferrule-{}.ferrule-backup\"",
        jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/zstd".to_string()),
            (header::CONTENT_DISPOSITION, name),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_backup_runs_at_a_time() {
        let backups = SystemBackup::new(PathBuf::from("/nonexistent"));
        let first = backups.try_start().expect("the first starts");
        assert!(backups.try_start().is_none(), "a second waits");
        drop(first);
        assert!(
            backups.try_start().is_some(),
            "free again once the first ends"
        );
    }

    #[test]
    fn the_body_writer_stops_once_the_client_is_gone() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let mut out = BodyWriter {
            tx,
            buf: Vec::new(),
        };
        let err = out.write_all(&vec![0u8; PIECE + 1]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
