//! One HTTP attempt of a webhook call, bounded in time and in what it reads.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, Url, redirect};

use super::guard::{self, GuardedResolver, HostLookup};
use super::retry::Attempt;
use super::{WebhookRefused, WebhookRequest};

/// Largest request body, in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most headers on a request.
pub const MAX_HEADERS: usize = 64;
/// Largest size of a request's headers, names and values together.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// How much of a response body is read (to free the connection and to
/// quote the endpoint's error); the rest is dropped.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// How much of an error response is quoted in the error.
const QUOTED_BYTES: usize = 256;

/// The methods a webhook may use.
const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// A request checked and ready to send as often as needed.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

/// Checks a request (URL, method, headers, body size) and turns it into
/// what the client sends. Refuses rather than truncates.
pub fn prepare(request: &WebhookRequest, allow_private: bool) -> Result<Prepared, WebhookRefused> {
    let url = guard::check_url(&request.url, allow_private)?;
    let invalid = |why: String| Err(WebhookRefused::Invalid(why));
    let method = match METHODS
        .iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(request.method.trim()))
    {
        Some(m) => m.clone(),
        None => {
            return invalid(format!(
                "method {:?} is not one of GET, POST, PUT, PATCH, DELETE",
                request.method.chars().take(16).collect::<String>()
            ));
        }
    };
    if request.body.len() > MAX_BODY_BYTES {
        return invalid(format!(
            "the body has {} bytes, more than {MAX_BODY_BYTES}",
            request.body.len()
        ));
    }
    if request.headers.len() > MAX_HEADERS {
        return invalid(format!(
            "{} headers, more than {MAX_HEADERS}",
            request.headers.len()
        ));
    }
    let size: usize = request.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    if size > MAX_HEADER_BYTES {
        return invalid(format!(
            "headers of {size} bytes, more than {MAX_HEADER_BYTES}"
        ));
    }
    let mut headers = HeaderMap::with_capacity(request.headers.len());
    for (name, value) in &request.headers {
        let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
            return invalid(format!("{name:?} is not a header name"));
        };
        // Hop-by-hop and framing headers are the client's to set: a wrong
        // Content-Length or Transfer-Encoding would corrupt the request.
        if matches!(
            n.as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection" | "upgrade" | "te"
        ) {
            return invalid(format!("header {name} is set by Ferrule, not by the rule"));
        }
        let Ok(v) = HeaderValue::from_str(value) else {
            return invalid(format!("the value of header {name} is not a header value"));
        };
        headers.append(n, v);
    }
    Ok(Prepared {
        method,
        url,
        headers,
        body: bytes::Bytes::copy_from_slice(request.body.as_bytes()),
    })
}

/// The HTTP client of every webhook: no redirects (a redirect to a private
/// address would bypass the guard), no proxy from the environment (the
/// proxy would resolve names, unguarded), and the guarded resolver.
pub fn client(lookup: Arc<dyn HostLookup>, allow_private: bool) -> Result<Client, reqwest::Error> {
    Client::builder()
        .redirect(redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver::new(lookup, allow_private)))
        .user_agent(concat!("Ferrule/", env!("CARGO_PKG_VERSION"), " (webhook)"))
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(4)
        .build()
}

/// Sends one attempt; `timeout` bounds all of it, the response body too.
pub async fn attempt(client: &Client, request: &Prepared, timeout: Duration) -> Attempt {
    match tokio::time::timeout(timeout, send(client, request, timeout)).await {
        Ok(a) => a,
        Err(_) => Attempt::Retry {
            status: None,
            error: format!("timed out after {} ms", timeout.as_millis()),
            after: None,
        },
    }
}

async fn send(client: &Client, request: &Prepared, timeout: Duration) -> Attempt {
    let sent = client
        .request(request.method.clone(), request.url.clone())
        .headers(request.headers.clone())
        .body(request.body.clone())
        .timeout(timeout)
        .send()
        .await;
    let mut response = match sent {
        Ok(r) => r,
        Err(e) => return failed(&e),
    };
    let status = response.status();
    let headers = std::mem::take(response.headers_mut());
    let mut read = 0usize;
    let mut quoted = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if quoted.len() < QUOTED_BYTES {
                    let room = QUOTED_BYTES - quoted.len();
                    quoted.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                read += chunk.len();
                if read >= MAX_RESPONSE_BYTES {
                    break;
                }
            }
            Ok(None) => break,
            // The status is what counts; a body cut short changes nothing.
            Err(_) => break,
        }
    }
    let detail = if status.is_success() {
        String::new()
    } else {
        quote(&quoted)
    };
    Attempt::from_status(status, &headers, &detail)
}

/// A transport failure: the refused address is permanent, the rest (DNS,
/// connection, timeout, TLS) may pass later.
fn failed(e: &reqwest::Error) -> Attempt {
    let error = chain(e);
    let refused = error.contains("resolves to no public address");
    if refused {
        Attempt::Permanent {
            status: None,
            error,
        }
    } else if e.is_timeout() {
        Attempt::Retry {
            status: None,
            error: format!("timed out: {error}"),
            after: None,
        }
    } else {
        Attempt::Retry {
            status: None,
            error,
            after: None,
        }
    }
}

/// An error with its causes, as reqwest's own message hides them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The start of an endpoint's error body, on one line.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    line.truncate(line.trim_end().len());
    if body.len() >= QUOTED_BYTES {
        line.push('…');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> WebhookRequest {
        WebhookRequest {
            method: "post".into(),
            url: "https://example.com/hook".into(),
            headers: vec![("X-Token".into(), "abc".into())],
            body: "{}".into(),
        }
    }

    #[test]
    fn requests_are_checked_before_queueing() {
        let ok = prepare(&request(), false).unwrap();
        assert_eq!(ok.method, Method::POST);
        assert_eq!(ok.headers["x-token"], "abc");
        let refused = |r: WebhookRequest| prepare(&r, false).unwrap_err();
        let mut r = request();
        r.method = "CONNECT".into();
        assert!(matches!(refused(r), WebhookRefused::Invalid(_)));
        let mut r = request();
        r.body = "x".repeat(MAX_BODY_BYTES + 1);
        assert!(matches!(refused(r), WebhookRefused::Invalid(_)));
        let mut r = request();
        r.headers = vec![("Content-Length".into(), "1".into())];
        assert!(matches!(refused(r), WebhookRefused::Invalid(_)));
        let mut r = request();
        r.headers = vec![("X-A".into(), "line\r\nInjected: yes".into())];
        assert!(matches!(refused(r), WebhookRefused::Invalid(_)));
        let mut r = request();
        r.headers = vec![("bad name".into(), "v".into())];
        assert!(matches!(refused(r), WebhookRefused::Invalid(_)));
        let mut r = request();
        r.headers = (0..=MAX_HEADERS)
            .map(|i| (format!("x-{i}"), "v".into()))
            .collect();
        assert!(matches!(refused(r), WebhookRefused::Invalid(_)));
        let mut r = request();
        r.url = "http://10.0.0.1/".into();
        assert!(matches!(refused(r), WebhookRefused::Url(_)));
    }

    #[test]
    fn error_bodies_are_quoted_on_one_bounded_line() {
        assert_eq!(quote(b"bad\r\nthing\n"), "bad  thing");
        let long = quote(&[b'a'; QUOTED_BYTES]);
        assert!(long.ends_with('…'));
    }
}
