//! Configuration: raw layers merged by figment, then validated.
//!
//! Precedence, lowest first: built-in defaults, `ferrule.toml` (or `--config`),
//! `FERRULE_<SECTION>_<KEY>` environment variables (and `$PORT`), flags.
//! [`RawConfig`] is the merged, unvalidated shape (every field optional, no
//! I/O); [`Config`] has addresses parsed and defaults applied. Loading files
//! named by the config (TLS certs) and probing the data directory happen later,
//! in start-up, so that they are reported as start-up errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use ferrule_http::HttpLimits;
use ferrule_mqtt::broker::BrokerConfig;
use ferrule_store::auth::{PoolConfig, ThrottleConfig};

use crate::startup::StartupError;

/// Sections of the config file; `FERRULE_<SECTION>_<KEY>` maps to `section.key`.
const SECTIONS: &[&str] = &[
    "http",
    "https",
    "mqtt",
    "mqtts",
    "tls",
    "admin",
    "log",
    "telemetry",
    "auth",
    "limits",
    "rules",
];

/// Environment variables that share the prefix but are not config keys.
const NOT_CONFIG_ENV: &[&str] = &["log"];

// Every `Raw*` section: unset keys are left out when a layer (the flags)
// is serialized, so that a lower layer (file, env) shows through; missing
// keys take their defaults; unknown keys are errors.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    #[serde(deserialize_with = "lenient_path")]
    pub data_dir: Option<PathBuf>,
    #[serde(deserialize_with = "lenient_string")]
    pub storage: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub nats: Option<String>,
    pub http: RawHttp,
    pub mqtt: RawMqtt,
    pub mqtts: RawMqtts,
    pub https: RawHttps,
    pub tls: RawTls,
    pub admin: RawAdmin,
    pub log: RawLog,
    pub telemetry: RawTelemetry,
    pub auth: RawAuth,
    pub limits: RawLimits,
    pub rules: RawRules,
}

/// `[auth]`: limits on password logins.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    pub hash_workers: Option<usize>,
    pub hash_queue: Option<usize>,
    pub failures_before_backoff: Option<u32>,
    pub source_failures_before_backoff: Option<u32>,
    #[serde(deserialize_with = "lenient_string")]
    pub min_backoff: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub max_backoff: Option<String>,
    pub max_tracked: Option<usize>,
}

/// `[auth]`, validated.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Threads and queue that check passwords; `None` (`hash_workers = 0`)
    /// hashes on tokio's blocking threads without a bound, as before.
    pub hash_pool: Option<PoolConfig>,
    /// Backoff after failed logins; `None` when both counts are off.
    pub throttle: Option<ThrottleConfig>,
}

/// Half the cores, 1 to 4: hashing must leave cores to everyone else's
/// requests, and each thread holds 19 MiB.
fn default_hash_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get() / 2)
        .clamp(1, 4)
}

fn auth_config(raw: &RawAuth) -> Result<AuthConfig, StartupError> {
    let d = ThrottleConfig::default();
    let hash_pool = match raw.hash_workers.unwrap_or_else(default_hash_workers) {
        0 => None,
        workers if workers > 256 => {
            return Err(StartupError::new(
                "auth.hash_workers (FERRULE_AUTH_HASH_WORKERS)",
                format!(
                    "{workers} threads of 19 MiB each is too many: use 1-256, or 0 for no pool"
                ),
            ));
        }
        workers => Some(PoolConfig {
            workers,
            queue: raw.hash_queue.unwrap_or(32),
        }),
    };
    let min = duration(
        "auth.min_backoff (FERRULE_AUTH_MIN_BACKOFF)",
        raw.min_backoff.as_deref(),
        d.base,
    )?;
    let max = duration(
        "auth.max_backoff (FERRULE_AUTH_MAX_BACKOFF)",
        raw.max_backoff.as_deref(),
        d.max,
    )?;
    if max < min {
        return Err(StartupError::new(
            "auth.max_backoff (FERRULE_AUTH_MAX_BACKOFF)",
            format!("must be at least auth.min_backoff ({min:?})"),
        ));
    }
    let throttle = ThrottleConfig {
        account_free: raw.failures_before_backoff.unwrap_or(d.account_free),
        source_free: raw.source_failures_before_backoff.unwrap_or(d.source_free),
        base: min,
        max,
        max_entries: raw.max_tracked.unwrap_or(d.max_entries).max(1),
    };
    Ok(AuthConfig {
        hash_pool,
        throttle: (throttle.account_free > 0 || throttle.source_free > 0).then_some(throttle),
    })
}

/// `[limits]`: messages and bytes per second, per MQTT client and per
/// tenant (MQTT and HTTP ingest together); 0 turns a limit off.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    pub client_messages_per_sec: Option<u32>,
    pub client_bytes_per_sec: Option<u32>,
    pub tenant_messages_per_sec: Option<u32>,
    pub tenant_bytes_per_sec: Option<u32>,
}

impl RawLimits {
    fn rate_limits(&self) -> ferrule_mqtt::broker::rate::RateLimits {
        let d = ferrule_mqtt::broker::rate::RateLimits::default();
        ferrule_mqtt::broker::rate::RateLimits {
            client_messages: self.client_messages_per_sec.unwrap_or(d.client_messages),
            client_bytes: self.client_bytes_per_sec.unwrap_or(d.client_bytes),
            tenant_messages: self.tenant_messages_per_sec.unwrap_or(d.tenant_messages),
            tenant_bytes: self.tenant_bytes_per_sec.unwrap_or(d.tenant_bytes),
        }
    }
}

/// `[rules]`: the rules engine's queues and the webhooks' limits.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRules {
    /// Messages waiting for a tenant's rules; more are not evaluated (counted).
    pub queue_per_tenant: Option<usize>,
    pub max_rules_per_tenant: Option<usize>,
    /// Allow webhooks to loopback and private addresses (off: refused,
    /// against server-side request forgery).
    pub webhook_allow_private: Option<bool>,
    pub webhook_concurrency_per_tenant: Option<usize>,
    pub webhook_rate_per_tenant: Option<u32>,
    pub webhook_queue_per_tenant: Option<usize>,
}

/// The rules engine's and webhooks' settings.
#[derive(Debug, Clone, Default)]
pub struct RulesConfig {
    pub engine: ferrule_rules::engine::EngineSettings,
    pub webhooks: ferrule_rules::webhook::WebhookSettings,
}

fn rules_config(raw: &RawRules) -> Result<RulesConfig, StartupError> {
    let positive = |name: &str, v: Option<usize>, default: usize| match v {
        Some(0) => Err(StartupError::new(
            format!("rules.{name} (FERRULE_RULES_{})", name.to_ascii_uppercase()),
            "must be at least 1",
        )),
        Some(v) => Ok(v),
        None => Ok(default),
    };
    let e = ferrule_rules::engine::EngineSettings::default();
    let w = ferrule_rules::webhook::WebhookSettings::default();
    Ok(RulesConfig {
        engine: ferrule_rules::engine::EngineSettings {
            queue_per_tenant: positive(
                "queue_per_tenant",
                raw.queue_per_tenant,
                e.queue_per_tenant,
            )?,
            max_rules_per_tenant: positive(
                "max_rules_per_tenant",
                raw.max_rules_per_tenant,
                e.max_rules_per_tenant,
            )?,
        },
        webhooks: ferrule_rules::webhook::WebhookSettings {
            allow_private: raw.webhook_allow_private.unwrap_or(w.allow_private),
            concurrency_per_tenant: positive(
                "webhook_concurrency_per_tenant",
                raw.webhook_concurrency_per_tenant,
                w.concurrency_per_tenant,
            )?,
            rate_per_tenant: positive(
                "webhook_rate_per_tenant",
                raw.webhook_rate_per_tenant.map(|r| r as usize),
                w.rate_per_tenant as usize,
            )? as u32,
            queue_per_tenant: positive(
                "webhook_queue_per_tenant",
                raw.webhook_queue_per_tenant,
                w.queue_per_tenant,
            )?,
        },
    })
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTelemetry {
    #[serde(deserialize_with = "lenient_string")]
    pub durability: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub max_future_skew: Option<String>,
    pub retention_days: Option<u32>,
    #[serde(deserialize_with = "lenient_string")]
    pub retention_interval: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub seal_age: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub purge_interval: Option<String>,
    pub refusal_notices_per_second: Option<u32>,
    pub max_log_bytes: Option<u64>,
}

/// `[telemetry]`, validated.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Acknowledge only once durable (`sync`, default) or at once (`none`).
    pub sync: bool,
    /// How far ahead of the server's clock a device timestamp may be.
    pub max_future_skew: Duration,
    /// Server-wide default retention; `None` keeps data forever.
    pub retention_days: Option<u32>,
    /// How often expired data is deleted.
    pub retention_interval: Duration,
    /// How long recent points wait before being sealed into chunks.
    pub seal_age: Duration,
    /// Pause between two steps of removing a deleted device's or tenant's
    /// telemetry from disk, in the background.
    pub purge_interval: Duration,
    /// Refusal notices on `devices/{id}/rejected` per device and second
    /// (0: none).
    pub refusal_notices_per_second: u32,
    /// Bytes the recent-telemetry log may take before sealing is forced and
    /// ingest slowed.
    pub max_log_bytes: u64,
}

/// Parses a duration setting such as "5m" or "24h".
fn duration(
    setting: &str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, StartupError> {
    let Some(s) = value else { return Ok(default) };
    s.parse::<jiff::SignedDuration>()
        .ok()
        .and_then(|d| Duration::try_from(d).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            StartupError::new(
                setting.to_owned(),
                format!("{s:?} is not a duration: use e.g. \"24h\" or \"30m\""),
            )
        })
}

fn telemetry_config(raw: &RawTelemetry) -> Result<TelemetryConfig, StartupError> {
    let sync = match raw.durability.as_deref() {
        None | Some("sync") => true,
        Some("none") => false,
        Some(other) => {
            return Err(StartupError::new(
                "telemetry.durability (FERRULE_TELEMETRY_DURABILITY)",
                format!("{other:?} is not a durability: use \"sync\" or \"none\""),
            ));
        }
    };
    Ok(TelemetryConfig {
        sync,
        max_future_skew: duration(
            "telemetry.max_future_skew (FERRULE_TELEMETRY_MAX_FUTURE_SKEW)",
            raw.max_future_skew.as_deref(),
            Duration::from_secs(300),
        )?,
        retention_days: raw.retention_days.filter(|d| *d > 0),
        retention_interval: duration(
            "telemetry.retention_interval (FERRULE_TELEMETRY_RETENTION_INTERVAL)",
            raw.retention_interval.as_deref(),
            Duration::from_secs(3600),
        )?,
        seal_age: duration(
            "telemetry.seal_age (FERRULE_TELEMETRY_SEAL_AGE)",
            raw.seal_age.as_deref(),
            Duration::from_secs(15 * 60),
        )?,
        purge_interval: duration(
            "telemetry.purge_interval (FERRULE_TELEMETRY_PURGE_INTERVAL)",
            raw.purge_interval.as_deref(),
            Duration::from_millis(10),
        )?,
        refusal_notices_per_second: raw.refusal_notices_per_second.unwrap_or(5),
        max_log_bytes: match raw.max_log_bytes {
            None => 128 << 20,
            Some(n) if n >= 64 << 10 => n,
            Some(n) => {
                return Err(StartupError::new(
                    "telemetry.max_log_bytes (FERRULE_TELEMETRY_MAX_LOG_BYTES)",
                    format!("{n} is too small: the log needs at least 65536 bytes"),
                ));
            }
        },
    })
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHttp {
    #[serde(deserialize_with = "lenient_string")]
    pub listen: Option<String>,
    pub max_body_bytes: Option<usize>,
    #[serde(deserialize_with = "lenient_string")]
    pub session_ttl: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub header_timeout: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub idle_timeout: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub body_timeout: Option<String>,
    pub max_header_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_connections_per_address: Option<usize>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHttps {
    #[serde(deserialize_with = "lenient_string")]
    pub listen: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMqtt {
    #[serde(deserialize_with = "lenient_string")]
    pub listen: Option<String>,
    pub allow_anonymous: Option<bool>,
    pub max_keepalive: Option<u16>,
    pub max_packet_size: Option<usize>,
    pub max_inflight: Option<u16>,
    pub max_queued: Option<usize>,
    pub max_queued_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_connections_per_tenant: Option<usize>,
    pub max_connect_rate_per_ip: Option<u32>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMqtts {
    #[serde(deserialize_with = "lenient_string")]
    pub listen: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    #[serde(deserialize_with = "lenient_path")]
    pub cert: Option<PathBuf>,
    #[serde(deserialize_with = "lenient_path")]
    pub key: Option<PathBuf>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    #[serde(deserialize_with = "lenient_string")]
    pub email: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub password: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub format: Option<LogFormat>,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// Where metadata and telemetry live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// SQLite and files in the data directory.
    Embedded,
    /// A PostgreSQL server.
    Postgres(String),
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub storage: Storage,
    pub nats: Option<String>,
    pub http_listen: SocketAddr,
    pub max_body_bytes: usize,
    pub session_ttl: Duration,
    pub mqtt_listen: SocketAddr,
    /// Broker settings and limits (`[mqtt]`).
    pub broker: BrokerConfig,
    /// Telemetry storage settings (`[telemetry]`).
    pub telemetry: TelemetryConfig,
    /// Rules engine and webhooks (`[rules]`).
    pub rules: RulesConfig,
    /// Limits on password logins (`[auth]`).
    pub auth: AuthConfig,
    /// HTTP timeouts and connection caps (`[http]`).
    pub http_limits: HttpLimits,
    /// Set when a certificate and key are configured.
    pub mqtts_listen: Option<SocketAddr>,
    /// HTTPS (the API and `/mqtt`); set when a certificate and key are.
    pub https_listen: Option<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub admin_email: String,
    pub admin_password: Option<String>,
    pub log_format: LogFormat,
}

/// Accepts any scalar as a string: figment parses `FERRULE_MQTT_LISTEN=1883` or
/// a password of digits as a number, and the user still meant text.
fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        S(String),
        I(i64),
        U(u64),
        F(f64),
        B(bool),
    }
    Ok(Option::<Scalar>::deserialize(d)?.map(|s| match s {
        Scalar::S(s) => s,
        Scalar::I(i) => i.to_string(),
        Scalar::U(u) => u.to_string(),
        Scalar::F(f) => f.to_string(),
        Scalar::B(b) => b.to_string(),
    }))
}

fn lenient_path<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    Ok(lenient_string(d)?.map(PathBuf::from))
}

/// Maps `FERRULE_MQTT_ALLOW_ANONYMOUS` to `mqtt.allow_anonymous`; variables
/// that are not config keys (`FERRULE_LOG`, `FERRULE_TEST_*`) are skipped.
fn env_key(key: &str) -> Option<String> {
    let key = key.to_ascii_lowercase();
    if NOT_CONFIG_ENV.contains(&key.as_str()) || key.starts_with("test_") {
        return None;
    }
    match key.split_once('_') {
        Some((section, rest)) if SECTIONS.contains(&section) => Some(format!("{section}.{rest}")),
        _ => Some(key),
    }
}

/// The merged figment for a config file, the environment and flags.
pub fn figment(file: Option<&Path>, flags: &RawConfig) -> Result<Figment, StartupError> {
    let mut fig = Figment::new();
    match file {
        Some(path) if !path.exists() => {
            return Err(StartupError::new(
                "--config",
                format!(
                    "{} does not exist: give the path of a ferrule.toml",
                    path.display()
                ),
            ));
        }
        Some(path) => fig = fig.merge(Toml::file_exact(path)),
        None => fig = fig.merge(Toml::file("ferrule.toml")),
    }
    if let Ok(port) = std::env::var("PORT") {
        let port: u16 = port.trim().parse().map_err(|_| {
            StartupError::new(
                "PORT",
                format!("{port:?} is not a port number: set PORT to 1-65535"),
            )
        })?;
        fig = fig.merge(Serialized::default(
            "http.listen",
            format!("0.0.0.0:{port}"),
        ));
    }
    fig = fig.merge(Env::prefixed("FERRULE_").filter_map(|k| env_key(k.as_str()).map(Into::into)));
    Ok(fig.merge(Serialized::defaults(flags)))
}

impl Config {
    /// Loads and validates configuration from all layers.
    pub fn load(file: Option<&Path>, flags: &RawConfig) -> Result<Config, StartupError> {
        let file_exists = file.is_some() || Path::new("ferrule.toml").exists();
        let raw: RawConfig = figment(file, flags)?.extract().map_err(|e| {
            let source = if file_exists {
                "configuration (ferrule.toml, FERRULE_* env, flags)"
            } else {
                "configuration (FERRULE_* env, flags)"
            };
            StartupError::new(source, format!("{}", e).replace('\n', "; "))
        })?;
        Config::try_from(raw)
    }
}

fn addr(
    setting: &'static str,
    value: Option<String>,
    default: &str,
) -> Result<SocketAddr, StartupError> {
    let value = value.unwrap_or_else(|| default.to_owned());
    value.parse().map_err(|_| {
        StartupError::new(
            setting,
            format!("{value:?} is not a listen address: use HOST:PORT such as {default}"),
        )
    })
}

/// `[http]`'s timeouts and caps onto their defaults, each checked.
fn http_limits(raw: &RawHttp) -> Result<HttpLimits, StartupError> {
    fn at_least(
        key: &str,
        v: Option<usize>,
        min: usize,
        default: usize,
    ) -> Result<usize, StartupError> {
        match v {
            Some(v) if v < min => Err(StartupError::new(
                format!("http.{key} (FERRULE_HTTP_{})", key.to_ascii_uppercase()),
                format!("must be at least {min}"),
            )),
            Some(v) => Ok(v),
            None => Ok(default),
        }
    }
    let d = HttpLimits::default();
    Ok(HttpLimits {
        header_timeout: duration(
            "http.header_timeout (FERRULE_HTTP_HEADER_TIMEOUT)",
            raw.header_timeout.as_deref(),
            d.header_timeout,
        )?,
        idle_timeout: duration(
            "http.idle_timeout (FERRULE_HTTP_IDLE_TIMEOUT)",
            raw.idle_timeout.as_deref(),
            d.idle_timeout,
        )?,
        body_timeout: duration(
            "http.body_timeout (FERRULE_HTTP_BODY_TIMEOUT)",
            raw.body_timeout.as_deref(),
            d.body_timeout,
        )?,
        // hyper's read buffer cannot be smaller than 8 KiB.
        max_header_bytes: at_least(
            "max_header_bytes",
            raw.max_header_bytes,
            8192,
            d.max_header_bytes,
        )?,
        max_connections: at_least("max_connections", raw.max_connections, 1, d.max_connections)?,
        max_connections_per_address: at_least(
            "max_connections_per_address",
            raw.max_connections_per_address,
            1,
            d.max_connections_per_address,
        )?,
    })
}

/// `[mqtt]` onto the broker's defaults, each limit checked.
fn broker_config(raw: &RawMqtt) -> Result<BrokerConfig, StartupError> {
    fn at_least<T: PartialOrd + Copy + std::fmt::Display>(
        key: &'static str,
        v: Option<T>,
        min: T,
        default: T,
    ) -> Result<T, StartupError> {
        match v {
            Some(v) if v < min => Err(StartupError::new(
                format!("mqtt.{key} (FERRULE_MQTT_{})", key.to_ascii_uppercase()),
                format!("must be at least {min}"),
            )),
            Some(v) => Ok(v),
            None => Ok(default),
        }
    }
    let d = BrokerConfig::default();
    Ok(BrokerConfig {
        allow_anonymous: raw.allow_anonymous.unwrap_or(false),
        max_keepalive: raw.max_keepalive.unwrap_or(0),
        max_packet_size: at_least(
            "max_packet_size",
            raw.max_packet_size,
            128,
            d.max_packet_size,
        )?
        .min(ferrule_mqtt::codec::VARINT_MAX as usize),
        max_inflight: at_least("max_inflight", raw.max_inflight, 1, d.max_inflight)?,
        max_queued: at_least("max_queued", raw.max_queued, 1, d.max_queued)?,
        max_queued_bytes: at_least(
            "max_queued_bytes",
            raw.max_queued_bytes,
            1024,
            d.max_queued_bytes,
        )?,
        max_connections: at_least("max_connections", raw.max_connections, 1, d.max_connections)?,
        max_connections_per_tenant: at_least(
            "max_connections_per_tenant",
            raw.max_connections_per_tenant,
            1,
            d.max_connections_per_tenant,
        )?,
        max_connect_rate_per_ip: at_least(
            "max_connect_rate_per_ip",
            raw.max_connect_rate_per_ip,
            1,
            d.max_connect_rate_per_ip,
        )?,
        ..d
    })
}

impl TryFrom<RawConfig> for Config {
    type Error = StartupError;

    fn try_from(raw: RawConfig) -> Result<Config, StartupError> {
        let storage = match raw.storage.as_deref() {
            None | Some("embedded") => Storage::Embedded,
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Storage::Postgres(url.to_owned())
            }
            Some(other) => {
                return Err(StartupError::new(
                    "storage (--storage, FERRULE_STORAGE)",
                    format!(
                        "{other:?} is not a storage: use `embedded` or a postgres://USER@HOST/DB URL"
                    ),
                ));
            }
        };
        if let Some(nats) = &raw.nats
            && !(nats.starts_with("nats://") || nats.starts_with("tls://"))
        {
            return Err(StartupError::new(
                "nats (--nats, FERRULE_NATS)",
                format!("{nats:?} is not a NATS URL: use nats://HOST:4222"),
            ));
        }
        let session_ttl = match raw.http.session_ttl.as_deref() {
            None => Duration::from_secs(24 * 3600),
            Some(s) => s
                .parse::<jiff::SignedDuration>()
                .ok()
                .and_then(|d| Duration::try_from(d).ok())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    StartupError::new(
                        "http.session_ttl (FERRULE_HTTP_SESSION_TTL)",
                        format!("{s:?} is not a duration: use e.g. \"24h\" or \"30m\""),
                    )
                })?,
        };
        let max_body_bytes = raw.http.max_body_bytes.unwrap_or(1024 * 1024);
        if max_body_bytes < 1024 {
            return Err(StartupError::new(
                "http.max_body_bytes (--http-max-body-bytes, FERRULE_HTTP_MAX_BODY_BYTES)",
                "must be at least 1024".to_owned(),
            ));
        }
        let (tls_cert, tls_key) = match (raw.tls.cert, raw.tls.key) {
            (Some(c), Some(k)) => (Some(c), Some(k)),
            (None, None) => (None, None),
            (Some(_), None) => {
                return Err(StartupError::new(
                    "tls.key (--tls-key, FERRULE_TLS_KEY)",
                    "a certificate was given without its key: give both --tls-cert and --tls-key"
                        .to_owned(),
                ));
            }
            (None, Some(_)) => {
                return Err(StartupError::new(
                    "tls.cert (--tls-cert, FERRULE_TLS_CERT)",
                    "a key was given without its certificate: give both --tls-cert and --tls-key"
                        .to_owned(),
                ));
            }
        };
        let mqtts_listen = match (&tls_cert, raw.mqtts.listen) {
            (Some(_), listen) => Some(addr(
                "mqtts.listen (--mqtts-listen, FERRULE_MQTTS_LISTEN)",
                listen,
                "0.0.0.0:8883",
            )?),
            (None, Some(_)) => {
                return Err(StartupError::new(
                    "mqtts.listen (--mqtts-listen, FERRULE_MQTTS_LISTEN)",
                    "MQTT over TLS needs a certificate: give --tls-cert and --tls-key".to_owned(),
                ));
            }
            (None, None) => None,
        };
        let http_limits = http_limits(&raw.http)?;
        let https_listen = match (&tls_cert, raw.https.listen) {
            (Some(_), listen) => Some(addr(
                "https.listen (--https-listen, FERRULE_HTTPS_LISTEN)",
                listen,
                "0.0.0.0:8443",
            )?),
            (None, Some(_)) => {
                return Err(StartupError::new(
                    "https.listen (--https-listen, FERRULE_HTTPS_LISTEN)",
                    "HTTPS needs a certificate: give --tls-cert and --tls-key".to_owned(),
                ));
            }
            (None, None) => None,
        };
        Ok(Config {
            data_dir: raw
                .data_dir
                .unwrap_or_else(|| PathBuf::from("ferrule-data")),
            storage,
            nats: raw.nats,
            http_listen: addr(
                "http.listen (--http-listen, FERRULE_HTTP_LISTEN, PORT)",
                raw.http.listen,
                "0.0.0.0:8080",
            )?,
            max_body_bytes,
            session_ttl,
            mqtt_listen: addr(
                "mqtt.listen (--mqtt-listen, FERRULE_MQTT_LISTEN)",
                raw.mqtt.listen.clone(),
                "0.0.0.0:1883",
            )?,
            broker: BrokerConfig {
                rate_limits: raw.limits.rate_limits(),
                ..broker_config(&raw.mqtt)?
            },
            telemetry: telemetry_config(&raw.telemetry)?,
            rules: rules_config(&raw.rules)?,
            auth: auth_config(&raw.auth)?,
            http_limits,
            mqtts_listen,
            https_listen,
            tls_cert,
            tls_key,
            admin_email: raw
                .admin
                .email
                .unwrap_or_else(|| "admin@localhost".to_owned()),
            admin_password: raw.admin.password,
            log_format: raw.log.format.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keys_map_to_sections() {
        assert_eq!(
            env_key("MQTT_ALLOW_ANONYMOUS").as_deref(),
            Some("mqtt.allow_anonymous")
        );
        assert_eq!(env_key("MQTTS_LISTEN").as_deref(), Some("mqtts.listen"));
        assert_eq!(env_key("HTTPS_LISTEN").as_deref(), Some("https.listen"));
        assert_eq!(
            env_key("HTTP_MAX_CONNECTIONS_PER_ADDRESS").as_deref(),
            Some("http.max_connections_per_address")
        );
        assert_eq!(env_key("DATA_DIR").as_deref(), Some("data_dir"));
        assert_eq!(env_key("LOG_FORMAT").as_deref(), Some("log.format"));
        assert_eq!(env_key("LOG"), None);
        assert_eq!(env_key("TEST_POSTGRES"), None);
        assert_eq!(
            env_key("AUTH_HASH_WORKERS").as_deref(),
            Some("auth.hash_workers")
        );
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = Config::try_from(RawConfig::default()).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("ferrule-data"));
        assert_eq!(c.http_listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.mqtt_listen.to_string(), "0.0.0.0:1883");
        assert_eq!(c.storage, Storage::Embedded);
        assert!(c.mqtts_listen.is_none() && !c.broker.allow_anonymous);
        assert!(c.https_listen.is_none());
        assert_eq!(c.http_limits.header_timeout, Duration::from_secs(10));
        assert_eq!(c.admin_email, "admin@localhost");
        assert_eq!(
            c.auth.hash_pool,
            Some(PoolConfig {
                workers: default_hash_workers(),
                queue: 32
            })
        );
        assert_eq!(c.auth.throttle, Some(ThrottleConfig::default()));
    }

    #[test]
    fn auth_limits_turn_off_and_check_their_bounds() {
        let mut raw = RawConfig::default();
        raw.auth.hash_workers = Some(0);
        raw.auth.failures_before_backoff = Some(0);
        raw.auth.source_failures_before_backoff = Some(0);
        let c = Config::try_from(raw).unwrap();
        assert!(c.auth.hash_pool.is_none() && c.auth.throttle.is_none());
        let mut raw = RawConfig::default();
        raw.auth.min_backoff = Some("10s".into());
        raw.auth.max_backoff = Some("1s".into());
        let e = Config::try_from(raw).unwrap_err().to_string();
        assert!(e.contains("auth.max_backoff"), "{e}");
    }

    #[test]
    fn rate_limits_default_on_and_zero_turns_one_off() {
        let c = Config::try_from(RawConfig::default()).unwrap();
        assert_eq!(
            c.broker.rate_limits,
            ferrule_mqtt::broker::rate::RateLimits::default()
        );
        let mut raw = RawConfig::default();
        raw.limits.client_messages_per_sec = Some(0);
        raw.limits.tenant_bytes_per_sec = Some(1000);
        let l = Config::try_from(raw).unwrap().broker.rate_limits;
        assert_eq!((l.client_messages, l.tenant_bytes), (0, 1000));
        assert_eq!(
            env_key("LIMITS_CLIENT_MESSAGES_PER_SEC").as_deref(),
            Some("limits.client_messages_per_sec")
        );
    }

    #[test]
    fn bad_values_name_their_setting() {
        let raw = RawConfig {
            storage: Some("mysql://x".into()),
            ..Default::default()
        };
        assert!(
            Config::try_from(raw)
                .unwrap_err()
                .to_string()
                .contains("storage")
        );
        let mut raw = RawConfig::default();
        raw.http.listen = Some("nonsense".into());
        assert!(
            Config::try_from(raw)
                .unwrap_err()
                .to_string()
                .contains("http.listen")
        );
        let mut raw = RawConfig::default();
        raw.https.listen = Some("127.0.0.1:8443".into());
        assert!(
            Config::try_from(raw)
                .unwrap_err()
                .to_string()
                .contains("https.listen")
        );
        let mut raw = RawConfig::default();
        raw.http.header_timeout = Some("soon".into());
        assert!(
            Config::try_from(raw)
                .unwrap_err()
                .to_string()
                .contains("http.header_timeout")
        );
        let mut raw = RawConfig::default();
        raw.tls.cert = Some("c.pem".into());
        assert!(
            Config::try_from(raw)
                .unwrap_err()
                .to_string()
                .contains("tls.key")
        );
    }
}
