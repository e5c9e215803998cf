//! Telemetry payloads: what a device may publish on `devices/{id}/telemetry`
//! (or `POST /api/v1/ingest/telemetry`), and how it becomes [`Reading`]s.
//!
//! # Contract
//!
//! A payload is UTF-8 JSON and is one of:
//!
//! - a **plain object**, `{"temp": 21.5, "door": true}`: one reading per key,
//!   taken at the receive time;
//! - a **timestamped object**, `{"ts": 1700000000000, "values": {...}}`: the
//!   readings of `values`, taken at `ts` (milliseconds since the Unix epoch;
//!   optional, the receive time when missing);
//! - an **array** of objects of either kind, in any mix. An element that is
//!   not an object (an array in the array, a number…) is refused.
//!
//! An object is timestamped iff it has a `values` key whose value is an object
//! and no key other than `ts` and `values`. Any other object is plain, and
//! there `ts` and `values` are ordinary keys: `{"ts": 5, "temp": 1}` gives the
//! readings `ts` and `temp`, `{"values": {"a": 1}, "x": 2}` gives `values.a`
//! and `x`. Neither `ts` nor `values` may appear twice in one such object.
//!
//! - **Values**: a number is a [`TelemetryValue::Number`] (integers beyond
//!   2^53 lose precision; `NaN`, `Infinity` and numbers beyond `f64` such as
//!   `1e999` are refused), `true`/`false` a [`TelemetryValue::Bool`], a string
//!   a [`TelemetryValue::Text`] of at most `max_string_bytes`. An object is
//!   flattened, its keys joined with `.` (`{"a": {"b": 1}}` is the key `a.b`);
//!   each object level below the values object (the plain object itself, or
//!   `values`) counts one towards `max_depth`. `null` and arrays are refused.
//! - **Keys**: not empty, no control characters (Unicode `Cc`: U+0000–U+001F,
//!   U+007F–U+009F), at most `max_key_bytes` once flattened (checked at every
//!   level, so a too-long path is refused even if it leads to an empty
//!   object). A key containing `.` is allowed and may collide with a
//!   flattened one; both readings are kept, as are repeated keys.
//! - **Timestamps**: `ts` is a whole number (`1.7e12` is accepted, `1.5`,
//!   `-1`, `"1"` and `true` are not), at most `max_future_skew_ms` ahead of
//!   the receive time and not before `min_ts_ms` (2000-01-01): a `ts` in
//!   seconds, microseconds or nanoseconds is refused with a hint naming the
//!   unit it looks like. A reading without `ts` is marked
//!   [`server_stamped`](Reading::server_stamped).
//! - **Counts**: at most `max_keys_per_object` readings from one object and
//!   `max_points` from the payload.
//! - Readings come out in payload order; empty objects and arrays give none.
//! - **All or nothing**: a payload that breaks any rule is refused whole and
//!   [`PayloadError`] says why; nothing of it is kept.
//!
//! The parser streams through serde's `Visitor`s, so a hostile payload is
//! refused at the first reading over a limit, before any structure is built
//! for the rest; serde_json's recursion limit (128) stays on for nesting.

use std::fmt;
use std::mem;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A telemetry value.
#[derive(Debug, Clone, PartialEq)]
pub enum TelemetryValue {
    /// A JSON number; always finite.
    Number(f64),
    /// `true` or `false`.
    Bool(bool),
    /// A JSON string.
    Text(Box<str>),
}

impl TelemetryValue {
    /// The value as JSON; whole numbers as integers, as devices usually
    /// sent them.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            TelemetryValue::Number(x) if x.fract() == 0.0 && x.abs() < 9.007_199_254_740_992e15 => {
                serde_json::Value::from(*x as i64)
            }
            TelemetryValue::Number(x) => serde_json::Number::from_f64(*x)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            TelemetryValue::Bool(b) => serde_json::Value::Bool(*b),
            TelemetryValue::Text(s) => serde_json::Value::String(s.to_string()),
        }
    }
}

/// One point of one key: `ts` ms since the Unix epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// When the value was taken, in milliseconds since the Unix epoch.
    pub ts: i64,
    /// The flattened key, e.g. `engine.temp`.
    pub key: Box<str>,
    /// The value.
    pub value: TelemetryValue,
    /// `ts` is the receive time, not the device's: the store keeps every
    /// such point, moving one that would land on a millisecond its series
    /// already has to the next free one (a device publishing faster than
    /// once a millisecond must not lose acknowledged readings).
    pub server_stamped: bool,
}

/// Bounds on one payload; see [`Default`] for the values used unless configured.
#[derive(Debug, Clone)]
pub struct PayloadLimits {
    /// Readings per payload (default 10 000).
    pub max_points: usize,
    /// Readings from one object after flattening (default 1 000).
    pub max_keys_per_object: usize,
    /// Nested object levels inside a values object (default 8).
    pub max_depth: usize,
    /// Bytes in a flattened key (default 256).
    pub max_key_bytes: usize,
    /// Bytes in a string value (default 8 192).
    pub max_string_bytes: usize,
    /// How far past the receive time a `ts` may be, in ms (default 300 000).
    pub max_future_skew_ms: i64,
    /// The earliest `ts` accepted (default 2000-01-01T00:00:00Z): anything
    /// before it is almost surely in another unit (seconds), which stored
    /// as milliseconds would land in 1970 and be expired unseen.
    pub min_ts_ms: i64,
}

/// 2000-01-01T00:00:00Z in ms since the Unix epoch.
pub const MIN_TS_MS: i64 = 946_684_800_000;

impl Default for PayloadLimits {
    fn default() -> Self {
        Self {
            max_points: 10_000,
            max_keys_per_object: 1_000,
            max_depth: 8,
            max_key_bytes: 256,
            max_string_bytes: 8_192,
            max_future_skew_ms: 300_000,
            min_ts_ms: MIN_TS_MS,
        }
    }
}

/// Why a payload was refused. `Display` is one sentence meant for the device
/// owner (it becomes an MQTT 5 reason string and an HTTP 400 problem detail).
///
/// Fields, by name: `key` is the flattened key at fault; `index` the array
/// element at fault, `None` when the payload is a single object; `limit` the
/// [`PayloadLimits`] bound that was exceeded; `found` what was there instead,
/// as a phrase (`"null"`, `"an array"`, `"a negative number"`…).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PayloadError {
    /// Not UTF-8, not JSON, or something after the JSON value.
    #[error("payload is not valid JSON: {message}")]
    NotJson { message: String },
    /// The top level is a number, string, boolean or null.
    #[error("payload must be a JSON object or an array of objects, not {found}")]
    NotAnObject { found: &'static str },
    /// An array element is not an object.
    #[error("array element {index} must be an object, not {found}")]
    ElementNotAnObject { index: usize, found: &'static str },
    /// A value is `null` or an array.
    #[error("value of `{key}`{} is {found}; expected a number, boolean, string or object", at(.index))]
    WrongType {
        key: Box<str>,
        found: &'static str,
        index: Option<usize>,
    },
    /// A number does not fit an `f64`.
    #[error("value of `{key}`{} is not a finite number", at(.index))]
    NonFinite { key: Box<str>, index: Option<usize> },
    /// More than `max_points` readings.
    #[error("payload has more than {limit} readings")]
    TooManyPoints { limit: usize },
    /// More than `max_keys_per_object` readings from one object.
    #[error("object{} has more than {limit} keys after flattening", at(.index))]
    TooManyKeys { limit: usize, index: Option<usize> },
    /// Objects nested more than `max_depth` levels.
    #[error("`{key}`{} is nested more than {limit} objects deep", at(.index))]
    TooDeep {
        key: Box<str>,
        limit: usize,
        index: Option<usize>,
    },
    /// A flattened key over `max_key_bytes`; `key` is its start.
    #[error("key `{key}`{} is longer than {limit} bytes", at(.index))]
    KeyTooLong {
        key: Box<str>,
        limit: usize,
        index: Option<usize>,
    },
    /// An empty key; `parent` is the flattened key holding it (empty at top).
    #[error("an empty key is not allowed{}{}", inside(.parent), at(.index))]
    EmptyKey {
        parent: Box<str>,
        index: Option<usize>,
    },
    /// A key with a control character.
    #[error("key {key:?}{} contains a control character", at(.index))]
    BadKey { key: Box<str>, index: Option<usize> },
    /// A string value over `max_string_bytes`.
    #[error("string value of `{key}`{} is longer than {limit} bytes", at(.index))]
    StringTooLong {
        key: Box<str>,
        limit: usize,
        index: Option<usize>,
    },
    /// A `ts` that is not a whole number ≥ 0 that fits an `i64`.
    #[error("`ts`{} must be a whole number of milliseconds since the Unix epoch, not {found}", at(.index))]
    BadTimestamp {
        found: &'static str,
        index: Option<usize>,
    },
    /// A `ts` after `limit`, the receive time plus the allowed skew.
    #[error("`ts` {ts}{} is too far in the future (the latest accepted is {limit})", at(.index))]
    TimestampInFuture {
        ts: i64,
        limit: i64,
        index: Option<usize>,
    },
    /// A `ts` before `limit` (2000-01-01 unless configured); `hint` names
    /// the unit it looks like when it is one (seconds here, or microseconds
    /// and nanoseconds for one too far in the future).
    #[error("`ts` {ts}{} cannot be milliseconds since the Unix epoch of this era (from {limit}, 2000-01-01, to shortly after the receive time){}", at(.index), unit_hint(.hint))]
    TimestampNotMillis {
        ts: i64,
        limit: i64,
        hint: Option<&'static str>,
        index: Option<usize>,
    },
    /// `ts` or `values` twice in one object.
    #[error("`{key}` appears more than once in one object{}", at(.index))]
    DuplicateKey {
        key: &'static str,
        index: Option<usize>,
    },
}

fn at(index: &Option<usize>) -> String {
    index.map_or_else(String::new, |i| format!(" in array element {i}"))
}

fn unit_hint(hint: &Option<&'static str>) -> String {
    hint.map_or_else(String::new, |u| {
        format!("; it looks like {u}: send milliseconds")
    })
}

fn inside(parent: &str) -> String {
    if parent.is_empty() {
        String::new()
    } else {
        format!(" (inside `{parent}`)")
    }
}

impl PayloadError {
    /// A short snake_case label per variant, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotJson { .. } => "not_json",
            Self::NotAnObject { .. } => "not_an_object",
            Self::ElementNotAnObject { .. } => "element_not_an_object",
            Self::WrongType { .. } => "wrong_type",
            Self::NonFinite { .. } => "non_finite",
            Self::TooManyPoints { .. } => "too_many_points",
            Self::TooManyKeys { .. } => "too_many_keys",
            Self::TooDeep { .. } => "too_deep",
            Self::KeyTooLong { .. } => "key_too_long",
            Self::EmptyKey { .. } => "empty_key",
            Self::BadKey { .. } => "bad_key",
            Self::StringTooLong { .. } => "string_too_long",
            Self::BadTimestamp { .. } => "bad_timestamp",
            Self::TimestampInFuture { .. } => "timestamp_in_future",
            Self::TimestampNotMillis { .. } => "timestamp_not_millis",
            Self::DuplicateKey { .. } => "duplicate_key",
        }
    }
}

/// Parses `payload`, appending its readings to `out` (which the caller
/// reuses). Points without a `ts` take `received_at_ms`. On error `out` is
/// left exactly as it was on entry.
pub fn parse_telemetry(
    payload: &[u8],
    received_at_ms: i64,
    limits: &PayloadLimits,
    out: &mut Vec<Reading>,
) -> Result<(), PayloadError> {
    parse::parse(payload, received_at_ms, limits, out)
}

mod parse;
#[cfg(test)]
mod tests;
