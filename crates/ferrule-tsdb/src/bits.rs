//! MSB-first bit writer and reader: the core of every bit-packed section.
//!
//! The reader never panics and never reads out of bounds: past the end of its
//! slice it yields zero bits and remembers that it overran, which the caller
//! checks (once per point or once per block) before trusting what it decoded.

/// Appends bits, most significant first, to a byte vector.
#[derive(Debug, Default)]
pub(crate) struct BitWriter {
    out: Vec<u8>,
    /// Pending bits in the low `n` bits (anything above is stale and ignored).
    acc: u64,
    n: u32,
}

impl BitWriter {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Writes the low `nbits` (≤ 64) bits of `value`.
    #[inline]
    pub(crate) fn write(&mut self, value: u64, nbits: u32) {
        debug_assert!(nbits <= 64);
        if nbits > 32 {
            self.write32(value >> 32, nbits - 32);
            self.write32(value, 32);
        } else {
            self.write32(value, nbits);
        }
    }

    #[inline]
    fn write32(&mut self, value: u64, nbits: u32) {
        let mask = (1u64 << nbits) - 1;
        self.acc = (self.acc << nbits) | (value & mask);
        self.n += nbits;
        while self.n >= 8 {
            self.n -= 8;
            self.out.push((self.acc >> self.n) as u8);
        }
    }

    #[inline]
    pub(crate) fn write_bit(&mut self, bit: bool) {
        self.write32(u64::from(bit), 1);
    }

    /// Bits written so far.
    #[cfg(test)]
    pub(crate) fn bit_len(&self) -> u64 {
        self.out.len() as u64 * 8 + u64::from(self.n)
    }

    /// Pads the last byte with zero bits and returns the bytes.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push((self.acc << (8 - self.n)) as u8);
        }
        self.out
    }
}

/// Reads bits, most significant first, from a byte slice.
///
/// Invariants: `nbits <= 63`; the top `nbits` bits of `buf` are the next
/// unread bits; bits below them are either the following data bits (already
/// prefetched) or zero.
#[derive(Debug, Clone)]
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte to load.
    pos: usize,
    buf: u64,
    nbits: u32,
}

/// Unary prefix length at which a Rice code switches to its escape form.
pub(crate) const ESC: u32 = 16;

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            buf: 0,
            nbits: 0,
        }
    }

    #[inline]
    fn load(&self) -> u64 {
        match self.data.get(self.pos..self.pos.saturating_add(8)) {
            Some(s) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                u64::from_be_bytes(a)
            }
            None => self.load_tail(),
        }
    }

    #[cold]
    fn load_tail(&self) -> u64 {
        let mut a = [0u8; 8];
        if let Some(rest) = self.data.get(self.pos..) {
            let n = rest.len().min(8);
            a[..n].copy_from_slice(&rest[..n]);
        }
        u64::from_be_bytes(a)
    }

    /// Tops the buffer up to at least 56 bits.
    #[inline]
    fn refill(&mut self) {
        let w = self.load();
        self.buf |= w >> self.nbits;
        let bytes = (63 - self.nbits) >> 3;
        self.pos += bytes as usize;
        self.nbits += bytes << 3;
    }

    /// Reads `k` ≤ 56 bits.
    #[inline]
    pub(crate) fn read(&mut self, k: u32) -> u64 {
        debug_assert!(k <= 56);
        if self.nbits < k {
            self.refill();
        }
        // `>> 1 >> (63 - k)` is `>> (64 - k)` without the k = 0 overflow.
        let v = (self.buf >> 1) >> (63 - k);
        self.buf <<= k;
        self.nbits -= k;
        v
    }

    /// Reads `k` ≤ 64 bits.
    #[inline]
    pub(crate) fn read_u64(&mut self, k: u32) -> u64 {
        if k > 32 {
            let hi = self.read(k - 32);
            (hi << 32) | self.read(32)
        } else {
            self.read(k)
        }
    }

    #[inline]
    pub(crate) fn read_bit(&mut self) -> bool {
        self.read(1) != 0
    }

    /// Reads one Rice code with parameter `k` ≤ 56 (see FORMAT.md):
    /// `q` one bits, a zero, `k` low bits; or, when `q` would reach [`ESC`],
    /// `ESC` one bits, 6 bits `L`, then the `L` bits below the value's
    /// leading one.
    #[inline(always)]
    pub(crate) fn read_rice(&mut self, k: u32) -> u64 {
        // Refill only when the longest non-escape code might not fit: with
        // small k that is once every several codes. After this, nbits > ESC,
        // so the capped count below never runs past the valid bits.
        if self.nbits < ESC + 1 + k {
            self.refill();
        }
        let ones = self.buf.leading_ones().min(ESC);
        if ones < ESC {
            self.buf <<= ones + 1;
            self.nbits -= ones + 1;
            (u64::from(ones) << k) | self.read(k)
        } else {
            self.buf <<= ESC;
            self.nbits -= ESC;
            let l = self.read(6) as u32;
            (1u64 << l) | self.read_u64(l)
        }
    }

    /// True once more bits were consumed than the slice holds.
    #[inline]
    pub(crate) fn overrun(&self) -> bool {
        (self.pos as u64 * 8).saturating_sub(u64::from(self.nbits)) > self.data.len() as u64 * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_mixed_widths() {
        let items: Vec<(u64, u32)> = (0..2000u64)
            .map(|i| {
                let w = (i * 7 % 65) as u32;
                let v = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let v = if w == 64 { v } else { v & ((1u64 << w) - 1) };
                (v, w)
            })
            .collect();
        let mut w = BitWriter::new();
        for &(v, n) in &items {
            w.write(v, n);
        }
        let bits = w.bit_len();
        let bytes = w.finish();
        assert_eq!(bytes.len() as u64, bits.div_ceil(8));
        let mut r = BitReader::new(&bytes);
        for &(v, n) in &items {
            assert_eq!(r.read_u64(n), v, "width {n}");
            assert!(!r.overrun());
        }
        r.read_u64(64);
        r.read_u64(64);
        assert!(r.overrun());
    }

    #[test]
    fn reading_past_the_end_yields_zeros_and_flags() {
        let mut r = BitReader::new(&[0xFF]);
        assert_eq!(r.read(8), 0xFF);
        assert!(!r.overrun());
        assert_eq!(r.read(3), 0);
        assert!(r.overrun());
        let mut r = BitReader::new(&[]);
        assert_eq!(r.read_rice(3), 0);
        assert!(r.overrun());
    }
}
