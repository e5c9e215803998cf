//! The one-pass serde visitor behind [`parse_telemetry`](super::parse_telemetry).

use super::*;

pub(super) fn parse(
    payload: &[u8],
    received_at_ms: i64,
    limits: &PayloadLimits,
    out: &mut Vec<Reading>,
) -> Result<(), PayloadError> {
    let base = out.len();
    let mut ctx = Ctx {
        out: &mut *out,
        limits,
        received_at_ms,
        base,
        point_start: base,
        index: None,
        // Room for most flattened keys, so the buffer rarely regrows.
        key: String::with_capacity(64),
        stash: None,
        forms: None,
        tentative: false,
        failure: None,
    };
    let result = match ctx.run(payload) {
        Err(Failure::Retry) => {
            // Rare: an object guessed to be timestamped was not (or failed
            // before its form was known). A pre-scan settles every object's
            // form, so the second pass guesses nothing and cannot retry.
            ctx.out.truncate(base);
            ctx.forms = Some(prescan(payload));
            ctx.run(payload)
        }
        other => other,
    };
    result.map_err(|failure| {
        out.truncate(base);
        match failure {
            Failure::Refused(e) => e,
            // Not expected (the pre-scan read the same bytes), but a refusal
            // is the safe answer should the two passes ever disagree.
            Failure::Retry => PayloadError::NotJson {
                message: "inconsistent payload".into(),
            },
        }
    })
}

enum Failure {
    Refused(PayloadError),
    /// A guess about an object's form was wrong; parse again knowing forms.
    Retry,
}

struct Ctx<'a> {
    out: &'a mut Vec<Reading>,
    limits: &'a PayloadLimits,
    received_at_ms: i64,
    /// `out.len()` on entry: what is before it is the caller's.
    base: usize,
    /// First reading of the current object, for its key count and its `ts`.
    point_start: usize,
    /// Current array element; `None` for an object payload.
    index: Option<usize>,
    /// Flattened key being parsed; one buffer reused for every key.
    key: String,
    /// `ts` of the current object, kept until its form is known.
    stash: Option<Stash>,
    /// Form of each object (true = timestamped), once a pre-scan ran.
    forms: Option<Vec<bool>>,
    /// Parsing a part whose meaning hangs on keys not yet seen: a refusal
    /// there might be wrong, so it becomes a retry.
    tentative: bool,
    /// Why the visitors stopped; the serde error they return carries nothing.
    failure: Option<Failure>,
}

impl Ctx<'_> {
    fn run(&mut self, payload: &[u8]) -> Result<(), Failure> {
        self.key.clear();
        self.index = None;
        self.stash = None;
        self.tentative = false;
        self.failure = None;
        let mut de = serde_json::Deserializer::from_slice(payload);
        let res = Any(Top(&mut *self, true))
            .deserialize(&mut de)
            .and_then(|()| de.end());
        res.map_err(|e| match self.failure.take() {
            Some(f) => f,
            None => self.json_failure(&e),
        })
    }

    fn json_failure(&self, e: &serde_json::Error) -> Failure {
        let message = e.to_string();
        // serde_json refuses a number beyond f64 (`1e999`) instead of making
        // it infinite. Inside a value, `key` says which one; the message test
        // only sharpens the text, anything else is still refused as NotJson.
        if e.is_syntax() && message.starts_with("number out of range") && !self.key.is_empty() {
            if self.tentative {
                return Failure::Retry;
            }
            return Failure::Refused(PayloadError::NonFinite {
                key: self.key.as_str().into(),
                index: self.index,
            });
        }
        Failure::Refused(PayloadError::NotJson { message })
    }

    fn refuse<E: de::Error>(&mut self, err: PayloadError) -> E {
        self.failure = Some(if self.tentative {
            Failure::Retry
        } else {
            Failure::Refused(err)
        });
        E::custom("payload refused")
    }

    fn emit<E: de::Error>(&mut self, key: Option<&str>, value: TelemetryValue) -> Result<(), E> {
        // Checked before each push so a hostile payload stops at the limit.
        if self.out.len() - self.base >= self.limits.max_points {
            return Err(self.refuse(PayloadError::TooManyPoints {
                limit: self.limits.max_points,
            }));
        }
        if self.out.len() - self.point_start >= self.limits.max_keys_per_object {
            let (limit, index) = (self.limits.max_keys_per_object, self.index);
            return Err(self.refuse(PayloadError::TooManyKeys { limit, index }));
        }
        let key = key.unwrap_or(&self.key);
        // `ts` is patched once the object is read, for a `ts` after `values`.
        self.out.push(Reading {
            ts: self.received_at_ms,
            key: key.into(),
            value,
            server_stamped: true,
        });
        Ok(())
    }

    /// The value of a JSON scalar at `key` (default: the current key).
    fn value(&self, key: Option<&str>, leaf: Leaf<'_>) -> Result<TelemetryValue, PayloadError> {
        Ok(match leaf {
            Leaf::Bool(b) => TelemetryValue::Bool(b),
            Leaf::Int(v) => TelemetryValue::Number(v as f64),
            Leaf::UInt(v) => TelemetryValue::Number(v as f64),
            Leaf::Float(v) if v.is_finite() => TelemetryValue::Number(v),
            Leaf::Str(s) if s.len() <= self.limits.max_string_bytes => {
                TelemetryValue::Text(s.into())
            }
            _ => {
                let (key, index) = (key.unwrap_or(&self.key).into(), self.index);
                return Err(match leaf {
                    Leaf::Float(_) => PayloadError::NonFinite { key, index },
                    Leaf::Str(_) => PayloadError::StringTooLong {
                        key,
                        limit: self.limits.max_string_bytes,
                        index,
                    },
                    _ => PayloadError::WrongType {
                        key,
                        found: leaf.found(),
                        index,
                    },
                });
            }
        })
    }

    /// One reading from a JSON scalar at the current key.
    fn leaf<E: de::Error>(&mut self, leaf: Leaf<'_>) -> Result<(), E> {
        match self.value(None, leaf) {
            Ok(value) => self.emit(None, value),
            Err(e) => Err(self.refuse(e)),
        }
    }

    /// Emits a stashed `ts` as the plain reading it turned out to be.
    fn flush_stash<E: de::Error>(&mut self) -> Result<(), E> {
        match self.stash.take().map(|s| s.as_value) {
            Some(Ok(value)) => self.emit(Some("ts"), value),
            Some(Err(e)) => Err(self.refuse(e)),
            None => Ok(()),
        }
    }

    /// Validates and appends one (flattened) key segment.
    fn push_key<E: de::Error>(&mut self, s: &str) -> Result<KeyKind, E> {
        let index = self.index;
        if s.is_empty() {
            return Err(self.refuse(PayloadError::EmptyKey {
                parent: self.key.as_str().into(),
                index,
            }));
        }
        let sep = !self.key.is_empty();
        let limit = self.limits.max_key_bytes;
        // Length first: the key is then short enough to copy into an error.
        if self.key.len() + usize::from(sep) + s.len() > limit {
            let mut key = format!("{}{}", self.key, if sep { "." } else { "" });
            key.push_str(&s[..floor_char_boundary(s, CLIP)]);
            let key = key[..floor_char_boundary(&key, CLIP)].to_owned() + "…";
            return Err(self.refuse(PayloadError::KeyTooLong {
                key: key.into(),
                limit,
                index,
            }));
        }
        if sep {
            self.key.push('.');
        }
        self.key.push_str(s);
        if s.chars().any(char::is_control) {
            return Err(self.refuse(PayloadError::BadKey {
                key: self.key.as_str().into(),
                index,
            }));
        }
        Ok(KeyKind::of(s))
    }

    /// The `ts` of a timestamped object, checked against the receive time.
    fn timestamp<E: de::Error>(&mut self, ts: Result<i64, &'static str>) -> Result<i64, E> {
        let index = self.index;
        let ts = ts.map_err(|found| self.refuse(PayloadError::BadTimestamp { found, index }))?;
        let limit = self
            .received_at_ms
            .saturating_add(self.limits.max_future_skew_ms);
        let min = self.limits.min_ts_ms;
        if ts > limit || ts < min {
            // The unit it looks like: the one that puts it in this era.
            let era = min.max(super::MIN_TS_MS);
            let hint = [
                ("seconds", 1_000),
                ("microseconds", -1_000),
                ("nanoseconds", -1_000_000),
            ]
            .into_iter()
            .find(|&(_, f)| {
                let ms = if f > 0 { ts.saturating_mul(f) } else { ts / -f };
                (era..=limit).contains(&ms)
            })
            .map(|(unit, _)| unit);
            if ts < min || hint.is_some() {
                return Err(self.refuse(PayloadError::TimestampNotMillis {
                    ts,
                    limit: min,
                    hint,
                    index,
                }));
            }
            return Err(self.refuse(PayloadError::TimestampInFuture { ts, limit, index }));
        }
        Ok(ts)
    }
}

/// Bytes of a key kept in a [`PayloadError::KeyTooLong`].
pub(super) const CLIP: usize = 64;

fn floor_char_boundary(s: &str, max: usize) -> usize {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

#[derive(Clone, Copy, PartialEq)]
enum KeyKind {
    Ts,
    Values,
    Other,
}

impl KeyKind {
    fn of(s: &str) -> Self {
        match s {
            "ts" => Self::Ts,
            "values" => Self::Values,
            _ => Self::Other,
        }
    }
}

/// A JSON scalar as the deserializer hands it over.
#[derive(Clone, Copy)]
enum Leaf<'s> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(&'s str),
}

impl Leaf<'_> {
    fn found(&self) -> &'static str {
        match self {
            Leaf::Null => "null",
            Leaf::Bool(_) => "a boolean",
            Leaf::Int(_) | Leaf::UInt(_) | Leaf::Float(_) => "a number",
            Leaf::Str(_) => "a string",
        }
    }

    /// Milliseconds since the epoch if this can be a `ts`, else what it is.
    fn as_ts(&self) -> Result<i64, &'static str> {
        match *self {
            Leaf::Int(v) if v >= 0 => Ok(v),
            Leaf::Int(_) => Err("a negative number"),
            Leaf::UInt(v) => i64::try_from(v).map_err(|_| "a number too large"),
            Leaf::Float(v) if v.fract() != 0.0 => Err("a number with a fraction"),
            Leaf::Float(v) if v < 0.0 => Err("a negative number"),
            // 2^63: the first f64 past i64::MAX.
            Leaf::Float(v) if v < 9_223_372_036_854_775_808.0 => Ok(v as i64),
            Leaf::Float(_) => Err("a number too large"),
            _ => Err(self.found()),
        }
    }
}

/// A `ts` whose meaning waits on its object's form, read both ways.
struct Stash {
    as_ts: Result<i64, &'static str>,
    as_value: Result<TelemetryValue, PayloadError>,
}

/// What to do with a JSON value of each shape; [`Any`] adapts it to serde.
trait Role<'de>: Sized {
    type Out;
    fn leaf<E: de::Error>(self, leaf: Leaf<'_>) -> Result<Self::Out, E>;
    fn map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Out, A::Error>;
    fn seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Out, A::Error>;
}

struct Any<R>(R);

impl<'de, R: Role<'de>> DeserializeSeed<'de> for Any<R> {
    type Value = R::Out;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<R::Out, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, R: Role<'de>> Visitor<'de> for Any<R> {
    type Value = R::Out;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a telemetry payload")
    }
    fn visit_unit<E: de::Error>(self) -> Result<R::Out, E> {
        self.0.leaf(Leaf::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<R::Out, E> {
        self.0.leaf(Leaf::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<R::Out, E> {
        self.0.leaf(Leaf::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<R::Out, E> {
        self.0.leaf(Leaf::UInt(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<R::Out, E> {
        self.0.leaf(Leaf::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<R::Out, E> {
        self.0.leaf(Leaf::Str(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<R::Out, A::Error> {
        self.0.map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<R::Out, A::Error> {
        self.0.seq(seq)
    }
}

/// The payload (`.1` true) or an element of a top-level array.
struct Top<'c, 'a>(&'c mut Ctx<'a>, bool);

impl Top<'_, '_> {
    fn not_object<E: de::Error>(self, found: &'static str) -> E {
        let err = match self.0.index {
            Some(index) if !self.1 => PayloadError::ElementNotAnObject { index, found },
            _ => PayloadError::NotAnObject { found },
        };
        self.0.refuse(err)
    }
}

impl<'de> Role<'de> for Top<'_, '_> {
    type Out = ();
    fn leaf<E: de::Error>(self, leaf: Leaf<'_>) -> Result<(), E> {
        Err(self.not_object(leaf.found()))
    }
    fn map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        point(self.0, map)
    }
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if !self.1 {
            return Err(self.not_object("an array"));
        }
        for i in 0.. {
            self.0.index = Some(i);
            if seq
                .next_element_seed(Any(Top(&mut *self.0, false)))?
                .is_none()
            {
                break;
            }
        }
        Ok(())
    }
}

/// One object of the payload, plain or timestamped. Unless a pre-scan has
/// settled it, the form is guessed from the keys so far: timestamped while
/// they are only `ts` and `values`. Almost every payload is then read in one
/// pass; an object that breaks the guess after its values were read makes the
/// whole payload be read again (at most once).
fn point<'de, A: MapAccess<'de>>(ctx: &mut Ctx<'_>, mut map: A) -> Result<(), A::Error> {
    let known = ctx
        .forms
        .as_ref()
        .map(|f| f.get(ctx.index.unwrap_or(0)) == Some(&true));
    let tentative = known.is_none();
    let mut maybe_ts = known != Some(false);
    let (mut seen_ts, mut seen_values, mut has_values) = (false, false, false);
    ctx.point_start = ctx.out.len();
    ctx.stash = None;
    while let Some(kind) = map.next_key_seed(KeySeed(&mut *ctx))? {
        let dup = match kind {
            KeyKind::Ts => mem::replace(&mut seen_ts, true),
            KeyKind::Values => mem::replace(&mut seen_values, true),
            KeyKind::Other => false,
        };
        if dup {
            let key = if kind == KeyKind::Ts { "ts" } else { "values" };
            return Err(ctx.refuse(PayloadError::DuplicateKey {
                key,
                index: ctx.index,
            }));
        }
        match (maybe_ts, kind) {
            (true, KeyKind::Ts) => {
                ctx.tentative = tentative;
                ctx.stash = Some(map.next_value_seed(Any(TsValue(&mut *ctx)))?);
                ctx.tentative = false;
            }
            (true, KeyKind::Values) => {
                has_values = map.next_value_seed(Any(PointValues {
                    ctx: &mut *ctx,
                    tentative,
                }))?;
                maybe_ts = has_values;
            }
            (true, KeyKind::Other) if has_values => return Err(ctx.retry()),
            _ => {
                if maybe_ts {
                    ctx.flush_stash()?;
                    maybe_ts = false;
                }
                map.next_value_seed(Any(Value {
                    ctx: &mut *ctx,
                    depth: 0,
                }))?;
            }
        }
        ctx.key.clear();
    }
    if !has_values {
        return ctx.flush_stash();
    }
    if let Some(stash) = ctx.stash.take() {
        let ts = ctx.timestamp(stash.as_ts)?;
        for r in &mut ctx.out[ctx.point_start..] {
            r.ts = ts;
            r.server_stamped = false;
        }
    }
    Ok(())
}

impl Ctx<'_> {
    fn retry<E: de::Error>(&mut self) -> E {
        debug_assert!(self.forms.is_none(), "a pre-scanned form cannot be wrong");
        self.failure = Some(Failure::Retry);
        E::custom("retry")
    }
}

/// The `ts` of an object that may be timestamped.
struct TsValue<'c, 'a>(&'c mut Ctx<'a>);

impl<'de> Role<'de> for TsValue<'_, '_> {
    type Out = Stash;
    fn leaf<E: de::Error>(self, leaf: Leaf<'_>) -> Result<Stash, E> {
        Ok(Stash {
            as_ts: leaf.as_ts(),
            as_value: self.0.value(Some("ts"), leaf),
        })
    }
    fn map<A: MapAccess<'de>>(self, _: A) -> Result<Stash, A::Error> {
        let index = self.0.index;
        Err(self.0.refuse(PayloadError::BadTimestamp {
            found: "an object",
            index,
        }))
    }
    fn seq<A: SeqAccess<'de>>(self, _: A) -> Result<Stash, A::Error> {
        let index = self.0.index;
        Err(self.0.refuse(PayloadError::BadTimestamp {
            found: "an array",
            index,
        }))
    }
}

/// The `values` of an object that may be timestamped; `true` if an object.
struct PointValues<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    tentative: bool,
}

impl<'de> Role<'de> for PointValues<'_, '_> {
    type Out = bool;
    fn leaf<E: de::Error>(self, leaf: Leaf<'_>) -> Result<bool, E> {
        // Not an object: the object is plain, and an earlier `ts` a reading.
        self.ctx.flush_stash()?;
        self.ctx.leaf(leaf)?;
        Ok(false)
    }
    fn map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        self.ctx.key.clear();
        self.ctx.tentative = self.tentative;
        flatten(self.ctx, map, 0)?;
        self.ctx.tentative = false;
        Ok(true)
    }
    fn seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        self.ctx.flush_stash()?;
        Value {
            ctx: self.ctx,
            depth: 0,
        }
        .seq(seq)
        .map(|()| false)
    }
}

/// A value inside a values object, `depth` object levels down.
struct Value<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    depth: usize,
}

impl<'de> Role<'de> for Value<'_, '_> {
    type Out = ();
    fn leaf<E: de::Error>(self, leaf: Leaf<'_>) -> Result<(), E> {
        self.ctx.leaf(leaf)
    }
    fn map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let depth = self.depth + 1;
        if depth > self.ctx.limits.max_depth {
            let (key, limit, index) = (
                self.ctx.key.as_str().into(),
                self.ctx.limits.max_depth,
                self.ctx.index,
            );
            return Err(self.ctx.refuse(PayloadError::TooDeep { key, limit, index }));
        }
        flatten(self.ctx, map, depth)
    }
    fn seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        let (key, index) = (self.ctx.key.as_str().into(), self.ctx.index);
        Err(self.ctx.refuse(PayloadError::WrongType {
            key,
            found: "an array",
            index,
        }))
    }
}

/// Readings of an object at `depth`, keys prefixed with the current key.
fn flatten<'de, A: MapAccess<'de>>(
    ctx: &mut Ctx<'_>,
    mut map: A,
    depth: usize,
) -> Result<(), A::Error> {
    let base = ctx.key.len();
    while map.next_key_seed(KeySeed(&mut *ctx))?.is_some() {
        map.next_value_seed(Any(Value {
            ctx: &mut *ctx,
            depth,
        }))?;
        ctx.key.truncate(base);
    }
    Ok(())
}

/// A key: validated and appended to `ctx.key` without allocating.
struct KeySeed<'c, 'a>(&'c mut Ctx<'a>);

impl<'de> DeserializeSeed<'de> for KeySeed<'_, '_> {
    type Value = KeyKind;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<KeyKind, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed<'_, '_> {
    type Value = KeyKind;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<KeyKind, E> {
        self.0.push_key(s)
    }
}

/// Form of every object (true = timestamped), read without building
/// anything. A payload it cannot read to the end is refused by the parse that
/// follows; objects after that point are taken as plain.
fn prescan(payload: &[u8]) -> Vec<bool> {
    let mut forms = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(payload);
    let _ = Any(ScanTop(&mut forms, true)).deserialize(&mut de);
    forms
}

/// The payload (`.1`) or an array element, for [`prescan`].
struct ScanTop<'c>(&'c mut Vec<bool>, bool);

impl<'de> Role<'de> for ScanTop<'_> {
    type Out = ();
    fn leaf<E: de::Error>(self, _: Leaf<'_>) -> Result<(), E> {
        Err(E::custom("not an object"))
    }
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (mut other, mut values_object) = (false, false);
        while let Some(kind) = map.next_key_seed(KindSeed)? {
            match kind {
                KeyKind::Values => values_object |= map.next_value_seed(Any(IsObject))?,
                _ => {
                    other |= kind == KeyKind::Other;
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        self.0.push(values_object && !other);
        Ok(())
    }
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if !self.1 {
            return Err(de::Error::custom("array in array"));
        }
        while seq
            .next_element_seed(Any(ScanTop(&mut *self.0, false)))?
            .is_some()
        {}
        Ok(())
    }
}

/// Whether a value is an object, skipping it.
struct IsObject;

impl<'de> Role<'de> for IsObject {
    type Out = bool;
    fn leaf<E: de::Error>(self, _: Leaf<'_>) -> Result<bool, E> {
        Ok(false)
    }
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(true)
    }
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

/// A key's kind, for [`prescan`].
struct KindSeed;

impl<'de> DeserializeSeed<'de> for KindSeed {
    type Value = KeyKind;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<KeyKind, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KindSeed {
    type Value = KeyKind;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<KeyKind, E> {
        Ok(KeyKind::of(s))
    }
}
