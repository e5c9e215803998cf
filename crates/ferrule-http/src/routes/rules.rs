//! The tenant's rules: SQL over every message on their topics, and the
//! actions of those that pass. A change is effective for every message
//! routed after the 2xx; `POST /rules/test` tries a draft without doing
//! anything.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use ferrule_rules::engine::{
    DryRun, DryRunMessage, DryRunResult, DryRunSource, RuleError, RuleSpec, RuleStats, Rules,
};
use ferrule_rules::model::Action;
use ferrule_store::rules::RuleRecord;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::views::{millis, with_etag};
use crate::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiQuery, JsonBody};
use crate::pagination::{PageQuery, Paged};
use crate::state::AppState;

/// Sample messages one test may carry.
const MAX_TEST_MESSAGES: usize = ferrule_rules::engine::MAX_DRY_RUN_MESSAGES;

/// A new rule.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRule {
    /// Letters, digits, `-`, `_`, `.`; made up when absent.
    #[schema(
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]*$",
        min_length = 1,
        max_length = 64
    )]
    pub id: Option<String>,
    #[schema(max_length = 128)]
    pub name: Option<String>,
    #[schema(max_length = 1024)]
    pub description: Option<String>,
    /// As in [`RuleFields`].
    #[schema(max_length = 16384)]
    pub sql: String,
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub actions: Vec<serde_json::Value>,
    pub enabled: Option<bool>,
}

impl NewRule {
    fn split(self) -> (Option<String>, RuleFields) {
        let fields = RuleFields {
            name: self.name,
            description: self.description,
            sql: self.sql,
            actions: self.actions,
            enabled: self.enabled,
        };
        (self.id, fields)
    }
}

/// What a rule is. With `PUT`, every field is replaced.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleFields {
    #[schema(max_length = 128)]
    pub name: Option<String>,
    #[schema(max_length = 1024)]
    pub description: Option<String>,
    /// `SELECT … FROM 'topic filter'[, …] [WHERE …]` (at most 16 KiB).
    #[schema(max_length = 16384)]
    pub sql: String,
    /// What to do with each message that passes, in order (at most 16):
    /// `{"type": "republish", "topic", "qos"?, "retain"?, "payload"?}`,
    /// `{"type": "webhook", "url", "method"?, "headers"?, "body"?, "timeout_ms"?, "retries"?, "backoff_ms"?}`,
    /// `{"type": "store", "device"?, "values"?}`,
    /// `{"type": "alarm", "op"?: "raise"|"clear", "alarm_type", "severity"?, "device"?, "details"?}`,
    /// `{"type": "command", "name", "device"?, "params"?, "ttl_s"?}`.
    /// Strings are templates: `${column}` is a column of the SELECT.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub actions: Vec<serde_json::Value>,
    /// Default true.
    pub enabled: Option<bool>,
}

impl RuleFields {
    fn into_spec(self) -> ApiResult<RuleSpec> {
        Ok(RuleSpec {
            name: self.name.unwrap_or_default(),
            description: self.description.unwrap_or_default(),
            sql: self.sql,
            actions: actions(self.actions)?,
            enabled: self.enabled.unwrap_or(true),
        })
    }
}

fn actions(values: Vec<serde_json::Value>) -> ApiResult<Vec<Action>> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            serde_json::from_value(v)
                .map_err(|e| ApiError::invalid(format!("actions[{i}]"), e.to_string()))
        })
        .collect()
}

/// A rule's last failure.
#[derive(Debug, Serialize, ToSchema)]
pub struct LastErrorView {
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub message: String,
    /// The topic of the message that failed (empty for failures reported
    /// later, such as a webhook's last retry).
    pub topic: String,
    /// The start of its payload (1 KiB at most).
    pub sample: String,
}

/// A rule's counters since the server started.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleStatsView {
    /// Messages on its topics it evaluated.
    pub matched: u64,
    /// Messages for which WHERE held.
    pub passed: u64,
    /// Evaluations that failed.
    pub errors: u64,
    pub actions_ok: u64,
    pub actions_failed: u64,
    pub last_error: Option<LastErrorView>,
}

impl From<RuleStats> for RuleStatsView {
    fn from(s: RuleStats) -> Self {
        Self {
            matched: s.matched,
            passed: s.passed,
            errors: s.errors,
            actions_ok: s.actions_ok,
            actions_failed: s.actions_failed,
            last_error: s.last_error.map(|e| LastErrorView {
                at: millis(e.at),
                message: e.message,
                topic: e.topic,
                sample: e.sample,
            }),
        }
    }
}

/// A rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub sql: String,
    #[schema(value_type = Vec<Object>)]
    pub actions: serde_json::Value,
    pub enabled: bool,
    /// 1 when created; every change adds 1 (also the ETag).
    pub version: u64,
    /// The FROM topic filters.
    pub sources: Vec<String>,
    pub stats: RuleStatsView,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// What a hidden header value reads as.
pub(crate) const REDACTED: &str = "(hidden: only editors and above see header values)";

/// Whether the caller sees webhook header values (often credentials):
/// those who may change rules do; viewers do not.
pub(crate) fn sees_secrets(caller: &Caller) -> bool {
    caller.require_write().is_ok()
}

/// Webhook header values replaced by [`REDACTED`].
fn redact(mut actions: serde_json::Value) -> serde_json::Value {
    for action in actions.as_array_mut().into_iter().flatten() {
        if let Some(headers) = action.get_mut("headers").and_then(|h| h.as_object_mut()) {
            for value in headers.values_mut() {
                *value = serde_json::Value::String(REDACTED.into());
            }
        }
    }
    actions
}

fn view(caller: &Caller, rules: &Rules, r: RuleRecord) -> RuleView {
    let actions = if sees_secrets(caller) {
        r.actions
    } else {
        redact(r.actions)
    };
    RuleView {
        stats: rules.stats(&r.tenant, &r.id).into(),
        sources: rules.sources(&r.tenant, &r.id),
        id: r.id,
        name: r.name,
        description: r.description,
        sql: r.sql,
        actions,
        enabled: r.enabled,
        version: r.version,
        created_at: millis(r.created_at),
        updated_at: millis(r.updated_at),
    }
}

/// The view with its version as the ETag.
fn respond(status: StatusCode, v: RuleView) -> Response {
    with_etag(status, v.version, v)
}

impl From<RuleError> for ApiError {
    fn from(e: RuleError) -> Self {
        match e {
            RuleError::Sql(e) => ApiError::InvalidAt {
                field: "sql".into(),
                line: e.line,
                column: e.column,
                detail: e.message,
            },
            RuleError::Invalid { field, why } => ApiError::invalid(field, why),
            RuleError::NotFound => ApiError::NotFound("rule"),
            e @ RuleError::VersionMismatch(_) => ApiError::PreconditionFailed(e.to_string()),
            e @ (RuleError::Exists | RuleError::TooMany(_)) => ApiError::Conflict(e.to_string()),
            RuleError::Store(e) => e.into(),
        }
    }
}

fn rules(state: &AppState) -> ApiResult<&Rules> {
    Ok(&state.rules()?.engine)
}

/// Ids that would shadow a fixed path (`POST /api/v1/rules/test`, the
/// console's `/rules/new`): such a rule could not be read or edited.
const RESERVED_IDS: [&str; 2] = ["new", "test"];

/// Ids that cannot be valid are simply not found.
fn rule_id(id: &str) -> ApiResult<&str> {
    ferrule_core::id::validate_slug(id)
        .map(|()| id)
        .map_err(|_| ApiError::NotFound("rule"))
}

/// Lists the tenant's rules by id, with their counters.
#[utoipa::path(get, operation_id = "listRules", path = "/api/v1/rules", tag = "rules", params(PageQuery),
    responses((status = 200, body = Paged<RuleView>), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 503, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paged<RuleView>>> {
    let rules = rules(&state)?;
    let page = rules.list(&caller.tenant, &q.to_request()?).await?;
    Ok(Json(Paged::from_page(page, |r| view(&caller, rules, r))))
}

/// Creates a rule; it runs on every message routed after this answers.
/// SQL that does not compile is a 400 naming the line and column.
#[utoipa::path(post, operation_id = "createRule", path = "/api/v1/rules", tag = "rules", request_body = NewRule,
    responses((status = 201, body = RuleView), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 409, body = Problem, description = "The id is taken, or the tenant has as many rules as it may"),
        (status = 503, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<NewRule>,
) -> ApiResult<Response> {
    caller.require_write()?;
    let rules = rules(&state)?;
    let (id, fields) = req.split();
    if let Some(reserved) = id.as_deref().filter(|id| RESERVED_IDS.contains(id)) {
        return Err(ApiError::invalid(
            "id",
            format!("`{reserved}` names a page of the API or console; choose another id"),
        ));
    }
    let record = rules
        .create(&caller.tenant, id, fields.into_spec()?)
        .await?;
    Ok(respond(StatusCode::CREATED, view(&caller, rules, record)))
}

/// Reads a rule, with its counters and last error.
#[utoipa::path(get, operation_id = "getRule", path = "/api/v1/rules/{id}", tag = "rules",
    params(("id" = String, Path)),
    responses((status = 200, body = RuleView), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 503, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let rules = rules(&state)?;
    let record = rules.get(&caller.tenant, rule_id(&id)?).await?;
    Ok(respond(StatusCode::OK, view(&caller, rules, record)))
}

/// Replaces a rule (with `If-Match`, only if its version is still that one).
#[utoipa::path(put, operation_id = "replaceRule", path = "/api/v1/rules/{id}", tag = "rules",
    params(("id" = String, Path),
        ("If-Match" = Option<String>, Header, description = "The version the change is based on, as the ETag gives it, or *")),
    request_body = RuleFields,
    responses((status = 200, body = RuleView), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 412, body = Problem, description = "The rule changed since that version"),
        (status = 503, body = Problem)))]
pub async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<RuleFields>,
) -> ApiResult<Response> {
    caller.require_write()?;
    let rules = rules(&state)?;
    let expected = super::twin::if_match(&headers)?;
    let record = rules
        .replace(&caller.tenant, rule_id(&id)?, req.into_spec()?, expected)
        .await?;
    Ok(respond(StatusCode::OK, view(&caller, rules, record)))
}

/// Deletes a rule and its dead letters; it stops at once.
#[utoipa::path(delete, operation_id = "deleteRule", path = "/api/v1/rules/{id}", tag = "rules",
    params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_write()?;
    rules(&state)?.delete(&caller.tenant, rule_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enables a rule.
#[utoipa::path(post, operation_id = "enableRule", path = "/api/v1/rules/{id}/enable", tag = "rules",
    params(("id" = String, Path)),
    responses((status = 200, body = RuleView), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn enable(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    set_enabled(state, caller, id, true).await
}

/// Disables a rule: it stops at once; its definition and counters stay.
#[utoipa::path(post, operation_id = "disableRule", path = "/api/v1/rules/{id}/disable", tag = "rules",
    params(("id" = String, Path)),
    responses((status = 200, body = RuleView), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    set_enabled(state, caller, id, false).await
}

async fn set_enabled(
    state: AppState,
    caller: Caller,
    id: String,
    enabled: bool,
) -> ApiResult<Response> {
    caller.require_write()?;
    let rules = rules(&state)?;
    let record = rules
        .set_enabled(&caller.tenant, rule_id(&id)?, enabled)
        .await?;
    Ok(respond(StatusCode::OK, view(&caller, rules, record)))
}

/// A sample message for a dry run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestMessage {
    /// A topic name of the tenant, e.g. `devices/pump-1/telemetry`.
    #[schema(min_length = 1, max_length = 1024)]
    pub topic: String,
    /// The payload: JSON; a string is taken as the payload's text.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub client_id: Option<String>,
    /// ms since the epoch (what `timestamp()` returns); now when absent.
    pub timestamp: Option<i64>,
}

/// Which stored messages a dry run takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecentMessages {
    /// A topic filter: telemetry (`devices/+/telemetry`) or events
    /// (`devices/+/events/#`) of the tenant.
    pub topic: String,
    /// How many, newest first: 1 to 100 (default 10).
    #[schema(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// A draft rule and what to try it on: `messages`, or `recent`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRule {
    #[schema(max_length = 16384)]
    pub sql: String,
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub actions: Vec<serde_json::Value>,
    /// At most 100.
    pub messages: Option<Vec<TestMessage>>,
    pub recent: Option<RecentMessages>,
}

/// What the draft did with each message, and what every action would do.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestReport {
    #[schema(value_type = Vec<Object>)]
    pub results: Vec<DryRunResult>,
}

/// Tries a draft rule on sample messages, or on the tenant's latest stored
/// messages of a topic filter; returns each message's output and the
/// republish, webhook request, stored values, alarm transition or command
/// each action would make. Nothing is done.
#[utoipa::path(post, operation_id = "testRule", path = "/api/v1/rules/test", tag = "rules", request_body = TestRule,
    responses((status = 200, body = TestReport), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 503, body = Problem)))]
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<TestRule>,
) -> ApiResult<Json<TestReport>> {
    let rules = rules(&state)?;
    let source = match (req.messages, req.recent) {
        (Some(messages), None) => {
            if messages.len() > MAX_TEST_MESSAGES {
                return Err(ApiError::invalid(
                    "messages",
                    format!("at most {MAX_TEST_MESSAGES} messages"),
                ));
            }
            let now = ferrule_core::message::now_ms();
            let messages = messages
                .into_iter()
                .enumerate()
                .map(|(i, m)| {
                    ferrule_core::topic::validate_name(&m.topic).map_err(|e| {
                        ApiError::invalid(format!("messages[{i}].topic"), e.to_string())
                    })?;
                    let payload = match m.payload {
                        serde_json::Value::String(text) => text.into_bytes(),
                        other => other.to_string().into_bytes(),
                    };
                    Ok(DryRunMessage {
                        topic: m.topic,
                        payload,
                        client_id: m.client_id,
                        timestamp_ms: m.timestamp.unwrap_or(now),
                    })
                })
                .collect::<ApiResult<Vec<_>>>()?;
            DryRunSource::Messages(messages)
        }
        (None, Some(recent)) => {
            let limit = recent.limit.unwrap_or(10);
            if !(1..=MAX_TEST_MESSAGES as u32).contains(&limit) {
                return Err(ApiError::invalid(
                    "recent.limit",
                    format!("must be between 1 and {MAX_TEST_MESSAGES}"),
                ));
            }
            DryRunSource::Recent {
                filter: recent.topic,
                limit: limit as usize,
            }
        }
        _ => {
            return Err(ApiError::invalid(
                "messages",
                "give either `messages` (samples) or `recent` (stored messages), not both",
            ));
        }
    };
    let run = DryRun {
        sql: req.sql,
        actions: actions(req.actions)?,
        source,
    };
    let telemetry = state.telemetry.as_ref().map(|t| &*t.store);
    let results = rules.dry_run(&caller.tenant, run, telemetry).await?;
    Ok(Json(TestReport { results }))
}
