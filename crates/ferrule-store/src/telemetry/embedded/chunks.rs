//! Between points and chunks: merging, encoding, decoding.

use ferrule_core::telemetry::TelemetryValue;
use ferrule_tsdb::{Chunk, ChunkBuilder, Kind, Value};

use crate::telemetry::{Result, TelemetryError};

/// Decodes a stored chunk's points in `[from, to)`.
pub fn decode(data: Vec<u8>, from: i64, to: i64) -> Result<Vec<(i64, TelemetryValue)>> {
    let chunk = Chunk::from_vec(data)?;
    let mut out = Vec::with_capacity(chunk.len());
    for p in chunk.range(from, to) {
        let (ts, v) = p?;
        out.push((ts, owned(v)));
    }
    Ok(out)
}

pub fn owned(v: Value<'_>) -> TelemetryValue {
    match v {
        Value::F64(x) => TelemetryValue::Number(x),
        Value::Bool(b) => TelemetryValue::Bool(b),
        Value::Str(s) => TelemetryValue::Text(s.into()),
    }
}

fn borrowed(v: &TelemetryValue) -> Value<'_> {
    match v {
        TelemetryValue::Number(x) => Value::F64(*x),
        TelemetryValue::Bool(b) => Value::Bool(*b),
        TelemetryValue::Text(s) => Value::Str(s),
    }
}

/// Sorts by time, keeping for each timestamp the point that came last:
/// `older` points first, then `newer` (a head's points override a chunk's).
pub fn merge(
    older: Vec<(i64, TelemetryValue)>,
    newer: Vec<(i64, TelemetryValue)>,
) -> Vec<(i64, TelemetryValue)> {
    let mut all = older;
    all.extend(newer);
    // Stable: among equal timestamps arrival order is kept, so the last
    // one of each run is the newest write.
    all.sort_by_key(|(ts, _)| *ts);
    let mut out: Vec<(i64, TelemetryValue)> = Vec::with_capacity(all.len());
    for p in all {
        match out.last_mut() {
            Some(last) if last.0 == p.0 => *last = p,
            _ => out.push(p),
        }
    }
    out
}

/// Encodes sorted, distinct points into chunks of at most `max` points.
pub fn encode(kind: Kind, points: &[(i64, TelemetryValue)], max: usize) -> Result<Vec<Chunk>> {
    points
        .chunks(max.max(1))
        .map(|piece| {
            let mut b = ChunkBuilder::new(kind);
            for (ts, v) in piece {
                b.push(*ts, borrowed(v))?;
            }
            b.finish().map_err(TelemetryError::from)
        })
        .collect()
}
