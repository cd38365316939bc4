//! Softmax cross-entropy and the predictions.
use super::Memory;
use crate::Result;
use crate::backend::Shape;

/// Loss family over `[n, classes, h, w]` logits and `[n, h, w]` labels.
pub trait LossOps: Memory {
    /// Softmax cross-entropy over channels, averaged over labelled pixels (weighted mean with
    /// `class_weights` when given, PyTorch convention); pixels labelled
    /// [`IGNORE`](crate::backend::IGNORE) are skipped. Returns `(loss as a 1-element buffer,
    /// dlogits of the mean loss)`. With no labelled pixel the loss is 0 and the gradient zero.
    fn softmax_cross_entropy(
        &self,
        logits: &Self::Buf,
        shape: Shape,
        labels: &Self::Labels,
        class_weights: Option<&Self::Buf>,
    ) -> Result<(Self::Buf, Self::Buf)>;
    /// Per-pixel argmax over channels: `[n, h, w]` class ids.
    fn argmax_channels(&self, logits: &Self::Buf, shape: Shape) -> Result<Self::Labels>;
}
