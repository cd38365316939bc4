//! Batch norm, statistics per channel over N, H, W. The per-channel buffers travel in the
//! structs below, named, since six of them side by side are easy to swap.
use super::Memory;
use crate::Result;
use crate::backend::Shape;

/// The parameters and running statistics of the training-mode forward, which updates the
/// latter (PyTorch rule: `r = (1 − momentum)·r + momentum·batch`, unbiased variance).
pub struct BatchNormTrain<'a, T> {
    /// Scale γ, `[c]`.
    pub gamma: &'a T,
    /// Shift β, `[c]`.
    pub beta: &'a T,
    /// Running mean, `[c]`; updated.
    pub running_mean: &'a mut T,
    /// Running variance, `[c]`; updated.
    pub running_var: &'a mut T,
    /// Weight of the batch statistics in the running-statistics update.
    pub momentum: f32,
    /// Added to the variance before the square root.
    pub eps: f32,
}

/// The parameters and running statistics of the evaluation-mode forward.
pub struct BatchNormEval<'a, T> {
    /// Scale γ, `[c]`.
    pub gamma: &'a T,
    /// Shift β, `[c]`.
    pub beta: &'a T,
    /// Running mean, `[c]`.
    pub running_mean: &'a T,
    /// Running variance, `[c]`.
    pub running_var: &'a T,
    /// Added to the variance before the square root.
    pub eps: f32,
}

/// What the backward pass needs of the training forward: `gamma` and the batch statistics
/// that forward returned.
pub struct BatchNormSaved<'a, T> {
    /// Scale γ, `[c]`.
    pub gamma: &'a T,
    /// The batch mean, `[c]`.
    pub mean: &'a T,
    /// `1 / sqrt(batch variance + eps)`, `[c]`.
    pub invstd: &'a T,
}

/// Batch-norm ops over `[n, c, h, w]` tensors.
pub trait BatchNormOps: Memory {
    /// Training mode: normalises with the batch statistics and updates the running ones.
    /// Returns `(y, mean, invstd)`; the last two are kept for the backward pass.
    fn batchnorm_forward_train(
        &self,
        x: &Self::Buf,
        xs: Shape,
        p: BatchNormTrain<'_, Self::Buf>,
    ) -> Result<(Self::Buf, Self::Buf, Self::Buf)>;
    /// Evaluation mode: normalises with the running statistics, which it leaves unchanged.
    fn batchnorm_forward_eval(
        &self,
        x: &Self::Buf,
        xs: Shape,
        p: BatchNormEval<'_, Self::Buf>,
    ) -> Result<Self::Buf>;
    /// Backward of the training-mode forward. Returns `dx`; accumulates `dgamma`, `dbeta`.
    fn batchnorm_backward(
        &self,
        dy: &Self::Buf,
        x: &Self::Buf,
        xs: Shape,
        saved: BatchNormSaved<'_, Self::Buf>,
        dgamma: &mut Self::Buf,
        dbeta: &mut Self::Buf,
    ) -> Result<Self::Buf>;
}
