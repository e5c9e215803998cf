//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{LogFormat, RawConfig};

#[derive(Debug, Parser)]
#[command(
    name = "ferrule",
    version,
    about = "Self-hosted IoT backend in one binary"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: HTTP API, MQTT broker, storage.
    // A repeated flag takes its last value, so wrappers can append overrides.
    #[command(args_override_self = true)]
    Serve(Box<ServeArgs>),
    /// Operator tasks on a data directory.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Write a full backup of a data directory to FILE (`-`: stdout): a
    /// consistent snapshot, taken while a server runs on it or not; with
    /// `--tenant ID`, one tenant's archive (a tenant move).
    Backup(BackupArgs),
    /// Restore a full backup into an empty data directory; with
    /// `--tenant`, import a tenant archive into a running server
    /// (`--server`) or a stopped one's data directory.
    Restore(RestoreArgs),
    /// Preflight of a data directory: schema versions and the migrations
    /// this binary would run, disk space they need, integrity. Read-only;
    /// safe while a server runs. Exit code 0 when all is well.
    Check(CheckArgs),
    /// Run a benchmark scenario and print its figures (`ferrule bench
    /// --help` lists them; needs the `ferrule-bench` binary beside this one).
    Bench(crate::bench::BenchArgs),
    /// Simulate devices against a running server: telemetry, events,
    /// reported state, command replies, drop-offs (`ferrule simulate
    /// --help` lists the options; needs the `ferrule-bench` binary beside
    /// this one).
    Simulate(crate::bench::SimulateArgs),
    /// Exit 0 when this host's server answers `/healthz` (the container
    /// image's HEALTHCHECK; see docs/DEPLOY.md).
    #[command(hide = true)]
    Healthcheck(crate::healthcheck::HealthcheckArgs),
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Set a new password for a user and end the user's sessions: prints a
    /// new random password once. Works on the data directory whether or
    /// not a server is running on it.
    ResetPassword(ResetPasswordArgs),
}

/// Flags of `admin reset-password`; the data directory comes from the same
/// configuration as `serve` (flag, `FERRULE_DATA_DIR`, `ferrule.toml`).
#[derive(Debug, Args)]
pub struct ResetPasswordArgs {
    /// The user's email.
    pub email: String,
    /// Read the new password from the first line of stdin instead of
    /// generating one; nothing is printed.
    #[arg(long)]
    pub password_stdin: bool,
    /// Config file (default: ./ferrule.toml when present).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory of the embedded store [default: ./ferrule-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Flags of `backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The backup file to write (`-` for stdout); refused if it exists.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Only this tenant: an archive `ferrule restore --tenant` imports into
    /// another instance (a tenant move).
    #[arg(long, value_name = "ID")]
    pub tenant: Option<String>,
    /// Config file (default: ./ferrule.toml when present).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory to back up [default: ./ferrule-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log line format; `json` also turns the progress bar into log lines.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

/// Flags of `restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup file to read (`-` for stdin).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The file is a tenant archive (`ferrule backup --tenant`): import
    /// that tenant beside the others.
    #[arg(long)]
    pub tenant: bool,
    /// Import the tenant under this id (when its own is taken there).
    #[arg(long = "as", value_name = "NEW_ID", requires = "tenant")]
    pub as_id: Option<String>,
    /// Import into the running server at this URL (e.g.
    /// http://localhost:8080) instead of a data directory.
    #[arg(
        long,
        value_name = "URL",
        requires = "tenant",
        conflicts_with = "data_dir"
    )]
    pub server: Option<String>,
    /// An admin's session token or API key for `--server`; without it,
    /// FERRULE_ADMIN_EMAIL and FERRULE_ADMIN_PASSWORD log in.
    #[arg(
        long,
        env = "FERRULE_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Config file (default: ./ferrule.toml when present).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory to restore into; must be missing or empty
    /// [default: ./ferrule-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log line format; `json` also turns the progress bar into log lines.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

/// Flags of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Config file (default: ./ferrule.toml when present).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory to check [default: ./ferrule-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Run SQLite's full `integrity_check` instead of the faster
    /// `quick_check` (which skips index-to-table consistency).
    #[arg(long)]
    pub full: bool,
    /// Log line format; `json` also turns the progress bar into log lines.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

/// Flags of `serve`; each overrides the same setting from env and file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Config file (default: ./ferrule.toml when present).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory of the embedded store [default: ./ferrule-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTP listen address [default: 0.0.0.0:8080].
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<String>,
    /// Largest HTTP request body in bytes [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub http_max_body_bytes: Option<usize>,
    /// MQTT TCP listen address [default: 0.0.0.0:1883].
    #[arg(long, value_name = "ADDR")]
    pub mqtt_listen: Option<String>,
    /// MQTT TLS listen address [default: 0.0.0.0:8883 when a cert is given].
    #[arg(long, value_name = "ADDR")]
    pub mqtts_listen: Option<String>,
    /// HTTPS listen address [default: 0.0.0.0:8443 when a cert is given].
    #[arg(long, value_name = "ADDR")]
    pub https_listen: Option<String>,
    /// TLS certificate chain (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// `embedded` or a postgres:// URL [default: embedded].
    #[arg(long, value_name = "URL")]
    pub storage: Option<String>,
    /// NATS URL of the cluster bus [default: none, single node].
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// Admit MQTT clients without credentials into tenant `default`.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub mqtt_allow_anonymous: Option<bool>,
    /// Most keep alive a client gets, in seconds; 0 accepts the client's.
    #[arg(long, value_name = "SECS")]
    pub mqtt_max_keepalive: Option<u16>,
    /// Log line format [default: pretty].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

impl ServeArgs {
    /// The flags as the highest config layer.
    pub fn to_raw(&self) -> RawConfig {
        let mut raw = RawConfig {
            data_dir: self.data_dir.clone(),
            storage: self.storage.clone(),
            nats: self.nats.clone(),
            ..RawConfig::default()
        };
        raw.http.listen = self.http_listen.clone();
        raw.http.max_body_bytes = self.http_max_body_bytes;
        raw.mqtt.listen = self.mqtt_listen.clone();
        raw.mqtt.allow_anonymous = self.mqtt_allow_anonymous;
        raw.mqtt.max_keepalive = self.mqtt_max_keepalive;
        raw.mqtts.listen = self.mqtts_listen.clone();
        raw.https.listen = self.https_listen.clone();
        raw.tls.cert = self.tls_cert.clone();
        raw.tls.key = self.tls_key.clone();
        raw.log.format = self.log_format;
        raw
    }
}
