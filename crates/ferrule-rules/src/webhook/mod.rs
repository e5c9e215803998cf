//! Webhook calls of rules: their own tasks, per-tenant concurrency and
//! rate limits, retries with backoff, dead letters, and refusal of private
//! addresses (server-side request forgery).
//!
//! - [`guard`]: which URLs and addresses may be called, at submit time and
//!   again on connection (the client's resolver).
//! - [`call`]: one attempt: the checked request, the HTTP client (rustls,
//!   no redirects, no proxy), bounded reads.
//! - [`retry`]: which failures are retried, and the backoff with jitter.
//! - [`worker`]: each tenant's lane (queue bound, concurrency, rate) and
//!   the life of one call.
//! - [`dead_letters`]: calls that failed for good, and their replay.
//!
//! [`Webhooks::submit`] never waits: it checks the request, takes a slot in
//! the tenant's lane (or refuses), and spawns the call.

pub mod call;
pub mod dead_letters;
pub mod guard;
mod observe;
mod rate;
pub mod retry;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use ferrule_core::TenantId;
use ferrule_store::StoreError;
use ferrule_store::dead_letters::DeadLetterStore;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use dead_letters::{REPLAY_TIMEOUT, ReplayOutcome};
pub use guard::{HostLookup, LookingUp, SystemLookup};

/// One HTTP request as a webhook action renders it; also what a dead
/// letter keeps and a dry run shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// How a call is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// The first retry's delay; doubled for each next one, with jitter.
    pub backoff: Duration,
}

/// A call to make for a rule.
#[derive(Debug, Clone)]
pub struct WebhookJob {
    pub tenant: TenantId,
    pub rule: String,
    pub rule_version: u64,
    pub action: u32,
    pub request: WebhookRequest,
    pub policy: RetryPolicy,
}

/// Instance settings (`[rules]` in the config).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Allow URLs to loopback, private, link-local and other non-public
    /// addresses (off: refused, against server-side request forgery).
    pub allow_private: bool,
    /// Calls in flight per tenant.
    pub concurrency_per_tenant: usize,
    /// Calls started per second per tenant.
    pub rate_per_tenant: u32,
    /// Calls waiting per tenant; more are refused and counted.
    pub queue_per_tenant: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allow_private: false,
            concurrency_per_tenant: 8,
            rate_per_tenant: 100,
            queue_per_tenant: 1_000,
        }
    }
}

/// Told how each call ended (after its retries), for the rule's counters.
pub trait WebhookOutcomes: Send + Sync + 'static {
    fn finished(&self, tenant: &TenantId, rule: &str, result: Result<(), String>);
}

/// Why a call was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookRefused {
    #[error("the tenant's webhook queue is full")]
    QueueFull,
    /// The URL is not http(s), has credentials, or names a non-public
    /// address (unless allowed).
    #[error("{0}")]
    Url(String),
    /// The request cannot be sent as rendered: an unknown method, a bad or
    /// reserved header, a body or headers over their bounds.
    #[error("{0}")]
    Invalid(String),
}

/// The HTTP client of the webhooks could not be built (its TLS setup).
#[derive(Debug, thiserror::Error)]
#[error("webhooks: cannot build the HTTP client: {0}")]
pub struct WebhookClientError(#[source] reqwest::Error);

/// The webhook workers. Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    shared: Arc<Shared>,
}

/// What every call's task needs.
struct Shared {
    settings: WebhookSettings,
    client: reqwest::Client,
    dead_letters: Arc<dyn DeadLetterStore>,
    outcomes: Arc<dyn WebhookOutcomes>,
    lanes: worker::Lanes,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// Where calls are spawned, so `submit` works from any thread.
    runtime: tokio::runtime::Handle,
}

impl Webhooks {
    /// Starts the webhook workers, resolving names with the system's
    /// resolver. Call from within the tokio runtime. Calls run on `tasks`;
    /// once `shutdown` is cancelled no call starts (those in flight finish
    /// within their timeout, those waiting are dropped and counted, those
    /// waiting to retry become dead letters).
    pub fn start(
        settings: WebhookSettings,
        dead_letters: Arc<dyn DeadLetterStore>,
        outcomes: Arc<dyn WebhookOutcomes>,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<Self, WebhookClientError> {
        Self::start_with_lookup(
            settings,
            dead_letters,
            outcomes,
            shutdown,
            tasks,
            Arc::new(SystemLookup),
        )
    }

    /// [`Webhooks::start`] with another resolver (tests: names that resolve
    /// to chosen addresses).
    pub fn start_with_lookup(
        settings: WebhookSettings,
        dead_letters: Arc<dyn DeadLetterStore>,
        outcomes: Arc<dyn WebhookOutcomes>,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
        lookup: Arc<dyn HostLookup>,
    ) -> Result<Self, WebhookClientError> {
        let client = call::client(lookup, settings.allow_private).map_err(WebhookClientError)?;
        let shared = Arc::new(Shared {
            settings,
            client,
            dead_letters,
            outcomes,
            lanes: worker::Lanes::default(),
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
            runtime: tokio::runtime::Handle::current(),
        });
        let watching = shared.clone();
        tasks.spawn(async move {
            watching.shutdown.cancelled().await;
            let unfinished = watching.lanes.unfinished();
            if unfinished > 0 {
                tracing::info!(
                    unfinished,
                    "webhooks: shutting down; queued calls are dropped, calls waiting to \
                     retry are kept as dead letters"
                );
            }
        });
        Ok(Self { shared })
    }

    pub fn settings(&self) -> &WebhookSettings {
        &self.shared.settings
    }

    /// Checks a URL (template already rendered, or constant at save time):
    /// http or https, a host, no user or password, and no loopback,
    /// private or otherwise non-public literal address (nor `localhost`)
    /// unless allowed. Names are checked again when a call connects.
    pub fn check_url(&self, url: &str) -> Result<(), WebhookRefused> {
        guard::check_url(url, self.shared.settings.allow_private).map(|_| ())
    }

    /// Queues a call; never waits. Refuses a request that cannot be sent
    /// (URL, method, headers, body over 1 MiB) and a call beyond the
    /// tenant's queue (counted in `ferrule_webhook_dropped_total`).
    pub fn submit(&self, job: WebhookJob) -> Result<(), WebhookRefused> {
        let shared = &self.shared;
        let request = call::prepare(&job.request, shared.settings.allow_private)?;
        let lane = shared.lanes.lane(&job.tenant, &shared.settings);
        let Some(slot) = lane.accept() else {
            observe::Dropped {
                tenant: &job.tenant,
                rule: &job.rule,
            }
            .emit();
            return Err(WebhookRefused::QueueFull);
        };
        let call = worker::run(shared.clone(), lane, slot, job, request);
        shared.tasks.spawn_on(call, &shared.runtime);
        Ok(())
    }

    /// Where calls that failed for good are kept.
    pub fn dead_letters(&self) -> &Arc<dyn DeadLetterStore> {
        &self.shared.dead_letters
    }

    /// Sends a dead letter's request again, once, now (its URL checked
    /// again; at most [`REPLAY_TIMEOUT`]), and records the outcome on the
    /// letter: replayed on success, the new error and one more attempt on
    /// failure. `Err` only when the letter is not found (another tenant's
    /// included) or the store fails.
    pub async fn replay(
        &self,
        tenant: &TenantId,
        letter_id: u64,
    ) -> Result<ReplayOutcome, StoreError> {
        dead_letters::replay(&self.shared, tenant, letter_id).await
    }
}
