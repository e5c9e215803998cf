//! Calls that failed for good: kept as dead letters, and sent again on a
//! user's request (replay).

use std::time::Duration;

use ferrule_core::TenantId;
use ferrule_store::StoreError;
use ferrule_store::dead_letters::DeadLetter;

use super::observe::{DeadLettered, StoreFailed};
use super::retry::Attempt;
use super::{Shared, WebhookJob, WebhookRequest, call, worker};

/// The longest a store call of the webhooks may take; a stuck store must
/// not hold a call's task (and its lane slot) for ever.
const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a replay's single attempt may take. A dead letter does not
/// keep its action's timeout (the rule may have changed since).
pub const REPLAY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a replay waits for its turn in the tenant's lane (a free
/// call slot, then the tenant's rate) before it answers busy.
pub const REPLAY_WAIT: Duration = Duration::from_secs(5);

/// How a replay went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// The endpoint answered 2xx; the letter is marked replayed.
    Delivered { status: u16 },
    /// Refused or failed (`status` when the endpoint answered); the letter
    /// keeps this error and counts the attempt.
    Failed { status: Option<u16>, error: String },
    /// Not sent: the tenant's webhook lane is full, or stayed busy longer
    /// than [`REPLAY_WAIT`]. The letter is unchanged; try again later.
    Busy,
}

/// Keeps a call that failed for good, then tells the rule.
pub(super) async fn keep(shared: &Shared, job: &WebhookJob, error: String, attempts: u32) {
    let letter = DeadLetter {
        tenant: job.tenant.clone(),
        id: 0,
        rule: job.rule.clone(),
        rule_version: job.rule_version,
        action: job.action,
        request: serde_json::to_value(&job.request).unwrap_or_default(),
        error: error.clone(),
        attempts,
        created_at: ferrule_core::message::now_ms(),
        replayed_at: None,
    };
    let id = match tokio::time::timeout(STORE_TIMEOUT, shared.dead_letters.add_dead_letter(&letter))
        .await
    {
        Ok(Ok(id)) => id,
        Ok(Err(e)) => {
            StoreFailed {
                what: "keep a dead letter",
                error: &e,
            }
            .emit();
            None
        }
        Err(elapsed) => {
            StoreFailed {
                what: "keep a dead letter",
                error: &elapsed,
            }
            .emit();
            None
        }
    };
    DeadLettered {
        tenant: &job.tenant,
        rule: &job.rule,
        attempts,
        error: &error,
        id,
    }
    .emit();
    shared.outcomes.finished(&job.tenant, &job.rule, Err(error));
}

/// Sends a dead letter's request once more, checking its URL again, and
/// records the outcome on the letter.
pub(super) async fn replay(
    shared: &Shared,
    tenant: &TenantId,
    id: u64,
) -> Result<ReplayOutcome, StoreError> {
    let letter = bounded(shared.dead_letters.get_dead_letter(tenant, id)).await?;
    let request: WebhookRequest = serde_json::from_value(letter.request)
        .map_err(|e| StoreError::corrupt(format!("dead letter {id}: its request: {e}")))?;
    // A replay is a call of the tenant like any other: it takes a place in
    // the tenant's lane and waits its turn for concurrency and rate, so
    // replaying many letters at once cannot flood an endpoint or crowd out
    // the rules' own calls.
    let lane = shared.lanes.lane(tenant, &shared.settings);
    let Some(_slot) = lane.accept() else {
        return Ok(ReplayOutcome::Busy);
    };
    let Ok(Some(_permit)) = tokio::time::timeout(REPLAY_WAIT, worker::start(shared, &lane)).await
    else {
        return Ok(ReplayOutcome::Busy);
    };
    // A refused request is not sent: no attempt to add.
    let (outcome, sent) = match call::prepare(&request, shared.settings.allow_private) {
        Err(refused) => (
            ReplayOutcome::Failed {
                status: None,
                error: refused.to_string(),
            },
            0,
        ),
        Ok(prepared) => match call::attempt(&shared.client, &prepared, REPLAY_TIMEOUT).await {
            Attempt::Delivered { status } => (ReplayOutcome::Delivered { status }, 1),
            failed => (
                ReplayOutcome::Failed {
                    status: failed.status(),
                    error: failed.error().unwrap_or_default().to_owned(),
                },
                1,
            ),
        },
    };
    let record = match &outcome {
        ReplayOutcome::Delivered { .. } => Ok(ferrule_core::message::now_ms()),
        ReplayOutcome::Failed { error, .. } => Err((error.clone(), sent)),
        ReplayOutcome::Busy => return Ok(ReplayOutcome::Busy),
    };
    bounded(shared.dead_letters.record_replay(tenant, id, record)).await?;
    Ok(outcome)
}

async fn bounded<T>(
    f: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(STORE_TIMEOUT, f)
        .await
        .map_err(|e| StoreError::backend("dead letters", e))?
}
