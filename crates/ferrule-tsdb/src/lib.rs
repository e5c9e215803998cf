//! The chunk codec of Ferrule's embedded time-series store: how one series'
//! points are compressed. The store itself (files, write-ahead log, sealing,
//! queries, retention) is `ferrule_store::telemetry::embedded`; this crate
//! knows nothing of devices or files. It holds [`chunk`]:
//!
//! - [`ChunkBuilder`]: collects one series' points in any order, then sorts,
//!   deduplicates (last write wins) and encodes them.
//! - [`Chunk`]: an immutable, checksummed, compressed chunk — header with
//!   min/max timestamp and a summary (count, sum, min, max, first, last),
//!   timestamps coded as Rice-coded delta-of-delta or delta-from-base,
//!   values as constant / exact decimal integers / Gorilla XOR (f64),
//!   bit-packed or run-length (bool), dictionary (string). Read it with
//!   [`Chunk::iter`] / [`Chunk::range`] ([`Points`]).
//! - [`Aggregator`]: one-pass count/sum/avg/min/max/first/last per time
//!   [`Bucket`] over many chunks, using header summaries where a chunk lies
//!   inside one bucket.
//! - [`ChunkHeader`]: parse just a chunk's header to decide whether to load
//!   it; [`ChunkError`]: everything that can go wrong.
//! - [`varint`]: the LEB128 and zigzag integer coding the format uses, for
//!   other byte formats to share.
//!
//! The byte format is documented in `FORMAT.md` next to this crate's
//! `Cargo.toml`.

mod bits;
pub mod chunk;
mod crc;
mod intcode;

pub use chunk::{
    Aggregator, Bucket, Chunk, ChunkBuilder, ChunkError, ChunkHeader, Kind, Points, Summary, Value,
};
pub use crc::crc32c;

/// LEB128 varints and zigzag, as the chunk format writes them.
pub mod varint {
    pub use crate::intcode::{read_varint, unzigzag, write_varint, zigzag};
}
