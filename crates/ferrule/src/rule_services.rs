//! Starts the rules engine, alarms and webhooks on the router.

use std::sync::Arc;

use ferrule_bus::Router;
use ferrule_rules::RuleServices;
use ferrule_rules::alarms::Alarms;
use ferrule_rules::engine::{EngineContext, RuleOutcomes, Rules};
use ferrule_rules::webhook::Webhooks;
use ferrule_store::Directory;
use ferrule_store::embedded::EmbeddedStore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::RulesConfig;

pub struct Context<'a> {
    pub store: &'a Arc<EmbeddedStore>,
    pub router: &'a Arc<Router>,
    pub directory: &'a Directory,
    pub commands: Option<ferrule_twin::commands::Commands>,
    pub config: &'a RulesConfig,
    pub tasks: &'a TaskTracker,
    pub shutdown: &'a CancellationToken,
}

pub async fn start(cx: Context<'_>) -> anyhow::Result<RuleServices> {
    // The webhooks report to the engine, which submits to them: the
    // outcomes' receiver is set once the engine exists.
    let outcomes = RuleOutcomes::default();
    let webhooks = Webhooks::start(
        cx.config.webhooks.clone(),
        cx.store.clone(),
        std::sync::Arc::new(outcomes.clone()),
        cx.shutdown.clone(),
        cx.tasks,
    )?;
    let alarms = Alarms::new(cx.store.clone(), cx.router.clone());
    let engine = Rules::start(EngineContext {
        router: cx.router.clone(),
        store: cx.store.clone(),
        meta: cx.store.clone(),
        profiles: cx.store.clone(),
        directory: cx.directory.clone(),
        alarms: alarms.clone(),
        webhooks: webhooks.clone(),
        commands: cx.commands,
        outcomes,
        settings: cx.config.engine.clone(),
        shutdown: cx.shutdown.clone(),
        tasks: cx.tasks.clone(),
    })
    .await?;
    Ok(RuleServices {
        engine,
        alarms,
        webhooks,
    })
}
