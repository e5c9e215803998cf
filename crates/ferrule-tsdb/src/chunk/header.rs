//! The fixed-size chunk header (see FORMAT.md, "Header").

use super::{ChunkError, Kind};

/// First four bytes of every chunk.
pub const MAGIC: [u8; 4] = *b"FTSC";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// The longest header of any kind: reading this many bytes (or the whole
/// chunk if shorter) is always enough for [`ChunkHeader::parse`].
pub const MAX_HEADER_LEN: usize = FIXED_LEN + F64_SUMMARY_LEN + 8;

pub(crate) const FIXED_LEN: usize = 28;
const F64_SUMMARY_LEN: usize = 40;
const SMALL_SUMMARY_LEN: usize = 8;
pub(crate) const CRC_LEN: usize = 4;

/// Per-chunk precomputed aggregates, stored in the header so that a query
/// bucket that covers a whole chunk needs no decoding.
///
/// For `F64`, `sum`/`min`/`max` are computed exactly as the
/// [`Aggregator`](super::Aggregator) computes them over decoded points (a
/// left-to-right sum starting from 0.0 in timestamp order), so using the
/// summary and decoding give bit-identical results.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Summary {
    F64 {
        sum: f64,
        min: f64,
        max: f64,
        /// Value at `min_ts`.
        first: f64,
        /// Value at `max_ts`.
        last: f64,
    },
    Bool {
        count_true: u32,
        first: bool,
        last: bool,
    },
    /// Dictionary indices of the first and last values (see
    /// [`Chunk::first_value`](super::Chunk::first_value)).
    Str { first: u32, last: u32 },
}

/// A chunk's header: what a query needs to decide whether to skip it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChunkHeader {
    pub kind: Kind,
    /// Number of points, ≥ 1.
    pub count: u32,
    /// Timestamp of the first point (ms since the epoch).
    pub min_ts: i64,
    /// Timestamp of the last point; equals `min_ts` iff `count == 1`.
    pub max_ts: i64,
    pub summary: Summary,
    pub(crate) ts_len: u32,
    pub(crate) val_len: u32,
}

struct Rd<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Rd<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], ChunkError> {
        let s = self
            .b
            .get(self.pos..self.pos + N)
            .ok_or(ChunkError::Truncated {
                needed: self.pos + N,
                available: self.b.len(),
            })?;
        self.pos += N;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, ChunkError> {
        Ok(self.take::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, ChunkError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, ChunkError> {
        Ok(i64::from_le_bytes(self.take()?))
    }
    fn f64(&mut self) -> Result<f64, ChunkError> {
        Ok(f64::from_bits(u64::from_le_bytes(self.take()?)))
    }
}

impl ChunkHeader {
    /// Header length in bytes for a kind.
    pub fn header_len(kind: Kind) -> usize {
        FIXED_LEN
            + match kind {
                Kind::F64 => F64_SUMMARY_LEN,
                Kind::Bool | Kind::Str => SMALL_SUMMARY_LEN,
            }
            + 8
    }

    /// Total length of the chunk this header starts, checksum included.
    /// (Saturates on 32-bit targets rather than overflowing.)
    pub fn encoded_len(&self) -> usize {
        (Self::header_len(self.kind) + CRC_LEN)
            .saturating_add(self.ts_len as usize)
            .saturating_add(self.val_len as usize)
    }

    /// Reads magic, version and kind only.
    pub(crate) fn peek_kind(bytes: &[u8]) -> Result<Kind, ChunkError> {
        if bytes.len() < 6 {
            return Err(ChunkError::Truncated {
                needed: 6,
                available: bytes.len(),
            });
        }
        if bytes[..4] != MAGIC {
            return Err(ChunkError::BadMagic);
        }
        if bytes[4] != FORMAT_VERSION {
            return Err(ChunkError::UnsupportedVersion(bytes[4]));
        }
        Kind::from_code(bytes[5]).ok_or(ChunkError::UnknownKind(bytes[5]))
    }

    /// Parses and sanity-checks a header from the start of `bytes` (which
    /// may be just the first [`MAX_HEADER_LEN`] bytes of a chunk).
    ///
    /// This does not verify the checksum, which covers the whole chunk: use
    /// it to decide which chunks to load, and load them with
    /// [`Chunk::from_vec`](super::Chunk::from_vec) before trusting their data.
    pub fn parse(bytes: &[u8]) -> Result<ChunkHeader, ChunkError> {
        let kind = Self::peek_kind(bytes)?;
        let hl = Self::header_len(kind);
        if bytes.len() < hl {
            return Err(ChunkError::Truncated {
                needed: hl,
                available: bytes.len(),
            });
        }
        let mut r = Rd { b: bytes, pos: 6 };
        if r.take::<2>()? != [0, 0] {
            return Err(ChunkError::Corrupt("reserved header bytes are not zero"));
        }
        let count = r.u32()?;
        let min_ts = r.i64()?;
        let max_ts = r.i64()?;
        let summary = match kind {
            Kind::F64 => Summary::F64 {
                sum: r.f64()?,
                min: r.f64()?,
                max: r.f64()?,
                first: r.f64()?,
                last: r.f64()?,
            },
            Kind::Bool => {
                let count_true = r.u32()?;
                let first = r.u8()?;
                let last = r.u8()?;
                if r.take::<2>()? != [0, 0] || first > 1 || last > 1 {
                    return Err(ChunkError::Corrupt("bad bool summary"));
                }
                Summary::Bool {
                    count_true,
                    first: first == 1,
                    last: last == 1,
                }
            }
            Kind::Str => Summary::Str {
                first: r.u32()?,
                last: r.u32()?,
            },
        };
        let ts_len = r.u32()?;
        let val_len = r.u32()?;
        let h = ChunkHeader {
            kind,
            count,
            min_ts,
            max_ts,
            summary,
            ts_len,
            val_len,
        };
        h.check()?;
        Ok(h)
    }

    fn check(&self) -> Result<(), ChunkError> {
        let bad = ChunkError::Corrupt;
        if self.count == 0 {
            return Err(bad("zero point count"));
        }
        let span = i128::from(self.max_ts) - i128::from(self.min_ts);
        if span < i128::from(self.count - 1) || (self.count == 1 && span != 0) {
            return Err(bad("timestamp range does not fit the point count"));
        }
        match self.summary {
            Summary::F64 {
                sum,
                min,
                max,
                first,
                last,
            } => {
                let finite = min.is_finite() && max.is_finite() && first.is_finite();
                if !finite || !last.is_finite() || sum.is_nan() {
                    return Err(bad("non-finite summary"));
                }
                if min > max || first < min || first > max || last < min || last > max {
                    return Err(bad("inconsistent summary"));
                }
            }
            Summary::Bool {
                count_true,
                first,
                last,
            } => {
                let all = count_true == self.count;
                let none = count_true == 0;
                if count_true > self.count || (all && !(first && last)) || (none && (first || last))
                {
                    return Err(bad("inconsistent bool summary"));
                }
            }
            Summary::Str { first, .. } => {
                if first != 0 {
                    return Err(bad("first string is not dictionary entry 0"));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        out.push(self.kind.code());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.min_ts.to_le_bytes());
        out.extend_from_slice(&self.max_ts.to_le_bytes());
        match self.summary {
            Summary::F64 {
                sum,
                min,
                max,
                first,
                last,
            } => {
                for v in [sum, min, max, first, last] {
                    out.extend_from_slice(&v.to_bits().to_le_bytes());
                }
            }
            Summary::Bool {
                count_true,
                first,
                last,
            } => {
                out.extend_from_slice(&count_true.to_le_bytes());
                out.extend_from_slice(&[u8::from(first), u8::from(last), 0, 0]);
            }
            Summary::Str { first, last } => {
                out.extend_from_slice(&first.to_le_bytes());
                out.extend_from_slice(&last.to_le_bytes());
            }
        }
        out.extend_from_slice(&self.ts_len.to_le_bytes());
        out.extend_from_slice(&self.val_len.to_le_bytes());
    }
}
