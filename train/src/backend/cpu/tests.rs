//! Tests of the CPU backend: backward passes against central finite differences, forward passes
//! against direct implementations, and hand-computed numbers for the documented semantics.
//! Helpers live here; the checks are split by op family.
use crate::backend::Shape;

mod conv;
mod layout;
mod loss;
mod matmul;
mod norm;
mod pointwise;
mod resize;

/// Deterministic xorshift generator, so failures reproduce without a `rand` dependency.
pub(super) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// Uniform in `[-1, 1)`.
    pub fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.uniform()).collect()
    }
    pub fn tensor(&mut self, s: Shape) -> Vec<f32> {
        self.vec(s.numel())
    }
}

/// `Σ r·y` in f64: the scalar whose gradient with respect to `y` is `r`.
pub(super) fn dot(r: &[f32], y: &[f32]) -> f64 {
    assert_eq!(r.len(), y.len(), "dot: lengths differ");
    r.iter()
        .zip(y)
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum()
}

/// Central finite differences of `f` at `x`, dividing by the step actually taken in f32.
pub(super) fn fd_grad(x: &[f32], eps: f32, f: impl Fn(&[f32]) -> f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let (lo, hi) = (x[i] - eps, x[i] + eps);
            xp[i] = hi;
            let fh = f(&xp);
            xp[i] = lo;
            let fl = f(&xp);
            xp[i] = x[i];
            (fh - fl) / (f64::from(hi) - f64::from(lo))
        })
        .collect()
}

/// Asserts `|a − n| ≤ atol + rtol·|n|` elementwise, naming the first offender.
pub(super) fn assert_close(what: &str, analytic: &[f32], numeric: &[f64], atol: f64, rtol: f64) {
    assert_eq!(analytic.len(), numeric.len(), "{what}: lengths differ");
    for (i, (&a, &n)) in analytic.iter().zip(numeric).enumerate() {
        let err = (f64::from(a) - n).abs();
        assert!(
            err <= atol + rtol * n.abs(),
            "{what}[{i}]: analytic {a} vs expected {n} (error {err:e})"
        );
    }
}

/// [`assert_close`] for two f32 buffers.
pub(super) fn assert_close32(what: &str, got: &[f32], want: &[f32], atol: f64) {
    let want: Vec<f64> = want.iter().map(|&v| f64::from(v)).collect();
    assert_close(what, got, &want, atol, 0.0);
}

/// Asserts that `r` is an `Error::Shape`.
pub(super) fn assert_shape_err<T: std::fmt::Debug>(what: &str, r: crate::Result<T>) {
    match r {
        Err(crate::Error::Shape(_)) => {}
        other => panic!("{what}: expected Error::Shape, got {other:?}"),
    }
}
