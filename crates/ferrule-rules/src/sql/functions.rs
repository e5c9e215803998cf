//! The rule language's functions: names and arities, checked at compile
//! time, and what each one does.
//!
//! Functions are lenient about types where a sane reading exists
//! (`lower(5)` is `"5"`) and answer null where none does (`abs('x')`):
//! a payload of unexpected shape makes a rule's condition unknown rather
//! than failing it. Errors are kept for limits (a string too long).

use std::borrow::Cow;

use super::eval::eval;
use super::tree::Expr;
use super::value::{Val, check_len};
use super::{EvalError, Input};

/// A function, resolved from its name when the rule is saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    /// `topic()`, `topic(n)`
    Topic,
    DeviceId,
    ClientId,
    Tenant,
    Timestamp,
    Abs,
    Round,
    Floor,
    Ceil,
    Lower,
    Upper,
    Concat,
    Substring,
    Coalesce,
    IsNull,
    ToNumber,
    ToString,
}

/// Name (lower case), function, fewest and most arguments (`None`: any).
const FUNCTIONS: &[(&str, Func, usize, Option<usize>)] = &[
    ("topic", Func::Topic, 0, Some(1)),
    ("device_id", Func::DeviceId, 0, Some(0)),
    ("clientid", Func::ClientId, 0, Some(0)),
    ("tenant", Func::Tenant, 0, Some(0)),
    ("timestamp", Func::Timestamp, 0, Some(0)),
    ("abs", Func::Abs, 1, Some(1)),
    ("round", Func::Round, 1, Some(2)),
    ("floor", Func::Floor, 1, Some(1)),
    ("ceil", Func::Ceil, 1, Some(1)),
    ("lower", Func::Lower, 1, Some(1)),
    ("upper", Func::Upper, 1, Some(1)),
    ("concat", Func::Concat, 1, None),
    ("substring", Func::Substring, 2, Some(3)),
    ("coalesce", Func::Coalesce, 1, None),
    ("is_null", Func::IsNull, 1, Some(1)),
    ("to_number", Func::ToNumber, 1, Some(1)),
    ("to_string", Func::ToString, 1, Some(1)),
];

/// Most digits `round(x, n)` honours either way; beyond, `10^n` stops
/// being exact and the result would be noise.
const MAX_ROUND_DIGITS: i64 = 15;

impl Func {
    /// Resolves a function name, case-insensitively.
    pub fn lookup(name: &str) -> Option<Func> {
        FUNCTIONS
            .iter()
            .find(|(n, ..)| n.eq_ignore_ascii_case(name))
            .map(|(_, f, ..)| *f)
    }

    pub fn name(self) -> &'static str {
        FUNCTIONS
            .iter()
            .find(|(_, f, ..)| *f == self)
            .map_or("?", |(n, ..)| n)
    }

    /// `Err` with the expected count when `n` arguments do not fit.
    pub fn check_arity(self, n: usize) -> Result<(), String> {
        let Some((name, _, min, max)) = FUNCTIONS.iter().find(|(_, f, ..)| *f == self) else {
            return Ok(());
        };
        if n >= *min && max.is_none_or(|max| n <= max) {
            return Ok(());
        }
        let expected = match max {
            Some(max) if max == min => format!("{min}"),
            Some(max) => format!("{min} to {max}"),
            None => format!("at least {min}"),
        };
        Err(format!(
            "{name}() takes {expected} argument{}, not {n}",
            if expected == "1" { "" } else { "s" }
        ))
    }
}

/// Calls `func`; arguments are evaluated here, only as far as needed.
pub(crate) fn call<'a>(
    func: Func,
    args: &'a [Expr],
    input: &Input<'a>,
) -> Result<Val<'a>, EvalError> {
    let arg = |i: usize| -> Result<Val<'a>, EvalError> {
        match args.get(i) {
            Some(e) => eval(e, input),
            None => Ok(Val::Null),
        }
    };
    Ok(match func {
        Func::Topic if args.is_empty() => Val::Str(Cow::Borrowed(input.topic)),
        Func::Topic => topic_level(input.topic, &arg(0)?),
        Func::DeviceId => input.device_id.map_or(Val::Null, |d| Val::Str(d.into())),
        Func::ClientId => input.client_id.map_or(Val::Null, |c| Val::Str(c.into())),
        Func::Tenant => Val::Str(Cow::Borrowed(input.tenant)),
        Func::Timestamp => Val::Int(input.timestamp_ms),
        Func::Abs => match arg(0)? {
            Val::Int(i) => i
                .checked_abs()
                .map_or(Val::number((i as f64).abs()), Val::Int),
            Val::Float(f) => Val::Float(f.abs()),
            _ => Val::Null,
        },
        Func::Round => round(&arg(0)?, &arg(1)?, args.len() > 1),
        Func::Floor => whole(&arg(0)?, f64::floor),
        Func::Ceil => whole(&arg(0)?, f64::ceil),
        Func::Lower => map_text(arg(0)?, str::to_lowercase)?,
        Func::Upper => map_text(arg(0)?, str::to_uppercase)?,
        Func::Concat => concat(args, input)?,
        Func::Substring => substring(arg(0)?, &arg(1)?, args.get(2).map(|_| arg(2)).transpose()?)?,
        Func::Coalesce => {
            for e in args {
                let v = eval(e, input)?;
                if !v.is_null() {
                    return Ok(v);
                }
            }
            Val::Null
        }
        Func::IsNull => Val::Bool(arg(0)?.is_null()),
        Func::ToNumber => to_number(arg(0)?),
        Func::ToString => match arg(0)? {
            Val::Null => Val::Null,
            v => Val::Str(v.render()?),
        },
    })
}

/// `topic(n)`: the n-th level, 1-based; null out of range.
fn topic_level<'a>(topic: &'a str, n: &Val<'_>) -> Val<'a> {
    let Some(n) = n.as_integer() else {
        return Val::Null;
    };
    let Some(index) = n.checked_sub(1).and_then(|i| usize::try_from(i).ok()) else {
        return Val::Null;
    };
    topic
        .split('/')
        .nth(index)
        .map_or(Val::Null, |level| Val::Str(Cow::Borrowed(level)))
}

/// `round(x)` to a whole number, `round(x, n)` to n decimals (negative n
/// rounds to tens, hundreds…); halves away from zero.
fn round<'a>(x: &Val<'a>, digits: &Val<'_>, has_digits: bool) -> Val<'a> {
    let digits = if has_digits {
        match digits.as_integer() {
            Some(d) => d.clamp(-MAX_ROUND_DIGITS, MAX_ROUND_DIGITS),
            None => return Val::Null,
        }
    } else {
        0
    };
    match x {
        Val::Int(i) if digits >= 0 => Val::Int(*i),
        Val::Int(_) | Val::Float(_) => {
            let Some(f) = x.as_f64() else {
                return Val::Null;
            };
            // `digits` is clamped to ±15, so the cast and the power are exact.
            let scale = 10f64.powi(digits as i32);
            let scaled = f * scale;
            if !scaled.is_finite() {
                // Already more precise than asked: nothing to round.
                return Val::number(f);
            }
            Val::number(scaled.round() / scale)
        }
        _ => Val::Null,
    }
}

fn whole<'a>(x: &Val<'a>, op: fn(f64) -> f64) -> Val<'a> {
    match x {
        Val::Int(i) => Val::Int(*i),
        Val::Float(f) => Val::number(op(*f)),
        _ => Val::Null,
    }
}

fn map_text<'a>(v: Val<'a>, op: fn(&str) -> String) -> Result<Val<'a>, EvalError> {
    if v.is_null() {
        return Ok(Val::Null);
    }
    let text = op(&v.render()?);
    // Case mapping may grow a string (`ß` → `SS`).
    check_len(text.len())?;
    Ok(Val::Str(Cow::Owned(text)))
}

/// `concat(a, b, …)`: the arguments as text, nulls skipped.
fn concat<'a>(args: &'a [Expr], input: &Input<'a>) -> Result<Val<'a>, EvalError> {
    let mut out = String::new();
    for e in args {
        let v = eval(e, input)?;
        if v.is_null() {
            continue;
        }
        let text = v.render()?;
        check_len(out.len().saturating_add(text.len()))?;
        out.push_str(&text);
    }
    Ok(Val::Str(Cow::Owned(out)))
}

/// `substring(s, start[, len])`: characters from the 1-based `start`, `len`
/// of them; positions before 1 or past the end are simply not there
/// (`substring('hello', 0, 3)` is `'he'`, as in SQL). Null when `len` is
/// negative or an argument is not a whole number.
fn substring<'a>(s: Val<'a>, start: &Val<'_>, len: Option<Val<'_>>) -> Result<Val<'a>, EvalError> {
    if s.is_null() {
        return Ok(Val::Null);
    }
    let Some(start) = start.as_integer() else {
        return Ok(Val::Null);
    };
    // i128: `start + len` cannot overflow.
    let end = match len {
        None => None,
        Some(len) => match len.as_integer() {
            Some(len) if len >= 0 => Some(i128::from(start) + i128::from(len)),
            _ => return Ok(Val::Null),
        },
    };
    let text = s.render()?;
    let from = usize::try_from(start.max(1) - 1).unwrap_or(usize::MAX);
    let count = match end {
        None => usize::MAX,
        Some(end) => usize::try_from((end - 1).max(0))
            .unwrap_or(usize::MAX)
            .saturating_sub(from),
    };
    let byte_at = |chars: usize| {
        text.char_indices()
            .nth(chars)
            .map_or(text.len(), |(i, _)| i)
    };
    let begin = byte_at(from);
    let finish = if count == usize::MAX {
        text.len()
    } else {
        begin
            + text[begin..]
                .char_indices()
                .nth(count)
                .map_or(text.len() - begin, |(i, _)| i)
    };
    Ok(Val::Str(match text {
        Cow::Borrowed(b) => Cow::Borrowed(&b[begin..finish]),
        Cow::Owned(o) => Cow::Owned(o[begin..finish].to_owned()),
    }))
}

/// `to_number(x)`: a number as itself, a string that reads as one (spaces
/// around allowed) as that number, anything else null.
fn to_number<'a>(v: Val<'a>) -> Val<'a> {
    match v {
        Val::Int(_) | Val::Float(_) => v,
        Val::Str(s) => {
            let s = s.trim();
            if let Ok(i) = s.parse::<i64>() {
                Val::Int(i)
            } else {
                // Only decimal forms: Rust also reads "inf" and "NaN".
                let decimal = !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
                match s.parse::<f64>() {
                    Ok(f) if decimal => Val::number(f),
                    _ => Val::Null,
                }
            }
        }
        _ => Val::Null,
    }
}
