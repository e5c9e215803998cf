//! Webhook calls of rules: their own workers, per-tenant concurrency and
//! rate limits, retries with backoff, dead letters, and refusal of private
//! addresses (server-side request forgery).
//!
//! PLACEHOLDER (foundation): the `webhooks` work package replaces this module.

use std::sync::Arc;
use std::time::Duration;

use ferrule_core::TenantId;
use serde::{Deserialize, Serialize};

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
    #[error("{0}")]
    Url(String),
}

/// The webhook workers.
#[derive(Clone)]
pub struct Webhooks {
    settings: Arc<WebhookSettings>,
}

impl Webhooks {
    pub fn placeholder(settings: WebhookSettings) -> Self {
        Self {
            settings: Arc::new(settings),
        }
    }

    pub fn settings(&self) -> &WebhookSettings {
        &self.settings
    }

    /// Checks a URL (template already rendered, or constant at save time):
    /// http or https, a host, and no private address unless allowed.
    pub fn check_url(&self, url: &str) -> Result<(), WebhookRefused> {
        if url.starts_with("http://") || url.starts_with("https://") {
            Ok(())
        } else {
            Err(WebhookRefused::Url(format!("{url}: not an http(s) URL")))
        }
    }

    /// Queues a call; never waits.
    pub fn submit(&self, _job: WebhookJob) -> Result<(), WebhookRefused> {
        Err(WebhookRefused::QueueFull)
    }
}
