//! Headers for browsers: HTML pages carry a Content-Security-Policy and the
//! anti-framing, no-sniff and referrer headers; every response no-sniff.

use crate::util::Server;

#[tokio::test]
async fn html_pages_carry_the_security_headers() {
    let s = Server::start().await;
    for path in ["/", "/api/docs"] {
        let r = s.anon().get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.content_type.starts_with("text/html"), "{path}");
        let h = |name: &str| {
            r.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("{path} has no {name}: {:?}", r.headers))
                .to_owned()
        };
        let csp = h("content-security-policy");
        for directive in [
            "default-src 'none'",
            "frame-ancestors 'none'",
            "style-src 'self'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert_eq!(h("x-content-type-options"), "nosniff");
        assert_eq!(h("x-frame-options"), "DENY");
        // The console (`/` → its login page) keeps same-origin referrers:
        // its CSRF check reads `Origin`, which `no-referrer` would null.
        let referrer = if path == "/" {
            "same-origin"
        } else {
            "no-referrer"
        };
        assert_eq!(h("referrer-policy"), referrer, "{path}");
    }
    // The page's one stylesheet is allowed by its policy ('self').
    let css = s.anon().get("/api/docs/style.css").await;
    assert_eq!(css.status, 200);
    let r = s.anon().get("/healthz").await;
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    s.stop().await;
}
