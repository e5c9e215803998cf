//! Loading and reading chunks.

use std::fmt;
use std::ops::Range;

use super::agg::{Acc, Aggregator, Bucket};
use super::encode::{
    BOOL_PACKED, BOOL_RLE, F64_CONST, F64_DECIMAL, F64_XOR, MAX_SCALE, POW10, STR_DICT, index_width,
};
use super::header::{CRC_LEN, ChunkHeader};
use super::{ChunkError, Kind, Summary, Value};
use crate::bits::BitReader;
use crate::crc::crc32c;
use crate::intcode::{IntDec, IntParams, parse_int_header, read_varint};

/// How a chunk's values are encoded (chosen per chunk by the builder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueEncoding {
    /// Every value has the same bits; no per-point value bits.
    Constant,
    /// Values are exact decimals `m / 10^scale`; the integers `m` are coded
    /// like timestamps (delta or delta-of-delta, Rice codes).
    Decimal { scale: u8, delta_of_delta: bool },
    /// Gorilla XOR with leading/trailing-zero windows.
    Xor,
    /// Bools, one bit each.
    BitPacked,
    /// Bools as Rice-coded run lengths.
    RunLength,
    /// Strings: dictionary plus a "same as previous" bit / index per point.
    Dictionary { entries: u32 },
}

/// How a chunk's timestamps are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampEncoding {
    /// Residuals are delta-of-delta (true) or delta minus `base` (false).
    pub delta_of_delta: bool,
    /// Order 1: the predicted interval; order 2: the first interval.
    pub base: i64,
    /// Rice parameter.
    pub rice_k: u32,
}

/// Bytes taken by each part of a serialised chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionSizes {
    pub header: usize,
    pub timestamps: usize,
    pub values: usize,
    pub checksum: usize,
}

impl SectionSizes {
    pub fn total(&self) -> usize {
        self.header + self.timestamps + self.values + self.checksum
    }
}

#[derive(Clone)]
enum ValParams {
    Const(f64),
    Decimal { scale: u8, ints: IntParams },
    Xor { first: u64 },
    Packed,
    Rle { first: bool, k: u32 },
    Str { dict: Vec<Box<str>>, width: u32 },
}

/// An immutable, validated, compressed chunk of one series.
///
/// Loading checks magic, version, lengths, the CRC-32C and every section
/// header; per-point data is checked while decoding (strictly increasing
/// timestamps within the header's range, no bit overrun, valid indices), so a
/// crafted chunk with a valid checksum yields errors, never panics.
#[derive(Clone)]
pub struct Chunk {
    bytes: Vec<u8>,
    header: ChunkHeader,
    ts: IntParams,
    ts_bits: Range<usize>,
    val: ValParams,
    val_bits: Range<usize>,
}

impl fmt::Debug for Chunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunk")
            .field("header", &self.header)
            .field("timestamps", &self.timestamp_encoding())
            .field("values", &self.value_encoding())
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

fn corrupt(why: &'static str) -> ChunkError {
    ChunkError::Corrupt(why)
}

impl Chunk {
    /// Loads a chunk from a copy of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Chunk, ChunkError> {
        Self::from_vec(bytes.to_vec())
    }

    /// Loads a chunk, taking ownership of its bytes (which must be exactly
    /// one chunk).
    pub fn from_vec(bytes: Vec<u8>) -> Result<Chunk, ChunkError> {
        // Lengths and checksum first, so that on-disk corruption is reported
        // as such rather than as whatever field it happened to hit.
        let kind = ChunkHeader::peek_kind(&bytes)?;
        let hl = ChunkHeader::header_len(kind);
        if bytes.len() < hl {
            return Err(ChunkError::Truncated {
                needed: hl,
                available: bytes.len(),
            });
        }
        let le32 = |at: usize| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&bytes[at..at + 4]);
            u32::from_le_bytes(a)
        };
        let total = (hl + CRC_LEN)
            .checked_add(le32(hl - 8) as usize)
            .and_then(|t| t.checked_add(le32(hl - 4) as usize))
            .ok_or(ChunkError::TooLarge)?;
        if bytes.len() < total {
            return Err(ChunkError::Truncated {
                needed: total,
                available: bytes.len(),
            });
        }
        if bytes.len() > total {
            return Err(corrupt("trailing bytes after the checksum"));
        }
        let stored = le32(total - CRC_LEN);
        let computed = crc32c(&bytes[..total - CRC_LEN]);
        if stored != computed {
            return Err(ChunkError::ChecksumMismatch { stored, computed });
        }

        let header = ChunkHeader::parse(&bytes)?;
        let ts_sec = hl..hl + header.ts_len as usize;
        let val_sec = ts_sec.end..ts_sec.end + header.val_len as usize;
        let count = u64::from(header.count);

        let (ts, off) = parse_int_header(&bytes[ts_sec.clone()]).map_err(corrupt)?;
        if ts.first != header.min_ts {
            return Err(corrupt("first timestamp differs from the header"));
        }
        let ts_bits = ts_sec.start + off..ts_sec.end;
        // Every Rice code takes at least one bit: bounds the decoding work
        // by the input size.
        if (ts_bits.len() as u64) * 8 < count - 1 {
            return Err(corrupt("point count exceeds the timestamp bits"));
        }

        let sec = &bytes[val_sec.clone()];
        let mode = *sec.first().ok_or(corrupt("empty value section"))?;
        let (val, off, min_bits) = match (kind, mode) {
            (Kind::F64, F64_CONST) => {
                let v = f64_at(sec, 1)?;
                if sec.len() != 9 || !v.is_finite() {
                    return Err(corrupt("bad constant value section"));
                }
                (ValParams::Const(v), 9, 0)
            }
            (Kind::F64, F64_DECIMAL) => {
                let scale = *sec.get(1).ok_or(corrupt("value section truncated"))?;
                if scale as usize > MAX_SCALE {
                    return Err(corrupt("decimal scale out of range"));
                }
                let (ints, off) = parse_int_header(&sec[2..]).map_err(corrupt)?;
                (ValParams::Decimal { scale, ints }, 2 + off, count - 1)
            }
            (Kind::F64, F64_XOR) => {
                let first = f64_at(sec, 1)?;
                if !first.is_finite() {
                    return Err(corrupt("non-finite first value"));
                }
                let first = first.to_bits();
                (ValParams::Xor { first }, 9, count - 1)
            }
            (Kind::Bool, BOOL_PACKED) => (ValParams::Packed, 1, count),
            (Kind::Bool, BOOL_RLE) => {
                let (Some(&first), Some(&k)) = (sec.get(1), sec.get(2)) else {
                    return Err(corrupt("value section truncated"));
                };
                if first > 1 || u32::from(k) > crate::intcode::MAX_K {
                    return Err(corrupt("bad run-length parameters"));
                }
                let p = ValParams::Rle {
                    first: first == 1,
                    k: u32::from(k),
                };
                (p, 3, 1)
            }
            (Kind::Str, STR_DICT) => {
                let mut pos = 1;
                let n = read_varint(sec, &mut pos).ok_or(corrupt("bad dictionary size"))?;
                // Each entry takes at least its length byte; a dictionary
                // never has more entries than points.
                if n == 0 || n > count || n > (sec.len() - pos) as u64 {
                    return Err(corrupt("bad dictionary size"));
                }
                let mut dict = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let len = read_varint(sec, &mut pos).ok_or(corrupt("bad string length"))?;
                    let end = usize::try_from(len)
                        .ok()
                        .and_then(|l| pos.checked_add(l))
                        .filter(|&e| e <= sec.len())
                        .ok_or(corrupt("string runs past the section"))?;
                    let s = std::str::from_utf8(&sec[pos..end])
                        .map_err(|_| corrupt("string is not UTF-8"))?;
                    dict.push(Box::<str>::from(s));
                    pos = end;
                }
                let n = n as u32;
                if let Summary::Str { first, last } = header.summary
                    && (first >= n || last >= n)
                {
                    return Err(corrupt("summary string index out of range"));
                }
                let width = index_width(n);
                (ValParams::Str { dict, width }, pos, count - 1)
            }
            _ => return Err(corrupt("unknown value encoding")),
        };
        let val_bits = val_sec.start + off..val_sec.end;
        if (val_bits.len() as u64) * 8 < min_bits {
            return Err(corrupt("point count exceeds the value bits"));
        }
        Ok(Chunk {
            bytes,
            header,
            ts,
            ts_bits,
            val,
            val_bits,
        })
    }

    /// The serialised chunk.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub fn header(&self) -> &ChunkHeader {
        &self.header
    }

    pub fn kind(&self) -> Kind {
        self.header.kind
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.header.count as usize
    }

    /// Always false: a chunk has at least one point.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn min_ts(&self) -> i64 {
        self.header.min_ts
    }

    pub fn max_ts(&self) -> i64 {
        self.header.max_ts
    }

    /// The value at `min_ts`, from the header (no decoding).
    pub fn first_value(&self) -> Value<'_> {
        self.summary_value(true)
    }

    /// The value at `max_ts`, from the header (no decoding).
    pub fn last_value(&self) -> Value<'_> {
        self.summary_value(false)
    }

    fn summary_value(&self, first: bool) -> Value<'_> {
        match (self.header.summary, &self.val) {
            (
                Summary::F64 {
                    first: a, last: b, ..
                },
                _,
            ) => Value::F64(if first { a } else { b }),
            (
                Summary::Bool {
                    first: a, last: b, ..
                },
                _,
            ) => Value::Bool(if first { a } else { b }),
            (Summary::Str { first: a, last: b }, ValParams::Str { dict, .. }) => {
                let i = if first { a } else { b };
                Value::Str(dict.get(i as usize).map_or("", |s| s))
            }
            (Summary::Str { .. }, _) => Value::Str(""),
        }
    }

    pub fn value_encoding(&self) -> ValueEncoding {
        match &self.val {
            ValParams::Const(_) => ValueEncoding::Constant,
            ValParams::Decimal { scale, ints } => ValueEncoding::Decimal {
                scale: *scale,
                delta_of_delta: ints.order2,
            },
            ValParams::Xor { .. } => ValueEncoding::Xor,
            ValParams::Packed => ValueEncoding::BitPacked,
            ValParams::Rle { .. } => ValueEncoding::RunLength,
            ValParams::Str { dict, .. } => ValueEncoding::Dictionary {
                entries: dict.len() as u32,
            },
        }
    }

    pub fn timestamp_encoding(&self) -> TimestampEncoding {
        TimestampEncoding {
            delta_of_delta: self.ts.order2,
            base: self.ts.base,
            rice_k: self.ts.k,
        }
    }

    /// Byte sizes of the header, timestamp and value sections (each section
    /// including its own small parameter header) and the checksum.
    pub fn section_sizes(&self) -> SectionSizes {
        let header = ChunkHeader::header_len(self.header.kind);
        SectionSizes {
            header,
            timestamps: self.header.ts_len as usize,
            values: self.header.val_len as usize,
            checksum: CRC_LEN,
        }
    }

    /// All points in timestamp order.
    pub fn iter(&self) -> Points<'_> {
        self.points(i64::MIN, i64::MAX, false)
    }

    /// Points with `from <= ts < to`. Decoding is sequential, so points
    /// before `from` are decoded and skipped; decoding stops at `to`.
    pub fn range(&self, from: i64, to: i64) -> Points<'_> {
        if to <= from {
            return self.points(0, 0, true);
        }
        self.points(from, to - 1, false)
    }

    /// Points with `from <= ts <= last`.
    fn points(&self, from: i64, last: i64, empty: bool) -> Points<'_> {
        let skip = empty || last < self.header.min_ts || from > self.header.max_ts;
        Points {
            cur: Cursor::new(self),
            dict: match &self.val {
                ValParams::Str { dict, .. } => dict,
                _ => &[],
            },
            from,
            last,
            done: skip,
        }
    }

    /// Decodes every point and checks it against the header and summary.
    pub fn validate(&self) -> Result<(), ChunkError> {
        let mut n = 0u64;
        let mut acc = Acc::EMPTY;
        let mut trues = 0u32;
        let mut first_last = (None, None);
        for p in self.iter() {
            let (ts, v) = p?;
            n += 1;
            match v {
                Value::F64(x) => acc.push(ts, x),
                Value::Bool(b) => trues += u32::from(b),
                Value::Str(s) => {
                    first_last.0.get_or_insert(s);
                    first_last.1 = Some(s);
                }
            }
        }
        if n != u64::from(self.header.count) {
            return Err(corrupt("point count differs from the header"));
        }
        let ok = match self.header.summary {
            Summary::F64 {
                sum,
                min,
                max,
                first,
                last,
            } => {
                let same = |a: f64, b: f64| a.to_bits() == b.to_bits();
                same(sum, acc.sum)
                    && same(min, acc.min)
                    && same(max, acc.max)
                    && same(first, acc.first)
                    && same(last, acc.last)
            }
            Summary::Bool {
                count_true,
                first,
                last,
            } => {
                count_true == trues
                    && self.first_value_decoded() == Some(Value::Bool(first))
                    && self.last_value_decoded() == Some(Value::Bool(last))
            }
            Summary::Str { .. } => {
                first_last.0.map(Value::Str) == Some(self.first_value())
                    && first_last.1.map(Value::Str) == Some(self.last_value())
            }
        };
        if ok {
            Ok(())
        } else {
            Err(corrupt("header summary differs from the data"))
        }
    }

    fn first_value_decoded(&self) -> Option<Value<'_>> {
        self.iter().next().and_then(Result::ok).map(|p| p.1)
    }

    fn last_value_decoded(&self) -> Option<Value<'_>> {
        self.iter().last().and_then(Result::ok).map(|p| p.1)
    }

    /// Aggregates this chunk alone into buckets `[from + i·bucket_ms, …)`
    /// covering `[from, to)`; see [`Aggregator`].
    pub fn aggregate(&self, from: i64, to: i64, bucket_ms: i64) -> Result<Vec<Bucket>, ChunkError> {
        let mut agg = Aggregator::new(from, to, bucket_ms)?;
        agg.add_chunk(self)?;
        Ok(agg.finish())
    }

    /// The header summary as an accumulator (numeric kinds).
    pub(crate) fn summary_acc(&self) -> Acc {
        let h = &self.header;
        let (count, sum, min, max, first, last) = match h.summary {
            Summary::F64 {
                sum,
                min,
                max,
                first,
                last,
            } => (h.count, sum, min, max, first, last),
            Summary::Bool {
                count_true,
                first,
                last,
            } => (
                h.count,
                f64::from(count_true),
                if count_true == h.count { 1.0 } else { 0.0 },
                if count_true > 0 { 1.0 } else { 0.0 },
                f64::from(u8::from(first)),
                f64::from(u8::from(last)),
            ),
            Summary::Str { .. } => return Acc::EMPTY,
        };
        Acc {
            count: u64::from(count),
            sum,
            min,
            max,
            first_ts: h.min_ts,
            first,
            last_ts: h.max_ts,
            last,
        }
    }
}

fn f64_at(sec: &[u8], at: usize) -> Result<f64, ChunkError> {
    let b = sec
        .get(at..at + 8)
        .ok_or(corrupt("value section truncated"))?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Ok(f64::from_bits(u64::from_le_bytes(a)))
}

/// A raw decoded value: numbers for F64/Bool, dictionary index for Str.
#[derive(Clone, Copy)]
enum Raw {
    F(f64),
    B(bool),
    S(u32),
}

#[derive(Clone)]
struct XorDec<'a> {
    r: BitReader<'a>,
    prev: u64,
    lead: u32,
    len: u32,
    bad: bool,
}

impl XorDec<'_> {
    #[inline(always)]
    fn next_value(&mut self) -> f64 {
        if self.r.read_bit() {
            if self.r.read_bit() {
                let lead = self.r.read(5) as u32;
                let mut len = self.r.read(6) as u32;
                if len == 0 {
                    len = 64;
                }
                if lead + len > 64 {
                    self.bad = true;
                    len = 64 - lead;
                }
                self.lead = lead;
                self.len = len;
            } else if self.len == 0 {
                self.bad = true;
            }
            let bits = self.r.read_u64(self.len);
            if self.len != 0 {
                self.prev ^= bits << (64 - self.lead - self.len);
            }
        }
        let v = f64::from_bits(self.prev);
        self.bad |= !v.is_finite();
        v
    }
}

#[derive(Clone)]
enum ValDec<'a> {
    Const(f64),
    Decimal {
        ints: IntDec<'a>,
        div: f64,
        first: f64,
    },
    Xor(XorDec<'a>),
    Packed(BitReader<'a>),
    Rle {
        r: BitReader<'a>,
        k: u32,
        cur: bool,
        left: u64,
    },
    Str {
        r: BitReader<'a>,
        width: u32,
        n: u32,
        cur: u32,
        bad: bool,
    },
}

impl<'a> ValDec<'a> {
    fn new(params: &ValParams, bits: &'a [u8]) -> Self {
        match params {
            ValParams::Const(v) => ValDec::Const(*v),
            ValParams::Decimal { scale, ints } => {
                let div = POW10[(*scale as usize).min(MAX_SCALE)];
                ValDec::Decimal {
                    ints: IntDec::new(*ints, bits),
                    div,
                    first: ints.first as f64 / div,
                }
            }
            ValParams::Xor { first } => ValDec::Xor(XorDec {
                r: BitReader::new(bits),
                prev: *first,
                lead: 0,
                len: 0,
                bad: false,
            }),
            ValParams::Packed => ValDec::Packed(BitReader::new(bits)),
            ValParams::Rle { first, k } => ValDec::Rle {
                r: BitReader::new(bits),
                k: *k,
                // Flipped by the first `next`, which opens the first run.
                cur: !*first,
                left: 0,
            },
            ValParams::Str { dict, width } => ValDec::Str {
                r: BitReader::new(bits),
                width: *width,
                n: dict.len() as u32,
                cur: 0,
                bad: false,
            },
        }
    }

    /// The value of point 0.
    #[inline]
    fn first(&mut self) -> Raw {
        match self {
            ValDec::Const(v) => Raw::F(*v),
            ValDec::Decimal { first, .. } => Raw::F(*first),
            ValDec::Xor(x) => Raw::F(f64::from_bits(x.prev)),
            ValDec::Str {
                r,
                width,
                n,
                cur,
                bad,
            } => {
                *cur = r.read(*width) as u32;
                *bad |= *cur >= *n;
                Raw::S(*cur)
            }
            ValDec::Packed(_) | ValDec::Rle { .. } => self.next_raw(),
        }
    }

    /// The value of the next point after the first.
    #[inline]
    fn next_raw(&mut self) -> Raw {
        match self {
            ValDec::Const(v) => Raw::F(*v),
            ValDec::Decimal { ints, div, .. } => Raw::F(ints.next_value() as f64 / *div),
            ValDec::Xor(x) => Raw::F(x.next_value()),
            ValDec::Packed(r) => Raw::B(r.read_bit()),
            ValDec::Rle { r, k, cur, left } => {
                if *left == 0 {
                    *cur = !*cur;
                    *left = r.read_rice(*k).saturating_add(1);
                }
                *left -= 1;
                Raw::B(*cur)
            }
            ValDec::Str {
                r,
                width,
                n,
                cur,
                bad,
            } => {
                if r.read_bit() {
                    *cur = r.read(*width) as u32;
                    *bad |= *cur >= *n;
                }
                Raw::S(*cur)
            }
        }
    }

    /// Decodes `out.len()` points after the first as numbers, in one tight
    /// loop per encoding.
    #[inline]
    fn fill_numeric(&mut self, out: &mut [f64]) {
        match self {
            ValDec::Const(v) => out.fill(*v),
            ValDec::Decimal { ints, div, .. } => {
                let div = *div;
                for o in out {
                    *o = ints.next_value() as f64 / div;
                }
            }
            ValDec::Xor(x) => {
                for o in out {
                    *o = x.next_value();
                }
            }
            ValDec::Packed(r) => {
                for o in out {
                    *o = if r.read_bit() { 1.0 } else { 0.0 };
                }
            }
            _ => {
                for o in out {
                    *o = match self.next_raw() {
                        Raw::F(v) => v,
                        Raw::B(b) => f64::from(u8::from(b)),
                        Raw::S(_) => 0.0,
                    }
                }
            }
        }
    }

    /// No error seen so far.
    #[inline]
    fn ok(&self) -> bool {
        match self {
            ValDec::Const(_) => true,
            ValDec::Decimal { ints, .. } => !ints.r.overrun(),
            ValDec::Xor(x) => !x.bad && !x.r.overrun(),
            ValDec::Packed(r) | ValDec::Rle { r, .. } => !r.overrun(),
            ValDec::Str { r, bad, .. } => !*bad && !r.overrun(),
        }
    }

    /// Consistent after the last point (the last run ends exactly).
    fn ok_at_end(&self) -> bool {
        match self {
            ValDec::Rle { left, .. } => *left == 0,
            _ => true,
        }
    }
}

/// Decodes one timestamp after the first and folds its checks into `ok`.
#[inline(always)]
fn next_ts(ts: &mut IntDec<'_>, prev: &mut i64, ok: &mut bool, max: i64) -> i64 {
    let x = ts.next_value();
    *ok &= (x > *prev) & (x <= max);
    *prev = x;
    x
}

/// Decoding state shared by the point iterator and the aggregator.
#[derive(Clone)]
pub(crate) struct Cursor<'a> {
    ts: IntDec<'a>,
    val: ValDec<'a>,
    first_ts: i64,
    max_ts: i64,
    prev_ts: i64,
    remaining: u32,
    started: bool,
}

const BAD_DATA: ChunkError = ChunkError::Corrupt("point data inconsistent with the header");

impl<'a> Cursor<'a> {
    pub(crate) fn new(chunk: &'a Chunk) -> Self {
        let b = &chunk.bytes;
        let ts_bits = b.get(chunk.ts_bits.clone()).unwrap_or(&[]);
        let val_bits = b.get(chunk.val_bits.clone()).unwrap_or(&[]);
        Cursor {
            ts: IntDec::new(chunk.ts, ts_bits),
            val: ValDec::new(&chunk.val, val_bits),
            first_ts: chunk.ts.first,
            max_ts: chunk.header.max_ts,
            prev_ts: chunk.ts.first,
            remaining: chunk.header.count,
            started: false,
        }
    }

    /// The next point, `Ok(None)` at the end.
    #[inline]
    fn next_point(&mut self) -> Result<Option<(i64, Raw)>, ChunkError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        let (ts, v, mut ok) = if self.started {
            let ts = self.ts.next_value();
            let ok = ts > self.prev_ts && ts <= self.max_ts;
            (ts, self.val.next_raw(), ok)
        } else {
            self.started = true;
            (self.first_ts, self.val.first(), true)
        };
        self.prev_ts = ts;
        ok &= !self.ts.r.overrun() && self.val.ok();
        if self.remaining == 0 {
            ok &= ts == self.max_ts && self.val.ok_at_end();
        }
        if !ok {
            self.remaining = 0;
            return Err(BAD_DATA);
        }
        Ok(Some((ts, v)))
    }

    /// Decodes up to `tsb.len().min(vb.len())` points into the buffers as
    /// numbers (bools as 0/1); returns how many, 0 at the end. Validates the
    /// whole block before returning it.
    #[inline]
    pub(crate) fn fill_numeric(
        &mut self,
        tsb: &mut [i64],
        vb: &mut [f64],
    ) -> Result<usize, ChunkError> {
        let n = (self.remaining as usize).min(tsb.len()).min(vb.len());
        if n == 0 {
            return Ok(0);
        }
        let (tsb, vb) = (&mut tsb[..n], &mut vb[..n]);
        let mut start = 0;
        if !self.started {
            self.started = true;
            tsb[0] = self.first_ts;
            vb[0] = match self.val.first() {
                Raw::F(v) => v,
                Raw::B(b) => f64::from(u8::from(b)),
                Raw::S(_) => 0.0,
            };
            start = 1;
        }
        let mut ok = true;
        let mut prev = self.prev_ts;
        let max = self.max_ts;
        let ts = &mut self.ts;
        let (tsb, vb) = (&mut tsb[start..], &mut vb[start..]);
        // Timestamps and values are independent bit streams: decoding both
        // in one loop lets the CPU overlap their dependency chains.
        match &mut self.val {
            ValDec::Decimal { ints, div, .. } => {
                let div = *div;
                for (t, v) in tsb.iter_mut().zip(vb.iter_mut()) {
                    *t = next_ts(ts, &mut prev, &mut ok, max);
                    *v = ints.next_value() as f64 / div;
                }
            }
            ValDec::Xor(x) => {
                for (t, v) in tsb.iter_mut().zip(vb.iter_mut()) {
                    *t = next_ts(ts, &mut prev, &mut ok, max);
                    *v = x.next_value();
                }
            }
            other => {
                for t in tsb.iter_mut() {
                    *t = next_ts(ts, &mut prev, &mut ok, max);
                }
                other.fill_numeric(vb);
            }
        }
        self.prev_ts = prev;
        self.remaining -= n as u32;
        ok &= !self.ts.r.overrun() && self.val.ok();
        if self.remaining == 0 {
            ok &= prev == max && self.val.ok_at_end();
        }
        if !ok {
            self.remaining = 0;
            return Err(BAD_DATA);
        }
        Ok(n)
    }
}

/// Iterator over a chunk's points, from [`Chunk::iter`] or [`Chunk::range`].
///
/// Yields `Err` once (then ends) if the data turns out to be inconsistent;
/// nothing decoded after an inconsistency is ever yielded.
#[derive(Clone)]
pub struct Points<'a> {
    cur: Cursor<'a>,
    dict: &'a [Box<str>],
    from: i64,
    /// Inclusive upper bound.
    last: i64,
    done: bool,
}

impl fmt::Debug for Points<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Points")
            .field("remaining", &self.cur.remaining)
            .field("from", &self.from)
            .field("last", &self.last)
            .finish()
    }
}

impl<'a> Iterator for Points<'a> {
    type Item = Result<(i64, Value<'a>), ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let (ts, raw) = match self.cur.next_point() {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            if ts < self.from {
                continue;
            }
            if ts > self.last {
                break;
            }
            let v = match raw {
                Raw::F(v) => Value::F64(v),
                Raw::B(b) => Value::Bool(b),
                Raw::S(i) => Value::Str(self.dict.get(i as usize).map_or("", |s| s)),
            };
            return Some(Ok((ts, v)));
        }
        self.done = true;
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            (0, Some(0))
        } else {
            (0, Some(self.cur.remaining as usize))
        }
    }
}
