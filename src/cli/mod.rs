//! One file per subcommand: argument parsing and presentation only; the work is in the libraries.
pub mod bench;
pub mod bench_infer;
pub mod bench_pipeline;
pub mod bench_soak;
pub mod doctor;
pub mod eval;
pub mod export;
pub mod inspect;
pub mod retrain;
pub mod segment;
pub mod synth;
pub mod train;

/// Sets the size of rayon's global pool (0 = all cores). Called once, before any work.
pub fn set_threads(n: usize) {
    let n = if n == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        n
    };
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
    {
        log::debug!("thread pool already set: {e}");
    }
}
