//! A tiny xorshift64* generator for the generated and fuzz-ish tests, so they need no extra
//! dependency and a failure reproduces from its seed.

/// xorshift64*, seeded with any non-zero value.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// One of `from`.
    pub(crate) fn pick<'p>(&mut self, from: &[&'p str]) -> &'p str {
        from[self.below(from.len())]
    }

    /// Up to `max` of `pieces`, concatenated.
    pub(crate) fn text(&mut self, pieces: &[&str], max: u64) -> String {
        let n = self.next() % (max + 1);
        (0..n).map(|_| self.pick(pieces)).collect()
    }
}
