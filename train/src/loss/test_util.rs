//! A tiny counter-based RNG for tests (no extra crate): reproducible random masks and labels.
use super::sampling::splitmix64;

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        splitmix64(self.0)
    }
    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant for tests).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
    pub fn mask(&mut self, n: usize, density: f64) -> Vec<bool> {
        (0..n).map(|_| self.chance(density)).collect()
    }
}
