//! Webhooks against a real HTTP server on 127.0.0.1: delivery, retries,
//! dead letters and replay, timeouts, tenant isolation, and refusal of
//! private addresses.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use ferrule_core::TenantId;
use ferrule_rules::webhook::{
    HostLookup, LookingUp, ReplayOutcome, RetryPolicy, WebhookJob, WebhookOutcomes, WebhookRefused,
    WebhookRequest, WebhookSettings, Webhooks,
};
use ferrule_store::dead_letters::{DeadLetter, DeadLetterStore};
use ferrule_store::{Page, PageRequest, StoreError};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What the endpoint received.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Bytes,
}

/// The test's endpoint. Paths: `/ok` 200; `/flaky` the status in `flaky`;
/// `/missing` 404; `/slow` 200 after 2 s.
#[derive(Clone, Default)]
struct Endpoint {
    received: Arc<Mutex<Vec<Received>>>,
    flaky: Arc<AtomicU16>,
}

impl Endpoint {
    async fn start() -> (Self, SocketAddr) {
        let endpoint = Endpoint::default();
        endpoint.flaky.store(500, Ordering::SeqCst);
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(endpoint.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (endpoint, addr)
    }

    fn received(&self, path: &str) -> Vec<Received> {
        self.received
            .lock()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    fn count(&self) -> usize {
        self.received.lock().len()
    }
}

async fn answer(State(e): State<Endpoint>, req: Request) -> (StatusCode, &'static str) {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    e.received.lock().push(Received {
        at,
        method: parts.method.to_string(),
        path: path.clone(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body,
    });
    match path.as_str() {
        "/ok" => (StatusCode::OK, "fine"),
        "/flaky" => (
            StatusCode::from_u16(e.flaky.load(Ordering::SeqCst)).unwrap(),
            "flaky says so",
        ),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            (StatusCode::OK, "late")
        }
        _ => (StatusCode::NOT_FOUND, "no such hook"),
    }
}

/// Dead letters in memory.
#[derive(Default)]
struct Letters {
    all: Mutex<Vec<DeadLetter>>,
}

#[async_trait]
impl DeadLetterStore for Letters {
    async fn add_dead_letter(&self, letter: &DeadLetter) -> ferrule_store::Result<Option<u64>> {
        let mut all = self.all.lock();
        let id = all.len() as u64 + 1;
        all.push(DeadLetter {
            id,
            ..letter.clone()
        });
        Ok(Some(id))
    }

    async fn get_dead_letter(
        &self,
        tenant: &TenantId,
        id: u64,
    ) -> ferrule_store::Result<DeadLetter> {
        self.all
            .lock()
            .iter()
            .find(|l| &l.tenant == tenant && l.id == id)
            .cloned()
            .ok_or(StoreError::NotFound {
                kind: "dead letter",
            })
    }

    async fn list_dead_letters(
        &self,
        tenant: &TenantId,
        rule: &str,
        _page: &PageRequest,
    ) -> ferrule_store::Result<Page<DeadLetter>> {
        let items = self
            .all
            .lock()
            .iter()
            .rev()
            .filter(|l| &l.tenant == tenant && l.rule == rule)
            .cloned()
            .collect();
        Ok(Page { items, next: None })
    }

    async fn record_replay(
        &self,
        tenant: &TenantId,
        id: u64,
        outcome: Result<i64, (String, u32)>,
    ) -> ferrule_store::Result<()> {
        let mut all = self.all.lock();
        let l = all
            .iter_mut()
            .find(|l| &l.tenant == tenant && l.id == id)
            .ok_or(StoreError::NotFound {
                kind: "dead letter",
            })?;
        match outcome {
            Ok(at) => l.replayed_at = Some(at),
            Err((error, attempts)) => {
                l.error = error;
                l.attempts += attempts;
            }
        }
        Ok(())
    }

    async fn delete_dead_letter(&self, tenant: &TenantId, id: u64) -> ferrule_store::Result<()> {
        self.all
            .lock()
            .retain(|l| !(&l.tenant == tenant && l.id == id));
        Ok(())
    }
}

type Finished = (TenantId, String, Result<(), String>, Instant);

/// How calls ended, as the rules engine is told.
struct Outcomes(mpsc::UnboundedSender<Finished>);

impl WebhookOutcomes for Outcomes {
    fn finished(&self, tenant: &TenantId, rule: &str, result: Result<(), String>) {
        let _ = self
            .0
            .send((tenant.clone(), rule.to_owned(), result, Instant::now()));
    }
}

/// Names all resolve to 127.0.0.1, as a rebinding attacker's would.
struct Rebound;

impl HostLookup for Rebound {
    fn lookup(&self, _host: String) -> LookingUp {
        Box::pin(async { Ok(vec![IpAddr::from([127, 0, 0, 1])]) })
    }
}

struct Harness {
    webhooks: Webhooks,
    letters: Arc<Letters>,
    finished: mpsc::UnboundedReceiver<Finished>,
    shutdown: CancellationToken,
}

impl Harness {
    fn start(settings: WebhookSettings) -> Self {
        Self::start_with(settings, None)
    }

    fn start_with(settings: WebhookSettings, lookup: Option<Arc<dyn HostLookup>>) -> Self {
        let letters = Arc::new(Letters::default());
        let (tx, finished) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let outcomes = Arc::new(Outcomes(tx));
        let webhooks = match lookup {
            None => Webhooks::start(
                settings,
                letters.clone(),
                outcomes,
                shutdown.clone(),
                &tasks,
            ),
            Some(lookup) => Webhooks::start_with_lookup(
                settings,
                letters.clone(),
                outcomes,
                shutdown.clone(),
                &tasks,
                lookup,
            ),
        }
        .unwrap();
        Self {
            webhooks,
            letters,
            finished,
            shutdown,
        }
    }

    /// The next call to end, within `within`.
    async fn next(&mut self, within: Duration) -> Finished {
        tokio::time::timeout(within, self.finished.recv())
            .await
            .expect("a call ended in time")
            .expect("the webhooks are running")
    }

    fn letters(&self) -> Vec<DeadLetter> {
        self.letters.all.lock().clone()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn loopback() -> WebhookSettings {
    WebhookSettings {
        allow_private: true,
        ..WebhookSettings::default()
    }
}

fn tenant(t: &str) -> TenantId {
    TenantId::new(t).unwrap()
}

fn job(t: &str, url: String, retries: u32, timeout_ms: u64) -> WebhookJob {
    WebhookJob {
        tenant: tenant(t),
        rule: "hot".into(),
        rule_version: 2,
        action: 1,
        request: WebhookRequest {
            method: "POST".into(),
            url,
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("X-Token".into(), "s3cret".into()),
            ],
            body: r#"{"temp":42}"#.into(),
        },
        policy: RetryPolicy {
            timeout: Duration::from_millis(timeout_ms),
            retries,
            backoff: Duration::from_millis(50),
        },
    }
}

#[tokio::test]
async fn a_call_delivers_its_method_headers_and_body() {
    let (endpoint, addr) = Endpoint::start().await;
    let mut h = Harness::start(loopback());
    h.webhooks
        .submit(job("t", format!("http://{addr}/ok"), 3, 2_000))
        .unwrap();
    let (t, rule, result, _) = h.next(Duration::from_secs(5)).await;
    assert_eq!((t.as_str(), rule.as_str(), result), ("t", "hot", Ok(())));
    let got = endpoint.received("/ok");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].headers["x-token"], "s3cret");
    assert_eq!(got[0].headers["content-type"], "application/json");
    assert_eq!(&got[0].body[..], br#"{"temp":42}"#);
    assert!(h.letters().is_empty());
}

#[tokio::test]
async fn failures_are_retried_with_growing_waits_then_dead_lettered_and_replayed() {
    let (endpoint, addr) = Endpoint::start().await;
    let mut h = Harness::start(loopback());
    let sent = job("t", format!("http://{addr}/flaky"), 3, 2_000);
    h.webhooks.submit(sent.clone()).unwrap();
    let (_, _, result, _) = h.next(Duration::from_secs(5)).await;
    let error = result.unwrap_err();
    assert!(error.contains("HTTP 500"), "{error}");
    assert!(
        error.contains("flaky says so"),
        "the endpoint's words: {error}"
    );

    // The first attempt and three retries, each wait at least half of its
    // doubled step (equal jitter): 25, 50, 100 ms.
    let got = endpoint.received("/flaky");
    assert_eq!(got.len(), 4);
    let waits: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    for (k, wait) in waits.iter().enumerate() {
        let least = Duration::from_millis(25 << k);
        assert!(*wait >= least, "wait {k} was {wait:?}, less than {least:?}");
    }
    assert!(waits[2] > waits[0], "waits grow: {waits:?}");

    let letters = h.letters();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.attempts, 4);
    assert_eq!(
        (letter.rule.as_str(), letter.rule_version, letter.action),
        ("hot", 2, 1)
    );
    assert_eq!(letter.error, error);
    assert_eq!(
        serde_json::from_value::<WebhookRequest>(letter.request.clone()).unwrap(),
        sent.request
    );

    // Replay while still failing: the letter keeps the error, one more attempt.
    endpoint.flaky.store(503, Ordering::SeqCst);
    let again = h.webhooks.replay(&tenant("t"), letter.id).await.unwrap();
    assert!(
        matches!(&again, ReplayOutcome::Failed { status: Some(503), error } if error.contains("503")),
        "{again:?}"
    );
    assert_eq!(h.letters()[0].attempts, 5);
    assert_eq!(h.letters()[0].replayed_at, None);

    // The endpoint is fixed: the replay goes through and is recorded.
    endpoint.flaky.store(200, Ordering::SeqCst);
    let fixed = h.webhooks.replay(&tenant("t"), letter.id).await.unwrap();
    assert_eq!(fixed, ReplayOutcome::Delivered { status: 200 });
    assert!(h.letters()[0].replayed_at.is_some());
    assert_eq!(endpoint.received("/flaky").len(), 6);
    assert_eq!(&endpoint.received("/flaky")[5].body[..], br#"{"temp":42}"#);

    // Another tenant's letter is not found.
    assert!(matches!(
        h.webhooks.replay(&tenant("other"), letter.id).await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_timeout_is_a_failure() {
    let (endpoint, addr) = Endpoint::start().await;
    let mut h = Harness::start(loopback());
    let start = Instant::now();
    h.webhooks
        .submit(job("t", format!("http://{addr}/slow"), 0, 200))
        .unwrap();
    let (_, _, result, at) = h.next(Duration::from_secs(5)).await;
    let error = result.unwrap_err();
    assert!(error.contains("timed out"), "{error}");
    assert!(at - start < Duration::from_secs(1), "took {:?}", at - start);
    assert_eq!(endpoint.received("/slow").len(), 1);
    assert_eq!(h.letters()[0].attempts, 1);
}

#[tokio::test]
async fn a_404_is_not_retried() {
    let (endpoint, addr) = Endpoint::start().await;
    let mut h = Harness::start(loopback());
    h.webhooks
        .submit(job("t", format!("http://{addr}/missing"), 3, 2_000))
        .unwrap();
    let (_, _, result, _) = h.next(Duration::from_secs(5)).await;
    assert!(result.unwrap_err().contains("HTTP 404"));
    // Give a wrongly scheduled retry the time to show.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(endpoint.received("/missing").len(), 1);
    assert_eq!(h.letters()[0].attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_tenant_does_not_delay_another_and_its_overflow_is_refused() {
    let (endpoint, addr) = Endpoint::start().await;
    let mut h = Harness::start(WebhookSettings {
        allow_private: true,
        concurrency_per_tenant: 2,
        queue_per_tenant: 2,
        rate_per_tenant: 100,
    });
    // Tenant a: two calls in flight on a 2 s endpoint, two waiting, then full.
    for _ in 0..4 {
        h.webhooks
            .submit(job("a", format!("http://{addr}/slow"), 0, 5_000))
            .unwrap();
    }
    assert_eq!(
        h.webhooks
            .submit(job("a", format!("http://{addr}/slow"), 0, 5_000)),
        Err(WebhookRefused::QueueFull)
    );
    // Let a's calls reach the endpoint.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(endpoint.received("/slow").len(), 2, "a's concurrency is 2");

    let start = Instant::now();
    for _ in 0..3 {
        h.webhooks
            .submit(job("b", format!("http://{addr}/ok"), 0, 5_000))
            .unwrap();
    }
    for _ in 0..3 {
        let (t, _, result, at) = h.next(Duration::from_secs(1)).await;
        assert_eq!((t.as_str(), result), ("b", Ok(())));
        assert!(
            at - start < Duration::from_millis(200),
            "b waited {:?} behind a",
            at - start
        );
    }
    assert_eq!(endpoint.received("/ok").len(), 3);
}

#[tokio::test]
async fn a_replay_takes_its_turn_in_the_tenants_lane() {
    let (endpoint, addr) = Endpoint::start().await;
    let mut h = Harness::start(WebhookSettings {
        allow_private: true,
        concurrency_per_tenant: 1,
        queue_per_tenant: 0,
        rate_per_tenant: 100,
    });
    h.webhooks
        .submit(job("a", format!("http://{addr}/missing"), 0, 2_000))
        .unwrap();
    assert!(h.next(Duration::from_secs(5)).await.2.is_err());
    let letter = h.letters()[0].clone();

    // The tenant's only call slot is taken by a slow call: the replay is
    // not sent, and the letter is left as it was.
    h.webhooks
        .submit(job("a", format!("http://{addr}/slow"), 0, 5_000))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let busy = h.webhooks.replay(&tenant("a"), letter.id).await.unwrap();
    assert_eq!(busy, ReplayOutcome::Busy);
    assert_eq!(endpoint.received("/missing").len(), 1);
    assert_eq!(h.letters()[0].attempts, 1);

    // Once the slow call is done, the replay goes out.
    assert_eq!(h.next(Duration::from_secs(5)).await.2, Ok(()));
    let again = h.webhooks.replay(&tenant("a"), letter.id).await.unwrap();
    assert!(
        matches!(
            again,
            ReplayOutcome::Failed {
                status: Some(404),
                ..
            }
        ),
        "{again:?}"
    );
    assert_eq!(endpoint.received("/missing").len(), 2);
    assert_eq!(h.letters()[0].attempts, 2);
}

#[tokio::test]
async fn private_addresses_are_refused_and_nothing_is_sent() {
    let (endpoint, addr) = Endpoint::start().await;
    let port = addr.port();
    let mut h = Harness::start_with(WebhookSettings::default(), Some(Arc::new(Rebound)));
    for url in [
        format!("http://127.0.0.1:{port}/ok"),
        format!("http://localhost:{port}/ok"),
        format!("http://localhost.:{port}/ok"),
        format!("http://[::1]:{port}/ok"),
        format!("http://[::ffff:127.0.0.1]:{port}/ok"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/".to_owned(),
        format!("http://user:pw@example.com:{port}/ok"),
        "file:///etc/passwd".to_owned(),
    ] {
        assert!(
            matches!(h.webhooks.check_url(&url), Err(WebhookRefused::Url(_))),
            "{url} passes the check"
        );
        assert!(
            matches!(
                h.webhooks.submit(job("t", url.clone(), 0, 1_000)),
                Err(WebhookRefused::Url(_))
            ),
            "{url} was queued"
        );
    }

    // A name is checked once resolved (DNS rebinding): refused for good.
    let rebound = format!("http://hooks.example.test:{port}/ok");
    assert!(h.webhooks.check_url(&rebound).is_ok());
    h.webhooks.submit(job("t", rebound, 3, 1_000)).unwrap();
    let (_, _, result, _) = h.next(Duration::from_secs(5)).await;
    let error = result.unwrap_err();
    assert!(error.contains("no public address"), "{error}");
    assert_eq!(
        h.letters()[0].attempts,
        1,
        "a refused address is not retried"
    );

    // Nor does a replay get through.
    let again = h
        .webhooks
        .replay(&tenant("t"), h.letters()[0].id)
        .await
        .unwrap();
    assert!(
        matches!(again, ReplayOutcome::Failed { status: None, .. }),
        "{again:?}"
    );
    assert_eq!(endpoint.count(), 0, "nothing reached the endpoint");

    // The same name, private addresses allowed: the lookup is what decided.
    let mut open = Harness::start_with(loopback(), Some(Arc::new(Rebound)));
    open.webhooks
        .submit(job(
            "t",
            format!("http://hooks.example.test:{port}/ok"),
            0,
            1_000,
        ))
        .unwrap();
    assert_eq!(open.next(Duration::from_secs(5)).await.2, Ok(()));
    assert_eq!(endpoint.count(), 1);
}

#[tokio::test]
async fn requests_that_cannot_be_sent_are_refused_at_submit() {
    let (endpoint, addr) = Endpoint::start().await;
    let h = Harness::start(loopback());
    let mut big = job("t", format!("http://{addr}/ok"), 0, 1_000);
    big.request.body = "x".repeat(1024 * 1024 + 1);
    assert!(matches!(
        h.webhooks.submit(big),
        Err(WebhookRefused::Invalid(_))
    ));
    let mut smuggled = job("t", format!("http://{addr}/ok"), 0, 1_000);
    smuggled.request.headers = vec![("X-A".into(), "a\r\nX-B: b".into())];
    assert!(matches!(
        h.webhooks.submit(smuggled),
        Err(WebhookRefused::Invalid(_))
    ));
    assert_eq!(endpoint.count(), 0);
}

#[tokio::test]
async fn after_shutdown_no_call_starts_and_a_call_waiting_to_retry_is_kept() {
    let (endpoint, addr) = Endpoint::start().await;
    let mut h = Harness::start(loopback());
    let mut slow_retry = job("t", format!("http://{addr}/flaky"), 5, 1_000);
    slow_retry.policy.backoff = Duration::from_secs(30);
    h.webhooks.submit(slow_retry).unwrap();
    // Its first attempt failed; it now waits 15 to 30 s to retry.
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.shutdown.cancel();
    let (_, _, result, _) = h.next(Duration::from_secs(2)).await;
    assert!(result.unwrap_err().contains("shut down"));
    assert_eq!(h.letters()[0].attempts, 1);

    // Submitted after shutdown: never sent, and said so.
    h.webhooks
        .submit(job("t", format!("http://{addr}/ok"), 0, 1_000))
        .unwrap();
    let (_, _, result, _) = h.next(Duration::from_secs(2)).await;
    assert!(result.unwrap_err().contains("not sent"));
    assert_eq!(endpoint.received("/ok").len(), 0);
    assert_eq!(endpoint.received("/flaky").len(), 1);
}
