//! MQTT logins (SPEC "MQTT"): every credential form works with a real
//! client, and every refusal carries the code the protocol prescribes —
//! checked on the raw CONNACK bytes, since client libraries translate them.

use ferrule_mqtt::codec::{ProtocolVersion, ReasonCode};
use serde_json::json;

use crate::mqtt_util::{
    Event, Raw, V3, V5, WAIT, World, add_device_password, admin_login, connect_packet,
    create_api_key, create_device_with_credential, create_user,
};
use crate::util::ServerBuilder;

/// Connects raw and returns the CONNACK's code as the wire carries it: the
/// 3.1.1 return code, or the MQTT 5 reason code. Also checks that a refusal
/// closes the connection and never claims a session.
async fn connack_code(
    addr: &str,
    version: ProtocolVersion,
    user: Option<&str>,
    pass: Option<&str>,
) -> u8 {
    let mut connect = connect_packet(version, "login-probe", user, pass);
    if version == V3 && user.is_none() {
        // 3.1.1 forbids a password without a user name [MQTT-3.1.2-22].
        connect.password = None;
    }
    let (mut raw, ack, bytes) = Raw::connect(addr, connect).await;
    // Fixed header (type 2), remaining length, flags, code.
    assert_eq!(bytes[0], 0x20, "CONNACK bytes {bytes:02x?}");
    if version == V3 {
        assert_eq!(bytes.len(), 4, "a 3.1.1 CONNACK is 4 bytes: {bytes:02x?}");
    }
    let code = bytes[3];
    if code != 0 {
        assert!(!ack.session_present, "a refusal must not claim a session");
        assert!(
            raw.expect_close().await.is_empty(),
            "nothing may follow a refused CONNACK"
        );
    }
    code
}

#[tokio::test]
async fn every_login_form_works_with_a_real_client() {
    let w = World::start().await;
    add_device_password(&w.admin, "pump", "device-pass-123").await;
    let editor = create_user(&w.admin, "ed@example.com", "editor").await;
    let key = create_api_key(&w.admin, "editor").await;
    for v in [V3, V5] {
        w.peer()
            .proto(v)
            // Device token as the username, no password.
            .token("TOKEN", &w.pump)
            .env("TOKEN_TOPIC", "devices/pump/a")
            // DEVICE@TENANT + password.
            .login(
                "DEVPW",
                &("pump@default".to_owned(), "device-pass-123".to_owned()),
            )
            .env("DEVPW_TOPIC", "devices/pump/b")
            // user:EMAIL + password; the admin and an editor.
            .login("ADMIN", &admin_login())
            .env("ADMIN_TOPIC", "anything/admin")
            .login("EDITOR", &editor)
            .env("EDITOR_TOPIC", "anything/editor")
            // key:ID + secret.
            .login("KEY", &key)
            .env("KEY_TOPIC", "anything/key")
            .env("LOGINS", "TOKEN,DEVPW,ADMIN,EDITOR,KEY")
            .run("login_roundtrip")
            .await;
    }
}

#[tokio::test]
async fn wrong_credentials_get_bad_username_or_password() {
    let w = World::start().await;
    add_device_password(&w.admin, "pump", "device-pass-123").await;
    let (key_user, _) = create_api_key(&w.admin, "editor").await;
    let bogus_token = format!("fd_{}", "0".repeat(64));
    let cases: Vec<(&str, Option<&str>, Option<&str>)> = vec![
        ("unknown device token", Some(&bogus_token), None),
        (
            "device token with a typo",
            Some(&w.pump[..w.pump.len() - 1]),
            None,
        ),
        (
            "DEVICE@TENANT, wrong password",
            Some("pump@default"),
            Some("wrong-password"),
        ),
        ("DEVICE@TENANT, no password", Some("pump@default"), None),
        (
            "unknown device",
            Some("ghost@default"),
            Some("device-pass-123"),
        ),
        (
            "unknown tenant",
            Some("pump@nowhere"),
            Some("device-pass-123"),
        ),
        (
            "user, wrong password",
            Some("user:admin@localhost"),
            Some("nope-nope-nope"),
        ),
        (
            "unknown user",
            Some("user:nobody@example.com"),
            Some("whatever-123"),
        ),
        ("key, wrong secret", Some(&key_user), Some("fk_wrong")),
        ("unknown key", Some("key:k_0000000000000000"), Some("fk_x")),
        ("a username of no known form", Some("hello"), Some("world")),
    ];
    for (what, user, pass) in cases {
        assert_eq!(
            connack_code(&w.s.mqtt, V3, user, pass).await,
            4,
            "3.1.1, {what}: return code 4 (bad user name or password)"
        );
        assert_eq!(
            connack_code(&w.s.mqtt, V5, user, pass).await,
            0x86,
            "MQTT 5, {what}: 0x86 (bad user name or password)"
        );
    }
    // MQTT 5 allows a password without a user name; it matches no login.
    assert_eq!(
        connack_code(&w.s.mqtt, V5, None, Some("device-pass-123")).await,
        0x86
    );
}

#[tokio::test]
async fn no_credentials_are_refused_unless_anonymous_is_enabled() {
    let w = World::start().await;
    assert_eq!(
        connack_code(&w.s.mqtt, V3, None, None).await,
        5,
        "3.1.1: return code 5 (not authorised)"
    );
    assert_eq!(
        connack_code(&w.s.mqtt, V5, None, None).await,
        0x87,
        "MQTT 5: 0x87 (not authorized)"
    );

    // With the flag, an anonymous client joins tenant `default`.
    let w = World::with(ServerBuilder::new().arg("--mqtt-allow-anonymous")).await;
    assert_eq!(connack_code(&w.s.mqtt, V3, None, None).await, 0);
    assert_eq!(connack_code(&w.s.mqtt, V5, None, None).await, 0);
    for v in [V3, V5] {
        w.peer().proto(v).run("anonymous").await;
    }
    // Credentials are still checked when given.
    assert_eq!(
        connack_code(&w.s.mqtt, V5, Some("user:admin@localhost"), Some("bad")).await,
        0x86
    );
}

#[tokio::test]
async fn revoked_token_disabled_device_and_revoked_key_no_longer_connect() {
    let w = World::start().await;
    let (token, credential) = create_device_with_credential(&w.admin, "meter").await;
    add_device_password(&w.admin, "meter", "meter-pass-123").await;
    assert_eq!(connack_code(&w.s.mqtt, V5, Some(&token), None).await, 0);

    let r = w
        .admin
        .delete(&format!("/api/v1/devices/meter/credentials/{credential}"))
        .await;
    assert!(r.status == 204 || r.status == 200, "{}", r.text);
    assert_eq!(connack_code(&w.s.mqtt, V5, Some(&token), None).await, 0x86);
    assert_eq!(connack_code(&w.s.mqtt, V3, Some(&token), None).await, 4);
    // The device's other credential still works.
    assert_eq!(
        connack_code(&w.s.mqtt, V5, Some("meter@default"), Some("meter-pass-123")).await,
        0
    );

    // A disabled device does not authenticate, whatever the credential.
    let r = w
        .admin
        .patch("/api/v1/devices/pump", json!({"enabled": false}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(connack_code(&w.s.mqtt, V5, Some(&w.pump), None).await, 0x86);
    assert_eq!(connack_code(&w.s.mqtt, V3, Some(&w.pump), None).await, 4);

    // A revoked API key neither.
    let (key_user, secret) = create_api_key(&w.admin, "viewer").await;
    assert_eq!(
        connack_code(&w.s.mqtt, V5, Some(&key_user), Some(&secret)).await,
        0
    );
    let id = key_user.trim_start_matches("key:");
    let r = w.admin.delete(&format!("/api/v1/api-keys/{id}")).await;
    assert!(r.status == 204 || r.status == 200, "{}", r.text);
    assert_eq!(
        connack_code(&w.s.mqtt, V5, Some(&key_user), Some(&secret)).await,
        0x86
    );
}

#[tokio::test]
async fn an_authentication_method_gets_bad_authentication_method() {
    // No MQTT 5 enhanced authentication is configured: 0x8C, by a real
    // client and on the wire.
    let w = World::start().await;
    w.peer().proto(V5).run("auth_method_refused").await;
    let mut c = connect_packet(V5, "auth-method", Some(&w.pump), None);
    c.properties.authentication_method = Some(crate::mqtt_util::s("SCRAM-SHA-256"));
    let (mut raw, ack, _) = Raw::connect(&w.s.mqtt, c).await;
    assert_eq!(ack.reason_code, ReasonCode::BAD_AUTHENTICATION_METHOD);
    assert!(raw.expect_close().await.is_empty());
}

#[tokio::test]
async fn client_identifier_rules() {
    let w = World::start().await;
    // 3.1.1: an empty client id needs clean session [MQTT-3.1.3-8]: return
    // code 2 (identifier rejected) without it...
    let mut c = connect_packet(V3, "", Some(&w.pump), None);
    c.clean_start = false;
    let (mut raw, _, bytes) = Raw::connect(&w.s.mqtt, c).await;
    assert_eq!(bytes, [0x20, 0x02, 0x00, 0x02], "CONNACK {bytes:02x?}");
    assert!(raw.expect_close().await.is_empty());
    // ...and is accepted with it.
    let c = connect_packet(V3, "", Some(&w.pump), None);
    let (_raw, _, bytes) = Raw::connect(&w.s.mqtt, c).await;
    assert_eq!(bytes, [0x20, 0x02, 0x00, 0x00], "CONNACK {bytes:02x?}");
    // MQTT 5: the server assigns one (real client; checks it is usable and
    // unique).
    w.peer().proto(V5).run("assigned_client_id").await;
}

#[tokio::test]
async fn an_unsupported_protocol_level_gets_return_code_1() {
    // MQTT 3.1 ("MQIsdp", level 3): [MQTT-3.1.2-2] says answer CONNACK
    // return code 1 (in the 3.1.1 format) and close.
    let w = World::start().await;
    let mut raw = Raw::open(&w.s.mqtt, V3).await;
    let mut body = vec![0x00, 0x06];
    body.extend_from_slice(b"MQIsdp");
    body.extend_from_slice(&[0x03, 0x02, 0x00, 0x1e, 0x00, 0x01, b'x']);
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    raw.send_raw(&packet).await;
    match raw.next(WAIT).await {
        Event::Packet(_, bytes) => assert_eq!(bytes, [0x20, 0x02, 0x00, 0x01]),
        other => panic!("expected CONNACK 1, got {other:?}"),
    }
    assert!(raw.expect_close().await.is_empty());
}
