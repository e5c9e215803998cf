use std::fmt;

use super::Kind;

/// Why a chunk could not be built, loaded, read or aggregated.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkError {
    /// `ChunkBuilder::finish` on a builder with no points.
    Empty,
    /// More points or bytes than the format can describe (u32 counts).
    TooLarge,
    /// A NaN or infinite float was pushed; the format rejects them so that
    /// aggregates stay well defined.
    NonFinite { ts: i64 },
    /// A value or operation of the wrong kind.
    KindMismatch { expected: Kind, found: Kind },
    /// The input ends before the header says it should.
    Truncated { needed: usize, available: usize },
    /// The input does not start with the chunk magic.
    BadMagic,
    /// A format version this build cannot read.
    UnsupportedVersion(u8),
    /// An unknown value-kind code.
    UnknownKind(u8),
    /// The stored CRC-32C does not match the bytes.
    ChecksumMismatch { stored: u32, computed: u32 },
    /// The bytes pass the checksum but are structurally invalid.
    Corrupt(&'static str),
    /// Bad aggregation arguments.
    InvalidQuery(&'static str),
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::Empty => write!(f, "chunk has no points"),
            ChunkError::TooLarge => write!(f, "chunk too large for the format"),
            ChunkError::NonFinite { ts } => {
                write!(
                    f,
                    "non-finite float at timestamp {ts} (NaN and ±inf are rejected)"
                )
            }
            ChunkError::KindMismatch { expected, found } => {
                write!(f, "expected {expected} values, found {found}")
            }
            ChunkError::Truncated { needed, available } => {
                write!(f, "chunk truncated: need {needed} bytes, have {available}")
            }
            ChunkError::BadMagic => write!(f, "not a chunk (bad magic)"),
            ChunkError::UnsupportedVersion(v) => write!(f, "unsupported chunk format version {v}"),
            ChunkError::UnknownKind(k) => write!(f, "unknown chunk value kind {k}"),
            ChunkError::ChecksumMismatch { stored, computed } => write!(
                f,
                "chunk checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            ChunkError::Corrupt(why) => write!(f, "corrupt chunk: {why}"),
            ChunkError::InvalidQuery(why) => write!(f, "invalid aggregation query: {why}"),
        }
    }
}

impl std::error::Error for ChunkError {}
