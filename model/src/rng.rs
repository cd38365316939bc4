//! A tiny deterministic RNG (SplitMix64). Ours, so that weights, data and sampling never change
//! with a dependency update and the CUDA kernels can reproduce the same streams.

/// SplitMix64's golden-ratio increment.
pub const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a bijective 64-bit avalanche mix. The one definition of it in
/// the workspace: data synthesis, weight init and the loss's sampling keys all build on it.
#[inline]
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One whole SplitMix64 step (increment, then mix): `splitmix64(0)` is SplitMix64's first
/// output for seed 0.
#[inline]
pub const fn splitmix64(z: u64) -> u64 {
    mix64(z.wrapping_add(GOLDEN))
}

/// Hashes a list of words into one seed; order matters, so (a, b) and (b, a) differ.
pub fn hash_words(words: &[u64]) -> u64 {
    words.iter().fold(0x6A09_E667_F3BC_C909, |h, &w| {
        mix64(h ^ mix64(w.wrapping_add(GOLDEN)))
    })
}

/// SplitMix64 (Steele, Lea & Flood 2014): one 64-bit state, passes BigCrush, trivially seekable.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose state starts at `seed`: output 0 is `splitmix64(seed)`. The synthetic
    /// line and the loader's augmentation seed this way.
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator whose state starts at `splitmix64(seed)`, so nearby seeds share no outputs.
    /// Weight initialisation and the benchmarks' inputs seed this way.
    pub const fn seeded(seed: u64) -> Self {
        Self::new(splitmix64(seed))
    }

    /// A generator for a tuple of keys, e.g. (seed, epoch, index).
    pub fn from_words(words: &[u64]) -> Self {
        Self::new(hash_words(words))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix64(self.state)
    }

    /// Uniform in [0, 1) with 24 bits, exactly representable as f32.
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.f32()
    }

    /// Uniform integer in [0, n); `n == 0` gives 0. Multiply-shift keeps the bias below 2^-32.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() >> 32) * n) >> 32
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f32) -> bool {
        self.f32() < p
    }

    /// Approximately standard normal (Irwin–Hall of four uniforms): cheap, bounded, and good
    /// enough for sensor noise and jitter.
    pub fn normal(&mut self) -> f32 {
        let s = self.f32() + self.f32() + self.f32() + self.f32();
        (s - 2.0) * 1.732_050_8
    }

    /// Uniform in [0, 1) with 53 bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box–Muller), exact where [`Self::normal`] is cheap: weight init.
    pub fn gaussian(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_stream_is_stable() {
        // First outputs of SplitMix64 seeded with 0, as published with the reference C code.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn below_and_range_stay_in_bounds_and_cover() {
        let mut r = SplitMix64::new(7);
        let mut seen = [0u32; 5];
        for _ in 0..5000 {
            let k = r.below(5) as usize;
            seen[k] += 1;
            let x = r.range(-2.0, 3.0);
            assert!((-2.0..3.0).contains(&x));
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
    }

    #[test]
    fn shuffle_is_a_permutation_and_seeded() {
        let mut a: Vec<u32> = (0..50).collect();
        let mut b = a.clone();
        SplitMix64::new(1).shuffle(&mut a);
        SplitMix64::new(1).shuffle(&mut b);
        assert_eq!(a, b);
        let mut c: Vec<u32> = (0..50).collect();
        SplitMix64::new(2).shuffle(&mut c);
        assert_ne!(a, c);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn seeded_keeps_the_weight_init_stream() {
        // `Rng::new(0)` before the two generators were merged; weight init must not change.
        let mut a = SplitMix64::seeded(0);
        assert_eq!(a.next_u64(), 0xA706_DD2F_4D19_7E6F);
        assert_eq!(a.next_u64(), 0xB382_A305_F441_4F5E);
        let g: Vec<f64> = (0..4000).map(|_| a.gaussian()).collect();
        let mean = g.iter().sum::<f64>() / g.len() as f64;
        let var = g.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / g.len() as f64;
        assert!(
            mean.abs() < 0.05 && (var - 1.0).abs() < 0.08,
            "{mean} {var}"
        );
        assert!((0..1000).all(|_| (0.0..1.0).contains(&a.uniform())));
    }

    #[test]
    fn hash_words_depends_on_order() {
        assert_ne!(hash_words(&[1, 2]), hash_words(&[2, 1]));
        assert_ne!(hash_words(&[0]), hash_words(&[0, 0]));
    }
}
