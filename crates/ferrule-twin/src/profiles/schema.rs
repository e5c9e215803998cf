//! A profile's JSON Schemas, compiled once, and the rules of what they
//! describe: the telemetry schema describes *one record's* key → value
//! object, the state schema the reported-state object as sent.

use jsonschema::Validator;
use serde_json::Value;

/// Longest reason a refusal carries. It rides in an MQTT 5 PUBACK and a
/// problem document; a schema error may quote a large value.
const MAX_REASON: usize = 256;

/// A compiled JSON Schema.
pub struct Schema(Validator);

impl Schema {
    /// Compiles `schema`, checked against its draft's meta-schema. The
    /// error names the place in the schema and the rule it breaks.
    pub fn compile(schema: &Value) -> Result<Schema, String> {
        // Boolean schemas are valid JSON Schema, but `true` says nothing
        // and `false` refuses everything: a profile holds objects only.
        if !schema.is_object() {
            return Err("must be a JSON Schema object".into());
        }
        jsonschema::validator_for(schema).map(Schema).map_err(|e| {
            let at = e.instance_path().as_str();
            bounded(if at.is_empty() {
                e.to_string()
            } else {
                format!("{at}: {e}")
            })
        })
    }

    /// The first way `instance` breaks the schema, as `PATH: rule`, the
    /// path being `prefix` followed by the JSON pointer inside `instance`.
    pub fn violation(&self, instance: &Value, prefix: &str) -> Option<String> {
        let e = self.0.validate(instance).err()?;
        let at = e.instance_path().as_str();
        let path = match (prefix, at) {
            ("", "") => "/",
            (_, at) => at,
        };
        Some(bounded(format!("{prefix}{path}: {e}")))
    }
}

/// The first record of a telemetry payload that breaks `schema`, with its
/// path in the payload (`/2/values/temp: …`). A payload is a record, or an
/// array of records; a record is a plain key → value object, or
/// `{"ts", "values": {…}}` whose `values` object is the one checked (the
/// telemetry parser's rule: an object is timestamped iff it has an object
/// `values` and no key but `ts` and `values`).
pub fn telemetry_violation(schema: &Schema, payload: &Value) -> Option<String> {
    match payload {
        Value::Array(records) => records
            .iter()
            .enumerate()
            .find_map(|(i, r)| record_violation(schema, r, &format!("/{i}"))),
        record => record_violation(schema, record, ""),
    }
}

fn record_violation(schema: &Schema, record: &Value, prefix: &str) -> Option<String> {
    match timestamped_values(record) {
        Some(values) => schema.violation(values, &format!("{prefix}/values")),
        None => schema.violation(record, prefix),
    }
}

fn timestamped_values(record: &Value) -> Option<&Value> {
    let object = record.as_object()?;
    let values = object.get("values").filter(|v| v.is_object())?;
    object
        .keys()
        .all(|k| k == "ts" || k == "values")
        .then_some(values)
}

fn bounded(mut s: String) -> String {
    if s.len() > MAX_REASON {
        let mut end = MAX_REASON - 3;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn temp_schema() -> Schema {
        Schema::compile(&json!({
            "type": "object",
            "properties": {"temp": {"type": "number", "maximum": 100}},
        }))
        .unwrap()
    }

    #[test]
    fn a_plain_record_is_checked_and_the_path_named() {
        let s = temp_schema();
        assert_eq!(telemetry_violation(&s, &json!({"temp": 21})), None);
        assert_eq!(
            telemetry_violation(&s, &json!({"temp": 500})).unwrap(),
            "/temp: 500 is greater than the maximum of 100"
        );
    }

    #[test]
    fn a_timestamped_record_checks_its_values_and_arrays_each_element() {
        let s = temp_schema();
        let ok = json!([{"ts": 1, "values": {"temp": 1}}, {"temp": 2}]);
        assert_eq!(telemetry_violation(&s, &ok), None);
        let bad = json!([{"temp": 1}, {"ts": 1, "values": {"temp": "hot"}}]);
        assert_eq!(
            telemetry_violation(&s, &bad).unwrap(),
            "/1/values/temp: \"hot\" is not of type \"number\""
        );
    }

    #[test]
    fn an_object_with_other_keys_beside_values_is_a_plain_record() {
        let s = Schema::compile(&json!({"required": ["x"]})).unwrap();
        assert_eq!(
            telemetry_violation(&s, &json!({"values": {"x": 1}, "y": 1})).unwrap(),
            "/: \"x\" is a required property"
        );
        assert_eq!(
            telemetry_violation(&s, &json!({"values": {"x": 1}, "ts": 5})),
            None
        );
    }

    #[test]
    fn a_schema_that_does_not_compile_says_why() {
        let e = Schema::compile(&json!({"type": "nope"})).err().unwrap();
        assert!(e.contains("/type"), "{e}");
        assert!(Schema::compile(&json!(5)).is_err());
        assert!(Schema::compile(&json!(false)).is_err());
        assert!(Schema::compile(&json!({"$ref": "http://example.com/s.json"})).is_err());
    }

    #[test]
    fn long_reasons_are_cut() {
        let s = Schema::compile(&json!({"properties": {"a": {"type": "number"}}})).unwrap();
        let big = "x".repeat(10_000);
        let why = telemetry_violation(&s, &json!({ "a": big })).unwrap();
        assert!(why.len() <= MAX_REASON && why.starts_with("/a: "), "{why}");
    }
}
