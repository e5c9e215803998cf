//! The values a rule computes with: a borrowed view of the payload's JSON
//! where possible, so that reading `temp` or `payload.a.b` copies nothing.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Number, Value};

use super::EvalError;

/// Longest string a rule may build (concat, substring, to_string…), in bytes.
pub const MAX_STRING_BYTES: usize = 64 * 1024;

/// A value during evaluation. Arrays and objects are only ever read from the
/// message (payload, attributes, defaults), so they stay borrowed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    /// An array or an object of the message.
    Json(&'a Value),
}

/// Bounds of an `f64` that converts to `i64` exactly (2^63 is not in range).
const I64_LOW: f64 = -9_223_372_036_854_775_808.0;
const I64_HIGH: f64 = 9_223_372_036_854_775_808.0;

impl<'a> Val<'a> {
    pub fn from_json(value: &'a Value) -> Self {
        match value {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => Val::from_number(n),
            Value::String(s) => Val::Str(Cow::Borrowed(s)),
            Value::Array(_) | Value::Object(_) => Val::Json(value),
        }
    }

    fn from_number(n: &Number) -> Self {
        match n.as_i64() {
            Some(i) => Val::Int(i),
            None => n.as_f64().map_or(Val::Null, Val::Float),
        }
    }

    /// The result of arithmetic: an integer when it is integral and fits
    /// (so `seq + 1` stays `2`, not `2.0`), null when not finite.
    pub fn number(f: f64) -> Self {
        if !f.is_finite() {
            Val::Null
        } else if f.fract() == 0.0 && (I64_LOW..I64_HIGH).contains(&f) {
            // In range and integral: the cast is exact.
            Val::Int(f as i64)
        } else {
            Val::Float(f)
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Val::Null)
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Val::Int(i) => Some(*i as f64),
            Val::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// An integral number as `i64` (`2.0` counts; `2.5` does not).
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Val::Int(i) => Some(*i),
            Val::Float(f) if f.fract() == 0.0 && (I64_LOW..I64_HIGH).contains(f) => Some(*f as i64),
            _ => None,
        }
    }

    /// `Some` for a boolean only: SQL's unknown covers null and other types.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Val::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn into_json(self) -> Value {
        match self {
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(b),
            Val::Int(i) => Value::from(i),
            Val::Float(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
            Val::Str(s) => Value::String(s.into_owned()),
            Val::Json(v) => v.clone(),
        }
    }

    /// As text: strings as themselves, anything else as compact JSON.
    /// Bounded by [`MAX_STRING_BYTES`].
    pub fn render(&self) -> Result<Cow<'a, str>, EvalError> {
        let text = match self {
            Val::Str(s) => return Ok(s.clone()),
            Val::Null => Cow::Borrowed("null"),
            Val::Bool(true) => Cow::Borrowed("true"),
            Val::Bool(false) => Cow::Borrowed("false"),
            Val::Int(i) => Cow::Owned(i.to_string()),
            Val::Float(_) => Cow::Owned(self.clone().into_json().to_string()),
            Val::Json(v) => Cow::Owned(v.to_string()),
        };
        check_len(text.len())?;
        Ok(text)
    }

    /// SQL equality: unknown (`None`) when either side is null; values of
    /// different types are unequal; numbers compare by value (`1 = 1.0`).
    pub fn sql_eq(&self, other: &Val<'_>) -> Option<bool> {
        Some(match (self, other) {
            (Val::Null, _) | (_, Val::Null) => return None,
            (Val::Int(a), Val::Int(b)) => a == b,
            (Val::Int(_) | Val::Float(_), Val::Int(_) | Val::Float(_)) => {
                self.as_f64() == other.as_f64()
            }
            (Val::Str(a), Val::Str(b)) => a == b,
            (Val::Bool(a), Val::Bool(b)) => a == b,
            (Val::Json(a), Val::Json(b)) => a == b,
            _ => false,
        })
    }

    /// SQL ordering: numbers numerically, strings lexically (by code
    /// point), `false < true`; unknown for null and for anything else.
    pub fn sql_cmp(&self, other: &Val<'_>) -> Option<Ordering> {
        match (self, other) {
            (Val::Int(a), Val::Int(b)) => Some(a.cmp(b)),
            (Val::Int(_) | Val::Float(_), Val::Int(_) | Val::Float(_)) => {
                self.as_f64()?.partial_cmp(&other.as_f64()?)
            }
            (Val::Str(a), Val::Str(b)) => Some(a.as_ref().cmp(b.as_ref())),
            (Val::Bool(a), Val::Bool(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

pub(crate) fn check_len(len: usize) -> Result<(), EvalError> {
    if len > MAX_STRING_BYTES {
        return Err(EvalError(format!(
            "a string of {len} bytes is longer than the limit of {MAX_STRING_BYTES}"
        )));
    }
    Ok(())
}

/// SQL's three-valued NOT.
pub(crate) fn not(v: Option<bool>) -> Val<'static> {
    v.map_or(Val::Null, |b| Val::Bool(!b))
}
