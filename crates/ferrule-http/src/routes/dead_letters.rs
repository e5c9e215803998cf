//! A rule's dead letters: webhook calls that failed after their last
//! retry. Read them, send one again (replay), delete them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ferrule_rules::webhook::{ReplayOutcome, Webhooks};
use ferrule_store::dead_letters::DeadLetter;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiQuery;
use crate::pagination::{PageQuery, Paged};
use crate::state::AppState;

/// A webhook call that failed for good.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterView {
    pub id: u64,
    pub rule: String,
    /// The rule's version when the call was made.
    pub rule_version: u64,
    /// The webhook action's index in the rule's actions.
    pub action: u32,
    /// The request as it is sent again: `method`, `url`, `headers`
    /// (a list of `[name, value]`), `body`.
    #[schema(value_type = Object)]
    pub request: Value,
    /// The last attempt's error.
    pub error: String,
    /// Attempts made, replays included.
    pub attempts: u32,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When a replay succeeded.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub replayed_at: Option<Timestamp>,
}

fn time(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The letter as `caller` may see it: header values (credentials, often)
/// only for those who may change rules.
fn view(caller: &Caller, mut l: DeadLetter) -> DeadLetterView {
    if !super::rules::sees_secrets(caller)
        && let Some(headers) = l.request.get_mut("headers").and_then(Value::as_array_mut)
    {
        for pair in headers.iter_mut().filter_map(Value::as_array_mut) {
            if let Some(value) = pair.get_mut(1) {
                *value = Value::String(super::rules::REDACTED.into());
            }
        }
    }
    DeadLetterView {
        id: l.id,
        rule: l.rule,
        rule_version: l.rule_version,
        action: l.action,
        request: l.request,
        error: l.error,
        attempts: l.attempts,
        created_at: time(l.created_at),
        replayed_at: l.replayed_at.map(time),
    }
}

/// How a replay went. A failed delivery is still a 200: the replay was
/// made, and the letter records it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayView {
    /// Whether the endpoint answered 2xx.
    pub ok: bool,
    /// The endpoint's status, when it answered.
    pub status: Option<u16>,
    /// Why it failed (refused URL, connection error, timeout, non-2xx).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn webhooks(state: &AppState) -> Result<&Webhooks, ApiError> {
    state
        .rules
        .as_ref()
        .map(|r| &r.webhooks)
        .ok_or_else(|| ApiError::Unavailable("rules are not running".into()))
}

/// A letter id from the path; anything but a number names no letter.
fn letter_id(letter: &str) -> Result<u64, ApiError> {
    letter
        .parse()
        .map_err(|_| ApiError::NotFound("dead letter"))
}

/// The letter `letter` of rule `rule` in the caller's tenant, or 404.
async fn find(
    webhooks: &Webhooks,
    caller: &Caller,
    rule: &str,
    letter: &str,
) -> ApiResult<DeadLetter> {
    let id = letter_id(letter)?;
    let found = webhooks
        .dead_letters()
        .get_dead_letter(&caller.tenant, id)
        .await?;
    if found.rule != rule {
        return Err(ApiError::NotFound("dead letter"));
    }
    Ok(found)
}

/// Lists a rule's dead letters, newest first.
#[utoipa::path(get, operation_id = "listDeadLetters", path = "/api/v1/rules/{id}/dead-letters", tag = "rules",
    params(("id" = String, Path, description = "The rule's id"), PageQuery),
    responses((status = 200, body = Paged<DeadLetterView>), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paged<DeadLetterView>>> {
    let page = q.to_request()?;
    // The rule must be the caller's: another tenant's is not found.
    state.rules()?.engine.get(&caller.tenant, &id).await?;
    let got = webhooks(&state)?
        .dead_letters()
        .list_dead_letters(&caller.tenant, &id, &page)
        .await?;
    Ok(Json(Paged::from_page(got, |l| view(&caller, l))))
}

/// Reads one dead letter of a rule.
#[utoipa::path(get, operation_id = "getDeadLetter", path = "/api/v1/rules/{id}/dead-letters/{letter}", tag = "rules",
    params(("id" = String, Path, description = "The rule's id"),
        ("letter" = String, Path, description = "The dead letter's id (a number)")),
    responses((status = 200, body = DeadLetterView), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, letter)): Path<(String, String)>,
) -> ApiResult<Json<DeadLetterView>> {
    let found = find(webhooks(&state)?, &caller, &id, &letter).await?;
    Ok(Json(view(&caller, found)))
}

/// Sends a dead letter's request again, once, now (its URL checked again
/// against private addresses), as one of the tenant's webhook calls: it
/// waits at most 5 s for its turn within the tenant's webhook concurrency
/// and rate (else 503 with `Retry-After`, the letter unchanged), then at
/// most 10 s for the endpoint. Success marks the letter replayed; failure
/// records the new error and adds the attempt. Either way the answer is
/// 200: `ok` says whether the endpoint took it.
#[utoipa::path(post, operation_id = "replayDeadLetter", path = "/api/v1/rules/{id}/dead-letters/{letter}/replay", tag = "rules",
    params(("id" = String, Path, description = "The rule's id"),
        ("letter" = String, Path, description = "The dead letter's id (a number)")),
    responses((status = 200, body = ReplayView), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, letter)): Path<(String, String)>,
) -> ApiResult<Json<ReplayView>> {
    caller.require_write()?;
    let webhooks = webhooks(&state)?;
    let found = find(webhooks, &caller, &id, &letter).await?;
    let outcome = webhooks.replay(&caller.tenant, found.id).await?;
    Ok(Json(match outcome {
        ReplayOutcome::Delivered { status } => ReplayView {
            ok: true,
            status: Some(status),
            error: None,
        },
        ReplayOutcome::Failed { status, error } => ReplayView {
            ok: false,
            status,
            error: Some(error),
        },
        ReplayOutcome::Busy => {
            return Err(ApiError::Busy {
                detail: "the tenant's webhook calls are at their limit (concurrency, queue \
                         or rate): the letter was not sent; try again shortly"
                    .into(),
                retry_after: 1,
            });
        }
    }))
}

/// Deletes a dead letter.
#[utoipa::path(delete, operation_id = "deleteDeadLetter", path = "/api/v1/rules/{id}/dead-letters/{letter}", tag = "rules",
    params(("id" = String, Path, description = "The rule's id"),
        ("letter" = String, Path, description = "The dead letter's id (a number)")),
    responses((status = 204, description = "Deleted"), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, letter)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require_write()?;
    let webhooks = webhooks(&state)?;
    let found = find(webhooks, &caller, &id, &letter).await?;
    webhooks
        .dead_letters()
        .delete_dead_letter(&caller.tenant, found.id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letter_ids_that_are_not_numbers_name_no_letter() {
        assert_eq!(letter_id("42").ok(), Some(42));
        for bad in ["", "x", "-1", "1.5", "99999999999999999999999"] {
            assert!(
                matches!(letter_id(bad), Err(ApiError::NotFound(_))),
                "{bad}"
            );
        }
    }
}
