//! Request extractors that fail as problem+json: JSON bodies, query strings and
//! the authenticated caller.

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use ferrule_core::{Principal, PrincipalKind, Role, TenantId};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON request body. Unlike axum's `Json`, every failure is a problem
/// document naming the field at fault (via `serde_path_to_error`).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| body_error(e, state))?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A raw request body (HTTP ingest), whose failures — above all a body over
/// `http.max_body_bytes` — are problem documents like every other error,
/// not axum's plain-text rejections.
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|e| body_error(e, state))
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| {
            let m = m.trim();
            m.eq_ignore_ascii_case("application/json")
                || (m.starts_with("application/") && m.ends_with("+json"))
        })
        .unwrap_or(false)
}

fn body_error(e: BytesRejection, state: &AppState) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(state.settings.max_body_bytes)
    } else {
        ApiError::Invalid {
            field: None,
            detail: format!("could not read the request body: {e}"),
        }
    }
}

/// Parses JSON, naming the path of the first bad field.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(ApiError::Invalid {
            field: None,
            detail: "the body is not valid UTF-8".into(),
        });
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let detail = if inner.is_syntax() || inner.is_eof() {
            format!("the body is not valid JSON: {inner}")
        } else {
            inner.to_string()
        };
        let field = if path != "." {
            Some(path)
        } else {
            named_field(&detail)
        };
        ApiError::Invalid { field, detail }
    })
}

/// serde reports unknown and missing fields at the enclosing object's path;
/// its message names the field.
fn named_field(detail: &str) -> Option<String> {
    let rest = detail
        .strip_prefix("unknown field `")
        .or_else(|| detail.strip_prefix("missing field `"))?;
    Some(rest.split('`').next()?.to_owned())
}

/// Integer fields of request bodies: JSON Schema counts `5.0` as an
/// integer, serde does not, so a client (or generator) that writes whole
/// numbers with a fraction part is accepted; `5.5` is still refused.
pub mod whole {
    use serde::de::{Deserialize, Deserializer, Error};

    pub fn option<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<i64> + TryFrom<u64>,
    {
        let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
            return Ok(None);
        };
        let out_of_range = || D::Error::custom(format!("{n} is out of range"));
        if let Some(u) = n.as_u64() {
            return T::try_from(u).map(Some).map_err(|_| out_of_range());
        }
        if let Some(i) = n.as_i64() {
            return T::try_from(i).map(Some).map_err(|_| out_of_range());
        }
        match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                T::try_from(f as i64).map(Some).map_err(|_| out_of_range())
            }
            _ => Err(D::Error::custom(format!("expected an integer, found {n}"))),
        }
    }

    /// A map whose values are integers, each read as by [`option`].
    pub fn map<'de, D, T>(d: D) -> Result<std::collections::BTreeMap<String, T>, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<i64> + TryFrom<u64>,
    {
        #[derive(serde::Deserialize)]
        #[serde(transparent)]
        struct Whole<T: TryFrom<i64> + TryFrom<u64>>(
            #[serde(deserialize_with = "option")] Option<T>,
        );
        let raw = std::collections::BTreeMap::<String, Whole<T>>::deserialize(d)?;
        raw.into_iter()
            .map(|(k, Whole(v))| {
                v.map(|v| (k.clone(), v)).ok_or_else(|| {
                    D::Error::custom(format!("{k}: expected an integer, found null"))
                })
            })
            .collect()
    }
}

/// A query string, failing as problem+json.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

/// The client's address (the TCP peer), for backoff after failed logins;
/// `None` when the server was not started with connection info.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(ClientIp(peer))
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                ApiError::Invalid {
                    field: (path != ".").then_some(path),
                    detail: format!("bad query parameter: {}", e.into_inner()),
                }
            })
    }
}

/// The authenticated caller of an API request and the tenant it acts in.
///
/// Admins act in tenant `default` unless the request names another with
/// `X-Tenant`; anyone else acts in their own tenant only.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub tenant: TenantId,
    pub role: Role,
}

impl Caller {
    pub fn require_write(&self) -> Result<(), ApiError> {
        self.require(self.role.can_write(), "your role may only read")
    }

    pub fn require_access_admin(&self) -> Result<(), ApiError> {
        self.require(
            self.role.can_manage_access(),
            "managing users, API keys and ACL rules needs the owner role",
        )
    }

    /// Owners and admins: settings that delete data.
    pub fn require_owner(&self, why: &'static str) -> Result<(), ApiError> {
        self.require(self.role.can_manage_access(), why)
    }

    /// Admins only, saying `why` to others.
    pub fn require_admin_to(&self, why: &'static str) -> Result<(), ApiError> {
        self.require(self.role.is_admin(), why)
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        self.require_admin_for("managing tenants needs the admin role")
    }

    /// Admins only, for `why`.
    pub fn require_admin_for(&self, why: &'static str) -> Result<(), ApiError> {
        self.require(self.role.is_admin(), why)
    }

    fn require(&self, ok: bool, why: &'static str) -> Result<(), ApiError> {
        if ok {
            Ok(())
        } else {
            Err(ApiError::Forbidden(why))
        }
    }

    /// The user id, when the caller is a logged-in user.
    pub fn user_id(&self) -> Option<&str> {
        match &self.principal.kind {
            PrincipalKind::User { id, .. } => Some(id),
            _ => None,
        }
    }
}

/// The bearer token of a request, if it carries one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or(ApiError::Unauthorized(
            "missing, invalid or expired credentials",
        ))?;
        let principal = state.identity.authenticate_bearer(token).await?;
        let role = principal.role().ok_or(ApiError::Unauthorized(
            "missing, invalid or expired credentials",
        ))?;
        let mut tenant = principal.tenant.clone();
        if let Some(requested) = parts.headers.get("x-tenant") {
            let requested = requested
                .to_str()
                .ok()
                .and_then(|s| TenantId::new(s).ok())
                .ok_or_else(|| ApiError::invalid("X-Tenant", "not a valid tenant id"))?;
            if requested != tenant {
                if !role.is_admin() {
                    return Err(ApiError::Forbidden("only admins may act in another tenant"));
                }
                state.store().get_tenant(&requested).await?;
                tenant = requested;
            }
        }
        Ok(Caller {
            principal,
            tenant,
            role,
        })
    }
}

/// A device authenticated by its access token (`Authorization: Bearer fd_…`),
/// for HTTP ingest.
#[derive(Debug, Clone)]
pub struct DeviceCaller {
    pub tenant: TenantId,
    pub device: ferrule_core::DeviceId,
}

impl FromRequestParts<AppState> for DeviceCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or(ApiError::Unauthorized(
            "missing, invalid or expired credentials",
        ))?;
        let principal = state.identity.authenticate_device_token(token).await?;
        match principal.kind {
            PrincipalKind::Device { id } => Ok(DeviceCaller {
                tenant: principal.tenant,
                device: id,
            }),
            _ => Err(ApiError::Unauthorized(
                "missing, invalid or expired credentials",
            )),
        }
    }
}
