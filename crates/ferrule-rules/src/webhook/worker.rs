//! Each tenant's lane of webhook calls, and the life of one call.
//!
//! Every accepted call is its own task, so one tenant's slow endpoint never
//! holds up another tenant's calls (nor the same tenant's other calls
//! beyond its concurrency). A lane bounds its tenant three ways:
//! - `slots`: calls accepted and not finished (waiting to start, in flight,
//!   or waiting to retry): `queue_per_tenant` waiting plus
//!   `concurrency_per_tenant` in flight; beyond, `submit` refuses;
//! - `in_flight`: calls sending at once; a call holds a permit only while it
//!   sends, never while it waits to retry;
//! - `rate`: calls started per second (first attempts and retries alike).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use ferrule_core::TenantId;
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::call::{self, Prepared};
use super::dead_letters;
use super::observe::{self, AttemptEnded, AttemptOutcome};
use super::rate::StartRate;
use super::retry::{self, Attempt};
use super::{Shared, WebhookJob, WebhookSettings};

/// One tenant's bounds.
pub(super) struct Lane {
    slots: Arc<Semaphore>,
    capacity: usize,
    in_flight: Arc<Semaphore>,
    rate: Mutex<StartRate>,
}

impl Lane {
    fn new(settings: &WebhookSettings) -> Self {
        let concurrency = settings.concurrency_per_tenant.max(1);
        let capacity = settings
            .queue_per_tenant
            .saturating_add(concurrency)
            .min(Semaphore::MAX_PERMITS);
        Self {
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
            in_flight: Arc::new(Semaphore::new(concurrency)),
            rate: Mutex::new(StartRate::new(settings.rate_per_tenant, Instant::now())),
        }
    }

    /// Takes a slot for a new call, or `None` when the lane is full.
    pub(super) fn accept(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Calls accepted and not finished.
    fn unfinished(&self) -> usize {
        self.capacity - self.slots.available_permits()
    }
}

/// The lanes of every tenant that has called a webhook since start. One
/// small entry per tenant that exists, so the map's bound is the tenants'.
#[derive(Default)]
pub(super) struct Lanes {
    by_tenant: Mutex<HashMap<TenantId, Arc<Lane>>>,
}

impl Lanes {
    pub(super) fn lane(&self, tenant: &TenantId, settings: &WebhookSettings) -> Arc<Lane> {
        self.by_tenant
            .lock()
            .entry(tenant.clone())
            .or_insert_with(|| Arc::new(Lane::new(settings)))
            .clone()
    }

    /// Calls accepted and not finished, all tenants together.
    pub(super) fn unfinished(&self) -> usize {
        self.by_tenant.lock().values().map(|l| l.unfinished()).sum()
    }
}

/// Makes a call with its retries, then reports how it ended. `_slot` is
/// the call's place in its lane, given back when the call is done.
pub(super) async fn run(
    shared: Arc<Shared>,
    lane: Arc<Lane>,
    _slot: OwnedSemaphorePermit,
    job: WebhookJob,
    request: Prepared,
) {
    let mut attempts = 0u32;
    let mut last_error: Option<String> = None;
    loop {
        let Some(permit) = start(&shared, &lane).await else {
            match last_error {
                None => {
                    observe::lost_at_shutdown(&job.tenant, &job.rule);
                    let error = "not sent: the server shut down".to_owned();
                    shared.outcomes.finished(&job.tenant, &job.rule, Err(error));
                }
                // Kept rather than lost: it was tried, and a user can
                // replay it.
                Some(error) => {
                    let error = format!("{error}; not retried: the server shut down");
                    dead_letters::keep(&shared, &job, error, attempts).await;
                }
            }
            return;
        };
        let started = Instant::now();
        let attempt = call::attempt(&shared.client, &request, job.policy.timeout).await;
        drop(permit);
        attempts += 1;
        let more = attempts <= job.policy.retries;
        let outcome = match &attempt {
            Attempt::Delivered { .. } => AttemptOutcome::Success,
            Attempt::Retry { .. } if more => AttemptOutcome::Retry,
            _ => AttemptOutcome::Failure,
        };
        AttemptEnded {
            tenant: &job.tenant,
            rule: &job.rule,
            outcome,
            elapsed: started.elapsed(),
            error: attempt.error(),
        }
        .emit();
        let (error, after) = match attempt {
            Attempt::Delivered { .. } => {
                shared.outcomes.finished(&job.tenant, &job.rule, Ok(()));
                return;
            }
            Attempt::Retry { error, after, .. } if more => (error, after),
            Attempt::Retry { error, .. } | Attempt::Permanent { error, .. } => {
                dead_letters::keep(&shared, &job, error, attempts).await;
                return;
            }
        };
        let wait = retry::delay(&job.policy, attempts - 1, after);
        last_error = Some(error);
        // Shutting down cuts the wait short; the next start sees it.
        tokio::select! {
            biased;
            () = shared.shutdown.cancelled() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Waits for a permit to send, then for the tenant's rate; `None` when
/// the server shuts down meanwhile.
pub(super) async fn start(shared: &Shared, lane: &Lane) -> Option<OwnedSemaphorePermit> {
    let permit = tokio::select! {
        biased;
        () = shared.shutdown.cancelled() => return None,
        p = lane.in_flight.clone().acquire_owned() => p.ok()?,
    };
    let wait = lane.rate.lock().reserve(Instant::now());
    if !wait.is_zero() {
        tokio::select! {
            biased;
            () = shared.shutdown.cancelled() => return None,
            () = tokio::time::sleep(wait) => {}
        }
    }
    Some(permit)
}
