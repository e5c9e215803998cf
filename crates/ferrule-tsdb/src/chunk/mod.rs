//! Immutable compressed chunks of one series' points.
//!
//! Build one with [`ChunkBuilder`] (points in any order; duplicates by
//! timestamp resolve to the last pushed), serialise it with
//! [`Chunk::as_bytes`], load it back with [`Chunk::from_bytes`] /
//! [`Chunk::from_vec`] (checksum and structure verified; corrupt input is an
//! error, never a panic), read it with [`Chunk::iter`] / [`Chunk::range`], and
//! aggregate one or many chunks into time buckets with [`Aggregator`].
//!
//! Timestamps are `i64` milliseconds since the Unix epoch, strictly increasing
//! inside a chunk. Values are all of one [`Kind`]: finite `f64` numbers (NaN
//! and ±∞ are rejected by the builder), bools, or UTF-8 strings.
//!
//! The byte layout is specified in `FORMAT.md` at the crate root.

mod agg;
mod decode;
mod encode;
mod error;
mod header;

pub use agg::{Aggregator, Bucket, MAX_BUCKETS};
pub use decode::{Chunk, Points, SectionSizes, TimestampEncoding, ValueEncoding};
pub use encode::ChunkBuilder;
pub use error::ChunkError;
pub use header::{ChunkHeader, FORMAT_VERSION, MAGIC, MAX_HEADER_LEN, Summary};

use std::fmt;

/// What a chunk's values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Finite IEEE-754 doubles.
    F64,
    /// Booleans; aggregated as 0.0 / 1.0.
    Bool,
    /// UTF-8 strings; not aggregatable beyond iteration.
    Str,
}

impl Kind {
    pub(crate) fn code(self) -> u8 {
        match self {
            Kind::F64 => 1,
            Kind::Bool => 2,
            Kind::Str => 3,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Kind> {
        match code {
            1 => Some(Kind::F64),
            2 => Some(Kind::Bool),
            3 => Some(Kind::Str),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::F64 => "f64",
            Kind::Bool => "bool",
            Kind::Str => "string",
        })
    }
}

/// One value, borrowed from a chunk (strings point into its dictionary).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    F64(f64),
    Bool(bool),
    Str(&'a str),
}

impl Value<'_> {
    pub fn kind(&self) -> Kind {
        match self {
            Value::F64(_) => Kind::F64,
            Value::Bool(_) => Kind::Bool,
            Value::Str(_) => Kind::Str,
        }
    }
}
