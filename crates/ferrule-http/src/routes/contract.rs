//! What every operation of the API shares, added to the OpenAPI document in
//! one place so that it names every status and content type a route can
//! answer with (schemathesis checks this in CI) without each route repeating
//! the extractors' failures.
//!
//! The rules follow the extractors and [`ApiError`](crate::error::ApiError):
//! a caller ([`Caller`](crate::Caller)) can fail with 401, 403 (a non-admin
//! naming another tenant) and 400/404 (a bad or unknown `X-Tenant`); a JSON
//! body with 400, 413 and 415; a query string or path with 400 and 404. Every
//! failure is `application/problem+json`.

use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::{Content, ObjectBuilder, OpenApi, RefOr, Required, Type};

/// The media type of every error body.
pub const PROBLEM: &str = "application/problem+json";

/// Completes `api` with the shared parameters and failures of each operation.
pub fn complete(api: &mut OpenApi) {
    for (path, item) in api.paths.paths.iter_mut() {
        for op in operations(item) {
            complete_operation(path, op);
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

fn complete_operation(path: &str, op: &mut Operation) {
    let secured = !is_public(op);
    let by_device = op.tags.iter().flatten().any(|t| t == "ingest");
    let has_query = op
        .parameters
        .iter()
        .flatten()
        .any(|p| matches!(p.parameter_in, ParameterIn::Query));
    let has_body = op.request_body.is_some();
    let has_path_ids = path.contains('{');

    if secured && !by_device {
        op.parameters.get_or_insert_with(Vec::new).push(x_tenant());
    }
    let mut failures: Vec<(&str, &str)> = Vec::new();
    if secured {
        failures.push(("401", "Missing, invalid or expired credentials"));
        failures.push(("403", "The caller's role does not allow this"));
    }
    if secured && !by_device {
        failures.push((
            "400",
            "A bad request: a field, parameter or `X-Tenant` is invalid",
        ));
        failures.push(("404", "Not found (or `X-Tenant` names no tenant)"));
    }
    if has_query {
        failures.push(("400", "A query parameter is invalid"));
    }
    if has_path_ids {
        failures.push(("404", "Not found"));
    }
    if has_body {
        failures.push(("400", "The body is not valid JSON or a field is invalid"));
        failures.push(("413", "The body is larger than `http.max_body_bytes`"));
        failures.push(("415", "The body is not sent as `application/json`"));
        if let Some(body) = op.request_body.as_mut() {
            require_body(body);
        }
    }
    for (status, description) in failures {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(problem(description)));
    }
    for (status, response) in op.responses.responses.iter_mut() {
        if (status.starts_with('4') || status.starts_with('5'))
            && let RefOr::T(response) = response
        {
            as_problem(response);
        }
    }
}

/// Operations declared with `security(())` need no credentials.
fn is_public(op: &Operation) -> bool {
    op.security
        .as_ref()
        .is_some_and(|reqs| reqs.iter().all(|r| r == &Default::default()))
}

fn x_tenant() -> Parameter {
    ParameterBuilder::new()
        .name("X-Tenant")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Admins only: act in this tenant instead of `default`. Anyone else may \
             only name their own tenant (403 otherwise).",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(ferrule_core::ID_PATTERN))
                .max_length(Some(ferrule_core::MAX_ID_LEN)),
        ))
        .build()
}

fn problem(description: &str) -> Response {
    let mut response = ResponseBuilder::new().description(description).build();
    as_problem(&mut response);
    response
}

/// An error response carries a problem document, whatever a route declared.
fn as_problem(response: &mut Response) {
    response.content.clear();
    response.content.insert(
        PROBLEM.to_owned(),
        Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
            "Problem",
        )))),
    );
}

/// A route that takes a body refuses a request without one.
fn require_body(body: &mut RequestBody) {
    body.required = Some(Required::True);
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_operation_has_a_unique_id_a_summary_and_problem_failures() {
        let api = crate::routes::openapi();
        let mut ids = HashSet::new();
        for (path, mut item) in api.paths.paths.clone() {
            for op in operations(&mut item) {
                let id = op.operation_id.clone().expect("an operation id");
                assert!(ids.insert(id.clone()), "operation id {id} used twice");
                assert!(
                    op.summary.as_deref().is_some_and(|s| !s.is_empty()),
                    "{path} ({id}) has no summary"
                );
                for (status, response) in &op.responses.responses {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    if status.starts_with('4') || status.starts_with('5') {
                        assert_eq!(
                            response.content.keys().collect::<Vec<_>>(),
                            vec![PROBLEM],
                            "{path} ({id}) {status}"
                        );
                    }
                }
            }
        }
    }
}
