//! HTTPS: with a certificate configured, the API and MQTT over WebSocket
//! are served over TLS too (python's TLS stack and paho-mqtt as peers),
//! with HSTS; plain HTTP goes on without it.

use crate::mqtt_util::create_device;
use crate::util::ServerBuilder;

async fn peer(scenario: &str, env: &[(&str, String)]) {
    crate::util::python_peer("https.py", scenario, env).await;
}

#[tokio::test]
async fn https_serves_the_api_and_mqtt_over_websocket() {
    let b = ServerBuilder::new();
    let dir = b.dir().to_path_buf();
    let s = b
        .self_signed_tls(&["localhost", "127.0.0.1"])
        .mqtts_on_free_port()
        .start()
        .await;
    let admin = s.admin().await;
    let token = create_device(&admin, "pump").await;
    let env = vec![
        ("FERRULE_HTTPS", s.listed_address("HTTPS")),
        (
            "FERRULE_CA",
            dir.join("server.pem").to_str().unwrap().to_owned(),
        ),
        ("API_TOKEN", admin.token.clone().unwrap()),
        ("DEVICE_TOKEN", token),
        ("DEVICE_ID", "pump".to_owned()),
    ];
    peer("api_over_https", &env).await;
    peer("wss_token_pubsub", &env).await;
    // Plain HTTP still answers, without HSTS (it would be ignored anyway).
    let r = admin.get("/api/v1/auth/me").await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get("strict-transport-security").is_none());
    assert!(
        s.stdout().contains("wss://"),
        "serve prints the wss address: {}",
        s.stdout()
    );
    s.stop().await;
}

#[tokio::test]
async fn https_settings_are_checked_at_start() {
    // A port in use: one line naming the setting, exit 2, nothing written.
    let b = ServerBuilder::new();
    let dir = b.dir().to_path_buf();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = b
        .self_signed_tls(&["localhost"])
        .mqtts_on_free_port()
        .arg("--https-listen")
        .arg(taken.local_addr().unwrap().to_string())
        .run_to_exit()
        .await;
    out.assert_refused("https.listen", "already in use");
    assert!(!dir.join("data").exists(), "nothing written");

    // HTTPS without a certificate.
    let out = ServerBuilder::new()
        .arg("--https-listen")
        .arg("127.0.0.1:0")
        .run_to_exit()
        .await;
    out.assert_refused("https.listen", "--tls-cert");

    // A limit that makes no sense names its setting.
    let out = ServerBuilder::new()
        .env("FERRULE_HTTP_IDLE_TIMEOUT", "never")
        .run_to_exit()
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("http.idle_timeout"), "{}", out.stderr);
}
