//! ACL rules of the caller's tenant: every role reads them, owners and admins
//! change them. Changes go through the `AclCache`, so the broker applies them
//! from its next decision.

use super::vocabulary::{ActionName, EffectName, SubjectName};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ferrule_core::acl::{self, AclAction, AclRule, AclSubject, Effect};
use ferrule_core::secret::generate_id;
use serde::Deserialize;
use utoipa::ToSchema;

use super::views::AclRuleView;
use crate::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::JsonBody;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAclRule {
    /// allow or deny.
    #[schema(value_type = EffectName)]
    pub effect: Effect,
    /// publish, subscribe or all.
    #[schema(value_type = ActionName)]
    pub action: AclAction,
    /// A topic filter (`+`, `#`) in which a whole level may be `{device_id}`.
    #[schema(example = "devices/+/telemetry")]
    #[schema(
        min_length = 1,
        max_length = 1024,
        pattern = "^(?:(?:\\{device_id\\}|\\+|[^+#/{}\\x00]*)/)*(?:\\{device_id\\}|\\+|#|[^+#/{}\\x00]*)$"
    )]
    pub topic: String,
    /// devices, users (users and API keys), anonymous or all.
    #[schema(value_type = SubjectName)]
    pub subject: AclSubject,
    /// Higher goes first; deny wins a tie. Defaults to 0.
    #[serde(default, deserialize_with = "crate::extract::whole::option")]
    pub priority: Option<i32>,
}

/// Fields to change; absent ones stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAclRule {
    #[schema(value_type = Option<EffectName>)]
    pub effect: Option<Effect>,
    #[schema(value_type = Option<ActionName>)]
    pub action: Option<AclAction>,
    #[schema(
        min_length = 1,
        max_length = 1024,
        pattern = "^(?:(?:\\{device_id\\}|\\+|[^+#/{}\\x00]*)/)*(?:\\{device_id\\}|\\+|#|[^+#/{}\\x00]*)$"
    )]
    pub topic: Option<String>,
    #[schema(value_type = Option<SubjectName>)]
    pub subject: Option<AclSubject>,
    #[serde(default, deserialize_with = "crate::extract::whole::option")]
    pub priority: Option<i32>,
}

fn check_topic(topic: &str) -> Result<(), ApiError> {
    acl::validate_pattern(topic).map_err(|e| ApiError::invalid("topic", e.to_string()))
}

/// The tenant's rules in the order they are tried.
#[utoipa::path(get, operation_id = "listAclRules", path = "/api/v1/acl-rules", tag = "acl-rules",
    responses((status = 200, body = Vec<AclRuleView>), (status = 401, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<AclRuleView>>> {
    let mut rules = state.store().list_acl_rules(&caller.tenant).await?;
    rules.sort_by(acl::evaluation_order);
    Ok(Json(rules.into_iter().map(AclRuleView::from).collect()))
}

/// Adds an MQTT access rule to the tenant.
#[utoipa::path(post, operation_id = "createAclRule", path = "/api/v1/acl-rules", tag = "acl-rules", request_body = CreateAclRule,
    responses((status = 201, body = AclRuleView), (status = 400, body = Problem), (status = 403, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<CreateAclRule>,
) -> ApiResult<(StatusCode, Json<AclRuleView>)> {
    caller.require_access_admin()?;
    check_topic(&req.topic)?;
    let rule = AclRule {
        id: generate_id("acl_"),
        effect: req.effect,
        action: req.action,
        topic: req.topic,
        subject: req.subject,
        priority: req.priority.unwrap_or(0),
    };
    let rule = state.acl.create(&caller.tenant, &rule).await?;
    Ok((StatusCode::CREATED, Json(rule.into())))
}

/// Reads one MQTT access rule.
#[utoipa::path(get, operation_id = "getAclRule", path = "/api/v1/acl-rules/{id}", tag = "acl-rules", params(("id" = String, Path)),
    responses((status = 200, body = AclRuleView), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<AclRuleView>> {
    Ok(Json(
        state
            .store()
            .get_acl_rule(&caller.tenant, &id)
            .await?
            .into(),
    ))
}

/// Changes an MQTT access rule; existing subscriptions follow at the next message.
#[utoipa::path(patch, operation_id = "updateAclRule", path = "/api/v1/acl-rules/{id}", tag = "acl-rules", params(("id" = String, Path)),
    request_body = UpdateAclRule,
    responses((status = 200, body = AclRuleView), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<UpdateAclRule>,
) -> ApiResult<Json<AclRuleView>> {
    caller.require_access_admin()?;
    if let Some(topic) = &req.topic {
        check_topic(topic)?;
    }
    // Each field is valid on its own, so the merged rule is too. Two
    // concurrent changes to one rule: the later write wins whole.
    let cur = state.store().get_acl_rule(&caller.tenant, &id).await?;
    let rule = AclRule {
        id: cur.id,
        effect: req.effect.unwrap_or(cur.effect),
        action: req.action.unwrap_or(cur.action),
        topic: req.topic.unwrap_or(cur.topic),
        subject: req.subject.unwrap_or(cur.subject),
        priority: req.priority.unwrap_or(cur.priority),
    };
    Ok(Json(state.acl.update(&caller.tenant, &rule).await?.into()))
}

/// Removes an MQTT access rule.
#[utoipa::path(delete, operation_id = "deleteAclRule", path = "/api/v1/acl-rules/{id}", tag = "acl-rules", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_access_admin()?;
    state.acl.delete(&caller.tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
