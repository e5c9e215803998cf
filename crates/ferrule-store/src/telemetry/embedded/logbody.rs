//! The byte format of one recent-log batch: every point the batch
//! committed, as `(series, ts, value)` records.
//!
//! `series` is an unsigned LEB128 varint, `ts` a zigzag varint, then the
//! value by the series' kind: f64 as 8 little-endian bytes, bool as one
//! byte, string as a varint length and its UTF-8 bytes. The log is short
//! lived (rows go once sealed), so it favours speed over size.

use ferrule_core::telemetry::TelemetryValue as HeadValue;
use ferrule_tsdb::Kind;
use ferrule_tsdb::varint::{
    read_varint as get_varint, unzigzag, write_varint as put_varint, zigzag,
};

/// Appends one point.
pub fn put_point(out: &mut Vec<u8>, series: u64, ts: i64, value: &HeadValue) {
    put_varint(out, series);
    put_varint(out, zigzag(ts));
    match value {
        HeadValue::Number(v) => out.extend_from_slice(&v.to_le_bytes()),
        HeadValue::Bool(b) => out.push(u8::from(*b)),
        HeadValue::Text(s) => {
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// Decodes a batch; `kind_of` gives each series' kind. Returns `None` on a
/// malformed body (which a checksummed SQLite page never yields).
pub fn points(
    body: &[u8],
    mut kind_of: impl FnMut(u64) -> Option<Kind>,
) -> Option<Vec<(u64, i64, HeadValue)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let series = get_varint(body, &mut pos)?;
        let ts = unzigzag(get_varint(body, &mut pos)?);
        let value = match kind_of(series)? {
            Kind::F64 => {
                let bytes = body.get(pos..pos + 8)?;
                pos += 8;
                HeadValue::Number(f64::from_le_bytes(bytes.try_into().ok()?))
            }
            Kind::Bool => {
                let b = *body.get(pos)?;
                pos += 1;
                HeadValue::Bool(b != 0)
            }
            Kind::Str => {
                let len = get_varint(body, &mut pos)? as usize;
                let bytes = body.get(pos..pos.checked_add(len)?)?;
                pos += len;
                HeadValue::Text(std::str::from_utf8(bytes).ok()?.into())
            }
        };
        out.push((series, ts, value));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip() {
        let mut body = Vec::new();
        let pts = vec![
            (1u64, 1_700_000_000_000i64, HeadValue::Number(21.5)),
            (300, -5, HeadValue::Bool(true)),
            (2, i64::MAX, HeadValue::Text("héllo".into())),
            (1, 0, HeadValue::Number(-0.0)),
        ];
        for (s, t, v) in &pts {
            put_point(&mut body, *s, *t, v);
        }
        let kinds = |s: u64| {
            Some(match s {
                1 => Kind::F64,
                300 => Kind::Bool,
                _ => Kind::Str,
            })
        };
        assert_eq!(points(&body, kinds).unwrap(), pts);
        assert!(points(&body[..body.len() - 1], kinds).is_none());
    }
}
