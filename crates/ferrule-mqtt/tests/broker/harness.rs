//! A broker in the test's own process, and clients that talk to it over
//! in-memory streams (`tokio::io::duplex`) with our codec: no sockets, no
//! server process, so tests can run on paused tokio time and take
//! milliseconds for what takes seconds on a wall clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::BytesMut;
use ferrule_core::{DeviceId, Principal, PrincipalKind, TenantId};
use ferrule_mqtt::broker::{
    Access, Broker, BrokerConfig, Check, Gatekeeper, Login, Refusal, serve_connection,
};
use ferrule_mqtt::codec::{
    self, Ack, ConnAck, Connect, MqttStr, Packet, PacketId, ProtocolVersion, Publish, QoS,
    Subscribe, Subscription, SubscriptionOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_util::sync::CancellationToken;

/// Lets every client do everything: these tests are about time, not rights.
/// Clients without credentials are admitted anonymously; a user name logs
/// in as the device of that id.
struct OpenDoor;

#[async_trait::async_trait]
impl Gatekeeper for OpenDoor {
    async fn authenticate(&self, login: Login<'_>) -> Result<Principal, Refusal> {
        let id = login.username.and_then(|u| DeviceId::new(u).ok());
        match id {
            Some(id) => Ok(Principal {
                tenant: TenantId::default_tenant(),
                kind: PrincipalKind::Device { id },
            }),
            None => Err(Refusal::NotAuthorized),
        }
    }
    async fn prepare(&self, _: &TenantId) {}
    fn allows(&self, _: &Principal, _: Access, _: &str) -> bool {
        true
    }
    fn policy_version(&self, _: &TenantId) -> Arc<AtomicU64> {
        Arc::default()
    }
    fn check(&self, _: &Principal, _: Access) -> Check {
        Check::Everything
    }
}

/// A broker with the default settings, admitting anonymous clients; it
/// shuts down with the test.
pub struct TestBroker {
    broker: Arc<Broker>,
    shutdown: CancellationToken,
}

impl TestBroker {
    pub fn start() -> Self {
        Self::with(|_| {})
    }

    pub fn with(configure: impl FnOnce(&mut BrokerConfig)) -> Self {
        let mut config = BrokerConfig {
            allow_anonymous: true,
            ..BrokerConfig::default()
        };
        configure(&mut config);
        TestBroker {
            broker: Broker::new(config, ferrule_bus::Router::new(), Arc::new(OpenDoor)),
            shutdown: CancellationToken::new(),
        }
    }

    pub fn broker(&self) -> Arc<Broker> {
        self.broker.clone()
    }

    /// Opens a connection, sends `connect`, and returns the client with the
    /// broker's CONNACK.
    pub async fn connect(&self, connect: Connect) -> (Client, ConnAck) {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let peer: SocketAddr = "192.0.2.1:1883".parse().unwrap();
        tokio::spawn(serve_connection(
            self.broker.clone(),
            theirs,
            peer,
            ferrule_mqtt::broker::Transport::Tcp,
            self.shutdown.clone(),
        ));
        let mut client = Client {
            stream: ours,
            version: connect.protocol_version,
            rbuf: BytesMut::new(),
        };
        client.send(Packet::Connect(Box::new(connect))).await;
        match client.recv().await {
            Some(Packet::ConnAck(ack)) => (client, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// One client's end of the stream.
pub struct Client {
    stream: DuplexStream,
    version: ProtocolVersion,
    rbuf: BytesMut,
}

impl Client {
    pub async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        codec::encode(&packet, self.version, &mut out).expect("encodable packet");
        self.stream.write_all(&out).await.expect("broker reads");
    }

    /// The next packet from the broker; `None` once it closed the stream.
    pub async fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) =
                codec::decode(&mut self.rbuf, self.version, usize::MAX).expect("valid packet")
            {
                return Some(p);
            }
            if self.stream.read_buf(&mut self.rbuf).await.ok()? == 0 {
                return None;
            }
        }
    }

    /// The next packet, which must come within `within`.
    pub async fn expect(&mut self, within: Duration) -> Packet {
        tokio::time::timeout(within, self.recv())
            .await
            .unwrap_or_else(|_| panic!("nothing from the broker within {within:?}"))
            .expect("the broker closed the connection")
    }

    /// Asserts that the broker sends nothing for `during`.
    pub async fn expect_silence(&mut self, during: Duration) {
        if let Ok(got) = tokio::time::timeout(during, self.recv()).await {
            panic!("expected silence for {during:?}, got {got:?}");
        }
    }

    /// Reads until the broker closes the stream; returns what it sent.
    pub async fn until_closed(&mut self) -> Vec<Packet> {
        let mut got = Vec::new();
        while let Some(p) = self.recv().await {
            got.push(p);
        }
        got
    }

    /// Subscribes to `filter` at QoS 1 and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str) {
        self.send(Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            properties: Default::default(),
            subscriptions: vec![Subscription {
                topic_filter: s(filter),
                options: SubscriptionOptions::new(QoS::AtLeastOnce),
            }],
        }))
        .await;
        match self.expect(Duration::from_secs(1)).await {
            Packet::SubAck(a) => assert_eq!(a.reason_codes[0].0, 1, "{a:?}"),
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publishes at QoS 1 and waits for the PUBACK.
    pub async fn publish(&mut self, mut p: Publish, id: u16) {
        p.qos = QoS::AtLeastOnce;
        p.packet_id = Some(pid(id));
        self.send(Packet::Publish(p)).await;
        match self.expect(Duration::from_secs(1)).await {
            Packet::PubAck(a) => assert!(!a.reason_code.is_error(), "{a:?}"),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }

    /// The next packet, which must be a PUBLISH; acknowledges it.
    pub async fn recv_publish(&mut self, within: Duration) -> Publish {
        match self.expect(within).await {
            Packet::Publish(p) => {
                if let Some(id) = p.packet_id {
                    self.send(Packet::PubAck(Ack::new(id))).await;
                }
                p
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
}

pub fn s(text: &str) -> MqttStr {
    MqttStr::new(text).unwrap()
}

pub fn pid(id: u16) -> PacketId {
    PacketId::new(id).unwrap()
}

/// An MQTT 5 CONNECT for `client_id`: clean start, the given keep alive, no
/// session expiry.
pub fn connect_v5(client_id: &str, keep_alive: u16) -> Connect {
    Connect::new(ProtocolVersion::V5, s(client_id), keep_alive)
}

/// An MQTT 5 CONNECT whose session outlives the connection by `expiry_secs`.
pub fn persistent_v5(client_id: &str, clean_start: bool, expiry_secs: u32) -> Connect {
    let mut c = connect_v5(client_id, 0);
    c.clean_start = clean_start;
    c.properties.session_expiry_interval = Some(expiry_secs);
    c
}
