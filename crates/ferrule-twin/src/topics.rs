//! Topics with meaning to the device services.
//!
//! Internal topics start with `$ferrule/`: no client may publish there
//! (the broker refuses every `$` topic from clients), wildcards at the
//! first level do not reach them (MQTT's `$` rule), and rules and live
//! streams subscribe to them by name.

use ferrule_core::DeviceId;

/// `$ferrule/devices/{id}/connectivity`: connect and disconnect events.
pub fn connectivity(device: &DeviceId) -> String {
    format!("$ferrule/devices/{device}/connectivity")
}

/// `$ferrule/devices/{id}/twin`: every change of the device's twin.
pub fn twin(device: &DeviceId) -> String {
    format!("$ferrule/devices/{device}/twin")
}

/// The filter of every device's connectivity events.
pub const CONNECTIVITY_FILTER: &str = "$ferrule/devices/+/connectivity";

/// The device level of a `$ferrule/devices/{id}/…` or `devices/{id}/…`
/// topic whose remainder is `suffix`.
pub fn device_of<'a>(topic: &'a str, suffix: &str) -> Option<&'a str> {
    let rest = topic
        .strip_prefix("$ferrule/devices/")
        .or_else(|| topic.strip_prefix("devices/"))?;
    let device = rest.strip_suffix(suffix)?.strip_suffix('/')?;
    (!device.is_empty() && !device.contains('/')).then_some(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_of_a_topic() {
        assert_eq!(
            device_of("devices/d1/state/reported", "state/reported"),
            Some("d1")
        );
        assert_eq!(
            device_of("$ferrule/devices/d1/connectivity", "connectivity"),
            Some("d1")
        );
        assert_eq!(
            device_of("devices/a/b/state/reported", "state/reported"),
            None
        );
        assert_eq!(device_of("devices//state/reported", "state/reported"), None);
        assert_eq!(device_of("devices/d1/telemetry", "state/reported"), None);
    }
}
