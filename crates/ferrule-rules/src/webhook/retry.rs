//! When a failed call is tried again, and which failures are worth it.

use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::RetryPolicy;

/// The longest wait before a retry, whatever the backoff or `Retry-After`.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// A 2xx.
    Delivered { status: u16 },
    /// Worth another try (5xx, 408, 429, connection errors, timeouts);
    /// `after` is what the endpoint asked for with `Retry-After`.
    Retry {
        status: Option<u16>,
        error: String,
        after: Option<Duration>,
    },
    /// Another try would fail alike (other 4xx, 3xx, refused address).
    Permanent { status: Option<u16>, error: String },
}

impl Attempt {
    /// What an HTTP status means for the call. 408 (the endpoint timed
    /// out reading) and 429 (too many requests) are the 4xx that later
    /// may succeed; the other 4xx say the request itself is wrong. A 3xx is
    /// not followed (a redirect to a private address would bypass the
    /// guard), and asking again would only get it again.
    pub fn from_status(status: StatusCode, headers: &HeaderMap, detail: &str) -> Attempt {
        let code = status.as_u16();
        if status.is_success() {
            return Attempt::Delivered { status: code };
        }
        let mut error = format!("HTTP {code}");
        if let Some(reason) = status.canonical_reason() {
            error.push(' ');
            error.push_str(reason);
        }
        if !detail.is_empty() {
            error.push_str(": ");
            error.push_str(detail);
        }
        let retryable = status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS;
        if retryable {
            let after = matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            )
            .then(|| retry_after(headers))
            .flatten();
            Attempt::Retry {
                status: Some(code),
                error,
                after,
            }
        } else {
            Attempt::Permanent {
                status: Some(code),
                error,
            }
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            Attempt::Delivered { .. } => None,
            Attempt::Retry { error, .. } | Attempt::Permanent { error, .. } => Some(error),
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Attempt::Delivered { status } => Some(*status),
            Attempt::Retry { status, .. } | Attempt::Permanent { status, .. } => *status,
        }
    }
}

/// `Retry-After` in seconds. The HTTP-date form is ignored (the computed
/// backoff applies): endpoints that throttle use seconds in practice.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

/// The wait before retry number `retry` (0 for the first): the policy's
/// backoff doubled each time, capped at [`MAX_DELAY`], with equal jitter
/// (half fixed, half random) so that calls failing together spread out
/// while every wait stays at least half of its step, so waits never shrink
/// from one retry to the next. What the endpoint asked with `Retry-After`
/// is honoured when longer, within the cap.
pub fn delay(policy: &RetryPolicy, retry: u32, asked: Option<Duration>) -> Duration {
    let step = policy
        .backoff
        .checked_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(MAX_DELAY)
        .min(MAX_DELAY);
    let half = step / 2;
    let jitter = rand::rng().random_range(0..=half.as_millis() as u64);
    let computed = half + Duration::from_millis(jitter);
    asked.map_or(computed, |a| a.max(computed)).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn policy(backoff_ms: u64) -> RetryPolicy {
        RetryPolicy {
            timeout: Duration::from_secs(1),
            retries: 5,
            backoff: Duration::from_millis(backoff_ms),
        }
    }

    #[test]
    fn delays_double_with_jitter_and_are_capped() {
        let p = policy(100);
        for retry in 0..6u32 {
            let step = Duration::from_millis(100 * (1 << retry));
            for _ in 0..50 {
                let d = delay(&p, retry, None);
                assert!(d >= step / 2 && d <= step, "retry {retry}: {d:?}");
            }
        }
        assert!(delay(&policy(50_000), 30, None) <= MAX_DELAY);
        assert!(delay(&policy(1), u32::MAX, None) <= MAX_DELAY);
        assert!(delay(&p, 0, None) >= Duration::from_millis(50));
    }

    #[test]
    fn retry_after_is_honoured_within_the_cap() {
        let p = policy(10);
        assert_eq!(
            delay(&p, 0, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(delay(&p, 0, Some(Duration::from_secs(3600))), MAX_DELAY);
    }

    #[test]
    fn statuses_are_classified() {
        let none = HeaderMap::new();
        let st = |c: u16| StatusCode::from_u16(c).unwrap();
        assert_eq!(
            Attempt::from_status(st(204), &none, ""),
            Attempt::Delivered { status: 204 }
        );
        for c in [500, 502, 503, 504, 408, 429] {
            assert!(
                matches!(
                    Attempt::from_status(st(c), &none, ""),
                    Attempt::Retry { .. }
                ),
                "{c}"
            );
        }
        for c in [301, 302, 307, 400, 401, 403, 404, 410, 422] {
            assert!(
                matches!(
                    Attempt::from_status(st(c), &none, ""),
                    Attempt::Permanent { .. }
                ),
                "{c}"
            );
        }
        let mut asked = HeaderMap::new();
        asked.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        let Attempt::Retry { after, error, .. } = Attempt::from_status(st(429), &asked, "slow")
        else {
            panic!("429 is retried");
        };
        assert_eq!(after, Some(Duration::from_secs(7)));
        assert_eq!(error, "HTTP 429 Too Many Requests: slow");
        // Only 429 and 503 carry a meaningful Retry-After here.
        assert!(matches!(
            Attempt::from_status(st(500), &asked, ""),
            Attempt::Retry { after: None, .. }
        ));
    }
}
