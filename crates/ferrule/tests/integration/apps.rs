//! Custom apps through the API and in the browser's place: bundles checked
//! as an attacker would build them (nothing kept when refused), files served
//! sandboxed, under a pass issued to the tenant's console users only (bound
//! to their session, ended by logout, unforgeable), the app's key handed in
//! its pages and at `ferrule.json` (reads, cannot write), the API open to
//! the app's opaque origin for bearer calls only, deleted with the app, and
//! apps gone with their tenant.

use std::io::{Cursor, Write};

use reqwest::Method;
use reqwest::StatusCode;
use serde_json::json;
use zip::write::SimpleFileOptions;

use crate::console::{Browser, Page};
use crate::mqtt_util::create_device;
use crate::util::{Api, Resp, Server, tenant_with_owner, viewer_editor_owner};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/app");

/// A zip of these entries, deflated.
pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, body) in entries {
        w.start_file(*name, SimpleFileOptions::default()).unwrap();
        w.write_all(body).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// The fixture app: an index.html, app.js that counts devices, app.css.
pub fn fixture_bundle() -> Vec<u8> {
    let read = |f: &str| std::fs::read(format!("{FIXTURE}/{f}")).unwrap();
    let (index, js, css) = (read("index.html"), read("app.js"), read("app.css"));
    zip_of(&[
        ("index.html", &index),
        ("app.js", &js),
        ("css/app.css", &css),
    ])
}

async fn upload(api: &Api, query: &str, bundle: &[u8]) -> Resp {
    api.raw(
        Method::POST,
        &format!("/api/v1/apps{query}"),
        Some((bundle, "application/zip")),
    )
    .await
}

/// What a console user's browser gets for an app's path: the plain path
/// (session cookie) redirects to the same file under a pass, which is then
/// fetched as the sandboxed page's own requests are — without any cookie.
/// Returns the passed URL and its answer; anything but a redirect to a pass
/// is returned as it came.
pub async fn open(server: &Server, browser: &mut Browser, path: &str) -> (String, Page) {
    let first = browser.get(path).await;
    if first.status != StatusCode::SEE_OTHER || !first.location().contains("/~") {
        return (path.to_owned(), first);
    }
    let passed = first.location().to_owned();
    (passed.clone(), Browser::new(server).get(&passed).await)
}

async fn app_count(api: &Api) -> usize {
    let r = api.get("/api/v1/apps").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn an_app_is_uploaded_served_with_its_policy_and_handed_its_key() {
    let server = Server::start().await;
    let admin = server.admin().await;
    create_device(&admin, "pump").await;
    let [viewer, editor, _owner] = viewer_editor_owner(&server, &admin).await;

    let r = upload(
        &editor,
        "?id=counter&name=Device%20count",
        &fixture_bundle(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["files"], 3);
    let url = r.json["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with("/apps/") && url.ends_with("/counter/"),
        "{url}"
    );
    let key_id = r.json["key_id"].as_str().unwrap().to_owned();
    assert_eq!(
        viewer.get("/api/v1/apps/counter").await.json["name"],
        "Device count"
    );
    assert_eq!(app_count(&viewer).await, 1);
    upload(&editor, "?id=counter", &fixture_bundle())
        .await
        .assert_problem(409);
    // Viewers read but do not upload, replace or delete.
    upload(&viewer, "?id=mine", &fixture_bundle())
        .await
        .assert_problem(403);
    viewer
        .raw(
            Method::PUT,
            "/api/v1/apps/counter",
            Some((&fixture_bundle(), "application/zip")),
        )
        .await
        .assert_problem(403);
    viewer
        .delete("/api/v1/apps/counter")
        .await
        .assert_problem(403);
    // The key is never above its creator; an editor may give it editor.
    upload(&editor, "?id=writer&role=owner", &fixture_bundle())
        .await
        .assert_problem(400);
    let r = upload(&editor, "?id=writer&role=editor", &fixture_bundle()).await;
    assert_eq!(r.status, 201, "{}", r.text);

    // Served to a console user of the tenant, under a pass, sandboxed.
    let mut browser = Browser::admin(&server).await;
    let (passed, index) = open(&server, &mut browser, &url).await;
    assert!(passed.starts_with(&format!("{url}~")), "{passed}");
    assert_eq!(index.status, StatusCode::OK, "{}", index.body);
    assert_eq!(index.headers["content-type"], "text/html; charset=utf-8");
    assert!(index.body.contains("<output id=\"count\">"));
    let csp = index.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("sandbox allow-scripts"), "{csp}");
    assert!(!csp.contains("allow-same-origin"), "{csp}");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("connect-src 'self' ws: wss:"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(index.headers["x-content-type-options"], "nosniff");
    assert_eq!(index.headers["cache-control"], "private, no-cache");
    assert_eq!(index.headers["referrer-policy"], "no-referrer");
    // Its settings, in the page itself.
    let meta_at = index
        .body
        .find("<meta name=\"ferrule\" content=\"")
        .unwrap();
    assert!(meta_at < index.body.find("<title>").unwrap());
    // Relative URLs under the pass reach the other files, without a cookie.
    let js = Browser::new(&server)
        .get(&format!("{}app.js", passed.trim_end_matches("index.html")))
        .await;
    assert_eq!(js.status, StatusCode::OK);
    assert_eq!(js.headers["content-type"], "text/javascript; charset=utf-8");
    let (_, css) = open(&server, &mut browser, &format!("{url}css/app.css")).await;
    assert_eq!(css.headers["content-type"], "text/css; charset=utf-8");
    let bare = browser.get(url.trim_end_matches('/')).await;
    assert_eq!(bare.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(bare.headers["location"], url.as_str());
    assert_eq!(
        open(&server, &mut browser, &format!("{url}nope.js"))
            .await
            .1
            .status,
        404
    );
    assert_eq!(
        open(&server, &mut browser, &format!("{url}..%2F..%2Fetc"))
            .await
            .1
            .status,
        404
    );
    // Without a session: to the login page; no file is shown, no pass.
    let anon = Browser::new(&server).get(&url).await;
    assert_eq!(anon.status, StatusCode::SEE_OTHER);
    assert!(anon.location().starts_with("/login"), "{}", anon.location());
    assert!(!anon.body.contains("count"));
    // A forged or retargeted pass opens nothing: back to the plain path.
    let forged = passed.replacen(".", ".0", 1);
    let r = Browser::new(&server).get(&forged).await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, url.as_str())
    );
    let pass = passed[url.len()..].trim_end_matches('/');
    let r = Browser::new(&server)
        .get(&format!("/apps/default/writer/{pass}/"))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/apps/default/writer/");

    // ferrule.json hands the key too: it reads the tenant's devices, cannot
    // create one, and is stored hashed like every key.
    let (_, settings) = open(&server, &mut browser, &format!("{url}ferrule.json")).await;
    assert_eq!(settings.status, StatusCode::OK);
    assert_eq!(settings.headers["cache-control"], "no-store");
    assert_eq!(settings.headers["access-control-allow-origin"], "*");
    let settings: serde_json::Value = serde_json::from_str(&settings.body).unwrap();
    assert_eq!(settings["api"], "/api/v1");
    assert_eq!(settings["stream"], "/api/v1/stream");
    let token = settings["token"].as_str().unwrap().to_owned();
    assert!(index.body.contains(&token), "the page holds the same key");
    let app_key = server.api(&token);
    let devices = app_key.get("/api/v1/devices").await;
    assert_eq!(devices.status, 200, "{}", devices.text);
    assert_eq!(devices.json["items"].as_array().unwrap().len(), 1);
    app_key
        .post("/api/v1/devices", json!({"id": "sneaky"}))
        .await
        .assert_problem(403);
    let key = admin.get(&format!("/api/v1/api-keys/{key_id}")).await;
    assert_eq!(
        (key.json["role"].clone(), key.json["name"].clone()),
        (json!("viewer"), json!("app counter"))
    );
    assert!(!key.text.contains(&token));

    // The app's opaque origin ("null") may call the API with its key: a
    // preflight is answered, credentials (cookies) never allowed.
    let client = reqwest::Client::new();
    let preflight = client
        .request(Method::OPTIONS, format!("{}/api/v1/devices", server.http))
        .header("origin", "null")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "null");
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
    let call = client
        .get(format!("{}/api/v1/devices", server.http))
        .header("origin", "null")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(call.status(), 200);
    assert_eq!(call.headers()["access-control-allow-origin"], "null");
    assert!(
        !call
            .headers()
            .contains_key("access-control-allow-credentials")
    );
    // The console's pages are for its own origin only.
    let page = client
        .get(format!("{}/login", server.http))
        .header("origin", "null")
        .send()
        .await
        .unwrap();
    assert!(!page.headers().contains_key("access-control-allow-origin"));

    // Replacing swaps the files; the key stays.
    let r = editor
        .raw(
            Method::PUT,
            "/api/v1/apps/counter",
            Some((&zip_of(&[("index.html", b"<p>v2</p>")]), "application/zip")),
        )
        .await;
    assert_eq!(
        (r.status, r.json["files"].clone()),
        (200, json!(1)),
        "{}",
        r.text
    );
    assert!(
        open(&server, &mut browser, &url)
            .await
            .1
            .body
            .contains("v2")
    );
    assert_eq!(
        open(&server, &mut browser, &format!("{url}app.js"))
            .await
            .1
            .status,
        404
    );
    assert_eq!(app_key.get("/api/v1/devices").await.status, 200);

    // Deleting the app deletes its files and its key.
    assert_eq!(editor.delete("/api/v1/apps/counter").await.status, 204);
    assert_eq!(browser.get(&url).await.status, 404);
    assert_eq!(Browser::new(&server).get(&passed).await.status, 404);
    assert_eq!(
        open(&server, &mut browser, &format!("{url}ferrule.json"))
            .await
            .1
            .status,
        404
    );
    app_key.get("/api/v1/devices").await.assert_problem(401);
    editor
        .delete("/api/v1/apps/counter")
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn refused_bundles_say_why_and_keep_nothing() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let keys_before = admin.get("/api/v1/api-keys").await.json["items"]
        .as_array()
        .unwrap()
        .len();
    let index: (&str, &[u8]) = ("index.html", b"<p>hi</p>");
    let zeros = vec![0u8; 51 * 1024 * 1024];
    let many: Vec<(String, Vec<u8>)> = (0..1001)
        .map(|i| (format!("f{i}.txt"), vec![b'x']))
        .collect();
    let mut many_entries: Vec<(&str, &[u8])> = vec![index];
    many_entries.extend(many.iter().map(|(n, b)| (n.as_str(), b.as_slice())));
    let symlink = {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file("index.html", SimpleFileOptions::default())
            .unwrap();
        w.write_all(b"x").unwrap();
        w.add_symlink("passwd", "/etc/passwd", SimpleFileOptions::default())
            .unwrap();
        w.finish().unwrap().into_inner()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "parent",
            zip_of(&[index, ("../evil.html", b"x")]),
            "leaves its folder",
        ),
        (
            "nested-parent",
            zip_of(&[index, ("a/../../evil", b"x")]),
            "leaves its folder",
        ),
        (
            "absolute",
            zip_of(&[index, ("/etc/cron.d/x", b"x")]),
            "absolute",
        ),
        (
            "backslash",
            zip_of(&[index, ("a\\..\\x", b"x")]),
            "backslash",
        ),
        (
            "bidi",
            zip_of(&[index, ("a\u{202E}lmth.js", b"x")]),
            "U+202E",
        ),
        (
            "bomb",
            zip_of(&[index, ("zeros", &zeros)]),
            "unpacks to more",
        ),
        ("many", zip_of(&many_entries), "more than 1000"),
        ("no-index", zip_of(&[("app.js", b"1")]), "index.html"),
        (
            "reserved",
            zip_of(&[index, ("ferrule.json", b"{}")]),
            "reserved",
        ),
        ("symlink", symlink, "symbolic link"),
        ("not-zip", b"PK\x03\x04 not really".to_vec(), "zip"),
    ];
    for (id, bundle, why) in cases {
        let r = upload(&admin, &format!("?id={id}"), &bundle).await;
        r.assert_problem(400);
        assert!(r.text.contains(why), "{id}: {}", r.text);
    }
    // Larger than the bundle limit: refused before unpacking.
    let big = vec![7u8; 10 * 1024 * 1024 + 1];
    upload(&admin, "?id=big", &big).await.assert_problem(413);
    // Not a zip by its type.
    admin
        .raw(
            Method::POST,
            "/api/v1/apps?id=json",
            Some((b"{}", "application/json")),
        )
        .await
        .assert_problem(400);

    assert_eq!(app_count(&admin).await, 0);
    let keys_after = admin.get("/api/v1/api-keys").await.json["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(keys_before, keys_after, "a refused bundle made no key");
}

#[tokio::test]
async fn another_tenants_app_is_not_found_and_goes_with_its_tenant() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let other = tenant_with_owner(&server, &admin, "other").await;
    let r = upload(&other, "?id=theirs", &fixture_bundle()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let url = r.json["url"].as_str().unwrap().to_owned();
    assert_eq!(url, "/apps/other/theirs/");

    // The owner of that tenant sees it; a user of another tenant does not.
    let mut theirs = Browser::new(&server);
    let login = theirs
        .login("owner@other.example", "owner-password", "/")
        .await;
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.body);
    let (passed, page) = open(&server, &mut theirs, &url).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let [viewer, ..] = viewer_editor_owner(&server, &admin).await;
    let _ = viewer;
    let mut stranger = Browser::new(&server);
    let login = stranger
        .login("v@x.io", crate::util::USER_PASSWORD, "/")
        .await;
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.body);
    for path in ["", "index.html", "app.js", "ferrule.json"] {
        let (_, r) = open(&server, &mut stranger, &format!("{url}{path}")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!r.body.contains("token"), "{path}");
    }
    // Nor through the API.
    admin.get("/api/v1/apps/theirs").await.assert_problem(404);

    // The app's key, then the tenant's deletion: app, files and key go.
    let (_, settings) = open(&server, &mut theirs, &format!("{url}ferrule.json")).await;
    let token = serde_json::from_str::<serde_json::Value>(&settings.body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(server.api(&token).get("/api/v1/devices").await.status, 200);
    // Logging out ends the passes that session was given.
    let csrf = theirs.get("/").await.csrf();
    let out = theirs.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let r = Browser::new(&server).get(&passed).await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, url.as_str())
    );
    assert_eq!(admin.delete("/api/v1/tenants/other").await.status, 204);
    assert_eq!(server.api(&token).get("/api/v1/devices").await.status, 401);
    let r = admin
        .post("/api/v1/tenants", json!({"id": "other", "name": "again"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        app_count(&admin.clone().with_header("X-Tenant", "other")).await,
        0
    );
}

/// The browser scenario: `tests/console/e2e-apps.mjs`.
#[tokio::test]
async fn custom_apps_work_in_a_real_browser() {
    crate::console_e2e::run_script("e2e-apps.mjs").await;
}
