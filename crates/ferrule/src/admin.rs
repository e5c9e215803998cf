//! `ferrule admin`: operator tasks on a data directory, with or without a
//! server running on it.
//!
//! `reset-password` is the way back from a lost password. It reads the same
//! configuration as `serve` for the data directory and writes through SQLite,
//! which serialises its write with a running server's. The server's lock
//! decides how the schema is treated: when no server holds the directory,
//! the lock is taken for the command's duration and an older schema is
//! migrated as `serve` would; when a server holds it, nothing is migrated
//! under it — the schema must be exactly this binary's (the server migrated
//! it at start), else the command refuses and says which binary to use. A
//! schema newer than this binary's is always refused.

use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use ferrule_core::secret::MIN_USER_PASSWORD_LEN;
use ferrule_store::embedded::{EmbeddedStore, META_DB, SCHEMA_VERSION, schema_version};
use ferrule_store::{Identity, MetaStore, StoreError};

use crate::cli::{AdminCommand, ResetPasswordArgs};
use crate::config::{Config, RawConfig, Storage};
use crate::data_dir::{self, LockError};
use crate::startup::StartupError;

const DATA_DIR: &str = "data_dir (--data-dir, FERRULE_DATA_DIR)";

pub fn main(command: AdminCommand) -> ExitCode {
    data_dir::private_umask();
    let result = match command {
        AdminCommand::ResetPassword(args) => reset_password(args),
    };
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

/// A failure the operator can fix (a wrong email, a data directory in the
/// wrong state): exit code 2, one line saying what to do.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl From<StartupError> for Refused {
    fn from(e: StartupError) -> Self {
        Refused(e.to_string())
    }
}

fn refuse(why: impl Into<String>) -> anyhow::Error {
    Refused(why.into()).into()
}

fn reset_password(args: ResetPasswordArgs) -> anyhow::Result<()> {
    let flags = RawConfig {
        data_dir: args.data_dir.clone(),
        ..RawConfig::default()
    };
    let config = Config::load(args.config.as_deref(), &flags).map_err(Refused::from)?;
    crate::logging::init(config.log_format);
    if let Storage::Postgres(_) = config.storage {
        return Err(refuse(
            "storage (--storage, FERRULE_STORAGE): this build has only the embedded store",
        ));
    }
    let chosen = if args.password_stdin {
        Some(password_from_stdin()?)
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (email, generated) = runtime.block_on(reset(&config, &args.email, chosen.as_deref()))?;
    match generated {
        Some(password) => {
            eprintln!(
                "Set a new password for {email} and ended its sessions. The password, shown once:"
            );
            println!("{password}");
        }
        None => eprintln!("Set the new password for {email} and ended its sessions."),
    }
    Ok(())
}

/// The first line of stdin, checked like a password set over the API.
fn password_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.chars().count() < MIN_USER_PASSWORD_LEN {
        return Err(refuse(format!(
            "the password from stdin must be at least {MIN_USER_PASSWORD_LEN} characters"
        )));
    }
    Ok(password.to_owned())
}

/// Opens the store as the lock allows, resets the password and closes.
/// Returns the user's email and the generated password, if any.
async fn reset(
    config: &Config,
    email: &str,
    password: Option<&str>,
) -> anyhow::Result<(String, Option<String>)> {
    let dir = &config.data_dir;
    let meta = dir.join(META_DB);
    if !meta.is_file() {
        return Err(refuse(format!(
            "{DATA_DIR}: {} holds no Ferrule data (no {META_DB}): give the data directory your server uses",
            dir.display()
        )));
    }
    data_dir::create_private(dir).with_context(|| format!("opening {}", dir.display()))?;
    let _lock = match data_dir::try_lock(dir) {
        Ok(lock) => Some(lock),
        Err(LockError::Held) => {
            check_schema_under_a_server(&meta)?;
            None
        }
        Err(LockError::Io(e)) => {
            return Err(e).with_context(|| format!("locking {}", dir.display()));
        }
    };
    let store = match EmbeddedStore::open(dir) {
        Ok(store) => store,
        Err(e @ StoreError::SchemaTooNew { .. }) => return Err(refuse(format!("{DATA_DIR}: {e}"))),
        Err(e) => return Err(e).context("opening the embedded store"),
    };
    // The session lifetime plays no part in a reset.
    let identity = Identity::new(std::sync::Arc::new(store.clone()), Duration::ZERO);
    let result = identity.reset_password(email, password).await;
    store.close().await.context("flushing the store")?;
    match result {
        Ok((user, generated)) => Ok((user.email, generated)),
        Err(StoreError::NotFound { .. }) => Err(refuse(format!(
            "no user has the email {email}: check the address (`GET /api/v1/users` lists a tenant's users)"
        ))),
        Err(e) => Err(e).context("setting the password"),
    }
}

/// A running server holds the directory: it migrated the schema at start,
/// and nothing may migrate it under the server. Only a schema that is
/// exactly this binary's is written.
fn check_schema_under_a_server(meta: &std::path::Path) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open_with_flags(
        meta,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {}", meta.display()))?;
    let found = schema_version(&conn).context("reading the schema version")?;
    if found > SCHEMA_VERSION {
        return Err(refuse(format!(
            "{DATA_DIR}: the running server's data has schema version {found}, newer than this binary's {SCHEMA_VERSION}: run the reset with the ferrule binary the server runs"
        )));
    }
    if found < SCHEMA_VERSION {
        return Err(refuse(format!(
            "{DATA_DIR}: the running server's data has schema version {found}, older than this binary's {SCHEMA_VERSION}, and is not migrated under a running server: run the reset with the ferrule binary the server runs, or stop the server first"
        )));
    }
    Ok(())
}
