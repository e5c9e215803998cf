//! The console's apps page over HTTP: listed, uploaded and replaced as the
//! page's script sends them (the zip with the CSRF header), refusals that
//! name the field, viewers refused, forgeries refused, deleted by its form.

use reqwest::StatusCode;
use serde_json::Value;

use crate::apps::{fixture_bundle, open, zip_of};
use crate::console::Browser;
use crate::util::{Server, USER_PASSWORD, viewer_editor_owner};

/// Posts `bundle` as `apps.js` does; the status and the JSON answer.
async fn send(
    server: &Server,
    b: &Browser,
    path: &str,
    bundle: &[u8],
    csrf: &str,
    origin: &str,
) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", server.http))
        .header(
            "cookie",
            format!("ferrule_session={}", b.session().unwrap()),
        )
        .header("x-csrf-token", csrf)
        .header("origin", origin)
        .header("content-type", "application/zip")
        .body(bundle.to_vec())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn apps_are_uploaded_replaced_and_deleted_from_the_console() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let mut b = Browser::admin(&s).await;
    let page = b.get("/apps").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("No apps yet"));
    assert!(page.body.contains("id=\"app-bundle\""));
    assert!(page.body.contains("aria-current=\"page\">Apps</a>"));
    let csrf = b.csrf().await;
    let origin = s.http.clone();

    // Refusals name the field.
    let (status, r) = send(&s, &b, "/apps/-/upload?id=x", b"nope", &csrf, &origin).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(r["field"], "bundle");
    assert!(r["error"].as_str().unwrap().contains("zip"), "{r}");
    let (status, r) = send(
        &s,
        &b,
        "/apps/-/upload?id=-bad",
        &fixture_bundle(),
        &csrf,
        &origin,
    )
    .await;
    assert_eq!(
        (status, r["field"].clone()),
        (StatusCode::BAD_REQUEST, "id".into())
    );
    let (status, r) = send(
        &s,
        &b,
        "/apps/-/upload?role=owner",
        &fixture_bundle(),
        &csrf,
        &origin,
    )
    .await;
    assert_eq!(
        (status, r["field"].clone()),
        (StatusCode::BAD_REQUEST, "role".into())
    );

    // Forged: a wrong token, another origin.
    let (status, _) = send(
        &s,
        &b,
        "/apps/-/upload?id=f1",
        &fixture_bundle(),
        "00ff",
        &origin,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = send(
        &s,
        &b,
        "/apps/-/upload?id=f2",
        &fixture_bundle(),
        &csrf,
        "http://evil.example",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        admin.get("/api/v1/apps").await.json["items"],
        serde_json::json!([])
    );

    // Uploaded, listed with its link.
    let (status, r) = send(
        &s,
        &b,
        "/apps/-/upload?id=counter&name=Counter",
        &fixture_bundle(),
        &csrf,
        &origin,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let url = r["url"].as_str().unwrap().to_owned();
    assert!(url.ends_with("/counter/"));
    let (status, r) = send(
        &s,
        &b,
        "/apps/-/upload?id=counter",
        &fixture_bundle(),
        &csrf,
        &origin,
    )
    .await;
    assert_eq!(
        (status, r["field"].clone()),
        (StatusCode::CONFLICT, "id".into())
    );
    let page = b.get("/apps").await;
    // Autoescaped: `/` is `&#x2f;` in attributes.
    assert!(
        page.body
            .contains(&format!("href=\"{}\"", url.replace('/', "&#x2f;")))
    );
    assert!(page.body.contains("Delete Counter"));
    assert_eq!(open(&s, &mut b, &url).await.1.status, StatusCode::OK);

    // Replaced.
    let v2 = zip_of(&[("index.html", b"<p>second</p>")]);
    let (status, _) = send(&s, &b, "/apps/-/counter/replace", &v2, &csrf, &origin).await;
    assert_eq!(status, StatusCode::OK);
    assert!(open(&s, &mut b, &url).await.1.body.contains("second"));

    // A viewer sees the list, no upload form, and is refused anyway.
    viewer_editor_owner(&s, &admin).await;
    let mut viewer = Browser::new(&s);
    viewer.login("v@x.io", USER_PASSWORD, "/apps").await;
    let page = viewer.get("/apps").await;
    assert!(page.body.contains("Counter"));
    assert!(!page.body.contains("id=\"app-bundle\""));
    assert!(!page.body.contains("Delete Counter"));
    let vcsrf = viewer.csrf().await;
    let (status, r) = send(
        &s,
        &viewer,
        "/apps/-/upload?id=mine",
        &fixture_bundle(),
        &vcsrf,
        &origin,
    )
    .await;
    assert_eq!(
        (status, r["field"].clone()),
        (StatusCode::FORBIDDEN, "form".into())
    );
    let r = viewer
        .post("/apps/-/counter/delete", &[("csrf", &vcsrf)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Deleted by its form (a forged one first).
    let r = b.post("/apps/-/counter/delete", &[("csrf", "bad")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = b.post("/apps/-/counter/delete", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/apps");
    assert_eq!(b.get(&url).await.status, StatusCode::NOT_FOUND);
    assert!(b.get("/apps").await.body.contains("No apps yet"));
}
