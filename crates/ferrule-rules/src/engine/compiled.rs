//! A rule compiled once, when it is saved: its program and its actions
//! with their templates parsed, so that nothing is parsed per message.

use std::sync::Arc;
use std::time::Duration;

use ferrule_core::QoS;
use ferrule_store::alarms::Severity;
use ferrule_store::rules::RuleRecord;

use super::stats::RuleCounters;
use crate::model::{
    Action, AlarmOp, MAX_ACTIONS, MAX_SQL_BYTES, MAX_WEBHOOK_RETRIES, MAX_WEBHOOK_TIMEOUT_MS,
};
use crate::sql::{self, Program, SqlError};
use crate::template::{JsonTemplate, Template};
use crate::webhook::{RetryPolicy, Webhooks};

/// Most headers a webhook action may set.
const MAX_HEADERS: usize = 32;
/// Longest command time to live: a week.
const MAX_COMMAND_TTL_S: u64 = 7 * 24 * 3600;

/// Why a rule was refused at save time.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("sql: {0}")]
    Sql(#[from] SqlError),
    /// A field of the rule (e.g. `actions[0].topic`) is invalid.
    #[error("{field}: {why}")]
    Invalid { field: String, why: String },
    #[error("no such rule")]
    NotFound,
    #[error("the rule changed meanwhile: its version is now {0}")]
    VersionMismatch(u64),
    #[error("a rule with this id exists")]
    Exists,
    #[error("the tenant has {0} rules, the most it may have")]
    TooMany(usize),
    #[error(transparent)]
    Store(#[from] ferrule_store::StoreError),
}

fn invalid(field: impl Into<String>, why: impl Into<String>) -> RuleError {
    RuleError::Invalid {
        field: field.into(),
        why: why.into(),
    }
}

/// An action ready to run.
#[derive(Debug)]
pub(crate) enum CompiledAction {
    Republish {
        topic: Template,
        qos: QoS,
        retain: bool,
        payload: Option<JsonTemplate>,
    },
    Webhook {
        method: String,
        url: Template,
        headers: Vec<(String, Template)>,
        body: Option<Template>,
        policy: RetryPolicy,
    },
    Store {
        device: Option<Template>,
        values: Option<JsonTemplate>,
    },
    Alarm {
        op: AlarmOp,
        alarm_type: Template,
        severity: Severity,
        device: Option<Template>,
        details: Option<JsonTemplate>,
    },
    Command {
        name: String,
        device: Option<Template>,
        params: Option<JsonTemplate>,
        ttl: Duration,
    },
}

/// A rule as the engine runs it.
pub(crate) struct CompiledRule {
    pub(crate) record: RuleRecord,
    pub(crate) program: Program,
    pub(crate) actions: Vec<CompiledAction>,
    pub(crate) counters: Arc<RuleCounters>,
}

/// Compiles SQL and actions, checking everything that can be checked
/// before a message arrives.
pub(crate) fn compile(
    sql_text: &str,
    actions: &[Action],
    webhooks: &Webhooks,
) -> Result<(Program, Vec<CompiledAction>), RuleError> {
    if sql_text.len() > MAX_SQL_BYTES {
        return Err(invalid(
            "sql",
            format!(
                "{} bytes, more than the {MAX_SQL_BYTES} a rule may have",
                sql_text.len()
            ),
        ));
    }
    let program = sql::compile(sql_text)?;
    if actions.len() > MAX_ACTIONS {
        return Err(invalid(
            "actions",
            format!(
                "{} actions, more than the {MAX_ACTIONS} a rule may have",
                actions.len()
            ),
        ));
    }
    let compiled = actions
        .iter()
        .enumerate()
        .map(|(i, a)| compile_action(&format!("actions[{i}]"), a, webhooks))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((program, compiled))
}

fn template(field: &str, text: &str) -> Result<Template, RuleError> {
    Template::parse(text).map_err(|why| invalid(field, why))
}

fn json_template(
    field: &str,
    value: &Option<serde_json::Value>,
) -> Result<Option<JsonTemplate>, RuleError> {
    value
        .as_ref()
        .map(|v| JsonTemplate::parse(v).map_err(|why| invalid(field, why)))
        .transpose()
}

fn optional_template(field: &str, text: &Option<String>) -> Result<Option<Template>, RuleError> {
    text.as_deref().map(|t| template(field, t)).transpose()
}

fn compile_action(
    at: &str,
    action: &Action,
    webhooks: &Webhooks,
) -> Result<CompiledAction, RuleError> {
    let field = |name: &str| format!("{at}.{name}");
    Ok(match action {
        Action::Republish {
            topic,
            qos,
            retain,
            payload,
        } => {
            let qos = QoS::from_u8(*qos).ok_or_else(|| invalid(field("qos"), "0, 1 or 2"))?;
            let topic_template = template(&field("topic"), topic)?;
            if topic_template.is_constant() {
                super::plan::check_republish_topic(topic)
                    .map_err(|why| invalid(field("topic"), why))?;
            }
            CompiledAction::Republish {
                topic: topic_template,
                qos,
                retain: *retain,
                payload: json_template(&field("payload"), payload)?,
            }
        }
        Action::Webhook {
            url,
            method,
            headers,
            body,
            timeout_ms,
            retries,
            backoff_ms,
        } => {
            let method = method.to_ascii_uppercase();
            if !matches!(method.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
                return Err(invalid(field("method"), "GET, POST, PUT, PATCH or DELETE"));
            }
            let url_template = template(&field("url"), url)?;
            if url_template.is_constant() {
                webhooks
                    .check_url(url)
                    .map_err(|e| invalid(field("url"), e.to_string()))?;
            } else if !(url.starts_with("http://") || url.starts_with("https://")) {
                // The scheme and host must be fixed: a template may fill the
                // path, not choose where the request goes.
                return Err(invalid(field("url"), "must start with http:// or https://"));
            }
            if headers.len() > MAX_HEADERS {
                return Err(invalid(field("headers"), format!("at most {MAX_HEADERS}")));
            }
            let headers = headers
                .iter()
                .map(|(name, value)| {
                    let valid_name = !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
                    if !valid_name {
                        return Err(invalid(
                            field("headers"),
                            format!("{name:?} is not a header name"),
                        ));
                    }
                    Ok((
                        name.clone(),
                        template(&field(&format!("headers.{name}")), value)?,
                    ))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if *timeout_ms == 0 || *timeout_ms > MAX_WEBHOOK_TIMEOUT_MS {
                return Err(invalid(
                    field("timeout_ms"),
                    format!("1 to {MAX_WEBHOOK_TIMEOUT_MS}"),
                ));
            }
            if *retries > MAX_WEBHOOK_RETRIES {
                return Err(invalid(
                    field("retries"),
                    format!("0 to {MAX_WEBHOOK_RETRIES}"),
                ));
            }
            if *backoff_ms > 600_000 {
                return Err(invalid(field("backoff_ms"), "0 to 600000"));
            }
            CompiledAction::Webhook {
                method,
                url: url_template,
                headers,
                body: optional_template(&field("body"), body)?,
                policy: RetryPolicy {
                    timeout: Duration::from_millis(*timeout_ms),
                    retries: *retries,
                    backoff: Duration::from_millis(*backoff_ms),
                },
            }
        }
        Action::Store { device, values } => CompiledAction::Store {
            device: optional_template(&field("device"), device)?,
            values: json_template(&field("values"), values)?,
        },
        Action::Alarm {
            op,
            alarm_type,
            severity,
            device,
            details,
        } => {
            if alarm_type.is_empty() {
                return Err(invalid(field("alarm_type"), "must not be empty"));
            }
            CompiledAction::Alarm {
                op: *op,
                alarm_type: template(&field("alarm_type"), alarm_type)?,
                severity: Severity::parse(severity).ok_or_else(|| {
                    invalid(
                        field("severity"),
                        "critical, major, minor, warning or indeterminate",
                    )
                })?,
                device: optional_template(&field("device"), device)?,
                details: json_template(&field("details"), details)?,
            }
        }
        Action::Command {
            name,
            device,
            params,
            ttl_s,
        } => {
            ferrule_twin::commands::check_name(name)
                .map_err(|e| invalid(field("name"), e.to_string()))?;
            if *ttl_s == 0 || *ttl_s > MAX_COMMAND_TTL_S {
                return Err(invalid(field("ttl_s"), format!("1 to {MAX_COMMAND_TTL_S}")));
            }
            CompiledAction::Command {
                name: name.clone(),
                device: optional_template(&field("device"), device)?,
                params: json_template(&field("params"), params)?,
                ttl: Duration::from_secs(*ttl_s),
            }
        }
    })
}
