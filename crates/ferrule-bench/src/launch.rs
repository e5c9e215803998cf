//! Starting a `ferrule serve` process and knowing when it is ready: its
//! addresses read from the banner it prints, then `/readyz` answering 200.
//! The one helper the benches and the integration tests share.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How often the banner and `/readyz` are polled while a server starts: a
/// millisecond, so `bench startup` measures the server, not the poll.
const POLL: Duration = Duration::from_millis(1);

static SERVER: OnceLock<PathBuf> = OnceLock::new();

/// Names the `ferrule` binary the benches start (`ferrule bench` passes
/// itself); the first call wins.
pub fn set_server_binary(path: PathBuf) {
    let _ = SERVER.set(path);
}

/// The `ferrule` binary to start: the one set by [`set_server_binary`], else
/// `ferrule` beside the running executable (both land in the same
/// `target/<profile>/`).
pub fn server_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = SERVER.get() {
        return Ok(path.clone());
    }
    let me = std::env::current_exe().context("locating the running executable")?;
    let beside = me.with_file_name("ferrule");
    if !beside.exists() {
        bail!(
            "no ferrule binary beside {}: build it (cargo build --release) or pass --server PATH",
            me.display()
        );
    }
    Ok(beside)
}

/// Lines a process printed, shared with the task that reads them.
#[derive(Debug, Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    /// Everything printed so far, one line per line.
    pub fn text(&self) -> String {
        self.lock().join("\n")
    }

    /// The `host:port` of the banner line `  LABEL  SCHEME://HOST:PORT/…`,
    /// e.g. `("HTTP API", "http://")` or `("MQTT", "mqtt://")`.
    pub fn address(&self, label: &str, scheme: &str) -> Option<String> {
        self.lock()
            .iter()
            .find_map(|line| banner_address(line, label, scheme))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        // A reader task that panicked leaves its lines readable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads `stream` line by line into these lines until it ends; with
    /// `echo`, also to this process's stderr (so a bench shows the server's
    /// warnings as they happen).
    fn collect(&self, stream: impl AsyncRead + Unpin + Send + 'static, echo: bool) {
        let lines = self.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if echo {
                    eprintln!("{line}");
                }
                lines.lock().push(line);
            }
        });
    }
}

/// `  HTTP API  http://127.0.0.1:PORT/api/v1 …` → `127.0.0.1:PORT`.
fn banner_address(line: &str, label: &str, scheme: &str) -> Option<String> {
    let rest = line.trim().strip_prefix(label)?;
    // "MQTT" must not match "MQTT/TLS": the label ends at whitespace.
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let url = rest.split_whitespace().next()?;
    Some(url.strip_prefix(scheme)?.split('/').next()?.to_owned())
}

/// A server process that has been spawned and is not known to be ready yet.
#[derive(Debug)]
pub struct Starting {
    child: Child,
    stdout: Lines,
    stderr: Lines,
}

impl Starting {
    /// Spawns `command` (a `ferrule serve …`, or a shell that execs one)
    /// with stdout and stderr captured, killed when dropped. Synchronous,
    /// so a caller can pin the spawning thread around it. Needs a Tokio
    /// runtime.
    pub fn spawn(command: &mut Command, echo_stderr: bool) -> anyhow::Result<Starting> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting ferrule serve")?;
        let (stdout, stderr) = (Lines::default(), Lines::default());
        stdout.collect(child.stdout.take().context("stdout")?, false);
        stderr.collect(child.stderr.take().context("stderr")?, echo_stderr);
        Ok(Starting {
            child,
            stdout,
            stderr,
        })
    }

    /// Waits until the server has printed its HTTP and MQTT addresses and
    /// `/readyz` answers 200, at most `within`.
    pub async fn ready(mut self, within: Duration) -> anyhow::Result<Running> {
        let deadline = Instant::now() + within;
        let (http, mqtt) = loop {
            let http = self.stdout.address("HTTP API", "http://");
            let mqtt = self.stdout.address("MQTT", "mqtt://");
            if let (Some(http), Some(mqtt)) = (http, mqtt) {
                break (http, mqtt);
            }
            self.check_alive(deadline, "print its addresses").await?;
        };
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("http://{http}/readyz")).send().await
                && r.status().is_success()
            {
                break;
            }
            self.check_alive(deadline, "become ready").await?;
        }
        Ok(Running {
            child: self.child,
            http,
            mqtt,
            stdout: self.stdout,
            stderr: self.stderr,
        })
    }

    /// Fails if the process exited or the deadline passed; else waits one
    /// poll interval.
    async fn check_alive(&mut self, deadline: Instant, doing: &str) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait().context("checking the server")? {
            // Let the readers catch the last lines of its stderr.
            tokio::time::sleep(Duration::from_millis(100)).await;
            bail!(
                "ferrule exited with {status} before it was ready; stderr:\n{}",
                self.stderr.text()
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "ferrule did not {doing} in time; stderr:\n{}",
                self.stderr.text()
            );
        }
        tokio::time::sleep(POLL).await;
        Ok(())
    }
}

/// A server that answered `/readyz`.
#[derive(Debug)]
pub struct Running {
    pub child: Child,
    /// HTTP API address, `127.0.0.1:PORT`.
    pub http: String,
    /// MQTT TCP address, `127.0.0.1:PORT`.
    pub mqtt: String,
    pub stdout: Lines,
    pub stderr: Lines,
}

#[cfg(test)]
mod tests {
    use super::banner_address;

    #[test]
    fn banner_lines_give_their_address() {
        let http = "  HTTP API  http://127.0.0.1:8080/api/v1  (reference: /api/docs)";
        assert_eq!(
            banner_address(http, "HTTP API", "http://").as_deref(),
            Some("127.0.0.1:8080")
        );
        let mqtt = "  MQTT      mqtt://127.0.0.1:1883";
        assert_eq!(
            banner_address(mqtt, "MQTT", "mqtt://").as_deref(),
            Some("127.0.0.1:1883")
        );
        let tls = "  MQTT/TLS  mqtts://127.0.0.1:8883";
        assert_eq!(banner_address(tls, "MQTT", "mqtt://"), None);
        assert_eq!(
            banner_address(tls, "MQTT/TLS", "mqtts://").as_deref(),
            Some("127.0.0.1:8883")
        );
    }
}
