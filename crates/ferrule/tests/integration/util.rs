//! Test helper: starts the real `ferrule` binary on free ports in a temp dir
//! and talks to it the way a user would.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use ferrule_bench::launch::{Lines, Starting};
use reqwest::Method;
use serde_json::Value;
use tempfile::TempDir;
use tokio::process::{Child, Command};

pub const ADMIN_EMAIL: &str = "admin@localhost";
pub const ADMIN_PASSWORD: &str = "admin-test-password";

/// How long a server may take to become ready in a test.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub fn ferrule_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferrule")
}

/// Configures a server before starting it.
pub struct ServerBuilder {
    dir: TempDir,
    args: Vec<String>,
    env: Vec<(String, String)>,
    data_dir: PathBuf,
    admin_password: Option<String>,
    listen: bool,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerBuilder {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("data");
        Self {
            dir,
            args: Vec::new(),
            env: Vec::new(),
            data_dir,
            admin_password: Some(ADMIN_PASSWORD.to_owned()),
            listen: true,
        }
    }

    /// The temp dir the server runs in (its working directory).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    /// Serves TLS with `server.pem` and `server.key` of [`Self::dir`]
    /// (written by the caller, or by [`Self::self_signed_tls`]).
    pub fn tls_from_dir(self) -> Self {
        let file = |name: &str| self.dir().join(name).to_str().unwrap().to_owned();
        let (cert, key) = (file("server.pem"), file("server.key"));
        self.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key)
    }

    /// Serves TLS with a fresh self-signed certificate for `names`.
    pub fn self_signed_tls(self, names: &[&str]) -> Self {
        let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let cert = rcgen::generate_simple_self_signed(names).unwrap();
        std::fs::write(self.dir().join("server.pem"), cert.cert.pem()).unwrap();
        std::fs::write(
            self.dir().join("server.key"),
            cert.signing_key.serialize_pem(),
        )
        .unwrap();
        self.tls_from_dir()
    }

    /// Serves MQTT over TLS too, on a free port (see [`Server::listed_address`]).
    pub fn mqtts_on_free_port(self) -> Self {
        self.arg("--mqtts-listen").arg("127.0.0.1:0")
    }

    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Writes `ferrule.toml` in the working directory.
    pub fn config_file(self, toml: &str) -> Self {
        std::fs::write(self.dir.path().join("ferrule.toml"), toml).expect("write ferrule.toml");
        self
    }

    /// Uses this data dir instead of `<tmp>/data`.
    pub fn data_dir(mut self, p: impl Into<PathBuf>) -> Self {
        self.data_dir = p.into();
        self
    }

    /// Leaves FERRULE_ADMIN_PASSWORD unset so the server generates one.
    pub fn random_admin_password(mut self) -> Self {
        self.admin_password = None;
        self
    }

    /// Leaves `--http-listen` and `--data-dir` to config/env (precedence tests).
    pub fn no_default_flags(mut self) -> Self {
        self.listen = false;
        self
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(ferrule_bin());
        cmd.arg("serve").current_dir(self.dir.path());
        if self.listen {
            cmd.arg("--http-listen").arg("127.0.0.1:0");
            cmd.arg("--data-dir").arg(&self.data_dir);
        }
        cmd.args(&self.args);
        // With a certificate, HTTPS would take 0.0.0.0:8443: a free port instead.
        if self.args.iter().any(|a| a == "--tls-cert")
            && !self.args.iter().any(|a| a == "--https-listen")
        {
            cmd.arg("--https-listen").arg("127.0.0.1:0");
        }
        // The test's own environment must not leak into the server's config.
        for (k, _) in std::env::vars() {
            if k.starts_with("FERRULE_") || k == "PORT" {
                cmd.env_remove(k);
            }
        }
        cmd.env("FERRULE_LOG", "info");
        // Port 1883 belongs to the machine's mosquitto; tests may override.
        cmd.env("FERRULE_MQTT_LISTEN", "127.0.0.1:0");
        if let Some(pw) = &self.admin_password {
            cmd.env("FERRULE_ADMIN_PASSWORD", pw);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs the server expecting it to exit by itself (start-up errors).
    pub async fn run_to_exit(self) -> Exited {
        let out = tokio::time::timeout(START_TIMEOUT, self.command().output())
            .await
            .expect("ferrule did not exit")
            .expect("spawn ferrule");
        Exited {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            dir: self.dir,
        }
    }

    /// Starts the server and waits until `/readyz` answers 200.
    pub async fn start(self) -> Server {
        let running = Starting::spawn(&mut self.command(), false)
            .expect("spawn ferrule")
            .ready(START_TIMEOUT)
            .await
            .expect("ferrule became ready");
        Server {
            http: format!("http://{}", running.http),
            mqtt: running.mqtt,
            admin_password: self.admin_password,
            data_dir: self.data_dir,
            dir: self.dir,
            child: running.child,
            stdout: running.stdout,
            stderr: running.stderr,
            client: reqwest::Client::new(),
        }
    }
}

/// A server that exited on its own.
pub struct Exited {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub dir: TempDir,
}

impl Exited {
    /// Asserts a refusal to start: exit status 2, and a message that names
    /// `setting` and says `why`.
    pub fn assert_refused(&self, setting: &str, why: &str) {
        assert_eq!(self.status.code(), Some(2), "{}", self.stderr);
        assert!(
            self.stderr.contains(setting) && self.stderr.contains(why),
            "{}",
            self.stderr
        );
    }
}

/// A running server.
pub struct Server {
    /// Base URL, `http://127.0.0.1:PORT`.
    pub http: String,
    /// MQTT TCP address, `127.0.0.1:PORT`.
    pub mqtt: String,
    pub admin_password: Option<String>,
    pub data_dir: PathBuf,
    pub dir: TempDir,
    child: Child,
    stdout: Lines,
    stderr: Lines,
    client: reqwest::Client,
}

impl Server {
    pub async fn start() -> Server {
        ServerBuilder::new().start().await
    }

    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// The address `serve` lists on its line starting with `label`:
    /// `  MQTT/TLS  mqtts://127.0.0.1:PORT` → `127.0.0.1:PORT`.
    pub fn listed_address(&self, label: &str) -> String {
        let stdout = self.stdout();
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|url| url.split("://").nth(1))
            .and_then(|rest| rest.split('/').next())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {label} address in {stdout}"))
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }

    /// An API client without credentials.
    pub fn anon(&self) -> Api {
        Api {
            base: self.http.clone(),
            token: None,
            client: self.client.clone(),
            headers: Vec::new(),
        }
    }

    /// An API client with this bearer token.
    pub fn api(&self, token: &str) -> Api {
        Api {
            token: Some(token.to_owned()),
            ..self.anon()
        }
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let r = self
            .anon()
            .post(
                "/api/v1/auth/login",
                serde_json::json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(r.status, 200, "login {email}: {}", r.text);
        r.json["token"].as_str().unwrap().to_owned()
    }

    /// An API client logged in as the first admin.
    pub async fn admin(&self) -> Api {
        let pw = self.admin_password.clone().expect("admin password known");
        let token = self.login(ADMIN_EMAIL, &pw).await;
        self.api(&token)
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("signal");
    }

    /// SIGTERM, then the exit status (must come within 10 s).
    pub async fn stop(mut self) -> ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait_exit().await
    }

    pub async fn wait_exit(&mut self) -> ExitStatus {
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("ferrule must exit within 10 s")
            .expect("wait")
    }

    /// Stops the server and hands back its temp dir and data dir for a restart.
    pub async fn stop_keep_dir(mut self) -> (TempDir, PathBuf) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let status = self.wait_exit().await;
        assert!(status.success(), "exit status {status}");
        (self.dir, self.data_dir)
    }
}

/// A minimal API client.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: Option<String>,
    client: reqwest::Client,
    headers: Vec<(String, String)>,
}

/// A response, with its body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Resp {
    /// Asserts a problem+json error with this status.
    pub fn assert_problem(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "body: {}", self.text);
        assert_eq!(
            self.content_type, "application/problem+json",
            "body: {}",
            self.text
        );
        assert_eq!(self.json["status"], status);
        assert!(self.json["detail"].is_string());
        self
    }
}

impl Api {
    pub fn with_header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.send(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, None).await
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let body = body.map(|b| (b.to_string().into_bytes(), "application/json"));
        self.raw(method, path, body.as_ref().map(|(b, c)| (b.as_slice(), *c)))
            .await
    }

    /// Sends raw bytes with the given content type.
    pub async fn raw(&self, method: Method, path: &str, body: Option<(&[u8], &str)>) -> Resp {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some((bytes, ctype)) = body {
            req = req.header("content-type", ctype).body(bytes.to_vec());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            content_type,
            headers,
            text,
            json,
        }
    }
}

/// Creates a tenant with an owner; returns an API client for the owner.
pub async fn tenant_with_owner(server: &Server, admin: &Api, tenant: &str) -> Api {
    let r = admin
        .post(
            "/api/v1/tenants",
            serde_json::json!({"id": tenant, "name": tenant}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let email = format!("owner@{tenant}.example");
    let r = admin
        .clone()
        .with_header("X-Tenant", tenant)
        .post(
            "/api/v1/users",
            serde_json::json!({"email": email, "password": "owner-password", "role": "owner"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let token = server.login(&email, "owner-password").await;
    server.api(&token)
}

/// The password of the users [`viewer_editor_owner`] creates.
pub const USER_PASSWORD: &str = "password-1";

/// Creates users `v@x.io`, `e@x.io` and `o@x.io` in the admin's tenant, as
/// viewer, editor and owner (password [`USER_PASSWORD`]); returns their API
/// clients, logged in, in that order.
pub async fn viewer_editor_owner(server: &Server, admin: &Api) -> [Api; 3] {
    [
        user_of_role(server, admin, "v@x.io", "viewer").await,
        user_of_role(server, admin, "e@x.io", "editor").await,
        user_of_role(server, admin, "o@x.io", "owner").await,
    ]
}

async fn user_of_role(server: &Server, admin: &Api, email: &str, role: &str) -> Api {
    let r = admin
        .post(
            "/api/v1/users",
            serde_json::json!({"email": email, "password": USER_PASSWORD, "role": role}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    server.api(&server.login(email, USER_PASSWORD).await)
}

/// Marks the `meta.db` in `data_dir` as written by a newer ferrule; returns
/// the schema version it now claims.
pub fn stamp_newer_schema(data_dir: &Path) -> u32 {
    let newer = ferrule_store::embedded::SCHEMA_VERSION + 1;
    rusqlite::Connection::open(data_dir.join("meta.db"))
        .expect("open meta.db")
        .pragma_update(None, "user_version", newer)
        .expect("set user_version");
    newer
}

/// Runs scenario `scenario` of the Python peer `tests/peers/SCRIPT` (paho-mqtt
/// and the standard library) with `env`, failing the test with its output
/// when it fails.
pub async fn python_peer(script: &str, scenario: &str, env: &[(&str, String)]) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(script);
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new("python3")
            .arg(script)
            .arg(scenario)
            .envs(env.iter().cloned())
            .output(),
    )
    .await
    .expect("peer timed out")
    .expect("python3 with paho-mqtt (pip install paho-mqtt)");
    assert!(
        out.status.success(),
        "{scenario}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the first `/metrics` line starting with `line_start` (the
/// name and labels), 0 when there is none.
pub fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
