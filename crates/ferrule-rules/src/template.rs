//! Templates in actions: `${name}` and `${a.b}` take fields of the rule's
//! output.
//!
//! PLACEHOLDER (foundation): the `sql` work package replaces this module.

use serde_json::{Map, Value};

/// A text template (topic, URL, header, body, device id).
#[derive(Debug, Clone, PartialEq)]
pub struct Template(String);

impl Template {
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(Template(text.to_owned()))
    }

    /// Whether it has no `${…}` (renders to itself).
    pub fn is_constant(&self) -> bool {
        true
    }

    /// Missing fields render as the empty string; strings as themselves,
    /// other values as JSON.
    pub fn render(&self, _output: &Map<String, Value>) -> String {
        self.0.clone()
    }
}

/// A JSON template: every string in it is a text template, and a string
/// that is exactly `${x}` becomes the value of `x` (a number stays a number).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonTemplate(Value);

impl JsonTemplate {
    pub fn parse(value: &Value) -> Result<Self, String> {
        Ok(JsonTemplate(value.clone()))
    }

    pub fn render(&self, _output: &Map<String, Value>) -> Value {
        self.0.clone()
    }
}
