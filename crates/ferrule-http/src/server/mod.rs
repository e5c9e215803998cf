//! Serving the HTTP application on plain TCP and TLS listeners, with the
//! limits that keep one client from taking the server: connection caps in
//! all and per address ([`caps`]), header and idle timeouts ([`watch`]),
//! a request-body deadline ([`body`]) and a bound on the request head.
//!
//! Our own accept loop rather than `axum::serve`, which has none of these:
//! a few hundred half-sent requests from one address used to hold the
//! process's file descriptors, and MQTT's accept with them.
//!
//! HTTP/1.1 only (the API and MQTT over WebSocket need nothing more).

pub mod body;
pub mod caps;
pub mod tls;
pub mod watch;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Method, Request, Response, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

pub use caps::ConnectionCaps;

use crate::error::ApiError;
use crate::observe;
use watch::{Busy, Watch, Watched};

/// Limits on HTTP connections (`[http]` in the configuration).
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// A new connection, or one at rest that starts a request, must have
    /// sent the whole request head within this.
    pub header_timeout: Duration,
    /// A keep-alive connection waits this long for its next request.
    pub idle_timeout: Duration,
    /// A request's body must have arrived within this of its head (408).
    pub body_timeout: Duration,
    /// Largest request head (request line and headers) in bytes (431).
    pub max_header_bytes: usize,
    /// Open HTTP and HTTPS connections in all.
    pub max_connections: usize,
    /// Open connections from one address (an IPv6 /64 counts as one).
    pub max_connections_per_address: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            max_connections: 2048,
            max_connections_per_address: 128,
        }
    }
}

/// What a listener serves, and how.
#[derive(Clone)]
pub struct Serving {
    pub app: Router,
    pub limits: Arc<HttpLimits>,
    /// Shared by every listener, so that the caps hold across HTTP and HTTPS.
    pub caps: Arc<ConnectionCaps>,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

/// Set on every request that came over the HTTPS listener, so that what
/// depends on it (the console's `Secure` cookies) need not guess from headers
/// a client controls.
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

/// HSTS for responses sent over TLS: a year, this host only (subdomains may
/// be someone else's).
const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000");

/// Accepts connections until shutdown; each runs on `serving.tasks`. With
/// `tls`, each connection does its TLS handshake first, on its own task.
pub async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, serving: Serving) {
    loop {
        let accepted = tokio::select! {
            _ = serving.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly
                // rather than spin.
                tracing::warn!(error = %e, "accepting an HTTP connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admitted = match serving.caps.admit(peer.ip()) {
            Ok(a) => a,
            Err(why) => {
                // Closed at once: a refused connection costs nothing more.
                observe::HttpConnectionRefused {
                    reason: why.label(),
                    peer,
                }
                .emit();
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let serving2 = serving.clone();
        match tls.clone() {
            None => {
                serving.tasks.spawn(async move {
                    connection(stream, peer, false, admitted, serving2).await;
                });
            }
            Some(acceptor) => {
                serving.tasks.spawn(async move {
                    let Some(stream) = handshake(acceptor, stream, peer, &serving2).await else {
                        return;
                    };
                    connection(stream, peer, true, admitted, serving2).await;
                });
            }
        }
    }
}

/// The TLS handshake, within the header timeout.
async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    serving: &Serving,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(serving.limits.header_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            observe::HttpConnectionRefused {
                reason: "tls_handshake",
                peer,
            }
            .emit();
            None
        }
        Err(_) => {
            observe::HttpTimedOut { kind: "header" }.emit();
            None
        }
    }
}

/// Serves one connection until it ends, times out, or the server shuts
/// down (then in-flight requests finish first).
async fn connection<IO>(
    io: IO,
    peer: SocketAddr,
    secure: bool,
    admitted: caps::Admitted,
    serving: Serving,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let watch = Watch::new();
    let io = TokioIo::new(Watched::new(io, watch.clone(), admitted));
    let limits = serving.limits.clone();
    let app = serving.app.clone();
    let watch2 = watch.clone();
    let service = hyper::service::service_fn(move |req| {
        request(
            req,
            app.clone(),
            watch2.clone(),
            peer,
            secure,
            limits.clone(),
        )
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // Our watch keeps the header timeout (see `watch`).
        .header_read_timeout(None)
        .max_header_size(serving.limits.max_header_bytes)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    let (header, idle) = (serving.limits.header_timeout, serving.limits.idle_timeout);
    let mut draining = false;
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            expired = watch.expired(header, idle) => {
                // Dropping the connection closes it.
                observe::HttpTimedOut { kind: expired.label() }.emit();
                return;
            }
            _ = serving.shutdown.cancelled(), if !draining => {
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
}

/// One request through the application, with the body deadline, the
/// caller's address, HSTS over TLS, and the connection busy until the
/// response body has been sent.
async fn request(
    mut req: Request<Incoming>,
    app: Router,
    watch: Arc<Watch>,
    peer: SocketAddr,
    secure: bool,
    limits: Arc<HttpLimits>,
) -> Result<Response<Body>, Infallible> {
    let busy = watch.request();
    req.extensions_mut().insert(ConnectInfo(peer));
    if secure {
        req.extensions_mut().insert(OverTls);
    }
    let timed_out = Arc::new(AtomicBool::new(false));
    let timeout = body_timeout(&req, limits.body_timeout);
    let req = if req.body().is_end_stream() {
        req.map(Body::new)
    } else {
        let flag = timed_out.clone();
        req.map(|b| Body::new(body::DeadlineBody::new(b, timeout, flag)))
    };
    let mut resp = app.oneshot(req).await?;
    if timed_out.load(Ordering::Relaxed) {
        observe::HttpTimedOut { kind: "body" }.emit();
        resp = ApiError::RequestTimeout(body::BodyTimedOut(timeout).to_string()).into_response();
        // The rest of the body may still come: do not read it.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if secure {
        resp.headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, HSTS);
    }
    Ok(resp.map(|inner| Body::new(Sending { inner, _busy: busy })))
}

/// The one route whose body may take longer than `http.body_timeout`.
const TENANT_IMPORT: &str = "/api/v1/system/tenants/import";

/// A whole-body deadline, except for a tenant import: an archive of
/// gigabytes needs longer than any fixed deadline, so there the limit
/// applies between pieces instead (see [`body`]).
fn body_timeout<B>(req: &Request<B>, limit: Duration) -> body::BodyTimeout {
    if req.method() == Method::POST && req.uri().path() == TENANT_IMPORT {
        body::BodyTimeout::Idle(limit)
    } else {
        body::BodyTimeout::Whole(limit)
    }
}

/// A response body that keeps its connection busy until sent (or dropped).
struct Sending {
    inner: Body,
    _busy: Busy,
}

impl http_body::Body for Sending {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
