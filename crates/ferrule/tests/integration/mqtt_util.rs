//! Helpers for the MQTT tests: identities to log in with, the Python peers
//! (real paho-mqtt clients, `tests/peers/mqtt_peer.py`), and a raw client
//! that writes exactly the bytes a test wants and reads back what the broker
//! sends, for what no well-behaved client library will do.

use std::time::Duration;

use ferrule_mqtt::codec::{
    self, Ack, ConnAck, Connect, MqttStr, Packet, PacketId, ProtocolVersion, Publish, QoS,
    ReasonCode, Subscribe, Subscription, SubscriptionOptions,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;
// The `bytes` crate, through a dependency ferrule already has.
use tokio_util::bytes::BytesMut;

use crate::util::{ADMIN_EMAIL, ADMIN_PASSWORD, Api, Server, ServerBuilder, tenant_with_owner};

/// How long a raw client waits for something it expects.
pub const WAIT: Duration = Duration::from_secs(5);

/// The peer script, run with `python3 PEER_SCRIPT SCENARIO`.
pub const PEER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/mqtt_peer.py");

pub const V3: ProtocolVersion = ProtocolVersion::V311;
pub const V5: ProtocolVersion = ProtocolVersion::V5;

/// The admin's MQTT login: `user:EMAIL` + password.
pub fn admin_login() -> (String, String) {
    (format!("user:{ADMIN_EMAIL}"), ADMIN_PASSWORD.to_owned())
}

/// Creates a device; returns its first access token (the MQTT username).
pub async fn create_device(api: &Api, id: &str) -> String {
    let r = api.post("/api/v1/devices", json!({"id": id})).await;
    assert_eq!(r.status, 201, "create device {id}: {}", r.text);
    r.json["token"].as_str().expect("token").to_owned()
}

/// Creates a device and returns `(token, credential id of that token)`.
pub async fn create_device_with_credential(api: &Api, id: &str) -> (String, String) {
    let r = api.post("/api/v1/devices", json!({"id": id})).await;
    assert_eq!(r.status, 201, "create device {id}: {}", r.text);
    (
        r.json["token"].as_str().expect("token").to_owned(),
        r.json["credential_id"]
            .as_str()
            .expect("credential_id")
            .to_owned(),
    )
}

/// Adds a password credential to a device (login as `DEVICE@TENANT`).
pub async fn add_device_password(api: &Api, id: &str, password: &str) {
    let r = api
        .post(
            &format!("/api/v1/devices/{id}/credentials"),
            json!({"type": "password", "password": password}),
        )
        .await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
}

/// Creates a user; returns the MQTT login `("user:EMAIL", password)`.
pub async fn create_user(api: &Api, email: &str, role: &str) -> (String, String) {
    let password = format!("{role}-password-123");
    let r = api
        .post(
            "/api/v1/users",
            json!({"email": email, "password": password, "role": role}),
        )
        .await;
    assert_eq!(r.status, 201, "create user {email}: {}", r.text);
    (format!("user:{email}"), password)
}

/// Creates an API key; returns the MQTT login `("key:ID", secret)`.
pub async fn create_api_key(api: &Api, role: &str) -> (String, String) {
    let r = api
        .post(
            "/api/v1/api-keys",
            json!({"name": format!("{role}-key"), "role": role}),
        )
        .await;
    assert_eq!(r.status, 201, "create api key: {}", r.text);
    (
        format!("key:{}", r.json["id"].as_str().expect("id")),
        r.json["secret"].as_str().expect("secret").to_owned(),
    )
}

/// A server with the identities most MQTT tests use: device `pump` in
/// tenant `default` (by its token) and the admin, who sees the whole tenant.
pub struct World {
    pub s: Server,
    pub admin: Api,
    /// Device `pump`'s access token.
    pub pump: String,
}

impl World {
    /// An MQTT 5 connection as the admin (client id `obs`), which may
    /// subscribe to anything in tenant `default`: the usual bystander.
    pub async fn observer(&self) -> Raw {
        Raw::login(
            &self.s.mqtt,
            ProtocolVersion::V5,
            "obs",
            &format!("user:{ADMIN_EMAIL}"),
            Some(ADMIN_PASSWORD),
        )
        .await
    }

    pub async fn start() -> World {
        World::with(ServerBuilder::new()).await
    }

    pub async fn with(builder: ServerBuilder) -> World {
        let s = builder.start().await;
        let admin = s.admin().await;
        let pump = create_device(&admin, "pump").await;
        World { s, admin, pump }
    }

    /// A peer run with `DEV` = device pump and `OBS` = the admin.
    pub fn peer(&self) -> Peer<'_> {
        Peer::new(&self.s)
            .token("DEV", &self.pump)
            .login("OBS", &admin_login())
    }

    /// Creates tenant `beta` with its own device `pump`; returns that
    /// device's token and the owner's MQTT login.
    pub async fn beta(&self) -> (String, (String, String)) {
        let owner = tenant_with_owner(&self.s, &self.admin, "beta").await;
        let token = create_device(&owner, "pump").await;
        (
            token,
            (
                "user:owner@beta.example".to_owned(),
                "owner-password".to_owned(),
            ),
        )
    }
}

/// Runs a peer scenario once per protocol version.
pub async fn both_versions(world: &World, scenario: &str) {
    for v in [V3, V5] {
        world.peer().proto(v).run(scenario).await;
    }
}

/// One run of a Python peer scenario against a server.
pub struct Peer<'a> {
    server: &'a Server,
    env: Vec<(String, String)>,
}

impl<'a> Peer<'a> {
    pub fn new(server: &'a Server) -> Self {
        Self {
            server,
            env: Vec::new(),
        }
    }

    pub fn env(mut self, k: &str, v: impl Into<String>) -> Self {
        self.env.push((k.to_owned(), v.into()));
        self
    }

    /// `PREFIX_USER` / `PREFIX_PASS`: the credentials the script's peer
    /// named PREFIX logs in with (an empty password means none).
    pub fn login(self, prefix: &str, (user, pass): &(String, String)) -> Self {
        self.env(&format!("{prefix}_USER"), user.clone())
            .env(&format!("{prefix}_PASS"), pass.clone())
    }

    /// A device token as PREFIX's login (username only).
    pub fn token(self, prefix: &str, token: &str) -> Self {
        self.login(prefix, &(token.to_owned(), String::new()))
    }

    pub fn proto(self, version: ProtocolVersion) -> Self {
        self.env("PROTO", if version == V5 { "5" } else { "3" })
    }

    /// Runs the scenario; panics with the script's output (and the tail of
    /// the server's log) unless it exits 0. Returns its stdout.
    pub async fn run(self, scenario: &str) -> String {
        let (host, port) = self.server.mqtt.rsplit_once(':').expect("host:port");
        let mut cmd = Command::new("python3");
        cmd.arg(PEER_SCRIPT)
            .arg(scenario)
            .env("MQTT_HOST", host)
            .env("MQTT_PORT", port)
            .env("PYTHONUNBUFFERED", "1")
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("peer scenario {scenario} did not finish in 60 s"))
            .expect("run python3");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            let log = self.server.stderr();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "peer scenario {scenario} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server log (tail)\n{}",
                out.status,
                tail.join("\n")
            );
        }
        stdout
    }
}

pub fn s(v: &str) -> MqttStr {
    MqttStr::new(v).expect("valid MQTT string")
}

pub fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero packet id")
}

/// A CONNECT with a client id and optional credentials (clean start,
/// keep alive 30 s).
pub fn connect_packet(
    version: ProtocolVersion,
    client_id: &str,
    username: Option<&str>,
    password: Option<&str>,
) -> Connect {
    let mut c = Connect::new(version, s(client_id), 30);
    c.username = username.map(s);
    c.password = password.map(|p| p.as_bytes().to_vec().into());
    c
}

pub fn publish_packet(topic: &str, payload: &[u8], qos: QoS, packet_id: Option<u16>) -> Publish {
    let mut p = Publish::new(s(topic), payload.to_vec());
    p.qos = qos;
    p.packet_id = packet_id.map(pid);
    p
}

pub fn subscribe_packet(packet_id: u16, filters: &[(&str, QoS)]) -> Subscribe {
    Subscribe {
        packet_id: pid(packet_id),
        properties: Default::default(),
        subscriptions: filters
            .iter()
            .map(|(f, q)| Subscription {
                topic_filter: s(f),
                options: SubscriptionOptions::new(*q),
            })
            .collect(),
    }
}

/// What the next read from the broker brought.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "a test helper, matched by value in assertions"
)]
pub enum Event {
    /// A decoded packet, with its exact bytes on the wire.
    Packet(Packet, Vec<u8>),
    /// The broker closed the connection (EOF or reset).
    Closed,
    /// Nothing within the time given.
    Silent,
}

/// A client on a plain socket: no library between the test and the wire.
pub struct Raw {
    stream: TcpStream,
    rbuf: BytesMut,
    pub version: ProtocolVersion,
}

impl Raw {
    /// Opens a TCP connection; nothing is sent yet.
    pub async fn open(addr: &str, version: ProtocolVersion) -> Raw {
        let stream = TcpStream::connect(addr).await.expect("connect to broker");
        stream.set_nodelay(true).ok();
        Raw {
            stream,
            rbuf: BytesMut::new(),
            version,
        }
    }

    /// Opens a connection and sends `connect`; returns the client and the
    /// CONNACK (whatever its code).
    pub async fn connect(addr: &str, connect: Connect) -> (Raw, ConnAck, Vec<u8>) {
        let mut raw = Raw::open(addr, connect.protocol_version).await;
        raw.send(Packet::Connect(Box::new(connect))).await;
        match raw.next(WAIT).await {
            Event::Packet(Packet::ConnAck(ack), bytes) => (raw, ack, bytes),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Connects and asserts a successful CONNACK.
    pub async fn login(
        addr: &str,
        version: ProtocolVersion,
        client_id: &str,
        username: &str,
        password: Option<&str>,
    ) -> Raw {
        let (raw, ack, _) = Raw::connect(
            addr,
            connect_packet(version, client_id, Some(username), password),
        )
        .await;
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "CONNACK {ack:?}");
        raw
    }

    /// The socket, for a test that reads and writes it on its own; bytes
    /// already read and not yet decoded are lost.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    pub async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        codec::encode(&packet, self.version, &mut out).expect("encode");
        self.send_raw(&out).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        // The broker may already have closed; the reads will tell.
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    /// The next packet, or that the broker closed, or silence for `within`.
    pub async fn next(&mut self, within: Duration) -> Event {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let before = self.rbuf.clone();
            match codec::decode(&mut self.rbuf, self.version, 256 * 1024 * 1024) {
                Ok(Some(p)) => {
                    let used = before.len() - self.rbuf.len();
                    return Event::Packet(p, before[..used].to_vec());
                }
                Ok(None) => {}
                Err(e) => panic!(
                    "broker sent bytes the codec cannot decode ({e}): {:02x?}",
                    &before[..]
                ),
            }
            let mut chunk = [0u8; 16 * 1024];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Event::Silent,
                Ok(Ok(0)) | Ok(Err(_)) => {
                    if self.rbuf.is_empty() {
                        return Event::Closed;
                    }
                    panic!("broker closed mid-packet: {:02x?}", &self.rbuf[..]);
                }
                Ok(Ok(n)) => self.rbuf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next packet; panics on close or silence.
    pub async fn recv(&mut self) -> Packet {
        match self.next(WAIT).await {
            Event::Packet(p, _) => p,
            other => panic!("expected a packet, got {other:?}"),
        }
    }

    /// The next PUBLISH; panics on anything else.
    pub async fn recv_publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Asserts nothing arrives (and the connection stays open) for `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        match self.next(d).await {
            Event::Silent => {}
            other => panic!("expected silence, got {other:?}"),
        }
    }

    /// Reads until the broker closes (within [`WAIT`]); returns what came
    /// first.
    pub async fn expect_close(&mut self) -> Vec<Packet> {
        let mut got = Vec::new();
        loop {
            match self.next(WAIT).await {
                Event::Packet(p, _) => got.push(p),
                Event::Closed => return got,
                Event::Silent => panic!("broker did not close the connection; got {got:?}"),
            }
        }
    }

    /// Subscribes and returns the SUBACK's codes.
    pub async fn subscribe(&mut self, packet_id: u16, filters: &[(&str, QoS)]) -> Vec<ReasonCode> {
        self.send(Packet::Subscribe(subscribe_packet(packet_id, filters)))
            .await;
        match self.recv().await {
            Packet::SubAck(a) => {
                assert_eq!(a.packet_id.get(), packet_id);
                a.reason_codes
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publishes at QoS 0.
    pub async fn publish0(&mut self, topic: &str, payload: &[u8]) {
        self.send(Packet::Publish(publish_packet(
            topic,
            payload,
            QoS::AtMostOnce,
            None,
        )))
        .await;
    }

    /// Publishes at QoS 1 and returns the PUBACK's reason code.
    pub async fn publish1(&mut self, packet_id: u16, topic: &str, payload: &[u8]) -> ReasonCode {
        self.send(Packet::Publish(publish_packet(
            topic,
            payload,
            QoS::AtLeastOnce,
            Some(packet_id),
        )))
        .await;
        match self.recv().await {
            Packet::PubAck(a) => {
                assert_eq!(a.packet_id.get(), packet_id);
                a.reason_code
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }

    pub async fn puback(&mut self, packet_id: PacketId) {
        self.send(Packet::PubAck(Ack::new(packet_id))).await;
    }
}

/// A CONNECT for a session that outlives the connection: clean session 0
/// in 3.1.1; in MQTT 5 session expiry 60 s, with clean start on `first`.
pub fn persistent_connect(
    version: ProtocolVersion,
    client_id: &str,
    username: &str,
    password: &str,
    first: bool,
) -> Connect {
    let mut c = connect_packet(version, client_id, Some(username), Some(password));
    if version == V5 {
        c.clean_start = first;
        c.properties.session_expiry_interval = Some(60);
    } else {
        c.clean_start = false;
    }
    c
}
