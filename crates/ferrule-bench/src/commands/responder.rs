//! The devices of `bench commands`: one MQTT 3.1.1 connection each, logged
//! in with the device's access token, subscribed to its commands and its
//! desired-state delta. A device answers every command at once and tells
//! the bench when a delta carrying the bench's value arrives.
//!
//! Lean, for a thousand of them on a shared core: one task per device, one
//! small read buffer, every complete packet of a read handled, and the
//! PUBACKs and replies of one read written together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use ferrule_mqtt::codec::{
    self, Ack, Connect, MqttStr, Packet, PacketId, Publish, QoS, Subscribe, Subscription,
    SubscriptionOptions,
};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::bytes::{Bytes, BytesMut};

use super::BENCH_KEY;
use crate::loadgen::{VERSION, check_connack, check_suback, decode, fill};
use crate::telemetry::server::Device;

/// Room kept in a device's read buffer: commands and deltas are small.
const READ_SPARE: usize = 4096;

/// A delta a device received with the bench's value in it.
#[derive(Debug, Clone, Copy)]
pub(super) struct DeltaSeen {
    /// The device's index in the bench's list.
    pub(super) device: usize,
    /// The value of [`BENCH_KEY`] in the delta.
    pub(super) value: u64,
    /// When the device read it.
    pub(super) at: Instant,
}

/// What the devices have done, summed over all of them.
#[derive(Debug, Default)]
pub(super) struct DeviceCounts {
    /// Commands answered.
    pub(super) answered: AtomicU64,
    /// Commands whose payload had no `"id"` to answer with.
    pub(super) unreadable: AtomicU64,
    /// Deltas not passed on because the bench was not reading them fast
    /// enough (the channel was full).
    pub(super) deltas_dropped: AtomicU64,
}

/// One device's connection, subscribed and ready.
pub(super) struct Responder {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    index: usize,
}

impl Responder {
    /// Connects as `device` (user name: its access token), subscribes at
    /// QoS 1 to `devices/{id}/commands/+` and `devices/{id}/state/delta`,
    /// and waits for the SUBACK. Packets after the SUBACK (a retained
    /// delta) stay buffered for [`Responder::run`].
    pub(super) async fn connect(
        addr: SocketAddr,
        device: &Device,
        index: usize,
    ) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting device {} to {addr}", device.id))?;
        stream.set_nodelay(true)?;
        let mut responder = Responder {
            stream,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            index,
        };
        // Keep alive 0: no PINGREQ falls due, however long the run.
        let mut connect = Connect::new(VERSION, MqttStr::new(&device.id)?, 0);
        connect.username = Some(MqttStr::new(&device.token)?);
        codec::encode(&connect.into(), VERSION, &mut responder.wbuf)?;
        responder.flush().await?;
        check_connack(responder.recv().await?)
            .with_context(|| format!("device {} logging in", device.id))?;
        let subscribe = Subscribe {
            packet_id: PacketId::new(1).context("packet id")?,
            properties: Default::default(),
            subscriptions: [
                format!("devices/{}/commands/+", device.id),
                format!("devices/{}/state/delta", device.id),
            ]
            .iter()
            .map(|filter| {
                Ok(Subscription {
                    topic_filter: MqttStr::new(filter)?,
                    options: SubscriptionOptions::new(QoS::AtLeastOnce),
                })
            })
            .collect::<anyhow::Result<_>>()?,
        };
        codec::encode(&Packet::Subscribe(subscribe), VERSION, &mut responder.wbuf)?;
        responder.flush().await?;
        check_suback(responder.recv().await?)
            .with_context(|| format!("device {} subscribing", device.id))?;
        Ok(responder)
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        self.stream.write_all(&self.wbuf).await?;
        self.wbuf.clear();
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some(packet) = decode(&mut self.rbuf)? {
                return Ok(packet);
            }
            if !fill(&mut self.stream, &mut self.rbuf, READ_SPARE).await? {
                bail!("the server closed the connection");
            }
        }
    }

    /// Answers commands and passes deltas on until the connection fails
    /// or the task is aborted.
    pub(super) async fn run(
        mut self,
        counts: Arc<DeviceCounts>,
        deltas: mpsc::Sender<DeltaSeen>,
    ) -> anyhow::Result<()> {
        loop {
            // One timestamp per read: every packet in it arrived by then.
            let at = Instant::now();
            while let Some(packet) = decode(&mut self.rbuf)? {
                match packet {
                    Packet::Publish(p) => self.handle(p, at, &counts, &deltas)?,
                    Packet::Disconnect(d) => {
                        bail!(
                            "the server disconnected the device: 0x{:02x}",
                            d.reason_code.0
                        )
                    }
                    // PUBACKs never come (replies are QoS 0); anything
                    // else from the server is no business of the bench.
                    _ => {}
                }
            }
            if !self.wbuf.is_empty() {
                self.flush().await?;
            }
            if !fill(&mut self.stream, &mut self.rbuf, READ_SPARE).await? {
                bail!("the server closed the connection");
            }
        }
    }

    fn handle(
        &mut self,
        publish: Publish,
        at: Instant,
        counts: &DeviceCounts,
        deltas: &mpsc::Sender<DeltaSeen>,
    ) -> anyhow::Result<()> {
        if let Some(id) = publish.packet_id {
            codec::encode(&Packet::PubAck(Ack::new(id)), VERSION, &mut self.wbuf)?;
        }
        let topic = publish.topic.as_str();
        if topic.ends_with("/state/delta") {
            if let Some(value) = delta_value(&publish.payload) {
                let seen = DeltaSeen {
                    device: self.index,
                    value,
                    at,
                };
                if deltas.try_send(seen).is_err() {
                    counts.deltas_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        } else if topic.contains("/commands/") {
            match reply_to(topic, &publish.payload)? {
                Some(reply) => {
                    codec::encode(&Packet::Publish(reply), VERSION, &mut self.wbuf)?;
                    counts.answered.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    counts.unreadable.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }
}

/// The value of [`BENCH_KEY`] in a delta payload, if it has one.
fn delta_value(payload: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Value>(payload).ok()?[BENCH_KEY].as_u64()
}

/// The reply to a command received on `topic`: QoS 0 on
/// `{topic}/response` with `{"id": <its id>, "result": {"ok": true}}`, the
/// 3.1.1 way, which Ferrule takes from either version. `None` when the
/// payload carries no id to answer with.
fn reply_to(topic: &str, payload: &[u8]) -> anyhow::Result<Option<Publish>> {
    let Ok(request) = serde_json::from_slice::<Value>(payload) else {
        return Ok(None);
    };
    let Some(id) = request["id"].as_str() else {
        return Ok(None);
    };
    let body = serde_json::json!({ "id": id, "result": { "ok": true } });
    let reply = Publish::new(
        MqttStr::new(&format!("{topic}/response"))?,
        Bytes::from(body.to_string()),
    );
    Ok(Some(reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_answered_with_its_id_on_the_response_topic() {
        let reply = reply_to(
            "devices/bench-0001/commands/bench",
            br#"{"id": "c-42", "name": "bench", "params": {"k": 1}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            reply.topic.as_str(),
            "devices/bench-0001/commands/bench/response"
        );
        assert_eq!(reply.qos, QoS::AtMostOnce);
        let body: Value = serde_json::from_slice(&reply.payload).unwrap();
        assert_eq!(body["id"], "c-42");
        assert_eq!(body["result"]["ok"], true);
    }

    #[test]
    fn a_command_without_an_id_gets_no_reply() {
        let topic = "devices/d/commands/bench";
        assert!(reply_to(topic, b"not json").unwrap().is_none());
        assert!(reply_to(topic, br#"{"name": "bench"}"#).unwrap().is_none());
        assert!(reply_to(topic, br#"{"id": 7}"#).unwrap().is_none());
    }

    #[test]
    fn the_bench_value_is_read_from_a_delta() {
        let delta = format!(r#"{{"{BENCH_KEY}": 12345, "other": {{"x": 1}}}}"#);
        assert_eq!(delta_value(delta.as_bytes()), Some(12345));
        assert_eq!(delta_value(br#"{"other": 1}"#), None);
        assert_eq!(delta_value(b"{}"), None);
        assert_eq!(delta_value(b"garbage"), None);
    }
}
