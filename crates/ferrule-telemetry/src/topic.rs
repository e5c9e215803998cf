//! The topic grammar of telemetry: which topics the intake stores.
//!
//! Topics are the tenant's own (the router keeps tenants apart), so a
//! device's data is `devices/{id}/telemetry` (readings, parsed) and
//! `devices/{id}/events/{type}` (kept as sent); every other topic is only
//! routed.

/// What a topic means to the telemetry store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TelemetryTopic<'a> {
    /// `devices/{device}/telemetry`.
    Telemetry { device: &'a str },
    /// `devices/{device}/events/{event_type}`; the type may have levels of
    /// its own.
    Event {
        device: &'a str,
        event_type: &'a str,
    },
}

impl<'a> TelemetryTopic<'a> {
    /// The meaning of `topic`, or `None` for a topic the store ignores.
    /// The device level is not validated here: that is the intake's
    /// [`DeviceId`](ferrule_core::DeviceId) check.
    pub fn parse(topic: &'a str) -> Option<Self> {
        let rest = topic.strip_prefix("devices/")?;
        let (device, rest) = rest.split_once('/')?;
        if rest == "telemetry" {
            return Some(TelemetryTopic::Telemetry { device });
        }
        let event_type = rest.strip_prefix("events/")?;
        (!event_type.is_empty()).then_some(TelemetryTopic::Event { device, event_type })
    }

    /// The device level, as written in the topic.
    pub fn device(&self) -> &'a str {
        match self {
            TelemetryTopic::Telemetry { device } | TelemetryTopic::Event { device, .. } => device,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TelemetryTopic::{self, Event, Telemetry};

    fn parse(topic: &str) -> Option<TelemetryTopic<'_>> {
        TelemetryTopic::parse(topic)
    }

    #[test]
    fn a_device_telemetry_topic() {
        assert_eq!(
            parse("devices/d1/telemetry"),
            Some(Telemetry { device: "d1" })
        );
        assert_eq!(parse("devices/d1/telemetry").unwrap().device(), "d1");
    }

    #[test]
    fn an_event_topic_names_its_type() {
        assert_eq!(
            parse("devices/d1/events/boot"),
            Some(Event {
                device: "d1",
                event_type: "boot"
            })
        );
        // The type keeps any further levels.
        assert_eq!(
            parse("devices/d1/events/alarm/high"),
            Some(Event {
                device: "d1",
                event_type: "alarm/high"
            })
        );
        assert_eq!(parse("devices/d1/events/x").unwrap().device(), "d1");
    }

    #[test]
    fn an_event_needs_a_type() {
        assert_eq!(parse("devices/d1/events/"), None);
        assert_eq!(parse("devices/d1/events"), None);
    }

    #[test]
    fn only_the_exact_levels_have_meaning() {
        for topic in [
            "devices/d1/telemetry/x",
            "devices/d1/telemetry/",
            "devices/d1/Telemetry",
            "devices/d1/state/reported",
            "devices/d1/rejected",
            "devices/d1",
            "devices/",
            "devices",
            "other/d1/telemetry",
            "/devices/d1/telemetry",
            "tenants/acme/devices/d1/telemetry",
            "",
        ] {
            assert_eq!(parse(topic), None, "{topic}");
        }
    }

    #[test]
    fn the_device_level_is_taken_as_written() {
        // Not ids: the intake routes these without storing them.
        assert_eq!(parse("devices//telemetry"), Some(Telemetry { device: "" }));
        assert_eq!(
            parse("devices/+/telemetry"),
            Some(Telemetry { device: "+" })
        );
    }
}
