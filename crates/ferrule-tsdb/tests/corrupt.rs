//! Corrupt, truncated and crafted input: always an error, never a panic.

use ferrule_tsdb::chunk::{MAX_HEADER_LEN, ValueEncoding};
use ferrule_tsdb::{Aggregator, Chunk, ChunkBuilder, ChunkError, ChunkHeader, Kind, crc32c};
use proptest::prelude::*;

/// One valid chunk per value encoding (and both timestamp models).
fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let ts = |i: i64| 1_700_000_000_000 + i * 1000 + (i * 7919 % 11) - 5;

    let mut b = ChunkBuilder::new(Kind::F64);
    (0..150).for_each(|i| b.push_f64(ts(i), 21.5).unwrap());
    out.push(("f64 constant", b));
    let mut b = ChunkBuilder::new(Kind::F64);
    (0..150).for_each(|i| {
        b.push_f64(ts(i), 21.0 + ((i * 37) % 9) as f64 / 10.0)
            .unwrap()
    });
    out.push(("f64 decimal", b));
    let mut b = ChunkBuilder::new(Kind::F64);
    (0..150).for_each(|i| b.push_f64(i * i * 3, (i as f64).sin() * 1e3).unwrap());
    out.push(("f64 xor, delta-of-delta timestamps", b));
    let mut b = ChunkBuilder::new(Kind::Bool);
    (0..150).for_each(|i| b.push_bool(ts(i), (i * 7919) % 3 == 0).unwrap());
    out.push(("bool packed", b));
    let mut b = ChunkBuilder::new(Kind::Bool);
    (0..400).for_each(|i| b.push_bool(ts(i), (i / 60) % 2 == 0).unwrap());
    out.push(("bool run-length", b));
    let mut b = ChunkBuilder::new(Kind::Str);
    let words = ["on", "off", "idle", "ünïcødé", ""];
    (0..150).for_each(|i| b.push_str(ts(i), words[(i as usize / 3) % 5]).unwrap());
    out.push(("string dictionary", b));

    out.into_iter()
        .map(|(name, b)| (name, b.finish_bytes().unwrap()))
        .collect()
}

#[test]
fn samples_cover_every_encoding() {
    let encodings: Vec<ValueEncoding> = samples()
        .iter()
        .map(|(_, b)| Chunk::from_bytes(b).unwrap().value_encoding())
        .collect();
    assert!(matches!(
        encodings[..],
        [
            ValueEncoding::Constant,
            ValueEncoding::Decimal { .. },
            ValueEncoding::Xor,
            ValueEncoding::BitPacked,
            ValueEncoding::RunLength,
            ValueEncoding::Dictionary { entries: 5 }
        ]
    ));
}

/// Exercises everything a reader might do with a loaded chunk.
fn use_chunk(c: &Chunk) {
    let mut n = 0usize;
    for p in c.iter() {
        n += 1;
        assert!(n <= c.len() + 1, "iterator ran past the point count");
        if p.is_err() {
            break;
        }
    }
    let _ = c.validate();
    let _ = c.range(c.min_ts().saturating_add(1), c.max_ts()).count();
    let _ = (c.first_value(), c.last_value(), c.section_sizes());
    if c.kind() != Kind::Str {
        let span = (i128::from(c.max_ts()) - i128::from(c.min_ts())) as f64;
        let bucket = ((span / 50.0) as i64).max(1);
        if let Ok(mut agg) = Aggregator::new(c.min_ts(), c.max_ts().saturating_add(1), bucket) {
            let _ = agg.add_chunk(c);
            let _ = agg.finish();
        }
    }
}

#[test]
fn every_single_byte_change_is_detected() {
    for (name, bytes) in samples() {
        Chunk::from_bytes(&bytes).unwrap().validate().unwrap();
        for i in 0..bytes.len() {
            for mask in [0x01u8, 0x10, 0x80, 0xFF] {
                let mut bad = bytes.clone();
                bad[i] ^= mask;
                assert!(
                    Chunk::from_bytes(&bad).is_err(),
                    "{name}: flipping byte {i} with {mask:#04x} went unnoticed"
                );
            }
        }
    }
}

#[test]
fn every_truncation_and_extension_is_detected() {
    for (name, bytes) in samples() {
        for n in 0..bytes.len() {
            let err = Chunk::from_bytes(&bytes[..n]).unwrap_err();
            if n < ChunkHeader::header_len(Chunk::from_bytes(&bytes).unwrap().kind()) {
                assert!(
                    matches!(err, ChunkError::Truncated { .. } | ChunkError::BadMagic),
                    "{name} cut at {n}: {err}"
                );
            }
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Chunk::from_bytes(&longer).is_err(), "{name}: trailing byte");
    }
}

#[test]
fn header_parses_from_a_prefix() {
    for (_, bytes) in samples() {
        let full = Chunk::from_bytes(&bytes).unwrap();
        let prefix = &bytes[..bytes.len().min(MAX_HEADER_LEN)];
        let h = ChunkHeader::parse(prefix).unwrap();
        assert_eq!(&h, full.header());
        assert_eq!(h.encoded_len(), bytes.len());
    }
}

/// Rewrites the trailing CRC so that structural checks are reached.
fn reseal(bytes: &mut [u8]) {
    if bytes.len() >= 4 {
        let n = bytes.len() - 4;
        let crc = crc32c(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
    }
}

#[test]
fn crafted_counts_and_sizes_are_rejected() {
    for (name, bytes) in samples() {
        // A point count far beyond what the bits can hold.
        let mut bad = bytes.clone();
        bad[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        bad[20..28].copy_from_slice(&i64::MAX.to_le_bytes());
        reseal(&mut bad);
        assert!(
            Chunk::from_bytes(&bad).is_err(),
            "{name}: huge count accepted"
        );
        // Section lengths pointing past the end.
        let kind = Chunk::from_bytes(&bytes).unwrap().kind();
        let hl = ChunkHeader::header_len(kind);
        let mut bad = bytes.clone();
        bad[hl - 8..hl - 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Chunk::from_bytes(&bad),
            Err(ChunkError::Truncated { .. })
        ));
    }
}

#[test]
fn resealed_single_byte_changes_never_panic() {
    for (_, bytes) in samples() {
        for i in 0..bytes.len() - 4 {
            for mask in [0x01u8, 0x02, 0x08, 0x40, 0x80, 0xFF] {
                let mut bad = bytes.clone();
                bad[i] ^= mask;
                reseal(&mut bad);
                if let Ok(c) = Chunk::from_vec(bad) {
                    use_chunk(&c);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random edits with a recomputed checksum: loading and every read path
    /// may fail but must not panic or run away.
    #[test]
    fn resealed_random_edits_never_panic(
        which in 0usize..6,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let mut bytes = samples().swap_remove(which).1;
        for (at, x) in edits {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()).max(1));
        }
        reseal(&mut bytes);
        if let Ok(c) = Chunk::from_vec(bytes) {
            use_chunk(&c);
        }
    }

    /// Arbitrary bytes behind a valid magic, version and kind.
    #[test]
    fn arbitrary_bodies_never_panic(
        kind in 1u8..4,
        body in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut bytes = b"FTSC\x01".to_vec();
        bytes.push(kind);
        bytes.extend_from_slice(&body);
        let _ = ChunkHeader::parse(&bytes);
        let _ = Chunk::from_bytes(&bytes);
        reseal(&mut bytes);
        if let Ok(c) = Chunk::from_vec(bytes) {
            use_chunk(&c);
        }
    }
}
