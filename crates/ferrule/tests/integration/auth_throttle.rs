//! Login floods: failed logins back off per account and per address (HTTP
//! 429 with Retry-After, MQTT CONNACK 0x9F / 3.1.1 code 5) without hashing,
//! and password hashing runs on a bounded pool whose overflow is refused
//! (HTTP 503, CONNACK 0x89) rather than queued without end. All counted.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ferrule_mqtt::codec::ReasonCode;
use serde_json::json;

use crate::mqtt_util::{
    Raw, V3, V5, add_device_password, connect_packet, create_device, create_user,
};
use crate::util::{ADMIN_EMAIL, Server, ServerBuilder};

/// A login over HTTP from `from`: the status and its Retry-After.
async fn login_from(s: &Server, from: IpAddr, email: &str, password: &str) -> (u16, Option<u64>) {
    let client = reqwest::Client::builder()
        .local_address(from)
        .build()
        .unwrap();
    let r = client
        .post(format!("{}/api/v1/auth/login", s.http))
        .json(&json!({"email": email, "password": password}))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("login answered");
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().expect("Retry-After in seconds"));
    (r.status().as_u16(), retry_after)
}

const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
const ELSEWHERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

async fn metric(s: &Server, prefix: &str) -> Vec<String> {
    let text = s.anon().get("/metrics").await.text;
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn wrong_passwords_back_off_per_account_over_http_with_retry_after() {
    let s = ServerBuilder::new()
        .config_file(
            "[auth]\nfailures_before_backoff = 3\nsource_failures_before_backoff = 100\n\
             min_backoff = \"2s\"\nmax_backoff = \"4s\"\n",
        )
        .start()
        .await;
    let admin = s.admin().await;
    create_user(&admin, "ann@x.io", "viewer").await;
    create_user(&admin, "bob@x.io", "viewer").await;
    for _ in 0..3 {
        assert_eq!(login_from(&s, HOME, "ann@x.io", "wrong").await.0, 401);
    }
    // Backing off: refused without a look at the password, even the right one.
    let (status, retry) = login_from(&s, HOME, "ann@x.io", "wrong").await;
    assert_eq!(status, 429);
    let retry = retry.expect("429 carries Retry-After");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let (status, _) = login_from(&s, ELSEWHERE, "ann@x.io", "viewer-password-123").await;
    assert_eq!(status, 429, "the account backs off from every address");
    // Another account from the same address is not affected.
    assert_eq!(
        login_from(&s, HOME, "bob@x.io", "viewer-password-123")
            .await
            .0,
        200
    );
    // An unknown email backs off alike, so backoff reveals no accounts.
    for _ in 0..3 {
        assert_eq!(login_from(&s, HOME, "nobody@x.io", "wrong").await.0, 401);
    }
    assert_eq!(login_from(&s, HOME, "nobody@x.io", "wrong").await.0, 429);

    let throttled = metric(&s, "ferrule_auth_throttled_total").await;
    assert!(
        throttled.iter().any(|l| l.contains(r#"channel="http""#)
            && l.contains(r#"scope="account""#)
            && l.contains(r#"tenant="default""#)),
        "{throttled:?}"
    );
    // After the wait the right password works and clears the count.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(
        login_from(&s, HOME, "ann@x.io", "viewer-password-123")
            .await
            .0,
        200
    );
    assert_eq!(login_from(&s, HOME, "ann@x.io", "wrong").await.0, 401);
    s.stop().await;
}

#[tokio::test]
async fn an_address_spraying_many_accounts_backs_off_and_others_do_not() {
    let s = ServerBuilder::new()
        .config_file(
            "[auth]\nfailures_before_backoff = 100\nsource_failures_before_backoff = 3\n\
             min_backoff = \"5s\"\nmax_backoff = \"5s\"\n",
        )
        .start()
        .await;
    let admin = s.admin().await;
    create_user(&admin, "ann@x.io", "viewer").await;
    for i in 0..3 {
        let email = format!("guess{i}@x.io");
        assert_eq!(login_from(&s, ELSEWHERE, &email, "wrong").await.0, 401);
    }
    let (status, retry) = login_from(&s, ELSEWHERE, "ann@x.io", "viewer-password-123").await;
    assert_eq!(status, 429);
    assert!(retry.is_some());
    // The same account from another address is fine.
    assert_eq!(
        login_from(&s, HOME, "ann@x.io", "viewer-password-123")
            .await
            .0,
        200
    );
    let throttled = metric(&s, "ferrule_auth_throttled_total").await;
    assert!(
        throttled.iter().any(|l| l.contains(r#"scope="source""#)),
        "{throttled:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn wrong_passwords_back_off_over_mqtt_with_connack_refusals() {
    let s = ServerBuilder::new()
        .config_file(
            "[auth]\nfailures_before_backoff = 2\nsource_failures_before_backoff = 100\n\
             min_backoff = \"30s\"\nmax_backoff = \"30s\"\n",
        )
        .start()
        .await;
    let admin = s.admin().await;
    let (ann, ann_password) = create_user(&admin, "ann@x.io", "viewer").await;
    let (bob, bob_password) = create_user(&admin, "bob@x.io", "viewer").await;
    let connack = |version, user: String, password: String| {
        let addr = s.mqtt.clone();
        async move {
            let packet = connect_packet(version, "c", Some(&user), Some(&password));
            Raw::connect(&addr, packet).await.1.reason_code
        }
    };
    for _ in 0..2 {
        let code = connack(V5, ann.clone(), "wrong".into()).await;
        assert_eq!(code, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    }
    let code = connack(V5, ann.clone(), ann_password.clone()).await;
    assert_eq!(code, ReasonCode::CONNECTION_RATE_EXCEEDED);
    // MQTT 3.1.1 has no such code: "not authorized" (5).
    let code = connack(V3, ann.clone(), ann_password.clone()).await;
    assert_eq!(code, ReasonCode::NOT_AUTHORIZED);
    assert_eq!(
        connack(V5, bob.clone(), bob_password).await,
        ReasonCode::SUCCESS
    );
    // A device's password login backs off too, per device.
    create_device(&admin, "pump").await;
    add_device_password(&admin, "pump", "pump-password-1").await;
    for _ in 0..2 {
        let code = connack(V5, "pump@default".into(), "wrong".into()).await;
        assert_eq!(code, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    }
    let code = connack(V5, "pump@default".into(), "pump-password-1".into()).await;
    assert_eq!(code, ReasonCode::CONNECTION_RATE_EXCEEDED);
    // The login over HTTP shares the account's count.
    assert_eq!(login_from(&s, HOME, "ann@x.io", &ann_password).await.0, 429);

    let throttled = metric(&s, "ferrule_auth_throttled_total").await;
    assert!(
        throttled
            .iter()
            .any(|l| l.contains(r#"channel="mqtt""#) && l.contains(r#"tenant="default""#)),
        "{throttled:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_full_hashing_queue_refuses_at_once_and_the_server_stays_responsive() {
    let s = ServerBuilder::new()
        .config_file(
            "[auth]\nhash_workers = 1\nhash_queue = 1\nfailures_before_backoff = 0\n\
             source_failures_before_backoff = 0\n",
        )
        .start()
        .await;
    let admin = s.admin().await;
    let flood = 16;
    let http = (0..flood).map(|_| {
        let s = &s;
        async move { login_from(s, HOME, ADMIN_EMAIL, "wrong").await }
    });
    let mqtt = (0..flood).map(|i| {
        let addr = s.mqtt.clone();
        async move {
            let user = format!("user:{ADMIN_EMAIL}");
            let packet = connect_packet(V5, &format!("f{i}"), Some(&user), Some("wrong"));
            Raw::connect(&addr, packet).await.1.reason_code
        }
    });
    let started = Instant::now();
    let probe = async {
        // The API answers while the flood hashes.
        let t = Instant::now();
        let r = admin.get("/api/v1/users").await;
        (r.status, t.elapsed())
    };
    let (http, mqtt, (probe_status, probe_took)) =
        tokio::time::timeout(Duration::from_secs(120), async {
            tokio::join!(
                futures::future::join_all(http),
                futures::future::join_all(mqtt),
                probe
            )
        })
        .await
        .expect("every login is answered: none hangs");
    assert_eq!(probe_status, 200);
    assert!(
        probe_took < Duration::from_secs(2),
        "API took {probe_took:?}"
    );

    let busy_http: Vec<_> = http.iter().filter(|(st, _)| *st == 503).collect();
    assert!(
        http.iter().all(|(st, _)| *st == 401 || *st == 503),
        "{http:?}"
    );
    assert!(
        !busy_http.is_empty(),
        "some logins find the queue full: {http:?}"
    );
    assert!(
        busy_http.iter().all(|(_, retry)| retry.is_some()),
        "{http:?}"
    );
    assert!(
        mqtt.iter()
            .all(|c| *c == ReasonCode::BAD_USER_NAME_OR_PASSWORD || *c == ReasonCode::SERVER_BUSY),
        "{mqtt:?}"
    );
    assert!(mqtt.contains(&ReasonCode::SERVER_BUSY), "{mqtt:?}");
    assert!(started.elapsed() < Duration::from_secs(120));

    let lines = metric(&s, "ferrule_auth_hash").await;
    let value = |name: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} in {lines:?}"))
    };
    assert_eq!(value("ferrule_auth_hash_workers"), 1.0);
    assert_eq!(value("ferrule_auth_hash_queue_capacity"), 1.0);
    assert!(value("ferrule_auth_hash_refused_total") >= 2.0, "{lines:?}");
    // Still serving logins after the flood.
    assert_eq!(s.anon().get("/readyz").await.status, 200);
    s.admin().await;
    s.stop().await;
}
