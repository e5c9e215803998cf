//! `ferrule backup --tenant ID FILE` and `ferrule restore --tenant FILE`:
//! moving one tenant between instances (`ferrule_store::tenant_move`).
//!
//! The backup reads the data directory whether or not a server runs on it
//! (each database is copied as of one instant, then filtered). The restore
//! goes into a running server over its API (`--server URL`, as an admin),
//! or into a stopped one's data directory, whose lock it takes: a running
//! server would not see what is written under it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use ferrule_core::{Durability, TenantId};
use ferrule_store::MetaStore;
use ferrule_store::embedded::{EmbeddedStore, META_DB};
use ferrule_store::telemetry::TelemetryStore;
use ferrule_store::telemetry::embedded::{EmbeddedTelemetry, TelemetryOptions};
use ferrule_store::tenant_move::{self, MoveError, Moved, TenantImport};

use crate::config::{Config, RawConfig, Storage};
use crate::data_dir::{self, LockError};

/// A failure the operator can fix: exit code 2, one line saying what to do.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn refuse(why: impl Into<String>) -> anyhow::Error {
    Refused(why.into()).into()
}

/// Move errors the operator can act on are refusals; the store's own
/// failures stay errors.
fn refused_or(e: MoveError) -> anyhow::Error {
    match e {
        MoveError::Store(_) | MoveError::Telemetry(_) => anyhow::Error::new(e),
        e => refuse(e.to_string()),
    }
}

/// The configured data directory (flag, env, `ferrule.toml`), embedded only.
fn data_dir(config: Option<&Path>, flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let flags = RawConfig {
        data_dir: flag,
        ..RawConfig::default()
    };
    let config = Config::load(config, &flags).map_err(|e| refuse(e.to_string()))?;
    crate::logging::init(config.log_format);
    if let Storage::Postgres(_) = config.storage {
        return Err(refuse(
            "storage (--storage, FERRULE_STORAGE): tenant moves need the embedded store",
        ));
    }
    Ok(config.data_dir)
}

/// `ferrule backup --tenant ID FILE`.
pub fn backup(
    config: Option<&Path>,
    data_dir_flag: Option<PathBuf>,
    tenant: &str,
    file: &Path,
) -> anyhow::Result<()> {
    let tenant = TenantId::new(tenant).map_err(|e| refuse(format!("--tenant {tenant:?}: {e}")))?;
    let dir = data_dir(config, data_dir_flag)?;
    if !dir.join(META_DB).is_file() {
        return Err(refuse(format!(
            "data_dir (--data-dir, FERRULE_DATA_DIR): {} holds no Ferrule data (no {META_DB}): \
             give the data directory your server uses",
            dir.display()
        )));
    }
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // The extract holds secrets' hashes: private scratch, beside the file.
    let scratch = ferrule_store::scratch::create(&parent, ".ferrule-tenant-")
        .with_context(|| format!("creating a scratch directory in {}", parent.display()))?;
    // Written under another name, renamed once complete: an interrupted
    // backup never leaves a file that looks whole.
    let partial = scratch.path().join("archive.partial");
    let out = std::fs::File::create(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let (manifest, out) =
        tenant_move::write_archive(&dir, &tenant, scratch.path(), std::io::BufWriter::new(out))
            .map_err(refused_or)?;
    let out = out
        .into_inner()
        .map_err(|e| anyhow::anyhow!("writing {}: {}", partial.display(), e.error()))?;
    out.sync_all()
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, file).with_context(|| format!("writing {}", file.display()))?;
    let c = |k: &str| manifest.counts.get(k).copied().unwrap_or(0);
    eprintln!(
        "Backed up tenant {tenant} to {}: {} devices, {} users, {} rules, {} dashboards, {} series, {} events.",
        file.display(),
        c("devices"),
        c("users"),
        c("rules"),
        c("dashboards"),
        c("series"),
        c("events"),
    );
    Ok(())
}

/// Where `ferrule restore --tenant` puts the tenant.
pub enum Target {
    /// A running server's API, as an admin.
    Server { url: String, token: Option<String> },
    /// A stopped server's data directory.
    DataDir {
        config: Option<PathBuf>,
        data_dir: Option<PathBuf>,
    },
}

/// `ferrule restore --tenant FILE [--as NEW_ID]`.
pub fn restore(file: &Path, as_id: Option<&str>, target: Target) -> anyhow::Result<()> {
    let as_id = as_id
        .map(|id| TenantId::new(id).map_err(|e| refuse(format!("--as {id:?}: {e}"))))
        .transpose()?;
    if !file.is_file() {
        return Err(refuse(format!(
            "{} is not a file: give the archive `ferrule backup --tenant` wrote",
            file.display()
        )));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let moved = match target {
        Target::Server { url, token } => {
            crate::logging::init(crate::config::LogFormat::default());
            runtime.block_on(restore_over_api(file, as_id, &url, token))?
        }
        Target::DataDir { config, data_dir } => {
            let dir = self::data_dir(config.as_deref(), data_dir)?;
            runtime.block_on(restore_into_dir(file, as_id, &dir))?
        }
    };
    eprintln!(
        "Imported tenant {}{}: {} devices, {} users, {} rules, {} dashboards, {} series ({} points), {} events.",
        moved.tenant,
        if moved.tenant != moved.from {
            format!(" (from {})", moved.from)
        } else {
            String::new()
        },
        moved.rows.get("devices").copied().unwrap_or(0),
        moved.rows.get("users").copied().unwrap_or(0),
        moved.rows.get("rules").copied().unwrap_or(0),
        moved.rows.get("dashboards").copied().unwrap_or(0),
        moved.series,
        moved.points,
        moved.events,
    );
    Ok(())
}

async fn restore_into_dir(
    file: &Path,
    as_id: Option<TenantId>,
    dir: &Path,
) -> anyhow::Result<Moved> {
    data_dir::create_private(dir).with_context(|| format!("opening {}", dir.display()))?;
    let _lock = match data_dir::try_lock(dir) {
        Ok(lock) => lock,
        Err(LockError::Held) => {
            return Err(refuse(format!(
                "a server is running on {} (it holds {}): import into it over its API with \
                 `ferrule restore --tenant FILE --server http://HOST:PORT` and an admin token in \
                 --token or FERRULE_TOKEN (or FERRULE_ADMIN_EMAIL and FERRULE_ADMIN_PASSWORD)",
                dir.display(),
                data_dir::LOCK_FILE
            )));
        }
        Err(LockError::Io(e)) => {
            return Err(e).with_context(|| format!("locking {}", dir.display()));
        }
    };
    let scratch = ferrule_store::scratch::create(dir, ".tenant-import-")
        .with_context(|| format!("creating a scratch directory in {}", dir.display()))?;
    let unpacked = scratch.path().join("tenant");
    {
        let (file, unpacked) = (file.to_path_buf(), unpacked.clone());
        tokio::task::spawn_blocking(move || tenant_move::unpack_archive(&file, &unpacked))
            .await
            .context("reading the archive")?
            .map_err(refused_or)?;
    }
    let store = EmbeddedStore::open(dir).map_err(|e| match e {
        e @ ferrule_store::StoreError::SchemaTooNew { .. } => refuse(e.to_string()),
        e => anyhow::Error::new(e).context("opening the embedded store"),
    })?;
    let telemetry =
        EmbeddedTelemetry::open(dir, TelemetryOptions::default(), Durability::default())
            .map_err(|e| anyhow::anyhow!("opening telemetry storage: {e}"))?;
    let result = tenant_move::import_tenant(
        TenantImport {
            store: &store,
            telemetry: &telemetry,
        },
        &unpacked,
        as_id,
    )
    .await;
    telemetry
        .close()
        .await
        .map_err(|e| anyhow::anyhow!("closing telemetry storage: {e}"))?;
    store.close().await.context("closing the store")?;
    result.map_err(refused_or)
}

/// The longest an import over the API may take, upload included.
const API_TIMEOUT: Duration = Duration::from_secs(3600);

async fn restore_over_api(
    file: &Path,
    as_id: Option<TenantId>,
    url: &str,
    token: Option<String>,
) -> anyhow::Result<Moved> {
    let base = url.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(refuse(format!(
            "--server {url:?}: give the server's HTTP address, e.g. http://localhost:8080"
        )));
    }
    let client = reqwest::Client::builder()
        .timeout(API_TIMEOUT)
        .build()
        .context("starting the HTTP client")?;
    let token = match token {
        Some(t) => t,
        None => login(&client, base).await?,
    };
    let mut request = client
        .post(format!("{base}/api/v1/system/tenants/import"))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream");
    if let Some(id) = &as_id {
        request = request.query(&[("as", id.as_str())]);
    }
    let body = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("opening {}", file.display()))?;
    let response = request
        .body(reqwest::Body::from(body))
        .send()
        .await
        .map_err(|e| refuse(format!("--server {base}: {e}")))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        let detail = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_owned))
            .unwrap_or(text);
        return Err(refuse(format!(
            "the server refused the import ({status}): {detail}"
        )));
    }
    let v: serde_json::Value =
        serde_json::from_str(&text).context("reading the server's answer")?;
    let text_of = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let num = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
    Ok(Moved {
        from: text_of("from"),
        tenant: text_of("tenant"),
        rows: serde_json::from_value(v.get("rows").cloned().unwrap_or_default())
            .unwrap_or_default(),
        devices: Vec::new(),
        series: num("series"),
        points: num("points"),
        events: num("events"),
    })
}

/// An admin session from `FERRULE_ADMIN_EMAIL` and `FERRULE_ADMIN_PASSWORD`.
async fn login(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let (Ok(email), Ok(password)) = (
        std::env::var("FERRULE_ADMIN_EMAIL"),
        std::env::var("FERRULE_ADMIN_PASSWORD"),
    ) else {
        return Err(refuse(
            "--server needs an admin: give a token with --token or FERRULE_TOKEN, or set \
             FERRULE_ADMIN_EMAIL and FERRULE_ADMIN_PASSWORD",
        ));
    };
    let response = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({ "email": email, "password": password }))
        .send()
        .await
        .map_err(|e| refuse(format!("--server {base}: {e}")))?;
    if !response.status().is_success() {
        return Err(refuse(format!(
            "logging in to {base} as {email} failed ({}): check FERRULE_ADMIN_EMAIL and FERRULE_ADMIN_PASSWORD",
            response.status()
        )));
    }
    let v: serde_json::Value = response.json().await.context("reading the login answer")?;
    v.get("token")
        .and_then(|t| t.as_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("the login answer has no token"))
}

/// Runs a tenant-move command, mapping refusals to exit code 2.
pub fn exit_code(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<Refused>() {
            Some(r) => {
                eprintln!("error: {r}");
                std::process::ExitCode::from(2)
            }
            None => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}
