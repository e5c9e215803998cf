//! The web console as a browser (and an attacker) would use it: login and
//! its cookie, CSRF, the content security policy, hashed assets, open
//! redirects, roles and tenants. The end-to-end run in a real browser is
//! `console_e2e`.

use std::collections::HashMap;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

use crate::util::{ADMIN_EMAIL, ADMIN_PASSWORD, Server, USER_PASSWORD, viewer_editor_owner};

/// A browser without JavaScript: keeps cookies, does not follow redirects.
pub struct Browser {
    base: String,
    client: reqwest::Client,
    cookies: HashMap<String, String>,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no Location: {} {}", self.status, self.body))
    }

    /// The `Set-Cookie` line for `name`.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    /// The value of the first hidden `csrf` field.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no csrf field in {}", self.body));
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
}

impl Browser {
    pub fn new(server: &Server) -> Self {
        Self {
            base: server.http.clone(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(SET_COOKIE) {
            let v = v.to_str().unwrap();
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_owned(), value.to_owned());
    }

    pub fn session(&self) -> Option<&str> {
        self.cookies.get("ferrule_session").map(String::as_str)
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let r = req
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        self.keep_cookies(&headers);
        Page {
            status,
            headers,
            body: r.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let req = self.client.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    /// A form post as a browser sends it from one of our pages.
    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let origin = self.base.clone();
        self.post_from(path, form, Some(&origin)).await
    }

    pub async fn post_from(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        origin: Option<&str>,
    ) -> Page {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let body = form_body(form);
        self.send(req.body(body)).await
    }

    /// Logs in through the form; returns the answer to the POST.
    pub async fn login(&mut self, email: &str, password: &str, next: &str) -> Page {
        let form = self.get(&format!("/login?next={}", enc(next))).await;
        assert_eq!(form.status, 200, "{}", form.body);
        let csrf = form.csrf();
        self.post(
            "/login",
            &[
                ("email", email),
                ("password", password),
                ("next", next),
                ("csrf", &csrf),
            ],
        )
        .await
    }

    /// Logged in as the first admin, or panics.
    pub async fn admin(server: &Server) -> Self {
        let mut b = Self::new(server);
        let r = b.login(ADMIN_EMAIL, ADMIN_PASSWORD, "/").await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        b
    }

    /// The CSRF token of a page of this session.
    pub async fn csrf(&mut self) -> String {
        self.get("/devices").await.csrf()
    }

    /// A form post as htmx sends it (asking for a fragment).
    pub async fn post_htmx(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", self.base.clone())
            .header("hx-request", "true")
            .body(form_body(form));
        self.send(req).await
    }
}

fn enc(s: &str) -> String {
    url_encode(s)
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn form_body(form: &[(&str, &str)]) -> String {
    form.iter()
        .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test]
async fn login_sets_a_strict_session_cookie_and_logout_ends_the_session() {
    let s = Server::start().await;
    let mut b = Browser::new(&s);
    let r = b.login(ADMIN_EMAIL, ADMIN_PASSWORD, "/devices").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), "/devices");
    let cookie = r.set_cookie("ferrule_session").expect("a session cookie");
    assert!(cookie.starts_with("ferrule_session=fs_"), "{cookie}");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP: no Secure: {cookie}"
    );
    let token = b.session().unwrap().to_owned();

    let page = b.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Overview"), "{}", page.body);
    // The token is the API's session: it works as a Bearer…
    assert_eq!(s.api(&token).get("/api/v1/auth/me").await.status, 200);
    // …and it never appears in a page.
    assert!(!page.body.contains(&token));

    let csrf = page.csrf();
    let out = b.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/login");
    assert!(
        out.set_cookie("ferrule_session")
            .unwrap()
            .contains("Max-Age=0")
    );
    // Ended on the server, not only forgotten by the browser.
    assert_eq!(s.api(&token).get("/api/v1/auth/me").await.status, 401);
    let mut replay = Browser::new(&s);
    replay.set_cookie("ferrule_session", &token);
    assert_eq!(replay.get("/").await.status, StatusCode::SEE_OTHER);
    s.stop().await;
}

#[tokio::test]
async fn a_wrong_password_says_so_and_sets_no_session() {
    let s = Server::start().await;
    let mut b = Browser::new(&s);
    let r = b.login(ADMIN_EMAIL, "not-the-password", "/").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("Wrong email or password"), "{}", r.body);
    assert!(r.set_cookie("ferrule_session").is_none());
    // The email is kept in the form, escaped.
    let r = b.login("<b>x</b>@example.com", "nope", "/").await;
    assert!(
        r.body.contains("&lt;b&gt;x&lt;&#x2f;b&gt;@example.com"),
        "{}",
        r.body
    );
    // A login form not from our page is refused before any password check.
    let mut other = Browser::new(&s);
    let r = other
        .post(
            "/login",
            &[
                ("email", ADMIN_EMAIL),
                ("password", ADMIN_PASSWORD),
                ("csrf", "00"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.set_cookie("ferrule_session").is_none());
    s.stop().await;
}

#[tokio::test]
async fn pages_without_a_session_go_to_login_and_come_back() {
    let s = Server::start().await;
    let mut b = Browser::new(&s);
    for path in ["/", "/devices?q=pump", "/devices/pump-1"] {
        let r = b.get(path).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(r.location(), format!("/login?next={}", enc(path)), "{path}");
    }
    // An htmx fragment asks the browser to load the login page instead.
    let r = b
        .send(
            b.client
                .get(format!("{}/overview/stats", s.http))
                .header("hx-request", "true")
                .header("hx-current-url", format!("{}/", s.http)),
        )
        .await;
    assert_eq!(r.headers["hx-redirect"], "/login?next=%2F");
    s.stop().await;
}

#[tokio::test]
async fn login_never_redirects_to_another_site() {
    let s = Server::start().await;
    for next in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "evil.example",
        "javascript:alert(1)",
    ] {
        let mut b = Browser::new(&s);
        let r = b.login(ADMIN_EMAIL, ADMIN_PASSWORD, next).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{next}");
        assert_eq!(r.location(), "/", "{next}");
        // Already logged in: the login page goes on, also only locally.
        let r = b.get(&format!("/login?next={}", enc(next))).await;
        assert_eq!(r.location(), "/", "{next}");
    }
    s.stop().await;
}

#[tokio::test]
async fn forged_posts_are_refused_and_change_nothing() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let mut b = Browser::admin(&s).await;
    let csrf = b.csrf().await;
    let origin = s.http.clone();
    // Why, the form posted, the Origin it comes from.
    type Forgery<'a> = (&'a str, Vec<(&'a str, &'a str)>, Option<&'a str>);
    let cases: [Forgery; 4] = [
        ("no token", vec![("id", "forged-1")], Some(&origin)),
        (
            "wrong token",
            vec![("id", "forged-2"), ("csrf", "deadbeef")],
            Some(&origin),
        ),
        (
            "empty token",
            vec![("id", "forged-3"), ("csrf", "")],
            Some(&origin),
        ),
        (
            "right token, other origin",
            vec![("id", "forged-4"), ("csrf", &csrf)],
            Some("http://evil.example"),
        ),
    ];
    for (why, form, from) in cases {
        let r = b.post_from("/devices", &form, from).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{why}: {}", r.body);
        assert!(
            r.body.contains("Reload the page") || r.body.contains("another site"),
            "{why}: {}",
            r.body
        );
        let id = form[0].1;
        assert_eq!(
            admin.get(&format!("/api/v1/devices/{id}")).await.status,
            404,
            "{why}"
        );
    }
    // A token sent as htmx does, but wrong: refused too.
    let r = b
        .send(
            b.client
                .post(format!("{}/devices/x/delete", s.http))
                .header("x-csrf-token", "00ff"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Cross-site by the browser's own account.
    let r = b
        .send(
            b.client
                .post(format!("{}/logout", s.http))
                .header("sec-fetch-site", "cross-site")
                .header("x-csrf-token", &csrf),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        s.api(b.session().unwrap())
            .get("/api/v1/auth/me")
            .await
            .status,
        200
    );
    // The real form works.
    let r = b
        .post("/devices", &[("id", "real-1"), ("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(admin.get("/api/v1/devices/real-1").await.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn the_session_cookie_does_not_authenticate_the_api() {
    let s = Server::start().await;
    let b = Browser::admin(&s).await;
    let r = b
        .client
        .get(format!("{}/api/v1/auth/me", s.http))
        .header("cookie", b.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = b
        .client
        .post(format!("{}/api/v1/devices", s.http))
        .header("cookie", b.cookie_header())
        .header("content-type", "application/json")
        .body(r#"{"id":"via-cookie"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    s.stop().await;
}

#[tokio::test]
async fn console_pages_allow_only_their_own_scripts_and_styles() {
    let s = Server::start().await;
    let mut b = Browser::admin(&s).await;
    let mut anonymous = Browser::new(&s);
    for path in ["/", "/devices", "/login?next=/"] {
        let r = if path.starts_with("/login") {
            anonymous.get(path).await
        } else {
            b.get(path).await
        };
        assert_eq!(r.status, 200, "{path}");
        let csp = r.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        for want in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(want), "{path}: {want} in {csp}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{path}: {csp}"
        );
        // Nothing inline that the policy would block anyway.
        assert!(
            !r.body.contains("<script>")
                && !r.body.contains(" style=")
                && !r.body.contains("hx-on"),
            "{path}"
        );
        assert_eq!(r.headers["x-frame-options"], "DENY");
        // Same-origin posts keep their Origin for the CSRF check.
        assert_eq!(r.headers["referrer-policy"], "same-origin");
    }
    // The API reference keeps its stricter policy: no script at all.
    let docs = b.get("/api/docs").await;
    let csp = docs.headers["content-security-policy"].to_str().unwrap();
    assert!(!csp.contains("script-src"), "{csp}");
    s.stop().await;
}

#[tokio::test]
async fn assets_are_served_at_hashed_immutable_urls_only() {
    let s = Server::start().await;
    let mut b = Browser::new(&s);
    let login = b.get("/login").await;
    let urls: Vec<String> = login
        .body
        .split('"')
        .filter(|p| p.starts_with("/assets/"))
        .map(str::to_owned)
        .collect();
    assert!(urls.len() >= 3, "{urls:?}");
    for url in &urls {
        let r = b.get(url).await;
        assert_eq!(r.status, 200, "{url}");
        assert_eq!(
            r.headers["cache-control"], "public, max-age=31536000, immutable",
            "{url}"
        );
        let name = url.rsplit('/').next().unwrap();
        let parts: Vec<_> = name.split('.').collect();
        let hash = parts[parts.len() - 2];
        assert!(
            hash.len() == 8 && hash.chars().all(|c| c.is_ascii_hexdigit()),
            "{url}"
        );
    }
    let css = urls.iter().find(|u| u.contains("/app.")).unwrap();
    assert!(
        b.get(css).await.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/")
    );
    for missing in [
        "/assets/app.css",
        "/assets/app.00000000.css",
        "/assets/LICENSE",
        "/assets/..%2Fconsole.rs",
    ] {
        assert_eq!(b.get(missing).await.status, 404, "{missing}");
    }
    s.stop().await;
}

#[tokio::test]
async fn a_viewer_cannot_create_or_delete_devices_through_the_console() {
    let s = Server::start().await;
    let admin = s.admin().await;
    viewer_editor_owner(&s, &admin).await;
    assert_eq!(
        admin
            .post("/api/v1/devices", serde_json::json!({"id": "kept"}))
            .await
            .status,
        201
    );
    let mut viewer = Browser::new(&s);
    let r = viewer.login("v@x.io", USER_PASSWORD, "/devices").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = viewer.get("/devices").await;
    assert!(
        !page.body.contains("Add a device"),
        "no create form for viewers"
    );
    let csrf = page.csrf();
    let r = viewer
        .post("/devices", &[("id", "by-viewer"), ("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("your role may only read"), "{}", r.body);
    assert_eq!(admin.get("/api/v1/devices/by-viewer").await.status, 404);
    let r = viewer
        .post("/devices/kept/delete", &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(admin.get("/api/v1/devices/kept").await.status, 200);
    // A viewer's tenant cookie is ignored: it never leaves its tenant.
    viewer.set_cookie("ferrule_tenant", "other");
    let r = viewer
        .post("/tenant", &[("tenant", "default"), ("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    s.stop().await;
}

#[tokio::test]
async fn invalid_or_duplicate_ids_are_shown_next_to_the_field() {
    let s = Server::start().await;
    let mut b = Browser::admin(&s).await;
    let csrf = b.csrf().await;
    let r = b
        .post("/devices", &[("id", "bad id!"), ("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("id=\"device-id-error\""), "{}", r.body);
    assert!(r.body.contains("aria-invalid=\"true\""));
    assert!(
        r.body.contains("value=\"bad id!\""),
        "the form keeps what was typed"
    );
    let created = b
        .post(
            "/devices",
            &[("id", "pump-1"), ("name", "Pump"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert!(
        created.body.contains("mosquitto_pub -h 127.0.0.1 -p "),
        "{}",
        created.body
    );
    assert!(created.body.contains("devices/pump-1/telemetry"));
    assert!(created.body.contains("paho.mqtt.client"));
    let dup = b
        .post("/devices", &[("id", "pump-1"), ("csrf", &csrf)])
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert!(dup.body.contains("id=\"device-id-error\""), "{}", dup.body);
    s.stop().await;
}

#[tokio::test]
async fn an_admin_switches_tenant_and_sees_only_that_tenants_devices() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let owner = crate::util::tenant_with_owner(&s, &admin, "acme").await;
    assert_eq!(
        owner
            .post("/api/v1/devices", serde_json::json!({"id": "acme-dev"}))
            .await
            .status,
        201
    );
    let mut b = Browser::admin(&s).await;
    assert!(!b.get("/devices").await.body.contains("acme-dev"));
    let csrf = b.csrf().await;
    let r = b
        .post("/tenant", &[("tenant", "acme"), ("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(b.get("/devices").await.body.contains("acme-dev"));
    let r = b
        .post("/tenant", &[("tenant", "no-such"), ("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // The owner of acme, given a cookie naming `default`, stays in acme.
    let mut o = Browser::new(&s);
    assert_eq!(
        o.login("owner@acme.example", "owner-password", "/")
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    o.set_cookie("ferrule_tenant", "default");
    let page = o.get("/devices").await;
    assert!(
        page.body.contains("acme-dev") && page.body.contains("<strong>acme</strong>"),
        "{}",
        page.body
    );
    s.stop().await;
}

#[tokio::test]
async fn the_live_stream_takes_the_session_cookie_only_from_this_origin() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let s = Server::start().await;
    let b = Browser::admin(&s).await;
    let ws_url = format!(
        "{}/live?filter=devices/%2B/telemetry",
        s.http.replace("http://", "ws://")
    );
    let request = |origin: Option<&str>| {
        let mut req = ws_url.as_str().into_client_request().unwrap();
        req.headers_mut()
            .insert("cookie", b.cookie_header().parse().unwrap());
        if let Some(o) = origin {
            req.headers_mut().insert("origin", o.parse().unwrap());
        }
        req
    };
    for origin in [Some("http://evil.example"), None] {
        let err = tokio_tungstenite::connect_async(request(origin))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("403"), "{origin:?}: {err}");
    }
    let (_ws, resp) = tokio_tungstenite::connect_async(request(Some(&s.http)))
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    s.stop().await;
}

/// Logs in over HTTPS with Python's TLS stack (the test's reqwest has no
/// TLS) and prints each `Set-Cookie` of the login answer.
const HTTPS_LOGIN: &str = r#"
import http.client, re, ssl, sys, urllib.parse
address, ca, email, password = sys.argv[1:5]
host, port = address.rsplit(":", 1)
conn = http.client.HTTPSConnection(host, int(port), context=ssl.create_default_context(cafile=ca))
conn.request("GET", "/login")
r = conn.getresponse()
page = r.read().decode()
nonce = [c.split(";")[0] for c in r.headers.get_all("Set-Cookie") if c.startswith("ferrule_login=")][0]
csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
body = urllib.parse.urlencode({"email": email, "password": password, "csrf": csrf, "next": "/"})
conn.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded",
    "Cookie": nonce, "Origin": "https://" + address})
r = conn.getresponse()
r.read()
print(r.status)
for c in r.headers.get_all("Set-Cookie"):
    print(c)
"#;

#[tokio::test]
async fn over_https_the_session_cookie_is_secure() {
    let b = crate::util::ServerBuilder::new();
    let ca = b.dir().join("server.pem");
    let s = b.self_signed_tls(&["localhost", "127.0.0.1"]).start().await;
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(HTTPS_LOGIN)
        .arg(s.listed_address("HTTPS"))
        .arg(&ca)
        .arg(ADMIN_EMAIL)
        .arg(ADMIN_PASSWORD)
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("303"), "{stdout}");
    let session = stdout
        .lines()
        .find(|l| l.starts_with("ferrule_session=fs_"))
        .unwrap_or_else(|| panic!("no session cookie: {stdout}"));
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Secure"] {
        assert!(session.contains(flag), "{flag} in {session}");
    }
    s.stop().await;
}

#[tokio::test]
async fn console_logins_back_off_like_api_logins() {
    let s = crate::util::ServerBuilder::new()
        .config_file(
            "[auth]\nfailures_before_backoff = 3\nsource_failures_before_backoff = 100\n\
             min_backoff = \"2s\"\nmax_backoff = \"4s\"\n",
        )
        .start()
        .await;
    let mut b = Browser::new(&s);
    for _ in 0..3 {
        let r = b.login(ADMIN_EMAIL, "wrong", "/").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Backing off: the right password is refused too, with the wait.
    let r = b.login(ADMIN_EMAIL, ADMIN_PASSWORD, "/").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.body.contains("too many failed logins"), "{}", r.body);
    assert!(r.headers.contains_key("retry-after"));
    assert!(r.set_cookie("ferrule_session").is_none());
    // The same counter as the API's login: it backs off there too.
    let api = s
        .anon()
        .post(
            "/api/v1/auth/login",
            serde_json::json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(api.status, 429);
    s.stop().await;
}

#[tokio::test]
async fn the_device_list_searches_filters_and_pages() {
    let s = Server::start().await;
    let admin = s.admin().await;
    for i in 0..55 {
        let mut device =
            serde_json::json!({"id": format!("pump-{i:02}"), "name": format!("Pump {i}")});
        if i % 10 == 0 {
            device["attributes"] = serde_json::json!({"labels": {"site": "north"}});
        }
        assert_eq!(admin.post("/api/v1/devices", device).await.status, 201);
    }
    let mut b = Browser::admin(&s).await;
    let ids = |body: &str| -> Vec<String> {
        body.split("<td><a href=\"/devices/")
            .skip(1)
            .map(|rest| rest[..rest.find('"').unwrap()].to_owned())
            .collect()
    };
    let page = b.get("/devices").await;
    let first = ids(&page.body);
    assert_eq!(first.len(), 50, "{first:?}");
    assert!(page.body.contains("Next page"));
    let next = page.body.split("href=\"").find_map(|p| {
        let url = &p[..p.find('"')?];
        url.contains("after=")
            .then(|| url.replace("&amp;", "&").replace("&#x2f;", "/"))
    });
    let second = b.get(&next.expect("a next-page link")).await;
    assert_eq!(ids(&second.body).len(), 5);
    assert!(second.body.contains("First page"));
    // Search by name (any case) and by id.
    assert_eq!(ids(&b.get("/devices?q=PUMP+7").await.body), ["pump-07"]);
    assert_eq!(ids(&b.get("/devices?q=pump-12").await.body), ["pump-12"]);
    let north = ids(&b.get("/devices?label=site%3Dnorth").await.body);
    assert_eq!(
        north,
        [
            "pump-00", "pump-10", "pump-20", "pump-30", "pump-40", "pump-50"
        ]
    );
    assert!(ids(&b.get("/devices?state=online").await.body).is_empty());
    assert!(
        b.get("/devices?state=online")
            .await
            .body
            .contains("No devices match")
    );
    // An htmx search gets the rows alone.
    let fragment = b
        .send(
            b.client
                .get(format!("{}/devices?q=pump-33", s.http))
                .header("hx-request", "true")
                .header("hx-target", "device-list"),
        )
        .await;
    assert!(!fragment.body.contains("<html"), "{}", fragment.body);
    assert_eq!(ids(&fragment.body), ["pump-33"]);
    s.stop().await;
}

/// The first `…/credentials/ID/rotate` form's credential id on a page.
fn credential_id(body: &str) -> String {
    let at = body
        .find("/credentials/")
        .unwrap_or_else(|| panic!("no credential on the page: {body}"));
    let rest = &body[at + "/credentials/".len()..];
    rest[..rest.find('/').unwrap()].to_owned()
}

#[tokio::test]
async fn credentials_rotate_and_revoke_and_devices_delete_through_the_console() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let mut b = Browser::admin(&s).await;
    let csrf = b.csrf().await;
    let created = b
        .post("/devices", &[("id", "valve"), ("csrf", &csrf)])
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let token = |page: &Page| {
        let at = page.body.find("id=\"device-token\"").unwrap();
        let rest = &page.body[at..];
        let v = rest.find("value=\"").unwrap() + "value=\"".len();
        rest[v..v + rest[v..].find('"').unwrap()].to_owned()
    };
    let first = token(&created);
    let ingest = |t: String| {
        let api = s.api(&t);
        async move {
            api.post("/api/v1/ingest/telemetry", serde_json::json!({"temp": 20}))
                .await
                .status
        }
    };
    assert_eq!(ingest(first.clone()).await, 204);

    let page = b.get("/devices/valve").await;
    assert_eq!(page.status, 200);
    let credential = credential_id(&page.body);
    let rotated = b
        .post(
            &format!("/devices/valve/credentials/{credential}/rotate"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let second = token(&rotated);
    assert_ne!(first, second);
    assert_eq!(ingest(first).await, 401, "the old token stops working");
    assert_eq!(ingest(second.clone()).await, 204);
    // The page after rotation is not kept by the browser.
    assert_eq!(rotated.headers["cache-control"], "no-store");

    let revoked = b
        .post(
            &format!("/devices/valve/credentials/{credential}/revoke"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    assert_eq!(revoked.location(), "/devices/valve");
    assert_eq!(ingest(second).await, 401);
    assert!(
        b.get("/devices/valve")
            .await
            .body
            .contains("No credentials")
    );

    let confirm = b.get("/devices/valve/delete").await;
    assert!(confirm.body.contains("Delete valve?"));
    let deleted = b.post("/devices/valve/delete", &[("csrf", &csrf)]).await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert_eq!(admin.get("/api/v1/devices/valve").await.status, 404);
    let gone = b.get("/devices/valve").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert!(gone.body.contains("device not found"), "{}", gone.body);
    s.stop().await;
}

#[tokio::test]
async fn the_overview_and_the_history_read_the_tenants_data() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let r = admin
        .post("/api/v1/devices", serde_json::json!({"id": "meter"}))
        .await;
    let token = r.json["token"].as_str().unwrap().to_owned();
    assert_eq!(
        admin
            .post("/api/v1/devices", serde_json::json!({"id": "spare"}))
            .await
            .status,
        201
    );
    for v in [1.0, 2.0, 3.0] {
        let r = s
            .api(&token)
            .post(
                "/api/v1/ingest/telemetry",
                serde_json::json!({"power": v, "mode": "eco"}),
            )
            .await;
        assert_eq!(r.status, 204);
    }
    let mut b = Browser::admin(&s).await;
    let overview = b.get("/").await;
    assert!(
        overview
            .body
            .contains("<span id=\"devices-online\">0</span>"),
        "{}",
        overview.body
    );
    assert!(
        overview.body.contains(">2</a>"),
        "two devices: {}",
        overview.body
    );
    let stats = b.get("/overview/stats").await;
    assert!(!stats.body.contains("<html") && stats.body.contains("Open alarms"));

    // The history picks a bucket that keeps the range under 1,000 points
    // and averages the stored values in it.
    let history =
        |range: &str, key: &str| format!("/devices/meter/history?range={range}&key={key}");
    let r = b.get(&history("15m", "power")).await;
    assert_eq!(r.status, 200);
    let json: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(json["interval"], "1s");
    assert_eq!(json["key"], "power");
    assert_eq!(json["keys"], serde_json::json!(["mode", "power"]));
    let values: Vec<f64> = json["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_f64())
        .collect();
    assert!(
        !values.is_empty() && values.iter().all(|v| (1.0..=3.0).contains(v)),
        "{json}"
    );
    assert!(json["to"].as_f64().unwrap() - json["from"].as_f64().unwrap() == 900.0);
    let r: serde_json::Value =
        serde_json::from_str(&b.get(&history("30d", "power")).await.body).unwrap();
    assert_eq!(r["interval"], "1h");
    let day: serde_json::Value =
        serde_json::from_str(&b.get(&history("24h", "power")).await.body).unwrap();
    assert_eq!(
        day["values"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v.is_number())
            .count(),
        1
    );
    assert!(
        (day["values"][0].as_f64().unwrap() - 2.0).abs() < 1e-9,
        "{day}"
    );
    // An unknown key falls back to the first; another tenant's device is
    // not found.
    let r: serde_json::Value =
        serde_json::from_str(&b.get(&history("1h", "nope")).await.body).unwrap();
    assert_eq!(r["key"], "mode");
    assert_eq!(b.get("/devices/nothing/history").await.status, 404);

    let page = b.get("/devices/meter").await;
    assert!(
        page.body.contains("<td>power</td><td>3</td>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("data-url=\"/devices/meter/history\""));
    s.stop().await;
}
