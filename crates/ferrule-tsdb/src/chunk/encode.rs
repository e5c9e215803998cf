//! Building and encoding chunks.

use std::collections::HashMap;

use super::agg::Acc;
use super::header::ChunkHeader;
use super::{Chunk, ChunkError, Kind, Summary, Value};
use crate::bits::BitWriter;
use crate::crc::crc32c;
use crate::intcode::{best_rice_k, encode_ints, write_rice, write_varint};

/// Powers of ten that are exact in f64, indexed by decimal scale.
pub(crate) const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];
/// Largest decimal scale (digits after the point) the decimal mode uses.
pub(crate) const MAX_SCALE: usize = 15;
/// Scaled integers are kept within ±2^53 so that they convert exactly.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

// Value-section mode bytes.
pub(crate) const F64_CONST: u8 = 0;
pub(crate) const F64_DECIMAL: u8 = 1;
pub(crate) const F64_XOR: u8 = 2;
pub(crate) const BOOL_PACKED: u8 = 0;
pub(crate) const BOOL_RLE: u8 = 1;
pub(crate) const STR_DICT: u8 = 0;

#[derive(Debug, Clone)]
enum Pending {
    F64(Vec<f64>),
    Bool(Vec<bool>),
    Str {
        idx: Vec<u32>,
        strings: Vec<Box<str>>,
        lookup: HashMap<Box<str>, u32>,
    },
}

/// Collects one series' points in any order and encodes them into a
/// [`Chunk`].
///
/// `finish` sorts by timestamp and keeps, for each timestamp, the value
/// pushed last ("last write wins").
#[derive(Debug, Clone)]
pub struct ChunkBuilder {
    ts: Vec<i64>,
    values: Pending,
}

impl ChunkBuilder {
    pub fn new(kind: Kind) -> Self {
        let values = match kind {
            Kind::F64 => Pending::F64(Vec::new()),
            Kind::Bool => Pending::Bool(Vec::new()),
            Kind::Str => Pending::Str {
                idx: Vec::new(),
                strings: Vec::new(),
                lookup: HashMap::new(),
            },
        };
        Self {
            ts: Vec::new(),
            values,
        }
    }

    pub fn kind(&self) -> Kind {
        match self.values {
            Pending::F64(_) => Kind::F64,
            Pending::Bool(_) => Kind::Bool,
            Pending::Str { .. } => Kind::Str,
        }
    }

    /// Points pushed so far (before deduplication).
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    fn check_room(&self) -> Result<(), ChunkError> {
        if self.ts.len() >= u32::MAX as usize {
            return Err(ChunkError::TooLarge);
        }
        Ok(())
    }

    /// Adds a point. Errors on a kind mismatch, a NaN/±∞ float, a string
    /// longer than `u32::MAX` bytes, or more than `u32::MAX - 1` points.
    pub fn push(&mut self, ts: i64, value: Value<'_>) -> Result<(), ChunkError> {
        match value {
            Value::F64(v) => self.push_f64(ts, v),
            Value::Bool(v) => self.push_bool(ts, v),
            Value::Str(v) => self.push_str(ts, v),
        }
    }

    pub fn push_f64(&mut self, ts: i64, v: f64) -> Result<(), ChunkError> {
        self.check_room()?;
        let Pending::F64(vals) = &mut self.values else {
            return Err(self.mismatch(Kind::F64));
        };
        if !v.is_finite() {
            return Err(ChunkError::NonFinite { ts });
        }
        vals.push(v);
        self.ts.push(ts);
        Ok(())
    }

    pub fn push_bool(&mut self, ts: i64, v: bool) -> Result<(), ChunkError> {
        self.check_room()?;
        let Pending::Bool(vals) = &mut self.values else {
            return Err(self.mismatch(Kind::Bool));
        };
        vals.push(v);
        self.ts.push(ts);
        Ok(())
    }

    pub fn push_str(&mut self, ts: i64, v: &str) -> Result<(), ChunkError> {
        self.check_room()?;
        if u32::try_from(v.len()).is_err() {
            return Err(ChunkError::TooLarge);
        }
        let Pending::Str {
            idx,
            strings,
            lookup,
        } = &mut self.values
        else {
            return Err(self.mismatch(Kind::Str));
        };
        let i = match lookup.get(v) {
            Some(&i) => i,
            None => {
                let i = strings.len() as u32;
                strings.push(v.into());
                lookup.insert(v.into(), i);
                i
            }
        };
        idx.push(i);
        self.ts.push(ts);
        Ok(())
    }

    fn mismatch(&self, found: Kind) -> ChunkError {
        ChunkError::KindMismatch {
            expected: self.kind(),
            found,
        }
    }

    /// Sorts, deduplicates (last write wins) and encodes the points.
    pub fn finish(self) -> Result<Chunk, ChunkError> {
        Chunk::from_vec(self.finish_bytes()?)
    }

    /// Like [`finish`](Self::finish) but returns the serialised bytes.
    pub fn finish_bytes(self) -> Result<Vec<u8>, ChunkError> {
        if self.ts.is_empty() {
            return Err(ChunkError::Empty);
        }
        // Stable sort of positions by timestamp keeps push order among
        // equal timestamps; the last of each run wins.
        let mut order: Vec<u32> = (0..self.ts.len() as u32).collect();
        order.sort_by_key(|&i| self.ts[i as usize]);
        let mut keep: Vec<u32> = Vec::with_capacity(order.len());
        for (n, &i) in order.iter().enumerate() {
            let next_same = order
                .get(n + 1)
                .is_some_and(|&j| self.ts[j as usize] == self.ts[i as usize]);
            if !next_same {
                keep.push(i);
            }
        }
        let ts: Vec<i64> = keep.iter().map(|&i| self.ts[i as usize]).collect();
        let (kind, summary, val_sec) = match &self.values {
            Pending::F64(vals) => {
                let vals: Vec<f64> = keep.iter().map(|&i| vals[i as usize]).collect();
                let (sum, sec) = encode_f64(&ts, &vals);
                (Kind::F64, sum, sec)
            }
            Pending::Bool(vals) => {
                let vals: Vec<bool> = keep.iter().map(|&i| vals[i as usize]).collect();
                let (sum, sec) = encode_bool(&vals);
                (Kind::Bool, sum, sec)
            }
            Pending::Str { idx, strings, .. } => {
                let idx: Vec<u32> = keep.iter().map(|&i| idx[i as usize]).collect();
                let (sum, sec) = encode_str(&idx, strings)?;
                (Kind::Str, sum, sec)
            }
        };
        let mut ts_sec = Vec::new();
        encode_ints(&mut ts_sec, &ts);
        let (Some(&min_ts), Some(&max_ts)) = (ts.first(), ts.last()) else {
            return Err(ChunkError::Empty);
        };
        let header = ChunkHeader {
            kind,
            count: u32::try_from(ts.len()).map_err(|_| ChunkError::TooLarge)?,
            min_ts,
            max_ts,
            summary,
            ts_len: u32::try_from(ts_sec.len()).map_err(|_| ChunkError::TooLarge)?,
            val_len: u32::try_from(val_sec.len()).map_err(|_| ChunkError::TooLarge)?,
        };
        let mut out = Vec::with_capacity(header.encoded_len());
        header.write(&mut out);
        out.extend_from_slice(&ts_sec);
        out.extend_from_slice(&val_sec);
        let crc = crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(out.len(), header.encoded_len());
        Ok(out)
    }
}

fn encode_f64(ts: &[i64], vals: &[f64]) -> (Summary, Vec<u8>) {
    let mut acc = Acc::EMPTY;
    for (&t, &v) in ts.iter().zip(vals) {
        acc.push(t, v);
    }
    let summary = Summary::F64 {
        sum: acc.sum,
        min: acc.min,
        max: acc.max,
        first: acc.first,
        last: acc.last,
    };
    let first = vals.first().copied().unwrap_or(0.0);
    if vals.iter().all(|v| v.to_bits() == first.to_bits()) {
        let mut sec = vec![F64_CONST];
        sec.extend_from_slice(&first.to_bits().to_le_bytes());
        return (summary, sec);
    }
    let xor = encode_xor(vals);
    let best = match decimal_ints(vals) {
        Some((scale, ints)) => {
            let mut sec = vec![F64_DECIMAL, scale];
            encode_ints(&mut sec, &ints);
            if sec.len() <= xor.len() { sec } else { xor }
        }
        None => xor,
    };
    (summary, best)
}

/// Whether `v` is exactly `m / 10^scale` for an integer `|m| <= 2^53`, and if
/// so `m`. The check is on the bits the decoder will produce, so `-0.0` and
/// values that merely print like short decimals are excluded.
#[inline]
fn scaled(v: f64, scale: usize) -> Option<i64> {
    let p = POW10[scale];
    let m = (v * p).round();
    if m.abs() > MAX_EXACT {
        return None;
    }
    let mi = m as i64;
    ((mi as f64 / p).to_bits() == v.to_bits()).then_some(mi)
}

/// The smallest decimal scale at which every value is an exact scaled
/// integer, with those integers.
fn decimal_ints(vals: &[f64]) -> Option<(u8, Vec<i64>)> {
    let mut scale = 0usize;
    for &v in vals {
        while scaled(v, scale).is_none() {
            scale += 1;
            if scale > MAX_SCALE {
                return None;
            }
        }
    }
    // Re-check everything at the final scale (a value that fits at a small
    // scale could, near 2^53, fail at a larger one).
    let ints = vals
        .iter()
        .map(|&v| scaled(v, scale))
        .collect::<Option<Vec<i64>>>()?;
    Some((scale as u8, ints))
}

/// Gorilla XOR coding: `[mode][first f64 LE][bits]`.
fn encode_xor(vals: &[f64]) -> Vec<u8> {
    let mut sec = vec![F64_XOR];
    let first = vals.first().copied().unwrap_or(0.0).to_bits();
    sec.extend_from_slice(&first.to_le_bytes());
    let mut w = BitWriter::new();
    let mut prev = first;
    // Current window: leading zeros and meaningful length (0 = none yet).
    let (mut w_lead, mut w_len) = (0u32, 0u32);
    for v in vals.iter().skip(1) {
        let bits = v.to_bits();
        let xor = bits ^ prev;
        prev = bits;
        if xor == 0 {
            w.write_bit(false);
            continue;
        }
        let lead = xor.leading_zeros().min(31);
        let trail = xor.trailing_zeros();
        let w_trail = 64u32.saturating_sub(w_lead + w_len);
        if w_len != 0 && lead >= w_lead && trail >= w_trail {
            w.write(0b10, 2);
            w.write(xor >> w_trail, w_len);
        } else {
            let len = 64 - lead - trail;
            w.write(0b11, 2);
            w.write(u64::from(lead), 5);
            w.write(u64::from(len & 63), 6);
            w.write(xor >> trail, len);
            w_lead = lead;
            w_len = len;
        }
    }
    sec.extend_from_slice(&w.finish());
    sec
}

fn encode_bool(vals: &[bool]) -> (Summary, Vec<u8>) {
    let count_true = vals.iter().filter(|&&b| b).count() as u32;
    let first = vals.first().copied().unwrap_or(false);
    let summary = Summary::Bool {
        count_true,
        first,
        last: vals.last().copied().unwrap_or(false),
    };
    // Run lengths minus one.
    let mut runs: Vec<u64> = Vec::new();
    let mut cur = first;
    let mut len = 0u64;
    for &b in vals {
        if b == cur {
            len += 1;
        } else {
            runs.push(len - 1);
            cur = b;
            len = 1;
        }
    }
    runs.push(len - 1);
    let (k, bits) = best_rice_k(&runs);
    let packed_len = 1 + vals.len().div_ceil(8);
    if (bits.div_ceil(8) as usize) + 3 < packed_len {
        let mut sec = vec![BOOL_RLE, u8::from(first), k as u8];
        let mut w = BitWriter::new();
        for r in runs {
            write_rice(&mut w, r, k);
        }
        sec.extend_from_slice(&w.finish());
        (summary, sec)
    } else {
        let mut sec = vec![BOOL_PACKED];
        let mut w = BitWriter::new();
        for &b in vals {
            w.write_bit(b);
        }
        sec.extend_from_slice(&w.finish());
        (summary, sec)
    }
}

fn encode_str(idx: &[u32], strings: &[Box<str>]) -> Result<(Summary, Vec<u8>), ChunkError> {
    // Re-number by first appearance among the surviving points.
    let mut remap = vec![u32::MAX; strings.len()];
    let mut dict: Vec<&str> = Vec::new();
    let idx: Vec<u32> = idx
        .iter()
        .map(|&i| {
            let slot = &mut remap[i as usize];
            if *slot == u32::MAX {
                *slot = dict.len() as u32;
                dict.push(&strings[i as usize]);
            }
            *slot
        })
        .collect();
    let n = dict.len() as u32;
    let summary = Summary::Str {
        first: idx.first().copied().unwrap_or(0),
        last: idx.last().copied().unwrap_or(0),
    };
    let width = index_width(n);
    let mut sec = vec![STR_DICT];
    write_varint(&mut sec, u64::from(n));
    for s in &dict {
        write_varint(&mut sec, s.len() as u64);
        sec.extend_from_slice(s.as_bytes());
    }
    let mut w = BitWriter::new();
    let mut prev = idx.first().copied().unwrap_or(0);
    w.write(u64::from(prev), width);
    for &i in idx.iter().skip(1) {
        if i == prev {
            w.write_bit(false);
        } else {
            w.write_bit(true);
            w.write(u64::from(i), width);
            prev = i;
        }
    }
    sec.extend_from_slice(&w.finish());
    if u32::try_from(sec.len()).is_err() {
        return Err(ChunkError::TooLarge);
    }
    Ok((summary, sec))
}

/// Bits per dictionary index for a dictionary of `n` entries.
pub(crate) fn index_width(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}
