//! The request-body timeout: a body must have arrived whole within
//! `body_timeout` of its request's head. Per-chunk idle timers (as in
//! tower-http) let a client that drips one byte at a time hold a
//! connection and a handler forever; a deadline does not.
//!
//! One exception: a tenant import's body is an archive of up to gigabytes,
//! which no fixed deadline suits. It gets an idle timer of the same
//! duration instead ([`BodyTimeout::Idle`]): a client that keeps sending
//! goes on, one that stalls is still cut. That route writes the body to a
//! file as it comes and is for admins only.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

/// How `http.body_timeout` applies to a request's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyTimeout {
    /// The whole body within this of the head.
    Whole(Duration),
    /// No gap longer than this between two pieces of the body.
    Idle(Duration),
}

/// The error a handler's body extraction sees when the timer fires.
#[derive(Debug, thiserror::Error)]
pub struct BodyTimedOut(pub BodyTimeout);

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            BodyTimeout::Whole(limit) => write!(
                f,
                "the request body did not arrive within {limit:?} (http.body_timeout)"
            ),
            BodyTimeout::Idle(limit) => write!(
                f,
                "no part of the request body arrived for {limit:?} (http.body_timeout, between \
                 pieces of an upload): send it without pausing"
            ),
        }
    }
}

/// A request body with a deadline (or idle timer). `timed_out` tells the
/// connection to answer 408, whatever the handler made of the error.
pub struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    timeout: BodyTimeout,
    timed_out: Arc<AtomicBool>,
}

impl DeadlineBody {
    pub fn new(inner: Incoming, timeout: BodyTimeout, timed_out: Arc<AtomicBool>) -> Self {
        let (BodyTimeout::Whole(limit) | BodyTimeout::Idle(limit)) = timeout;
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            timeout,
            timed_out,
        }
    }
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            if let (BodyTimeout::Idle(limit), Some(Ok(_))) = (self.timeout, &frame) {
                self.deadline
                    .as_mut()
                    .reset(tokio::time::Instant::now() + limit);
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.timed_out.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(BodyTimedOut(self.timeout).into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
