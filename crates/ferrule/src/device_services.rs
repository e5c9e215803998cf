//! Starts the device services (twins, commands, connectivity, profiles)
//! on the router, and the intake stages they add.

use std::sync::Arc;
use std::time::Duration;

use ferrule_bus::{Intake, Router};
use ferrule_store::embedded::EmbeddedStore;
use ferrule_store::telemetry::TelemetryStore;
use ferrule_store::{Directory, MetaStore};
use ferrule_twin::DeviceServices;
use ferrule_twin::commands::Commands;
use ferrule_twin::retention::HistoryRetention;
use ferrule_twin::twin::Twins;
use ferrule_twin::twin::intake::TwinIntake;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The running services, and the intake stages to put in the router's chain.
pub struct Started {
    pub services: DeviceServices,
    pub intake: Vec<Arc<dyn Intake>>,
}

pub struct Context<'a> {
    pub store: &'a Arc<EmbeddedStore>,
    pub telemetry: &'a Arc<dyn TelemetryStore>,
    pub router: &'a Arc<Router>,
    pub directory: &'a Directory,
    pub connectivity: ferrule_twin::connectivity::Connectivity,
    pub retention_default: Option<u32>,
    pub retention_interval: Duration,
    pub tasks: &'a TaskTracker,
    pub shutdown: &'a CancellationToken,
}

pub async fn start(cx: Context<'_>) -> anyhow::Result<Started> {
    let connectivity = cx.connectivity;
    let (twins, twin_worker) = Twins::start(cx.store.clone(), cx.router.clone()).await?;
    let (commands, tracker) =
        Commands::start(cx.store.clone(), cx.router.clone(), connectivity.clone()).await?;
    cx.router.set_subscribe_watch(commands.subscribe_watch());
    cx.tasks.spawn(twin_worker.run(cx.shutdown.clone()));
    cx.tasks.spawn(tracker.run(cx.shutdown.clone()));
    let meta: Arc<dyn MetaStore> = cx.store.clone();
    cx.tasks.spawn(
        HistoryRetention {
            meta,
            telemetry: cx.telemetry.clone(),
            twins: cx.store.clone(),
            commands: cx.store.clone(),
            server_default: cx.retention_default,
        }
        .run(cx.retention_interval, cx.shutdown.clone()),
    );
    let twin_intake: Arc<dyn Intake> =
        Arc::new(TwinIntake::new(twins.clone(), cx.directory.clone()));
    Ok(Started {
        services: DeviceServices {
            twins,
            commands,
            connectivity,
            profiles: Default::default(),
        },
        intake: vec![twin_intake],
    })
}
