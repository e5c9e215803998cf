//! A device's connection announces itself on
//! `$ferrule/devices/{id}/connectivity`: once when accepted, once when it
//! ends, with why it ended. Other clients announce nothing.

use std::sync::Arc;
use std::time::Duration;

use ferrule_bus::{Delivered, Entry, Matched, Subscriber, SubscriptionOptions};
use ferrule_core::connectivity::{ConnectivityChange, ConnectivityEvent, DisconnectReason};
use ferrule_core::{Message, Origin, TenantId};
use ferrule_mqtt::codec::{Connect, Disconnect, Packet, ProtocolVersion, QoS, ReasonCode};
use parking_lot::Mutex;
use tokio::time::{Instant, sleep};

use crate::harness::{TestBroker, connect_v5, s};

const SECOND: Duration = Duration::from_secs(1);

/// Collects the connectivity events the router carries.
#[derive(Default)]
struct Events(Mutex<Vec<ConnectivityEvent>>);

impl Subscriber for Events {
    fn deliver(&self, message: &Arc<Message>, _: &Matched) -> Delivered {
        assert!(matches!(message.origin, Origin::System));
        let e: ConnectivityEvent = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(
            message.topic,
            format!("$ferrule/devices/{}/connectivity", e.device)
        );
        self.0.lock().push(e);
        Delivered::default()
    }
}

impl Events {
    fn watch(broker: &TestBroker) -> Arc<Self> {
        let events = Arc::new(Events::default());
        let router = broker.broker().router.clone();
        router.subscribe(
            &TenantId::default_tenant(),
            "$ferrule/devices/+/connectivity",
            Entry {
                id: router.next_subscriber_id(),
                subscriber: events.clone(),
                options: SubscriptionOptions::qos(QoS::AtLeastOnce),
            },
        );
        events
    }

    /// The events so far, emptied.
    async fn take(&self) -> Vec<ConnectivityEvent> {
        // Let the connection tasks finish what they started.
        sleep(Duration::from_millis(10)).await;
        std::mem::take(&mut *self.0.lock())
    }
}

/// A CONNECT of device `device` as client `client`.
fn device(version: ProtocolVersion, device: &str, client: &str, keep_alive: u16) -> Connect {
    let mut c = Connect::new(version, s(client), keep_alive);
    c.username = Some(s(device));
    c
}

fn reasons(events: &[ConnectivityEvent]) -> Vec<(ConnectivityChange, Option<DisconnectReason>)> {
    events.iter().map(|e| (e.event, e.reason)).collect()
}

#[tokio::test(start_paused = true)]
async fn a_silent_device_times_out_and_its_last_packet_is_its_last_seen() {
    let broker = TestBroker::start();
    let events = Events::watch(&broker);
    let (mut client, ack) = broker
        .connect(device(ProtocolVersion::V311, "pump-1", "c1", 10))
        .await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    let connected = events.take().await;
    assert_eq!(connected.len(), 1, "{connected:?}");
    let c = &connected[0];
    assert_eq!(c.event, ConnectivityChange::Connected);
    assert_eq!(
        (
            c.device.as_str(),
            c.client_id.as_str(),
            c.address.as_str(),
            c.protocol.as_str()
        ),
        ("pump-1", "c1", "192.0.2.1:1883", "3.1.1")
    );
    assert_eq!((c.reason, c.last_seen), (None, None));
    // One ping, then silence: the timeout comes 15 s after the ping.
    sleep(5 * SECOND).await;
    client.send(Packet::PingReq).await;
    assert_eq!(client.expect(SECOND).await, Packet::PingResp);
    let pinged = Instant::now();
    client.until_closed().await;
    assert_eq!(pinged.elapsed(), 15 * SECOND);
    let gone = events.take().await;
    assert_eq!(
        reasons(&gone),
        [(
            ConnectivityChange::Disconnected,
            Some(DisconnectReason::KeepAliveTimeout)
        )]
    );
    let (seen, at) = (gone[0].last_seen.unwrap(), gone[0].ts);
    // Wall-clock ms: the ping was 15 s (paused time does not move the
    // wall clock, so only the order is certain).
    assert!(seen <= at, "last seen {seen} after the event {at}");
}

#[tokio::test(start_paused = true)]
async fn each_way_a_connection_ends_has_its_reason() {
    let broker = TestBroker::start();
    let events = Events::watch(&broker);

    // DISCONNECT from the client (with or without will: both are the client's).
    for code in [
        ReasonCode::SUCCESS,
        ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
    ] {
        let (mut c, _) = broker
            .connect(device(ProtocolVersion::V5, "pump-1", "c1", 60))
            .await;
        c.send(Packet::Disconnect(Disconnect::new(code))).await;
        c.until_closed().await;
    }
    assert_eq!(
        reasons(&events.take().await),
        [
            (ConnectivityChange::Connected, None),
            (
                ConnectivityChange::Disconnected,
                Some(DisconnectReason::ClientDisconnect)
            ),
            (ConnectivityChange::Connected, None),
            (
                ConnectivityChange::Disconnected,
                Some(DisconnectReason::ClientDisconnect)
            ),
        ]
    );

    // The same client id again takes the session over.
    let (mut old, _) = broker
        .connect(device(ProtocolVersion::V5, "pump-1", "c1", 60))
        .await;
    let (mut new, _) = broker
        .connect(device(ProtocolVersion::V5, "pump-1", "c1", 60))
        .await;
    let got = old.until_closed().await;
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::SESSION_TAKEN_OVER),
        "{got:?}"
    );
    let taken = events.take().await;
    assert_eq!(
        reasons(&taken),
        [
            (ConnectivityChange::Connected, None),
            (ConnectivityChange::Connected, None),
            (
                ConnectivityChange::Disconnected,
                Some(DisconnectReason::Takeover)
            ),
        ]
    );

    // Revoked credentials close it with an administrative action.
    broker
        .broker()
        .disconnect_identity(&TenantId::default_tenant(), Some("device:pump-1"));
    new.until_closed().await;
    assert_eq!(
        reasons(&events.take().await),
        [(
            ConnectivityChange::Disconnected,
            Some(DisconnectReason::Revoked)
        )]
    );

    // A protocol violation (a second CONNECT).
    let (mut c, _) = broker
        .connect(device(ProtocolVersion::V5, "pump-1", "c1", 60))
        .await;
    c.send(Packet::Connect(Box::new(connect_v5("c1", 60))))
        .await;
    c.until_closed().await;
    // The socket just closing.
    let (c2, _) = broker
        .connect(device(ProtocolVersion::V311, "pump-2", "c2", 60))
        .await;
    drop(c2);
    let ended = events.take().await;
    assert_eq!(
        reasons(&ended),
        [
            (ConnectivityChange::Connected, None),
            (
                ConnectivityChange::Disconnected,
                Some(DisconnectReason::ProtocolError)
            ),
            (ConnectivityChange::Connected, None),
            (
                ConnectivityChange::Disconnected,
                Some(DisconnectReason::ConnectionLost)
            ),
        ]
    );
    assert_eq!(ended[3].device, "pump-2");

    // Clients that are not devices announce nothing.
    let (mut anon, _) = broker.connect(connect_v5("anon", 60)).await;
    anon.send(Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)))
        .await;
    anon.until_closed().await;
    assert!(events.take().await.is_empty());

    // Shutting down closes every device with that reason.
    let (mut last, _) = broker
        .connect(device(ProtocolVersion::V5, "pump-3", "c3", 60))
        .await;
    events.take().await;
    drop(broker);
    last.until_closed().await;
    assert_eq!(
        reasons(&events.take().await),
        [(
            ConnectivityChange::Disconnected,
            Some(DisconnectReason::ServerShutdown)
        )]
    );
}
