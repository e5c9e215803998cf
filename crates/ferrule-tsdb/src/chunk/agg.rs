//! One-pass bucketed aggregation over one or many chunks.

use super::decode::Cursor;
use super::{Chunk, ChunkError, Kind};

/// Most buckets one [`Aggregator`] may hold (its memory is dense: about
/// 64 bytes per bucket, allocated up front).
pub const MAX_BUCKETS: usize = 1 << 20;

/// Points decoded per block.
const BLOCK: usize = 512;

/// Running aggregate. `push` and `merge` are the only places sums and
/// extremes are computed, so a chunk's header summary (made by `push` over
/// its points) equals what decoding the chunk would produce, bit for bit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Acc {
    pub(crate) count: u64,
    pub(crate) sum: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) first_ts: i64,
    pub(crate) first: f64,
    pub(crate) last_ts: i64,
    pub(crate) last: f64,
}

impl Acc {
    pub(crate) const EMPTY: Acc = Acc {
        count: 0,
        sum: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        first_ts: i64::MAX,
        first: 0.0,
        last_ts: i64::MIN,
        last: 0.0,
    };

    /// Adds a point; points must come in increasing timestamp order.
    #[inline]
    pub(crate) fn push(&mut self, ts: i64, v: f64) {
        if self.count == 0 {
            self.first_ts = ts;
            self.first = v;
        }
        self.count += 1;
        self.sum += v;
        // Explicit comparisons (not f64::min) keep ±0.0 handling identical
        // everywhere.
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
        self.last_ts = ts;
        self.last = v;
    }

    /// Folds in a partial aggregate. Ties on `first` keep the existing
    /// value; ties on `last` take the merged one (later chunks win).
    #[inline]
    pub(crate) fn merge(&mut self, o: &Acc) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 || o.first_ts < self.first_ts {
            self.first_ts = o.first_ts;
            self.first = o.first;
        }
        if self.count == 0 || o.last_ts >= self.last_ts {
            self.last_ts = o.last_ts;
            self.last = o.last;
        }
        self.count += o.count;
        self.sum += o.sum;
        if o.min < self.min {
            self.min = o.min;
        }
        if o.max > self.max {
            self.max = o.max;
        }
    }
}

/// The bucket being filled while decoding a chunk.
#[derive(Clone, Copy)]
struct Partial {
    acc: Acc,
    idx: usize,
    /// Exclusive end of bucket `idx` (clipped to `to`).
    end: i64,
}

/// Aggregates of the points in one time bucket `[start, start + bucket_ms)`
/// (clipped to the query's `to`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub start: i64,
    /// Points in the bucket, ≥ 1 (empty buckets are not reported).
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// Timestamp and value of the earliest point.
    pub first_ts: i64,
    pub first: f64,
    /// Timestamp and value of the latest point.
    pub last_ts: i64,
    pub last: f64,
}

impl Bucket {
    /// `sum / count`.
    pub fn avg(&self) -> f64 {
        self.sum / self.count as f64
    }
}

/// Computes count, sum (hence avg), min, max, first and last per time bucket
/// over `[from, to)`, for F64 and Bool chunks (bools count as 0.0 / 1.0),
/// in one pass over decoded points and without allocating per point.
///
/// Buckets are `[from + i·bucket_ms, from + (i+1)·bucket_ms)`; align `from`
/// yourself (e.g. to a minute). Feed the chunks of one series with
/// [`add_chunk`](Self::add_chunk) in any order; chunks outside the range are
/// skipped from their header, and a chunk lying entirely inside one bucket
/// is taken from its header summary without decoding. Chunks must not
/// overlap in timestamps (a point present in two chunks is counted twice);
/// for `last`, a tie goes to the chunk added later.
#[derive(Debug, Clone)]
pub struct Aggregator {
    from: i64,
    to: i64,
    bucket_ms: i64,
    accs: Vec<Acc>,
    use_summaries: bool,
    scratch: Vec<(usize, Acc)>,
}

impl Aggregator {
    /// Errors unless `from < to`, `bucket_ms > 0` and the range has at most
    /// [`MAX_BUCKETS`] buckets.
    pub fn new(from: i64, to: i64, bucket_ms: i64) -> Result<Self, ChunkError> {
        if from >= to {
            return Err(ChunkError::InvalidQuery("empty range (from >= to)"));
        }
        if bucket_ms <= 0 {
            return Err(ChunkError::InvalidQuery("bucket width must be positive"));
        }
        let span = i128::from(to) - i128::from(from);
        let n = (span + i128::from(bucket_ms) - 1) / i128::from(bucket_ms);
        if n > MAX_BUCKETS as i128 {
            return Err(ChunkError::InvalidQuery("too many buckets"));
        }
        Ok(Aggregator {
            from,
            to,
            bucket_ms,
            accs: vec![Acc::EMPTY; n as usize],
            use_summaries: true,
            scratch: Vec::new(),
        })
    }

    /// Whether a chunk that falls entirely in one bucket is taken from its
    /// header summary (default true). Results are identical either way;
    /// turning it off forces decoding (for verification).
    pub fn use_summaries(&mut self, yes: bool) -> &mut Self {
        self.use_summaries = yes;
        self
    }

    #[inline]
    fn bucket_of(&self, ts: i64) -> usize {
        ((i128::from(ts) - i128::from(self.from)) / i128::from(self.bucket_ms)) as usize
    }

    fn bucket_end(&self, idx: usize) -> i64 {
        let end = i128::from(self.from) + (idx as i128 + 1) * i128::from(self.bucket_ms);
        end.min(i128::from(self.to)) as i64
    }

    /// Adds one chunk's points in `[from, to)`. On error (a string chunk, or
    /// a chunk whose data turns out corrupt) the aggregator is unchanged.
    pub fn add_chunk(&mut self, chunk: &Chunk) -> Result<(), ChunkError> {
        if chunk.kind() == Kind::Str {
            return Err(ChunkError::KindMismatch {
                expected: Kind::F64,
                found: Kind::Str,
            });
        }
        let (lo, hi) = (chunk.min_ts(), chunk.max_ts());
        if hi < self.from || lo >= self.to {
            return Ok(());
        }
        if self.use_summaries && lo >= self.from && hi < self.to {
            let b = self.bucket_of(lo);
            if b == self.bucket_of(hi)
                && let Some(acc) = self.accs.get_mut(b)
            {
                acc.merge(&chunk.summary_acc());
                return Ok(());
            }
        }

        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let result = self.decode_into(chunk, &mut scratch);
        if result.is_ok() {
            for (i, p) in &scratch {
                if let Some(acc) = self.accs.get_mut(*i) {
                    acc.merge(p);
                }
            }
        }
        self.scratch = scratch;
        result
    }

    /// Decodes the chunk into per-bucket partials (each started from empty,
    /// exactly like the header summary).
    fn decode_into(&self, chunk: &Chunk, out: &mut Vec<(usize, Acc)>) -> Result<(), ChunkError> {
        let mut cur = Cursor::new(chunk);
        let mut tsb = [0i64; BLOCK];
        let mut vb = [0f64; BLOCK];
        let mut part = Partial {
            acc: Acc::EMPTY,
            idx: 0,
            end: i64::MIN,
        };
        loop {
            let n = cur.fill_numeric(&mut tsb, &mut vb)?;
            if n == 0 || self.push_block(&tsb[..n], &vb[..n], &mut part, out) {
                break;
            }
        }
        if part.acc.count > 0 {
            out.push((part.idx, part.acc));
        }
        Ok(())
    }

    /// Folds a block of decoded points into `part`, pushing finished
    /// buckets to `out`; true once a point at or after `to` is seen.
    #[inline(never)]
    fn push_block(
        &self,
        tsb: &[i64],
        vb: &[f64],
        part: &mut Partial,
        out: &mut Vec<(usize, Acc)>,
    ) -> bool {
        let (from, to) = (self.from, self.to);
        // Work on a local copy so that the running sums stay in registers.
        let mut p = *part;
        let mut stop = false;
        for (&ts, &v) in tsb.iter().zip(vb) {
            if ts < from {
                continue;
            }
            if ts >= to {
                stop = true;
                break;
            }
            if ts >= p.end {
                if p.acc.count > 0 {
                    out.push((p.idx, p.acc));
                }
                p.acc = Acc::EMPTY;
                p.idx = self.bucket_of(ts);
                p.end = self.bucket_end(p.idx);
            }
            p.acc.push(ts, v);
        }
        *part = p;
        stop
    }

    /// Folds in an aggregator over the same range and bucket width that
    /// took other chunks (another thread's share of a series, say). Its
    /// chunks must not overlap this one's in time; for `last`, a tie goes to
    /// `other`, as if its chunks had been added after this one's.
    pub fn merge(&mut self, other: &Aggregator) -> Result<(), ChunkError> {
        if (self.from, self.to, self.bucket_ms) != (other.from, other.to, other.bucket_ms) {
            return Err(ChunkError::InvalidQuery(
                "merged aggregators must share range and bucket width",
            ));
        }
        for (a, b) in self.accs.iter_mut().zip(&other.accs) {
            a.merge(b);
        }
        Ok(())
    }

    /// Non-empty buckets in time order.
    pub fn buckets(&self) -> impl Iterator<Item = Bucket> + '_ {
        self.accs
            .iter()
            .enumerate()
            .filter(|(_, a)| a.count > 0)
            .map(|(i, a)| Bucket {
                start: (i128::from(self.from) + i as i128 * i128::from(self.bucket_ms)) as i64,
                count: a.count,
                sum: a.sum,
                min: a.min,
                max: a.max,
                first_ts: a.first_ts,
                first: a.first,
                last_ts: a.last_ts,
                last: a.last,
            })
    }

    /// Non-empty buckets in time order.
    pub fn finish(self) -> Vec<Bucket> {
        self.buckets().collect()
    }
}
