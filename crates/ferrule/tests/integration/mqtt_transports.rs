//! MQTT over TLS (server certificate, registered client certificates) and
//! over WebSocket at `/mqtt`, with paho-mqtt as the peer.

use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::mqtt_util::create_device;
use crate::util::{ADMIN_EMAIL, ADMIN_PASSWORD, ServerBuilder};

/// Runs a scenario of `tests/peers/transports.py`.
async fn peer(scenario: &str, env: &[(&str, String)]) {
    crate::util::python_peer("transports.py", scenario, env).await;
}

struct Pki {
    client_der: Vec<u8>,
}

/// A server certificate for 127.0.0.1/localhost and a self-signed client
/// certificate, written as PEM files into `dir`.
fn make_pki(dir: &Path) -> Pki {
    let server =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(dir.join("server.pem"), server.cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server.signing_key.serialize_pem()).unwrap();
    let client = rcgen::generate_simple_self_signed(vec!["pump".into()]).unwrap();
    std::fs::write(dir.join("client.pem"), client.cert.pem()).unwrap();
    std::fs::write(dir.join("client.key"), client.signing_key.serialize_pem()).unwrap();
    Pki {
        client_der: client.cert.der().to_vec(),
    }
}

#[tokio::test]
async fn tls_and_websocket_carry_mqtt() {
    let b = ServerBuilder::new();
    let dir = b.dir().to_path_buf();
    let pki = make_pki(&dir);
    let s = b.tls_from_dir().mqtts_on_free_port().start().await;
    let admin = s.admin().await;
    let token = create_device(&admin, "pump").await;
    let fingerprint = format!("sha256:{}", hex::encode(Sha256::digest(&pki.client_der)));
    let env = vec![
        ("FERRULE_MQTTS", s.listed_address("MQTT/TLS")),
        (
            "FERRULE_WS",
            s.http.trim_start_matches("http://").to_owned(),
        ),
        (
            "FERRULE_CA",
            dir.join("server.pem").to_str().unwrap().to_owned(),
        ),
        (
            "CLIENT_CERT",
            dir.join("client.pem").to_str().unwrap().to_owned(),
        ),
        (
            "CLIENT_KEY",
            dir.join("client.key").to_str().unwrap().to_owned(),
        ),
        ("DEVICE_TOKEN", token),
        ("DEVICE_ID", "pump".to_owned()),
        ("USER", format!("user:{ADMIN_EMAIL}")),
        ("PASSWORD", ADMIN_PASSWORD.to_owned()),
    ];
    peer("tls_unregistered_certificate", &env).await;
    let r = admin
        .post(
            "/api/v1/devices/pump/credentials",
            json!({"type": "x509", "fingerprint": fingerprint}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    peer("tls_certificate_login", &env).await;
    peer("tls_token_login", &env).await;
    peer("ws_token_pubsub", &env).await;
    // Revoking the certificate credential locks the device out again.
    let cred = r.json["id"].as_str().unwrap();
    assert_eq!(
        admin
            .delete(&format!("/api/v1/devices/pump/credentials/{cred}"))
            .await
            .status,
        204
    );
    peer("tls_unregistered_certificate", &env).await;
    assert!(s.stop().await.success());
}

#[tokio::test]
async fn mqtts_port_in_use_is_a_startup_error() {
    let b = ServerBuilder::new();
    let dir = b.dir().to_path_buf();
    make_pki(&dir);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = b
        .tls_from_dir()
        .arg("--mqtts-listen")
        .arg(taken.local_addr().unwrap().to_string())
        .run_to_exit()
        .await;
    out.assert_refused("mqtts.listen", "already in use");
    assert!(!dir.join("data").exists(), "nothing written");
}
