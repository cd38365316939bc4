//! What the CUDA parity suites share: the skip-or-start of the CUDA backend and a seeded
//! generator, so a failure reproduces.
// Each test file uses its own subset of these.
#![allow(dead_code)]
pub mod contrast_cases;

use contextrast_train::backend::cuda::contrast::LossPath;
use contextrast_train::backend::cuda::cudnn::ConvPath;
use contextrast_train::backend::cuda::{Cuda, CudaOptions, cuda_available};

/// The CUDA backend, or `None` after printing the skip line. With `CONTEXTRAST_CUDA_REQUIRED`
/// set (scripts/cuda-emu, a GPU host's gpu-check) a missing device fails the test instead, so a
/// run that was meant to exercise CUDA cannot pass by skipping; there, too, cuDNN asked for
/// (`CONTEXTRAST_CUDA_CONV=cudnn`) must have opened, so its run cannot pass on im2col.
pub fn gpu(op: &str) -> Option<Cuda> {
    if !cuda_available() {
        assert!(
            std::env::var_os("CONTEXTRAST_CUDA_REQUIRED").is_none(),
            "CONTEXTRAST_CUDA_REQUIRED is set, but no CUDA device answers: {op}"
        );
        println!("SKIPPED (no CUDA): {op}");
        return None;
    }
    match Cuda::new(0, CudaOptions::from_env()) {
        Ok(c) => {
            assert!(
                std::env::var_os("CONTEXTRAST_CUDA_REQUIRED").is_none()
                    || CudaOptions::from_env().conv == c.conv_path(),
                "CONTEXTRAST_CUDA_CONV asks for {:?}, the backend runs {} ({op})",
                CudaOptions::from_env().conv,
                c.conv_label()
            );
            if c.conv_path() == ConvPath::Cudnn {
                println!("convolutions by {}: {op}", c.conv_label());
            }
            Some(c)
        }
        Err(e) => panic!("a CUDA device is present but the backend failed to start: {e}"),
    }
}

/// SplitMix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn f(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f()).collect()
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
}

/// On the default (checked) L_PA path, after calls with anchors: the first-call check must have
/// kept the kernels. Other paths (`CONTEXTRAST_CUDA_LOSS` set) have no check to assert.
#[track_caller]
pub fn assert_check_kept_the_kernels(cuda: &Cuda, what: &str) {
    if cuda.loss_path() == LossPath::Checked {
        assert_eq!(
            cuda.checked_loss_path(),
            Some(LossPath::Device),
            "{what}: the first call's check sent L_PA to the host: {}",
            cuda.loss_label()
        );
    }
}
