//! `POST /api/v1/rules/test`: a draft rule evaluated on sample messages,
//! or on the tenant's most recent stored messages of a topic filter, with
//! what each action would do, and nothing done.
//!
//! It compiles, evaluates and plans with the same code as the live engine
//! ([`super::plan`]); only executing differs, so what it shows is what the
//! live run then does.

use std::collections::{BTreeMap, VecDeque};

use ferrule_core::message::now_ms;
use ferrule_core::topic::matches;
use ferrule_core::{DeviceId, TenantId};
use ferrule_store::telemetry::{EventQuery, Order, Range, SeriesQuery, TelemetryStore};
use serde::Serialize;
use serde_json::{Map, Value};

use super::Rules;
use super::compiled::{self, RuleError};
use super::plan::{Planned, plan};
use super::worker::{device_of, parse_payload};
use crate::model::{Action, AlarmOp};
use crate::sql::Input;

/// Messages one dry run evaluates at most.
pub const MAX_MESSAGES: usize = 100;
/// Devices whose stored data a dry run on recent messages reads at most.
const MAX_DEVICES: usize = 200;
/// Keys per device read for recent telemetry.
const MAX_KEYS: usize = 100;
/// How far back recent events are looked for.
const RECENT_EVENTS_MS: i64 = 24 * 3600 * 1000;
/// Events read per query, and pages read per device at most.
const EVENT_PAGE: usize = 100;
const MAX_EVENT_PAGES: usize = 100;
/// The longest reading stored messages for one dry run may take.
const RECENT_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// A draft rule and what to try it on.
#[derive(Debug, Clone)]
pub struct DryRun {
    pub sql: String,
    pub actions: Vec<Action>,
    pub source: DryRunSource,
}

#[derive(Debug, Clone)]
pub enum DryRunSource {
    /// Messages given in the request.
    Messages(Vec<DryRunMessage>),
    /// The last `limit` stored telemetry messages and events on topics
    /// matching `filter`, newest first.
    Recent { filter: String, limit: usize },
}

/// A message to try a rule on.
#[derive(Debug, Clone)]
pub struct DryRunMessage {
    pub topic: String,
    pub payload: Vec<u8>,
    pub client_id: Option<String>,
    /// ms since the epoch (what `timestamp()` returns).
    pub timestamp_ms: i64,
}

/// What the rule did with one message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DryRunResult {
    pub topic: String,
    /// The payload as rules see it (JSON, or the text).
    pub payload: Value,
    pub timestamp: i64,
    /// Whether the topic matches a FROM filter.
    pub matched: bool,
    /// Whether WHERE held.
    pub passed: bool,
    /// The SELECT's columns, when it passed.
    pub output: Option<Map<String, Value>>,
    /// Why evaluation failed.
    pub error: Option<String>,
    /// What each action would do, in order.
    pub actions: Vec<PlannedAction>,
}

/// One action's plan, or why it cannot run on this message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PlannedAction {
    Planned(Planned),
    Failed {
        #[serde(rename = "type")]
        kind: &'static str,
        error: String,
    },
}

impl Rules {
    /// Tries a draft rule; nothing is published, called, raised or sent.
    pub async fn dry_run(
        &self,
        tenant: &TenantId,
        run: DryRun,
        telemetry: Option<&dyn TelemetryStore>,
    ) -> Result<Vec<DryRunResult>, RuleError> {
        let (program, actions) = compiled::compile(&run.sql, &run.actions, &self.inner.webhooks)?;
        let messages = match run.source {
            DryRunSource::Messages(m) => m,
            DryRunSource::Recent { filter, limit } => {
                ferrule_core::topic::validate_filter(&filter).map_err(|e| RuleError::Invalid {
                    field: "recent.topic".into(),
                    why: e.to_string(),
                })?;
                let telemetry = telemetry.ok_or_else(|| RuleError::Invalid {
                    field: "recent".into(),
                    why: "telemetry storage is not running".into(),
                })?;
                let reading = recent(telemetry, tenant, &filter, limit.min(MAX_MESSAGES));
                tokio::time::timeout(RECENT_WITHIN, reading)
                    .await
                    .map_err(|_| RuleError::Invalid {
                        field: "recent.topic".into(),
                        why: "reading the stored messages took over 10 s: narrow the topic filter"
                            .into(),
                    })?
                    .map_err(|e| RuleError::Invalid {
                        field: "recent".into(),
                        why: e.to_string(),
                    })?
            }
        };
        let mut results = Vec::with_capacity(messages.len().min(MAX_MESSAGES));
        for m in messages.into_iter().take(MAX_MESSAGES) {
            let payload = parse_payload(&m.payload);
            let device = device_of(&m.topic);
            let mut result = DryRunResult {
                topic: m.topic.clone(),
                payload: payload.clone(),
                timestamp: m.timestamp_ms,
                matched: program.matches_topic(&m.topic),
                passed: false,
                output: None,
                error: None,
                actions: Vec::new(),
            };
            if !result.matched {
                results.push(result);
                continue;
            }
            let context = match device {
                Some(d) if program.needs_attributes() || program.needs_defaults() => {
                    Some(self.inner.context.get(tenant, d).await)
                }
                _ => None,
            };
            let input = Input {
                tenant: tenant.as_str(),
                topic: &m.topic,
                payload: &payload,
                client_id: m.client_id.as_deref(),
                device_id: device,
                timestamp_ms: m.timestamp_ms,
                attributes: context.as_ref().map(|c| &*c.attributes),
                defaults: context.as_ref().map(|c| &*c.defaults),
            };
            match program.evaluate(&input) {
                Ok(None) => {}
                Err(e) => result.error = Some(e.to_string()),
                Ok(Some(output)) => {
                    result.passed = true;
                    for (action, written) in actions.iter().zip(&run.actions) {
                        let planned = match plan(action, &output, device) {
                            Ok(p) => self.preview(tenant, p).await,
                            Err(error) => PlannedAction::Failed {
                                kind: written.kind(),
                                error,
                            },
                        };
                        result.actions.push(planned);
                    }
                    result.output = Some(output);
                }
            }
            results.push(result);
        }
        Ok(results)
    }

    /// Adds what an alarm action would do to the alarms as they are now,
    /// and checks what the live run would refuse.
    async fn preview(&self, tenant: &TenantId, planned: Planned) -> PlannedAction {
        match planned {
            Planned::Alarm {
                op,
                device,
                alarm_type,
                severity,
                details,
                transition: _,
            } => {
                let device_id = match device.clone().map(DeviceId::new).transpose() {
                    Ok(d) => d,
                    Err(e) => {
                        return PlannedAction::Failed {
                            kind: "alarm",
                            error: e.to_string(),
                        };
                    }
                };
                let transition = match op {
                    AlarmOp::Raise => {
                        let raise = crate::alarms::Raise {
                            tenant: tenant.clone(),
                            device: device_id,
                            alarm_type: alarm_type.clone(),
                            severity: ferrule_store::alarms::Severity::parse(&severity)
                                .unwrap_or(ferrule_store::alarms::Severity::Major),
                            details: details.clone(),
                            originator: "rule:dry-run".into(),
                        };
                        self.inner.alarms.preview_raise(&raise).await
                    }
                    AlarmOp::Clear => {
                        self.inner
                            .alarms
                            .preview_clear(tenant, device_id.as_ref(), &alarm_type)
                            .await
                    }
                };
                match transition {
                    Ok(t) => PlannedAction::Planned(Planned::Alarm {
                        op,
                        device,
                        alarm_type,
                        severity,
                        details,
                        transition: Some(t),
                    }),
                    Err(e) => PlannedAction::Failed {
                        kind: "alarm",
                        error: e.to_string(),
                    },
                }
            }
            Planned::Webhook { request, policy } => {
                match self.inner.webhooks.check_url(&request.url) {
                    Ok(()) => PlannedAction::Planned(Planned::Webhook { request, policy }),
                    Err(e) => PlannedAction::Failed {
                        kind: "webhook",
                        error: e.to_string(),
                    },
                }
            }
            other => {
                let device = match &other {
                    Planned::Store { device, .. } | Planned::Command { device, .. } => Some(device),
                    _ => None,
                };
                match device {
                    Some(d) if !self.inner.has_device(tenant, d) => PlannedAction::Failed {
                        kind: other.kind(),
                        error: format!("no device {d:?} in the tenant"),
                    },
                    _ => PlannedAction::Planned(other),
                }
            }
        }
    }
}

/// The tenant's most recent stored messages on topics matching `filter`:
/// telemetry (points of one device and time, put together as one
/// `{"key": value, …}` message on `devices/{id}/telemetry`) and events
/// (`devices/{id}/events/{type}`, from the last day), newest first.
async fn recent(
    telemetry: &dyn TelemetryStore,
    tenant: &TenantId,
    filter: &str,
    limit: usize,
) -> Result<Vec<DryRunMessage>, ferrule_store::telemetry::TelemetryError> {
    let mut found: Vec<DryRunMessage> = Vec::new();
    let devices = telemetry.devices(tenant).await?;
    for device in devices.iter().take(MAX_DEVICES) {
        let topic = format!("devices/{device}/telemetry");
        if matches(filter, &topic) {
            let mut by_ts: BTreeMap<i64, Map<String, Value>> = BTreeMap::new();
            for key in telemetry
                .keys(tenant, device)
                .await?
                .into_iter()
                .take(MAX_KEYS)
            {
                let series = SeriesQuery::new(tenant, device, &key, Range::ALL);
                for p in telemetry.raw(series, Order::Newest, limit).await? {
                    by_ts
                        .entry(p.ts)
                        .or_default()
                        .insert(key.clone(), p.value.to_json());
                }
            }
            for (ts, values) in by_ts.into_iter().rev().take(limit) {
                found.push(DryRunMessage {
                    topic: topic.clone(),
                    payload: Value::Object(values).to_string().into_bytes(),
                    client_id: None,
                    timestamp_ms: ts,
                });
            }
        }
        if matches(filter, &format!("devices/{device}/events/x")) || filter.contains("/events/") {
            found.extend(recent_events(telemetry, tenant, device, filter, limit).await?);
        }
        // Only the newest `limit` can be answered: memory stays bounded
        // however many devices are read.
        found.sort_by_key(|m| std::cmp::Reverse(m.timestamp_ms));
        found.truncate(limit);
    }
    Ok(found)
}

/// A device's newest `limit` events of the last day on topics matching
/// `filter`. Events are read oldest first, a page at a time, keeping only
/// the newest `limit`; at most `MAX_EVENT_PAGES` pages.
async fn recent_events(
    telemetry: &dyn TelemetryStore,
    tenant: &TenantId,
    device: &DeviceId,
    filter: &str,
    limit: usize,
) -> Result<VecDeque<DryRunMessage>, ferrule_store::telemetry::TelemetryError> {
    let mut kept = VecDeque::with_capacity(limit + 1);
    let range = Range {
        from: now_ms() - RECENT_EVENTS_MS,
        to: i64::MAX,
    };
    let mut after = None;
    for _ in 0..MAX_EVENT_PAGES {
        let mut query = EventQuery::new(tenant, device, range, EVENT_PAGE);
        query.after = after;
        let page = telemetry.events(query).await?;
        let last_page = page.len() < EVENT_PAGE;
        after = page.last().map(|e| e.id);
        for e in page {
            let topic = format!("devices/{device}/events/{}", e.event_type);
            if matches(filter, &topic) {
                kept.push_back(DryRunMessage {
                    topic,
                    payload: e.payload,
                    client_id: None,
                    timestamp_ms: e.ts,
                });
                if kept.len() > limit {
                    kept.pop_front();
                }
            }
        }
        if last_page {
            break;
        }
    }
    Ok(kept)
}
