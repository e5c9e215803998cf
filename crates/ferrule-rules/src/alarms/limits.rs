//! Bounds on what an alarm may hold, checked before anything is stored.

use serde_json::Value;

use super::AlarmError;

/// Most open (active or acknowledged) alarms a tenant may have by default.
pub const MAX_OPEN_PER_TENANT: u64 = 10_000;
/// Longest alarm type, in characters.
pub const MAX_TYPE_CHARS: usize = 128;
/// Largest details, as JSON text.
pub const MAX_DETAILS_BYTES: usize = 16 * 1024;
/// Longest `rule:ID` / `user:ID` / `key:ID`.
const MAX_WHO_BYTES: usize = 512;
const WHO_PREFIXES: [&str; 3] = ["rule:", "user:", "key:"];

/// An alarm type: 1 to 128 printable characters (free text, so rules can
/// name alarms in the operators' words; no control characters, so logs and
/// topics-in-templates stay readable).
pub fn check_type(alarm_type: &str) -> Result<(), AlarmError> {
    let chars = alarm_type.chars().count();
    if !(1..=MAX_TYPE_CHARS).contains(&chars) {
        return Err(AlarmError::Invalid(format!(
            "the alarm type must be 1 to {MAX_TYPE_CHARS} characters (it has {chars})"
        )));
    }
    if alarm_type.chars().any(char::is_control) {
        return Err(AlarmError::Invalid(
            "the alarm type must not contain control characters".into(),
        ));
    }
    Ok(())
}

pub fn check_details(details: &Value) -> Result<(), AlarmError> {
    let len = details.to_string().len();
    if len > MAX_DETAILS_BYTES {
        return Err(AlarmError::Invalid(format!(
            "the alarm details are {len} bytes of JSON, over the limit of {MAX_DETAILS_BYTES}"
        )));
    }
    Ok(())
}

/// Who raised, acknowledged or cleared: `rule:ID`, `user:ID` or `key:ID`.
pub fn check_who(who: &str) -> Result<(), AlarmError> {
    let named = WHO_PREFIXES
        .iter()
        .any(|p| who.strip_prefix(p).is_some_and(|id| !id.is_empty()));
    if !named || who.len() > MAX_WHO_BYTES || who.chars().any(char::is_control) {
        return Err(AlarmError::Invalid(format!(
            "who acts on an alarm must be rule:ID, user:ID or key:ID, not {:?}",
            who.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_details_and_actors_are_bounded() {
        assert!(check_type("overheat").is_ok());
        assert!(check_type("Pump 3: pressure high ✓").is_ok());
        assert!(check_type(&"é".repeat(MAX_TYPE_CHARS)).is_ok());
        assert!(check_type(&"x".repeat(MAX_TYPE_CHARS + 1)).is_err());
        assert!(check_type("").is_err());
        assert!(check_type("a\nb").is_err());
        assert!(check_details(&Value::String("x".repeat(100))).is_ok());
        assert!(check_details(&Value::String("x".repeat(MAX_DETAILS_BYTES))).is_err());
        for ok in ["rule:r1", "user:a@b.c", "key:k1"] {
            assert!(check_who(ok).is_ok(), "{ok}");
        }
        for bad in ["", "rule:", "device:d", "anonymous", "user:a\u{0}"] {
            assert!(check_who(bad).is_err(), "{bad:?}");
        }
    }
}
