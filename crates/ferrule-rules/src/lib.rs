//! Logic on every message: rules, their actions, alarms and webhooks.
//!
//! - [`sql`]: the rule language (`SELECT … FROM 'filter' WHERE …`), parsed
//!   with sqlparser and compiled once into our evaluator over JSON.
//! - [`template`]: `${field}` templates in actions.
//! - [`model`]: a rule's actions as users write them.
//! - [`engine`]: the rules of every tenant on the router: a bounded queue
//!   per tenant (never blocking the router), evaluation, actions, counters.
//! - [`webhook`]: outbound HTTP on its own workers, with per-tenant limits,
//!   retries, dead letters and refusal of private addresses.
//! - [`alarms`]: alarms raised and cleared by rules, acknowledged by users.

pub mod alarms;
pub mod engine;
pub mod model;
pub mod sql;
pub mod template;
pub mod webhook;

/// The rules services the API needs, started together by `serve`.
#[derive(Clone)]
pub struct RuleServices {
    pub engine: engine::Rules,
    pub alarms: alarms::Alarms,
    pub webhooks: webhook::Webhooks,
}
