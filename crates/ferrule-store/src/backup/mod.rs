//! Backups of the embedded store: the container format ([`archive`]).
pub mod archive;

pub use archive::{
    ArchiveError, ArchiveReader, ArchiveWriter, Checksums, DiscardSink, EntrySink, ExpectScope,
    Manifest, Scope,
};
