//! A tenant's worker: takes the messages its queue holds, evaluates the
//! tenant's rules on each, and runs the actions of those that pass.
//!
//! Republish and store go straight back into the router; webhooks to their
//! own workers; alarms and commands (which wait for the store) to the
//! tenant's effects task, so the worker itself never waits on I/O except
//! for the device context of rules that read attributes.

use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;
use ferrule_core::{DeviceId, Message, Origin, QoS};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::compiled::CompiledRule;
use super::context::DeviceContext;
use super::plan::{Planned, plan};
use super::{Inner, Tenant};
use crate::alarms::Raise;
use crate::sql::Input;
use crate::webhook::WebhookJob;

/// Messages taken from the queue at once. Small enough that the worker
/// yields the thread often: when the broker and the rules compete for a
/// core, rules take turns with connections rather than starve them.
const BATCH: usize = 128;
/// Rules a message may pass through (republish of a republish…) before
/// the engine stops evaluating it: loops between rules end here.
pub const MAX_HOPS: u8 = 8;

/// The payload as rules see it: JSON when it parses, else its text.
pub(crate) fn parse_payload(payload: &[u8]) -> Value {
    serde_json::from_slice(payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()))
}

/// The device of `devices/{id}/…` and `$ferrule/devices/{id}/…`.
pub(crate) fn device_of(topic: &str) -> Option<&str> {
    let rest = topic
        .strip_prefix("devices/")
        .or_else(|| topic.strip_prefix("$ferrule/devices/"))?;
    let device = rest.split('/').next()?;
    (!device.is_empty()).then_some(device)
}

/// The client id of an MQTT message.
pub(crate) fn client_of(message: &Message) -> Option<&str> {
    match &message.origin {
        Origin::Mqtt { client_id, .. } => Some(client_id),
        _ => None,
    }
}

/// An action that waits for the store: done by the tenant's effects task.
pub(crate) struct Effect {
    pub(crate) rule: Arc<CompiledRule>,
    pub(crate) planned: Planned,
}

pub(crate) async fn run(inner: Arc<Inner>, tenant: Arc<Tenant>, stop: CancellationToken) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tenant.queue.take(&mut batch, BATCH);
        if batch.is_empty() {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tenant.queue.ready.notified() => continue,
            }
        }
        let rules = tenant.rules();
        tenant.queue.counters.messages.increment(batch.len() as u64);
        // Counted per batch: atomics per rule per message would cost more
        // than evaluating a simple rule.
        let mut tallies = vec![Tally::default(); rules.len()];
        for message in &batch {
            evaluate(&inner, &tenant, &rules, &mut tallies, message).await;
        }
        for (rule, tally) in rules.iter().zip(&tallies) {
            rule.counters.matched(tally.matched, tally.passed);
        }
        // Others' turn between batches.
        tokio::task::yield_now().await;
    }
}

/// Messages a rule matched and passed in one batch.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    matched: u64,
    passed: u64,
}

async fn evaluate(
    inner: &Inner,
    tenant: &Tenant,
    rules: &[Arc<CompiledRule>],
    tallies: &mut [Tally],
    message: &Message,
) {
    let (from_rule, hops) = match &message.origin {
        Origin::Rule { rule, hops } => (Some(rule.as_str()), *hops),
        _ => (None, 0),
    };
    if hops >= MAX_HOPS {
        tenant.queue.counters.loops_stopped.increment(1);
        return;
    }
    let topic: &str = &message.topic;
    let device = device_of(topic);
    let mut payload = None;
    let mut context: Option<DeviceContext> = None;
    for (rule, tally) in rules.iter().zip(tallies.iter_mut()) {
        if !rule.record.enabled
            || from_rule == Some(rule.record.id.as_str())
            || !rule.program.matches_topic(topic)
        {
            continue;
        }
        let payload: &Value = payload.get_or_insert_with(|| parse_payload(&message.payload));
        if context.is_none()
            && (rule.program.needs_attributes() || rule.program.needs_defaults())
            && let Some(d) = device
        {
            context = Some(inner.context.get(&tenant.id, d).await);
        }
        let input = Input {
            tenant: tenant.id.as_str(),
            topic,
            payload,
            client_id: client_of(message),
            device_id: device,
            timestamp_ms: message.received_at_ms,
            attributes: context.as_ref().map(|c| &*c.attributes),
            defaults: context.as_ref().map(|c| &*c.defaults),
        };
        tally.matched += 1;
        match rule.program.evaluate(&input) {
            Ok(None) => {}
            Ok(Some(output)) => {
                tally.passed += 1;
                for (i, action) in rule.actions.iter().enumerate() {
                    match plan(action, &output, device) {
                        Ok(planned) => execute(inner, tenant, rule, i, planned, hops),
                        Err(e) => rule.counters.action_failed(e, topic, &message.payload),
                    }
                }
            }
            Err(e) => rule.counters.error(e.to_string(), topic, &message.payload),
        }
    }
}

/// Runs one planned action (the `index`th of its rule) of a live message.
fn execute(
    inner: &Inner,
    tenant: &Tenant,
    rule: &Arc<CompiledRule>,
    index: usize,
    planned: Planned,
    hops: u8,
) {
    let origin = Origin::Rule {
        rule: rule.record.id.clone(),
        hops: hops + 1,
    };
    match planned {
        Planned::Republish {
            topic,
            qos,
            retain,
            payload,
        } => {
            let qos = QoS::from_u8(qos).unwrap_or_default();
            publish(inner, tenant, rule, topic, payload, qos, retain, origin);
        }
        Planned::Store { device, values } => {
            let topic = format!("devices/{device}/telemetry");
            let payload = values.to_string();
            publish(
                inner,
                tenant,
                rule,
                topic,
                payload,
                QoS::AtLeastOnce,
                false,
                origin,
            );
        }
        Planned::Webhook { request, policy } => {
            let url = request.url.clone();
            let job = WebhookJob {
                tenant: tenant.id.clone(),
                rule: rule.record.id.clone(),
                rule_version: rule.record.version,
                action: index as u32,
                request,
                policy: policy.unwrap_or(DEFAULT_POLICY),
            };
            // Its outcome comes later, through `WebhookOutcomes`.
            if let Err(e) = inner.webhooks.submit(job) {
                rule.counters
                    .action_failed(format!("webhook {url}: {e}"), "", b"");
            }
        }
        planned @ (Planned::Alarm { .. } | Planned::Command { .. }) => {
            let effect = Effect {
                rule: rule.clone(),
                planned,
            };
            if tenant.effects.try_send(effect).is_err() {
                rule.counters.action_failed(
                    "the tenant's queue of alarms and commands is full".into(),
                    "",
                    b"",
                );
            }
        }
    }
}

/// What a planned webhook always carries; only for completeness.
const DEFAULT_POLICY: crate::webhook::RetryPolicy = crate::webhook::RetryPolicy {
    timeout: std::time::Duration::from_secs(5),
    retries: 0,
    backoff: std::time::Duration::ZERO,
};

#[allow(clippy::too_many_arguments)]
fn publish(
    inner: &Inner,
    tenant: &Tenant,
    rule: &CompiledRule,
    topic: String,
    payload: String,
    qos: QoS,
    retain: bool,
    origin: Origin,
) {
    let mut message = Message::new(
        tenant.id.clone(),
        ByteString::from(topic),
        Bytes::from(payload),
        qos,
        origin,
    );
    message.retain = retain;
    let message = Arc::new(message);
    match inner.router.publish(message.clone()).refused {
        None => rule.counters.action_ok(),
        Some(refused) => rule.counters.action_failed(
            format!("publish on {}: {refused}", message.topic),
            &message.topic,
            &message.payload,
        ),
    }
}

/// Does the alarm and command actions of a tenant's rules, in order.
pub(crate) async fn run_effects(
    inner: Arc<Inner>,
    tenant: Arc<Tenant>,
    mut effects: mpsc::Receiver<Effect>,
    stop: CancellationToken,
) {
    loop {
        let Effect { rule, planned } = tokio::select! {
            _ = stop.cancelled() => return,
            effect = effects.recv() => match effect {
                Some(e) => e,
                None => return,
            },
        };
        let by = format!("rule:{}", rule.record.id);
        let result = match planned {
            Planned::Alarm {
                op,
                device,
                alarm_type,
                severity,
                details,
                ..
            } => {
                alarm(
                    &inner, &tenant, op, device, alarm_type, &severity, details, by,
                )
                .await
            }
            Planned::Command {
                device,
                name,
                params,
                ttl_s,
            } => command(&inner, &tenant, device, name, params, ttl_s, by).await,
            _ => Ok(()),
        };
        match result {
            Ok(()) => rule.counters.action_ok(),
            Err(e) => rule.counters.action_failed(e, "", b""),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn alarm(
    inner: &Inner,
    tenant: &Tenant,
    op: crate::model::AlarmOp,
    device: Option<String>,
    alarm_type: String,
    severity: &str,
    details: Value,
    by: String,
) -> Result<(), String> {
    let device = device
        .map(DeviceId::new)
        .transpose()
        .map_err(|e| format!("alarm: {e}"))?;
    match op {
        crate::model::AlarmOp::Raise => {
            let raise = Raise {
                tenant: tenant.id.clone(),
                device,
                alarm_type,
                severity: ferrule_store::alarms::Severity::parse(severity)
                    .unwrap_or(ferrule_store::alarms::Severity::Major),
                details,
                originator: by,
            };
            inner.alarms.raise(raise).await.map(|_| ())
        }
        crate::model::AlarmOp::Clear => inner
            .alarms
            .clear_open(&tenant.id, device.as_ref(), &alarm_type, &by)
            .await
            .map(|_| ()),
    }
    .map_err(|e| format!("alarm: {e}"))
}

async fn command(
    inner: &Inner,
    tenant: &Tenant,
    device: String,
    name: String,
    params: Value,
    ttl_s: u64,
    by: String,
) -> Result<(), String> {
    let commands = inner
        .commands
        .as_ref()
        .ok_or("command: the command service is not running")?;
    if !inner.has_device(&tenant.id, &device) {
        return Err(format!("command: no device {device:?} in the tenant"));
    }
    let device = DeviceId::new(device).map_err(|e| format!("command: {e}"))?;
    commands
        .send(ferrule_twin::commands::NewCommand {
            tenant: tenant.id.clone(),
            device,
            name,
            params,
            ttl_ms: (ttl_s as i64).saturating_mul(1000),
            requested_by: by,
        })
        .await
        .map(|_| ())
        .map_err(|e| format!("command: {e}"))
}
