//! X.509 client certificates across tenants (issue 8): a fingerprint is a
//! public value, so registering one must neither capture nor block another
//! tenant's device, nor reveal where it is registered. Devices may name
//! their tenant (username `DEVICE@TENANT` or `@TENANT`, or the TLS server
//! name `TENANT.…`); a device that names nothing resolves to the one tenant
//! whose registration it has claimed.

use std::sync::Arc;

use ferrule_mqtt::codec::{self, Packet, QoS, ReasonCode};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::bytes::BytesMut;

use crate::mqtt_util::{V5, WAIT, connect_packet, publish_packet};
use crate::util::{Api, Server, ServerBuilder, tenant_with_owner};

/// Host names on the server certificate: a tenant's name as the first label.
const SERVER_NAMES: &[&str] = &[
    "localhost",
    "127.0.0.1",
    "mqtt.test",
    "alpha.mqtt.test",
    "beta.mqtt.test",
    "gamma.mqtt.test",
];

/// A device's self-signed client certificate and key.
struct DeviceCert {
    der: Vec<u8>,
    key: Vec<u8>,
}

impl DeviceCert {
    fn new(name: &str) -> Self {
        let c = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        Self {
            der: c.cert.der().to_vec(),
            key: c.signing_key.serialize_der(),
        }
    }

    fn fingerprint(&self) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(&self.der)))
    }
}

/// A server with MQTT over TLS, and tenants alpha, beta and gamma (each
/// with an owner and a device `pump`).
struct Tls {
    s: Server,
    ca: CertificateDer<'static>,
    mqtts: String,
    tenants: Vec<(&'static str, Api)>,
}

impl Tls {
    async fn start() -> Tls {
        let b = ServerBuilder::new();
        let dir = b.dir().to_path_buf();
        let server = rcgen::generate_simple_self_signed(
            SERVER_NAMES
                .iter()
                .map(|n| (*n).to_owned())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        std::fs::write(dir.join("server.pem"), server.cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), server.signing_key.serialize_pem()).unwrap();
        let s = b.tls_from_dir().mqtts_on_free_port().start().await;
        let mqtts = s.listed_address("MQTT/TLS");
        let admin = s.admin().await;
        let mut tenants = Vec::new();
        for t in ["alpha", "beta", "gamma"] {
            let owner = tenant_with_owner(&s, &admin, t).await;
            let r = owner.post("/api/v1/devices", json!({"id": "pump"})).await;
            assert_eq!(r.status, 201, "{}", r.text);
            tenants.push((t, owner));
        }
        Tls {
            s,
            ca: server.cert.der().clone(),
            mqtts,
            tenants,
        }
    }

    fn owner(&self, tenant: &str) -> &Api {
        &self.tenants.iter().find(|(t, _)| *t == tenant).unwrap().1
    }

    /// Registers the certificate on a device of a tenant; the status.
    async fn register(&self, tenant: &str, device: &str, cert: &DeviceCert) -> u16 {
        let owner = self.owner(tenant);
        if device != "pump" {
            owner.post("/api/v1/devices", json!({"id": device})).await;
        }
        let r = owner
            .post(
                &format!("/api/v1/devices/{device}/credentials"),
                json!({"type": "x509", "fingerprint": cert.fingerprint()}),
            )
            .await;
        if r.status != 201 {
            r.assert_problem(r.status);
        }
        r.status
    }

    /// Connects over TLS with the certificate, the server name (a DNS name
    /// is sent as SNI; an IP address is not) and a username without a
    /// password; returns the CONNACK code and the connection.
    async fn login(
        &self,
        cert: &DeviceCert,
        server_name: &str,
        username: Option<&str>,
    ) -> (ReasonCode, Device) {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key.clone()));
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![CertificateDer::from(cert.der.clone())], key)
        .unwrap();
        let tcp = TcpStream::connect(&self.mqtts).await.unwrap();
        let name = ServerName::try_from(server_name.to_owned()).unwrap();
        let stream = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("TLS handshake");
        let mut dev = Device {
            stream,
            rbuf: BytesMut::new(),
        };
        let connect = connect_packet(V5, "", username, None);
        dev.send(Packet::Connect(Box::new(connect))).await;
        match dev.recv().await {
            Packet::ConnAck(ack) => (ack.reason_code, dev),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Logs in and publishes `{"n": n}` as device pump's telemetry; returns
    /// the tenant that stored it (or the refusal).
    async fn lands_in(
        &self,
        cert: &DeviceCert,
        server_name: &str,
        username: Option<&str>,
        n: u32,
    ) -> Result<&'static str, ReasonCode> {
        let (code, mut dev) = self.login(cert, server_name, username).await;
        if code != ReasonCode::SUCCESS {
            return Err(code);
        }
        let body = format!(r#"{{"n": {n}}}"#);
        let p = publish_packet(
            "devices/pump/telemetry",
            body.as_bytes(),
            QoS::AtLeastOnce,
            Some(1),
        );
        dev.send(Packet::Publish(p)).await;
        match dev.recv().await {
            Packet::PubAck(a) => assert_eq!(a.reason_code, ReasonCode::SUCCESS, "{a:?}"),
            other => panic!("expected PUBACK, got {other:?}"),
        }
        let mut found = Vec::new();
        for (tenant, owner) in &self.tenants {
            let latest = owner.get("/api/v1/devices/pump/telemetry/latest").await;
            if latest.json["n"]["value"] == n {
                found.push(*tenant);
            }
        }
        assert_eq!(found.len(), 1, "stored in exactly one tenant: {found:?}");
        Ok(found[0])
    }

    async fn ambiguous_refusals(&self) -> f64 {
        let text = self.s.anon().get("/metrics").await.text;
        text.lines()
            .filter(|l| {
                l.starts_with("ferrule_auth_failures_total{")
                    && l.contains(r#"reason="ambiguous_certificate""#)
                    && l.contains(r#"transport="mqtt""#)
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }
}

/// A raw MQTT 5 client over TLS.
struct Device {
    stream: TlsStream<TcpStream>,
    rbuf: BytesMut,
}

impl Device {
    async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        codec::encode(&packet, V5, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    async fn recv(&mut self) -> Packet {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(p) = codec::decode(&mut self.rbuf, V5, 1 << 20).unwrap() {
                return p;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .expect("a packet within the wait")
                .expect("read");
            assert!(n > 0, "the broker closed the connection");
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[tokio::test]
async fn a_certificate_registered_in_two_tenants_is_neither_captured_nor_revealed() {
    let t = Tls::start().await;
    let c = DeviceCert::new("pump.beta");
    assert_eq!(t.register("beta", "pump", &c).await, 201);
    // A duplicate inside one's own tenant is a conflict ...
    assert_eq!(t.register("beta", "pump2", &c).await, 409);
    // ... another tenant's registration is not revealed.
    assert_eq!(t.register("alpha", "pump", &c).await, 201);

    // Two registrations, none claimed: a device naming nothing is refused,
    // never captured, and the refusal is counted apart.
    let before = t.ambiguous_refusals().await;
    assert_eq!(
        t.lands_in(&c, "127.0.0.1", None, 1).await,
        Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
    );
    assert_eq!(t.ambiguous_refusals().await, before + 1.0);
    assert!(
        t.s.stderr().contains("must name its tenant"),
        "logged with a hint"
    );

    // Beta's device names its tenant once; that claims beta's registration.
    assert_eq!(
        t.lands_in(&c, "127.0.0.1", Some("pump@beta"), 2).await,
        Ok("beta")
    );
    assert_eq!(t.lands_in(&c, "127.0.0.1", None, 3).await, Ok("beta"));

    // A later registration of the claimed certificate elsewhere neither
    // captures nor blocks it.
    assert_eq!(t.register("gamma", "pump", &c).await, 201);
    assert_eq!(t.lands_in(&c, "127.0.0.1", None, 4).await, Ok("beta"));
    assert_eq!(t.lands_in(&c, "mqtt.test", None, 5).await, Ok("beta"));
    t.s.stop().await;
}

#[tokio::test]
async fn devices_name_their_tenant_by_username_or_server_name() {
    let t = Tls::start().await;
    let c = DeviceCert::new("pump.beta");
    assert_eq!(t.register("beta", "pump", &c).await, 201);
    assert_eq!(t.register("alpha", "pump", &c).await, 201);

    // The TLS server name's first label names the tenant.
    assert_eq!(t.lands_in(&c, "beta.mqtt.test", None, 1).await, Ok("beta"));
    // So do `@TENANT` and `DEVICE@TENANT` without a password.
    assert_eq!(
        t.lands_in(&c, "127.0.0.1", Some("@beta"), 2).await,
        Ok("beta")
    );
    assert_eq!(
        t.lands_in(&c, "127.0.0.1", Some("pump@beta"), 3).await,
        Ok("beta")
    );
    // The named device must be the one the certificate is registered to,
    // and a named tenant without the registration does not fall back.
    let (code, _) = t.login(&c, "127.0.0.1", Some("pump2@beta")).await;
    assert_eq!(code, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    let (code, _) = t.login(&c, "gamma.mqtt.test", None).await;
    assert_eq!(code, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    let (code, _) = t.login(&c, "127.0.0.1", Some("@gamma")).await;
    assert_eq!(code, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    // A first label that is no tenant names nothing: beta's claimed
    // registration decides.
    assert_eq!(t.lands_in(&c, "mqtt.test", None, 4).await, Ok("beta"));
    t.s.stop().await;
}
