//! CPU reference backend (placeholder until the ops land).
use super::{Backend, ConvSpec, Shape};
use crate::Result;

/// The CPU backend: plain `Vec`s, rayon for threads, `gemm` for the matrix products.
#[derive(Clone, Debug, Default)]
pub struct Cpu;
