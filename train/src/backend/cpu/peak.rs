//! GEMM peak measurement, so benchmarks can report the engine's rate against what the same
//! `gemm` crate reaches on a plain dense product on this machine.
use super::matmul::{MatMut, MatRef, gemm_with};
use gemm::Parallelism;
use std::time::Instant;

/// Repetitions; the best one is reported, which filters out scheduler noise.
const REPEATS: usize = 7;

/// Best-of-7 rate in GFLOP/s (`2·m·k·n` per product) of a row-major f32 `m×k · k×n` GEMM on
/// `threads` threads (`Parallelism::Rayon` in a pool of that size; 0 or 1 means one thread).
/// Returns 0 for an empty product.
pub fn gemm_peak_gflops(m: usize, k: usize, n: usize, threads: usize) -> f64 {
    if m == 0 || k == 0 || n == 0 {
        return 0.0;
    }
    let a: Vec<f32> = (0..m * k).map(|i| (i % 17) as f32 * 0.01).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 13) as f32 * 0.01).collect();
    let mut c = vec![0.0f32; m * n];
    let par = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    let mut run = || {
        let mut best = f64::INFINITY;
        // One untimed warm-up run pages the buffers in and packs the caches.
        for i in 0..=REPEATS {
            let t = Instant::now();
            let dst = MatMut::rows(&mut c, m, n);
            if gemm_with(
                dst,
                MatRef::rows(&a, m, k),
                MatRef::rows(&b, k, n),
                false,
                par,
            )
            .is_err()
            {
                return 0.0;
            }
            if i > 0 {
                best = best.min(t.elapsed().as_secs_f64());
            }
        }
        2.0 * (m * k * n) as f64 / best.max(1e-12) / 1e9
    };
    // A pool of exactly `threads` threads, so the figure does not depend on the global pool.
    match rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
    {
        Ok(pool) => pool.install(run),
        Err(_) => run(),
    }
}
