//! The task that moves commands along: sends outboxes, takes replies,
//! expires what outlived its TTL.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrule_bus::{Delivered, Entry, Matched, Subscriber, SubscriptionOptions};
use ferrule_core::connectivity::{ConnectivityChange, ConnectivityEvent};
use ferrule_core::message::now_ms;
use ferrule_core::{DeviceId, Message, MessageProperties, Origin, PrincipalKind, QoS};
use ferrule_store::commands::{CommandRecord, CommandState, CommandStore};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::reply::{self, BadReply, Outcome};
use super::{Commands, Event, Key, writer};
use crate::topics;

/// Where devices reply (3.1.1, and 5.0 through the response topic).
const REPLY_FILTER: &str = "devices/+/commands/+/response";

/// Runs the command tracker; see [`Commands::start`].
pub struct Tracker {
    commands: Commands,
    events: mpsc::Receiver<Event>,
    writes: mpsc::Receiver<writer::Write>,
    store: Arc<dyn CommandStore>,
}

/// The tracker's ear on the router: replies and connects, queued.
struct Listener {
    events: mpsc::Sender<Event>,
}

impl Subscriber for Listener {
    fn deliver(&self, message: &Arc<Message>, _: &Matched) -> Delivered {
        let event = if message.topic.starts_with('$') {
            match serde_json::from_slice::<ConnectivityEvent>(&message.payload) {
                Ok(e) if e.event == ConnectivityChange::Connected => {
                    match DeviceId::new(&e.device) {
                        Ok(d) => Event::Outbox((message.tenant.clone(), d)),
                        Err(_) => return Delivered::default(),
                    }
                }
                _ => return Delivered::default(),
            }
        } else {
            Event::Reply(message.clone())
        };
        if self.events.try_send(event).is_err() {
            metrics::counter!("ferrule_command_events_dropped_total").increment(1);
        }
        Delivered::default()
    }
}

impl Tracker {
    pub(super) fn new(
        commands: Commands,
        events: mpsc::Receiver<Event>,
        writes: mpsc::Receiver<writer::Write>,
        store: Arc<dyn CommandStore>,
    ) -> Self {
        Self {
            commands,
            events,
            writes,
            store,
        }
    }

    /// Until shutdown, then stores what is queued.
    pub async fn run(self, shutdown: CancellationToken) {
        let Tracker {
            commands,
            mut events,
            writes,
            store,
        } = self;
        let shared = commands.inner.clone();
        let listener = Arc::new(Listener {
            events: shared.events.clone(),
        });
        for filter in [REPLY_FILTER, topics::CONNECTIVITY_FILTER] {
            shared.router.subscribe_everywhere(
                filter,
                Entry {
                    id: shared.router.next_subscriber_id(),
                    subscriber: listener.clone(),
                    options: SubscriptionOptions::qos(QoS::AtLeastOnce),
                },
            );
        }
        let recent = commands.clone();
        let writer = tokio::spawn(writer::run(writes, store, move |stored| {
            let mut book = recent.inner.book.lock();
            for r in stored {
                if book.recent.get(&r.id).is_some_and(|c| c.state == r.state) {
                    book.recent.remove(&r.id);
                }
            }
        }));
        // Outboxes kept over a restart go out as their devices return.
        let waiting: Vec<Key> = shared.book.lock().outbox.keys().cloned().collect();
        for key in waiting {
            commands.send_outbox(&key).await;
        }
        loop {
            let next = shared.book.lock().expiries.first().map(|(at, _)| *at);
            let until_next = next.map(|at| Duration::from_millis((at - now_ms()).max(0) as u64));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                event = events.recv() => match event {
                    Some(Event::Reply(message)) => commands.take_reply(&message).await,
                    Some(Event::Outbox(key)) => commands.send_outbox(&key).await,
                    Some(Event::Subscribed(tenant)) => {
                        let keys: Vec<Key> = shared
                            .book
                            .lock()
                            .outbox
                            .keys()
                            .filter(|(t, _)| *t == tenant)
                            .cloned()
                            .collect();
                        for key in keys {
                            commands.send_outbox(&key).await;
                        }
                    }
                    None => break,
                },
                _ = tokio::time::sleep(until_next.unwrap_or(Duration::from_secs(3600))), if next.is_some() => {
                    commands.expire_due().await;
                }
                _ = shared.expiry_changed.notified() => {}
            }
        }
        // What was changed until now is stored before the process ends.
        commands.flush().await;
        writer.abort();
    }
}

impl Commands {
    /// Sends the device its pending commands, in order, while it is online
    /// and subscribed to them.
    async fn send_outbox(&self, key: &Key) {
        let (tenant, device) = key;
        if !self.inner.connectivity.is_online(tenant, device) {
            return;
        }
        let owner = PrincipalKind::device_owner(device);
        loop {
            let next = {
                let book = self.inner.book.lock();
                book.outbox
                    .get(key)
                    .and_then(|o| o.values().next())
                    .and_then(|id| book.open.get(id))
                    .map(|o| o.record.clone())
            };
            let Some(mut record) = next else { return };
            let topic = format!("devices/{device}/commands/{}", record.name);
            if !self.inner.router.is_listening(tenant, &topic, &owner) {
                return;
            }
            self.inner.router.publish(Arc::new(request(&record, topic)));
            record.state = CommandState::Delivered;
            record.delivered_at = Some(now_ms());
            {
                let mut book = self.inner.book.lock();
                if let Some(o) = book.outbox.get_mut(key) {
                    o.remove(&record.seq);
                    if o.is_empty() {
                        book.outbox.remove(key);
                    }
                }
                match book.open.get_mut(&record.id) {
                    Some(open) => open.record = record.clone(),
                    // Finished meanwhile (expired): nothing to record.
                    None => continue,
                }
            }
            metrics::counter!("ferrule_commands_delivered_total").increment(1);
            let _ = self.store_change(record, false).await;
        }
    }

    async fn take_reply(&self, message: &Message) {
        let Some(device) = reply_device(&message.topic) else {
            return;
        };
        let correlation = message
            .properties
            .as_ref()
            .and_then(|p| p.correlation_data.as_deref());
        let (id, outcome) = match reply::parse(correlation, &message.payload) {
            Ok(got) => got,
            Err(BadReply::NoId) => return invalid_reply("no_id"),
            Err(BadReply::Malformed { id, why }) => {
                invalid_reply("malformed");
                (
                    id,
                    Outcome::Failed {
                        error: why,
                        response: None,
                    },
                )
            }
        };
        let known = self
            .inner
            .book
            .lock()
            .open
            .get(&id)
            .map(|o| (o.record.tenant.clone(), o.record.device.clone()));
        match known {
            None => invalid_reply("unknown"),
            // Another device's command: a device answers only its own.
            Some((t, d)) if t != message.tenant || d.as_str() != device => {
                invalid_reply("wrong_device")
            }
            Some(_) => {
                let (state, response, error) = match outcome {
                    Outcome::Succeeded(v) => (CommandState::Succeeded, Some(v), None),
                    Outcome::Failed { error, response } => {
                        (CommandState::Failed, response, Some(error))
                    }
                };
                self.finish(&id, state, response, error).await;
            }
        }
    }

    /// Expires the open commands whose time has come.
    async fn expire_due(&self) {
        let now = now_ms();
        loop {
            let due = {
                let book = self.inner.book.lock();
                book.expiries
                    .first()
                    .filter(|(at, _)| *at <= now)
                    .map(|(_, id)| (id.clone(), book.open.get(id).map(|o| o.record.state)))
            };
            let Some((id, state)) = due else { return };
            let Some(state) = state else {
                // Forgotten (its device deleted): only the expiry was left.
                self.inner
                    .book
                    .lock()
                    .expiries
                    .retain(|(_, other)| *other != id);
                continue;
            };
            let why = if state == CommandState::Pending {
                "the device did not come online and subscribe before the command expired"
            } else {
                "the device did not reply before the command expired"
            };
            self.finish(&id, CommandState::Expired, None, Some(why.into()))
                .await;
        }
    }

    async fn finish(
        &self,
        id: &str,
        state: CommandState,
        response: Option<serde_json::Value>,
        error: Option<String>,
    ) {
        let Some((record, waiters)) = ({
            let mut book = self.inner.book.lock();
            book.take(id).map(|open| {
                let mut record = open.record;
                record.state = state;
                record.finished_at = Some(now_ms());
                record.response = response;
                record.error = error;
                book.recent.insert(record.id.clone(), record.clone());
                (record, open.waiters)
            })
        }) else {
            return;
        };
        metrics::counter!("ferrule_commands_finished_total", "state" => state.as_str())
            .increment(1);
        for w in waiters {
            let _ = w.send(record.clone());
        }
        let _ = self.store_change(record, false).await;
    }
}

fn invalid_reply(reason: &'static str) {
    metrics::counter!("ferrule_command_replies_invalid_total", "reason" => reason).increment(1);
}

/// The device of `devices/{id}/commands/{name}/response`.
fn reply_device(topic: &str) -> Option<&str> {
    let mut levels = topic.split('/');
    match (
        levels.next(),
        levels.next(),
        levels.next(),
        levels.next(),
        levels.next(),
        levels.next(),
    ) {
        (Some("devices"), Some(d), Some("commands"), Some(_), Some("response"), None) => Some(d),
        _ => None,
    }
}

/// The request a device receives: the command in a JSON envelope (its id
/// for 3.1.1 devices), and for MQTT 5 the response topic and correlation
/// data to reply with.
fn request(record: &CommandRecord, topic: String) -> Message {
    let payload = json!({"id": record.id, "name": record.name, "params": record.params});
    let mut message = Message::new(
        record.tenant.clone(),
        topic.clone().into(),
        Bytes::from(payload.to_string()),
        QoS::AtLeastOnce,
        Origin::System,
    );
    message.properties = Some(Box::new(MessageProperties {
        payload_format_indicator: Some(true),
        content_type: Some("application/json".into()),
        response_topic: Some(format!("{topic}/response").into()),
        correlation_data: Some(Bytes::from(record.id.clone())),
        user_properties: Vec::new(),
    }));
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_of_a_reply_topic() {
        assert_eq!(
            reply_device("devices/d/commands/reboot/response"),
            Some("d")
        );
        assert_eq!(reply_device("devices/d/commands/reboot"), None);
        assert_eq!(reply_device("devices/d/commands/a/b/response"), None);
    }
}
