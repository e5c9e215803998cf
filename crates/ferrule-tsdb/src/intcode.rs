//! Integer-series coding shared by timestamps and decimal-scaled floats:
//! zigzag, LEB128 varints, Rice codes with a per-chunk parameter, and the
//! "delta from a base" / "delta-of-delta" residual models.

use crate::bits::{BitReader, BitWriter, ESC};

/// Largest Rice parameter a chunk may declare.
pub(crate) const MAX_K: u32 = 56;

#[inline]
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
pub fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Appends `v` as an unsigned LEB128 varint.
pub fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 varint at `*pos`, advancing it; `None` if truncated or
/// longer than a u64.
pub fn read_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        let part = u64::from(b & 0x7F);
        if i == 9 && part > 1 {
            return None;
        }
        v |= part << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Writes `u` as a Rice code with parameter `k` (see [`BitReader::read_rice`]).
#[inline]
pub(crate) fn write_rice(w: &mut BitWriter, u: u64, k: u32) {
    let q = u >> k;
    if q < u64::from(ESC) {
        let q = q as u32;
        w.write((1u64 << (q + 1)) - 2, q + 1);
        w.write(u, k);
    } else {
        w.write((1u64 << ESC) - 1, ESC);
        let l = 63 - u.leading_zeros();
        w.write(u64::from(l), 6);
        w.write(u, l);
    }
}

/// The Rice parameter that codes `us` in the fewest bits, and that size.
///
/// Exact, in O(n·4 + 65·57): a value of bit length `b` costs `1 + k` bits
/// when `b <= k`, `q + 1 + k` with `q = u >> k < 16` when `k < b <= k + 4`,
/// and `ESC + 5 + b` (escape) when `b > k + 4`.
pub(crate) fn best_rice_k(us: &[u64]) -> (u32, u64) {
    let mut cnt = [0u64; 65];
    let mut qsum = [0u64; MAX_K as usize + 1];
    for &u in us {
        let b = 64 - u.leading_zeros();
        cnt[b as usize] += 1;
        for k in b.saturating_sub(4)..b.min(MAX_K + 1) {
            qsum[k as usize] += u >> k;
        }
    }
    let mut best = (0u32, u64::MAX);
    for k in 0..=MAX_K {
        let mut bits = qsum[k as usize];
        for (b, &c) in cnt.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let b = b as u64;
            bits += if b <= u64::from(k) + 4 {
                c * (1 + u64::from(k))
            } else {
                c * (u64::from(ESC) + 5 + b)
            };
        }
        if bits < best.1 {
            best = (k, bits);
        }
    }
    best
}

/// Parameters of an integer series, from its byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IntParams {
    /// Delta-of-delta (true) or delta minus a fixed base (false).
    pub(crate) order2: bool,
    pub(crate) k: u32,
    pub(crate) first: i64,
    /// Order 1: the fixed predicted delta. Order 2: the delta predicted for
    /// the second value.
    pub(crate) base: i64,
}

/// Encodes `xs` (non-empty) as `[order u8][k u8][first i64 LE][base
/// zigzag-varint][Rice bitstream of the n-1 residuals]`, picking the model
/// and `k` that give the fewest bits.
pub(crate) fn encode_ints(out: &mut Vec<u8>, xs: &[i64]) {
    let Some(&first) = xs.first() else {
        return;
    };
    let deltas: Vec<i64> = xs.windows(2).map(|p| p[1].wrapping_sub(p[0])).collect();

    // Order 1: residual = delta - median delta. Best for jitter around a
    // nominal interval (devices that report every ~1000 ms).
    let base1 = if deltas.is_empty() {
        0
    } else {
        let mut tmp = deltas.clone();
        let mid = tmp.len() / 2;
        *tmp.select_nth_unstable(mid).1
    };
    let r1: Vec<u64> = deltas
        .iter()
        .map(|&d| zigzag(d.wrapping_sub(base1)))
        .collect();
    let (k1, bits1) = best_rice_k(&r1);

    // Order 2 (Gorilla): residual = delta - previous delta. Best for smooth
    // trends and perfectly regular intervals.
    let base2 = deltas.first().copied().unwrap_or(0);
    let mut prev = base2;
    let r2: Vec<u64> = deltas
        .iter()
        .map(|&d| {
            let r = zigzag(d.wrapping_sub(prev));
            prev = d;
            r
        })
        .collect();
    let (k2, bits2) = best_rice_k(&r2);

    let (order, k, base, rs) = if bits2 < bits1 {
        (2u8, k2, base2, r2)
    } else {
        (1u8, k1, base1, r1)
    };
    out.push(order);
    out.push(k as u8);
    out.extend_from_slice(&first.to_le_bytes());
    write_varint(out, zigzag(base));
    let mut w = BitWriter::new();
    for u in rs {
        write_rice(&mut w, u, k);
    }
    out.extend_from_slice(&w.finish());
}

/// Parses an integer-series header; returns the parameters and the offset of
/// the bitstream.
pub(crate) fn parse_int_header(bytes: &[u8]) -> Result<(IntParams, usize), &'static str> {
    let order = *bytes.first().ok_or("integer series truncated")?;
    let k = u32::from(*bytes.get(1).ok_or("integer series truncated")?);
    let first = bytes
        .get(2..10)
        .ok_or("integer series truncated")?
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)) as i64;
    let mut pos = 10;
    let base = unzigzag(read_varint(bytes, &mut pos).ok_or("bad varint in integer series")?);
    let order2 = match order {
        1 => false,
        2 => true,
        _ => return Err("unknown integer series order"),
    };
    if k > MAX_K {
        return Err("rice parameter out of range");
    }
    Ok((
        IntParams {
            order2,
            k,
            first,
            base,
        },
        pos,
    ))
}

/// Streams the values after the first of an integer series.
#[derive(Debug, Clone)]
pub(crate) struct IntDec<'a> {
    pub(crate) r: BitReader<'a>,
    order2: bool,
    k: u32,
    base: i64,
    delta: i64,
    prev: i64,
}

impl<'a> IntDec<'a> {
    pub(crate) fn new(p: IntParams, bits: &'a [u8]) -> Self {
        Self {
            r: BitReader::new(bits),
            order2: p.order2,
            k: p.k,
            base: p.base,
            delta: p.base,
            prev: p.first,
        }
    }

    /// The next value (the first is `IntParams::first`, not read here).
    #[inline(always)]
    pub(crate) fn next_value(&mut self) -> i64 {
        let res = unzigzag(self.r.read_rice(self.k));
        let pred = if self.order2 { self.delta } else { self.base };
        self.delta = pred.wrapping_add(res);
        self.prev = self.prev.wrapping_add(self.delta);
        self.prev
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_round_trips_extremes() {
        for v in [0, 1, -1, 2, -2, i64::MAX, i64::MIN, 1000, -1000] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
    }

    #[test]
    fn varint_round_trips_and_rejects_overlong() {
        for v in [0, 1, 127, 128, 300, u64::MAX, 1 << 63] {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            let mut pos = 0;
            assert_eq!(read_varint(&out, &mut pos), Some(v));
            assert_eq!(pos, out.len());
        }
        let mut pos = 0;
        assert_eq!(read_varint(&[0xFF; 11], &mut pos), None);
        let mut pos = 0;
        assert_eq!(read_varint(&[0x80], &mut pos), None);
    }

    #[test]
    fn best_k_matches_brute_force() {
        let sets: Vec<Vec<u64>> = vec![
            vec![0; 10],
            (0..500).map(|i| (i * 7919) % 37).collect(),
            (0..500)
                .map(|i| if i % 50 == 0 { 1 << 40 } else { i % 9 })
                .collect(),
            vec![u64::MAX, 0, 1 << 63, 5],
        ];
        for us in sets {
            let (k, bits) = best_rice_k(&us);
            let mut brute = u64::MAX;
            for kk in 0..=MAX_K {
                let mut w = BitWriter::new();
                for &u in &us {
                    write_rice(&mut w, u, kk);
                }
                brute = brute.min(w.bit_len());
                if kk == k {
                    assert_eq!(w.bit_len(), bits);
                }
            }
            assert_eq!(bits, brute);
            // Decodes back.
            let mut w = BitWriter::new();
            for &u in &us {
                write_rice(&mut w, u, k);
            }
            let bytes = w.finish();
            let mut r = BitReader::new(&bytes);
            for &u in &us {
                assert_eq!(r.read_rice(k), u);
            }
            assert!(!r.overrun());
        }
    }

    #[test]
    fn int_series_round_trips() {
        let series: Vec<Vec<i64>> = vec![
            vec![42],
            vec![i64::MIN, i64::MAX, 0, -5, i64::MAX],
            (0..1000)
                .map(|i| 1_700_000_000_000 + i * 1000 + (i * 37 % 11) - 5)
                .collect(),
            (0..1000).map(|i| i * i).collect(),
        ];
        for xs in series {
            let mut out = Vec::new();
            encode_ints(&mut out, &xs);
            let (p, off) = parse_int_header(&out).unwrap();
            assert_eq!(p.first, xs[0]);
            let mut d = IntDec::new(p, &out[off..]);
            for &x in &xs[1..] {
                assert_eq!(d.next_value(), x);
            }
            assert!(!d.r.overrun());
        }
    }
}
