//! Health, readiness, metrics and the OpenAPI document.

use serde_json::json;

use crate::util::Server;

#[tokio::test]
async fn health_readiness_and_metrics() {
    let s = Server::start().await;
    let h = s.anon().get("/healthz").await;
    assert_eq!((h.status, h.json["status"].as_str()), (200, Some("ok")));
    let r = s.anon().get("/readyz").await;
    assert_eq!((r.status, r.json["status"].as_str()), (200, Some("ready")));
    let admin = s.admin().await;
    admin.get("/api/v1/devices").await;
    admin.get("/api/v1/devices/missing").await;
    let m = s.anon().get("/metrics").await;
    assert_eq!(m.status, 200);
    assert!(m.content_type.starts_with("text/plain"));
    let text = m.text;
    assert!(
        text.contains(&format!(
            "ferrule_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    // Requests by route template and status, never by raw path.
    assert!(
        text.contains(
            r#"ferrule_http_requests_total{route="/api/v1/devices",method="GET",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"ferrule_http_requests_total{route="/api/v1/devices/{id}",method="GET",status="404"} 1"#), "{text}");
    assert!(!text.contains("/api/v1/devices/missing"));
    assert!(
        text.contains("ferrule_http_request_duration_seconds_bucket{"),
        "latency is a histogram: {text}"
    );
    s.stop().await;
}

#[tokio::test]
async fn the_api_reference_is_a_self_contained_page_of_every_operation() {
    let s = Server::start().await;
    let anon = s.anon();
    let page = anon.get("/api/docs").await;
    assert_eq!(page.status, 200);
    assert!(
        page.content_type.starts_with("text/html"),
        "{}",
        page.content_type
    );
    let api = anon.get("/api/openapi.json").await.json;
    for (path, ops) in api["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            // The page escapes `/` in text; compare on the escaped form.
            let shown = path.replace('/', "&#x2f;");
            assert!(
                page.text.contains(&format!(
                    "{}</span> <code>{shown}</code>",
                    method.to_uppercase()
                )),
                "{method} {path} is not on /api/docs"
            );
        }
    }
    // Served from the binary: no script, nothing loaded from another origin.
    assert!(!page.text.contains("<script"));
    assert!(!page.text.contains("src=\"http") && !page.text.contains("href=\"http"));
    let css = anon.get("/api/docs/style.css").await;
    assert_eq!(css.status, 200);
    assert!(
        css.content_type.starts_with("text/css"),
        "{}",
        css.content_type
    );
    s.stop().await;
}

#[tokio::test]
async fn openapi_describes_every_route_and_every_described_route_exists() {
    let s = Server::start().await;
    let api = s.anon().get("/api/openapi.json").await;
    assert_eq!(api.status, 200);
    assert!(api.json["openapi"].as_str().unwrap().starts_with("3."));
    let paths = api.json["paths"].as_object().unwrap();
    for expected in [
        "/api/v1/auth/login",
        "/api/v1/auth/logout",
        "/api/v1/tenants",
        "/api/v1/tenants/{id}",
        "/api/v1/users",
        "/api/v1/users/{id}",
        "/api/v1/api-keys",
        "/api/v1/api-keys/{id}",
        "/api/v1/devices",
        "/api/v1/devices/{id}",
        "/api/v1/devices/{id}/credentials",
        "/api/v1/devices/{id}/credentials/{credential_id}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/openapi.json",
        "/api/docs",
    ] {
        assert!(paths.contains_key(expected), "{expected} is not described");
    }
    // Each described operation is served (no route-level 404 or 405).
    let admin = s.admin().await;
    for (path, ops) in paths {
        let concrete = path.replace("{id}", "x").replace("{credential_id}", "x");
        for method in ops.as_object().unwrap().keys() {
            let r = admin
                .send(
                    method.to_uppercase().parse().unwrap(),
                    &concrete,
                    (method != "get" && method != "delete").then(|| json!({})),
                )
                .await;
            assert_ne!(r.status, 405, "{method} {path}");
            if r.status == 404 {
                assert_ne!(
                    r.json["detail"], "route not found",
                    "{method} {path} is described but not routed"
                );
            }
        }
    }
    s.stop().await;
}
