//! A device's reply to a command, as it arrives on
//! `devices/{id}/commands/{name}/response`.
//!
//! The command is named by the MQTT 5 correlation data Ferrule set on the
//! request, or else by `"id"` in a JSON object payload (MQTT 3.1.1). The
//! outcome: `{"error": …}` fails the command; otherwise `"result"` (or,
//! without it, the whole payload less `"id"`) is its response.

use serde_json::{Map, Value};

/// What a reply says.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded(Value),
    Failed {
        error: String,
        response: Option<Value>,
    },
}

/// A reply that could not be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadReply {
    /// No correlation data and no `"id"`: nothing says which command.
    NoId,
    /// The command is known, the payload is not JSON: the command fails.
    Malformed { id: String, why: String },
}

impl BadReply {
    pub fn label(&self) -> &'static str {
        match self {
            BadReply::NoId => "no_id",
            BadReply::Malformed { .. } => "malformed",
        }
    }
}

/// The command id and outcome of a reply.
pub fn parse(correlation: Option<&[u8]>, payload: &[u8]) -> Result<(String, Outcome), BadReply> {
    let correlated = correlation
        .and_then(|c| std::str::from_utf8(c).ok())
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    let value: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => {
            return Err(match correlated {
                Some(id) => BadReply::Malformed {
                    id,
                    why: format!("the reply is not valid JSON: {e}"),
                },
                None => BadReply::NoId,
            });
        }
    };
    let id = match (correlated, value.get("id").and_then(Value::as_str)) {
        (Some(id), _) => id,
        (None, Some(id)) => id.to_owned(),
        (None, None) => return Err(BadReply::NoId),
    };
    Ok((id, outcome(value)))
}

fn outcome(value: Value) -> Outcome {
    let Value::Object(mut object) = value else {
        return Outcome::Succeeded(value);
    };
    object.remove("id");
    match object.remove("error") {
        Some(Value::Null) | None => {}
        Some(error) => {
            let error = match error {
                Value::String(s) => s,
                other => other.to_string(),
            };
            return Outcome::Failed {
                error,
                response: object.remove("result"),
            };
        }
    }
    Outcome::Succeeded(match object.remove("result") {
        Some(result) => result,
        None => Value::Object(Map::from_iter(object)),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_3_1_1_reply_names_its_command_in_the_payload() {
        assert_eq!(
            parse(None, br#"{"id": "c1", "result": {"uptime": 5}}"#),
            Ok(("c1".into(), Outcome::Succeeded(json!({"uptime": 5}))))
        );
        assert_eq!(
            parse(None, br#"{"id": "c1", "rebooted": true}"#),
            Ok(("c1".into(), Outcome::Succeeded(json!({"rebooted": true}))))
        );
        assert_eq!(
            parse(None, br#"{"id": "c1", "error": "busy"}"#),
            Ok((
                "c1".into(),
                Outcome::Failed {
                    error: "busy".into(),
                    response: None
                }
            ))
        );
    }

    #[test]
    fn a_5_0_reply_is_named_by_its_correlation_data() {
        assert_eq!(
            parse(Some(b"c2"), b"42"),
            Ok(("c2".into(), Outcome::Succeeded(json!(42))))
        );
        // Correlation data wins over a payload id.
        assert_eq!(
            parse(Some(b"c2"), br#"{"id": "other", "result": 1}"#),
            Ok(("c2".into(), Outcome::Succeeded(json!(1))))
        );
    }

    #[test]
    fn bad_replies() {
        assert_eq!(parse(None, b"not json"), Err(BadReply::NoId));
        assert_eq!(parse(None, b"[1]"), Err(BadReply::NoId));
        assert_eq!(parse(None, br#"{"id": 5}"#), Err(BadReply::NoId));
        assert!(matches!(
            parse(Some(b"c3"), b"\xff{"),
            Err(BadReply::Malformed { id, .. }) if id == "c3"
        ));
    }
}
