//! `ferrule serve`: configuration → checks → listeners → store → components →
//! run until a signal → graceful shutdown.

use std::fs::File;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferrule_bus::Router;
use ferrule_http::routes::system_import::{MAX_ARCHIVE_BYTES, TenantMoves};
use ferrule_http::{AppState, HttpSettings, MqttEndpoint, Readiness, TelemetryApi};
use ferrule_mqtt::broker::{Broker, listener, persist};
use ferrule_store::auth::{HashPool, Hasher, Throttle};
use ferrule_store::embedded::EmbeddedStore;
use ferrule_store::telemetry::TelemetryStore;
use ferrule_store::telemetry::embedded::{EmbeddedTelemetry, TelemetryOptions};
use ferrule_store::{Bootstrap, Directory, Identity, MetaStore, StoreError};
use ferrule_telemetry::{Notices, TelemetryIntake};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api_broker::ApiBroker;
use crate::broker_state::StoredBrokerState;
use crate::cli::ServeArgs;
use crate::config::{Config, Storage};
use crate::data_dir::{self, LockError};
use crate::gate::StoreGatekeeper;
use crate::startup::{self, StartupError};
use crate::{device_services, rule_services};

/// Longest a graceful shutdown may take before we exit anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

pub fn main(args: ServeArgs) -> ExitCode {
    crate::data_dir::private_umask();
    let config = match Config::load(args.config.as_deref(), &args.to_raw()) {
        Ok(c) => c,
        Err(e) => return startup_failed(&e),
    };
    crate::logging::init(config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<StartupError>() {
            Some(s) => startup_failed(s),
            None => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn startup_failed(e: &StartupError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

/// Everything that must succeed before the server takes traffic, in an order
/// that writes nothing until every check has passed.
async fn run(config: Config) -> anyhow::Result<()> {
    if let Storage::Postgres(_) = config.storage {
        return Err(StartupError::new(
            "storage (--storage, FERRULE_STORAGE)",
            "this build has only the embedded store; the PostgreSQL backend is not available yet: use `embedded`",
        )
        .into());
    }
    if config.nats.is_some() {
        return Err(StartupError::new(
            "nats (--nats, FERRULE_NATS)",
            "this build runs single-node only; the NATS cluster bus is not available yet: unset it",
        )
        .into());
    }
    let not_tls = |e: rustls::Error| {
        StartupError::new(
            "tls.cert / tls.key (--tls-cert, --tls-key)",
            format!(
                "the certificate and key do not make a TLS configuration ({e}): give a matching PEM pair"
            ),
        )
    };
    let (tls, https_tls) = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let material = startup::load_tls(cert, key)?;
            let https = ferrule_http::server::tls::https_config(
                material.chain.clone(),
                material.key.clone_key(),
            )
            .map_err(not_tls)?;
            let tls = ferrule_mqtt::broker::tls::server_config(material.chain, material.key)
                .map_err(not_tls)?;
            (Some(tls), Some(https))
        }
        _ => (None, None),
    };
    startup::check_data_dir(&config.data_dir)?;
    let http_listener = startup::bind(
        "http.listen (--http-listen, FERRULE_HTTP_LISTEN, PORT)",
        config.http_listen,
    )?;
    let mqtt_listener = startup::bind(
        "mqtt.listen (--mqtt-listen, FERRULE_MQTT_LISTEN)",
        config.mqtt_listen,
    )?;
    let mqtts_listener = match config.mqtts_listen {
        Some(addr) => Some(startup::bind(
            "mqtts.listen (--mqtts-listen, FERRULE_MQTTS_LISTEN)",
            addr,
        )?),
        None => None,
    };
    let https_listener = match config.https_listen {
        Some(addr) => Some(startup::bind(
            "https.listen (--https-listen, FERRULE_HTTPS_LISTEN)",
            addr,
        )?),
        None => None,
    };

    // From here on we write.
    data_dir::create_private(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let _lock = lock_data_dir(&config)?;
    // Copies an API backup or tenant import left when the server was
    // killed: every tenant's data, not to be kept around.
    ferrule_store::scratch::sweep(&config.data_dir);
    crate::upgrade::prepare(&config.data_dir, config.log_format)?;
    let embedded = match EmbeddedStore::open(&config.data_dir) {
        Ok(s) => Arc::new(s),
        Err(e @ StoreError::SchemaTooNew { .. }) => {
            return Err(StartupError::new(
                "data_dir (--data-dir, FERRULE_DATA_DIR)",
                e.to_string(),
            )
            .into());
        }
        Err(e) => return Err(e).context("opening the embedded store"),
    };
    let store: Arc<dyn MetaStore> = embedded.clone();
    let connectivity_store: Arc<dyn ferrule_store::ConnectivityStore> = embedded.clone();
    let profile_store: Arc<dyn ferrule_store::ProfileStore> = embedded.clone();
    let broker_state = Arc::new(StoredBrokerState(embedded.clone()));
    let hash_pool = match config.auth.hash_pool {
        Some(pool) => Some(HashPool::start(pool).context("starting password hashing threads")?),
        None => None,
    };
    let identity = Identity::new(store.clone(), config.session_ttl).with_limits(
        hash_pool.clone().map_or(Hasher::Blocking, Hasher::Pool),
        config.auth.throttle.map(Throttle::new),
    );
    match identity
        .bootstrap(&config.admin_email, config.admin_password.as_deref())
        .await
        .context("creating the first admin")?
    {
        Bootstrap::Created {
            generated_password: Some(password),
        } => println!(
            "First start: created admin {} with password {password}\n\
             (shown once; change it with PATCH /api/v1/users/{{id}})",
            config.admin_email
        ),
        Bootstrap::Created { .. } => {}
        Bootstrap::Existing if config.admin_password.is_some() => tracing::warn!(
            "FERRULE_ADMIN_PASSWORD (admin.password) is set, but the data directory already has \
             users: it is ignored (it only sets the first admin's password on first start). To \
             set a lost password, run `ferrule admin reset-password EMAIL`"
        ),
        Bootstrap::Existing => {}
    }

    let acl = ferrule_store::AclCache::new(store.clone());
    let directory = Directory::load(&*store)
        .await
        .context("loading tenants and devices")?;
    let metrics = install_metrics()?;
    if let Some(pool) = &hash_pool {
        pool.publish_config();
    }
    ferrule_http::observe::record_build_info();
    let readiness = Readiness::default();
    let mut state = AppState {
        identity: identity.clone(),
        acl: acl.clone(),
        directory: directory.clone(),
        settings: HttpSettings {
            max_body_bytes: config.max_body_bytes,
            mqtt_port: mqtt_listener.local_addr().ok().map(|a| a.port()),
            data_dir: Some(config.data_dir.clone()),
        },
        readiness: readiness.clone(),
        metrics,
        mqtt: None,
        telemetry: None,
        devices: None,
        rules: None,
        dashboards: Some(embedded.clone()),
        apps: Some(embedded.clone()),
        streams: Default::default(),
        load: ferrule_http::load::LoadHistory::new(),
        http_connections: None,
        tenant_moves: None,
        backups: Some(ferrule_http::SystemBackup::new(config.data_dir.clone())),
    };

    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    state.streams = ferrule_http::LiveStreams::new(
        ferrule_http::StreamLimits::default(),
        shutdown.clone(),
        tasks.clone(),
    );

    let router = Router::new();
    let embedded_telemetry = open_telemetry(&config, &router)?;
    let telemetry: Arc<dyn TelemetryStore> = embedded_telemetry.clone();
    let (notices, notices_rx) = Notices::new(config.telemetry.refusal_notices_per_second);
    let telemetry_intake: Arc<dyn ferrule_bus::Intake> = Arc::new(
        TelemetryIntake::new(
            telemetry.clone(),
            directory.clone(),
            config.telemetry.max_future_skew,
        )
        .with_notices(notices),
    );
    let connectivity = ferrule_twin::connectivity::Connectivity::load(
        connectivity_store,
        telemetry.clone(),
        directory.clone(),
    )
    .await
    .context("loading device connectivity")?;
    connectivity.attach(&router);
    let stop_connectivity = CancellationToken::new();
    let connectivity_writer = tokio::spawn(connectivity.clone().run(stop_connectivity.clone()));
    let profiles = ferrule_twin::profiles::Profiles::open(profile_store.clone())
        .await
        .context("loading device profiles")?;
    let devices = device_services::start(device_services::Context {
        store: &embedded,
        telemetry: &telemetry,
        router: &router,
        directory: &directory,
        connectivity,
        profiles,
        retention_default: config.telemetry.retention_days,
        retention_interval: config.telemetry.retention_interval,
        tasks: &tasks,
        shutdown: &shutdown,
    })
    .await
    .context("starting twins and commands")?;
    // The profile guard first: what breaks a device's schema is refused
    // before any stage stores it.
    let mut stages = vec![devices.profile_guard, telemetry_intake];
    stages.extend(devices.intake);
    router.set_intake(Arc::new(ferrule_bus::IntakeChain::new(stages)));
    let rules = rule_services::start(rule_services::Context {
        store: &embedded,
        router: &router,
        directory: &directory,
        commands: Some(devices.services.commands.clone()),
        config: &config.rules,
        tasks: &tasks,
        shutdown: &shutdown,
    })
    .await
    .context("starting the rules engine")?;
    state.rules = Some(rules);
    state.tenant_moves = Some(TenantMoves {
        store: (*embedded).clone(),
        telemetry: embedded_telemetry.clone(),
        scratch: config.data_dir.clone(),
        max_archive_bytes: MAX_ARCHIVE_BYTES,
    });
    state.devices = Some(devices.services);
    state.telemetry = Some(TelemetryApi {
        store: telemetry.clone(),
        router: router.clone(),
        retention_default: config.telemetry.retention_days,
    });
    let broker_config = config.broker.clone();
    let broker = Broker::new(
        broker_config,
        router.clone(),
        StoreGatekeeper::new(identity.clone(), acl.clone(), directory.clone()),
    );
    let (persister, state_writer) =
        persist::start(broker_state.clone(), router.durability().clone());
    let (sessions, retained) = broker
        .restore_and_persist(&*broker_state, persister)
        .await
        .context("restoring MQTT sessions")?;
    if sessions + retained > 0 {
        tracing::info!(sessions, retained, "restored MQTT state");
    }
    let stop_writer = CancellationToken::new();
    let writer = tokio::spawn(state_writer.run(stop_writer.clone()));
    state.mqtt = Some(MqttEndpoint {
        broker: Arc::new(ApiBroker(broker.clone(), broker_state.clone())),
        shutdown: shutdown.clone(),
        tasks: tasks.clone(),
    });
    // Deletions a crash interrupted finish before any client connects.
    let resumed = ferrule_http::lifecycle::resume(&state)
        .await
        .context("finishing interrupted deletions")?;
    if resumed > 0 {
        tracing::info!(deletions = resumed, "finished interrupted deletions");
    }
    let mqtt_listener = tokio::net::TcpListener::from_std(mqtt_listener)?;
    let mqtt_addr = mqtt_listener.local_addr()?;
    tasks.spawn(listener::serve_tcp(
        broker.clone(),
        mqtt_listener,
        shutdown.clone(),
        tasks.clone(),
    ));
    let mut mqtts_addr = None;
    if let (Some(listener), Some(tls)) = (mqtts_listener, tls) {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        mqtts_addr = Some(listener.local_addr()?);
        tasks.spawn(ferrule_mqtt::broker::tls::serve_tls(
            broker.clone(),
            listener,
            tls,
            shutdown.clone(),
            tasks.clone(),
        ));
    }
    let http_listener = tokio::net::TcpListener::from_std(http_listener)?;
    let http_addr = http_listener.local_addr()?;
    let http_caps = ferrule_http::ConnectionCaps::new(
        config.http_limits.max_connections,
        config.http_limits.max_connections_per_address,
    );
    state.http_connections = Some(http_caps.clone());
    tasks.spawn(
        state
            .load
            .clone()
            .run(router.clone(), telemetry.clone(), shutdown.clone()),
    );
    let serving = ferrule_http::Serving {
        app: ferrule_http::app(state),
        caps: http_caps,
        limits: Arc::new(config.http_limits.clone()),
        shutdown: shutdown.clone(),
        tasks: tasks.clone(),
    };
    tasks.spawn(ferrule_http::server::serve(
        http_listener,
        None,
        serving.clone(),
    ));
    let mut https_addr = None;
    if let (Some(listener), Some(tls)) = (https_listener, https_tls) {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        https_addr = Some(listener.local_addr()?);
        tasks.spawn(ferrule_http::server::serve(
            listener,
            Some(tokio_rustls::TlsAcceptor::from(tls)),
            serving,
        ));
    }
    tasks.spawn(purge_sessions(store.clone(), shutdown.clone()));
    tasks.spawn(ferrule_telemetry::notices::run(
        router.clone(),
        notices_rx,
        shutdown.clone(),
    ));
    tasks.spawn(ferrule_telemetry::retention::retention_loop(
        store.clone(),
        profile_store.clone(),
        telemetry.clone(),
        config.telemetry.retention_days,
        config.telemetry.retention_interval,
        shutdown.clone(),
    ));

    readiness.set_ready();
    println!("Ferrule {} ready", env!("CARGO_PKG_VERSION"));
    println!("  HTTP API  http://{http_addr}/api/v1  (reference: /api/docs)");
    println!("  MQTT      mqtt://{mqtt_addr}");
    if let Some(addr) = mqtts_addr {
        println!("  MQTT/TLS  mqtts://{addr}");
    }
    if let Some(addr) = https_addr {
        println!("  HTTPS     https://{addr}/api/v1");
    }
    println!("  MQTT/WS   ws://{http_addr}/mqtt");
    if let Some(addr) = https_addr {
        println!("  MQTT/WSS  wss://{addr}/mqtt");
    }
    println!("  data      {}", config.data_dir.display());
    tracing::info!(%http_addr, data_dir = %config.data_dir.display(), "ferrule ready");

    wait_for_signal().await;
    tracing::info!("shutting down: no new connections, finishing in-flight work");
    shutdown.cancel();
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("in-flight work did not finish within {SHUTDOWN_GRACE:?}; closing anyway");
    }
    // The connections' last disconnects (server_shutdown) are in: save them.
    stop_connectivity.cancel();
    let _ = connectivity_writer.await;
    stop_writer.cancel();
    let _ = writer.await;
    // Every publisher is gone: seal what is recent and stop the writer.
    if let Err(e) = telemetry.close().await {
        tracing::error!(error = %e, "closing telemetry storage failed");
    }
    if let Err(e) = broker.save_all(&*broker_state).await {
        tracing::error!(error = %e, "saving MQTT sessions at shutdown failed");
    }
    store.close().await.context("flushing the store")?;
    tracing::info!("stopped");
    Ok(())
}

/// Opens the telemetry store in the data directory.
fn open_telemetry(config: &Config, router: &Router) -> anyhow::Result<Arc<EmbeddedTelemetry>> {
    let options = TelemetryOptions {
        sync: config.telemetry.sync,
        seal_age: config.telemetry.seal_age,
        purge_interval: config.telemetry.purge_interval,
        max_log_bytes: config.telemetry.max_log_bytes,
        ..TelemetryOptions::default()
    };
    match EmbeddedTelemetry::open(&config.data_dir, options, router.durability().clone()) {
        Ok(t) => Ok(Arc::new(t)),
        Err(e) => Err(StartupError::new(
            "data_dir (--data-dir, FERRULE_DATA_DIR)",
            format!("cannot open telemetry storage: {e}"),
        )
        .into()),
    }
}

/// Holds an exclusive lock on the data directory for the process's life.
fn lock_data_dir(config: &Config) -> anyhow::Result<File> {
    match data_dir::try_lock(&config.data_dir) {
        Ok(file) => Ok(file),
        Err(LockError::Held) => Err(StartupError::new(
            "data_dir (--data-dir, FERRULE_DATA_DIR)",
            format!(
                "{} is in use by another ferrule process: stop it or choose another data directory",
                config.data_dir.display()
            ),
        )
        .into()),
        Err(LockError::Io(e)) => Err(e).with_context(|| {
            format!(
                "opening {}",
                config.data_dir.join(data_dir::LOCK_FILE).display()
            )
        }),
    }
}

fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(ferrule_http::observe::HTTP_DURATION.to_owned()),
            ferrule_http::observe::LATENCY_BUCKETS,
        )?
        .install_recorder()
        .context("installing the metrics recorder")
}

/// Sessions expire on read anyway; this keeps the table from growing.
async fn purge_sessions(store: Arc<dyn MetaStore>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {
                match store.purge_expired_sessions(jiff::Timestamp::now()).await {
                    Ok(n) if n > 0 => tracing::debug!(purged = n, "expired sessions removed"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "purging expired sessions failed"),
                }
            }
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
