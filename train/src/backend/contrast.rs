//! The contrastive loss L_PA as a backend op: inputs and gradients are backend buffers. The
//! default implementation ([`contrastive_loss_on_host`]) downloads the projections, the labels
//! and the predictions, runs the CPU reference [`crate::loss::contrast::contrastive_loss`] and
//! uploads the gradients; a backend with its own kernels (CUDA) overrides it.
use super::{Backend, Shape};
use crate::Result;
use crate::loss::contrast::{AnchorCount, ContrastConfig, SCALES, ScaleInput, contrastive_loss};

/// One scale's projected features on the backend: `z` is `shape` = `[b, d, h, w]`, at `stride`
/// from the full-resolution labels.
pub struct ScaleBuf<'a, B: Backend> {
    pub z: &'a B::Buf,
    pub shape: Shape,
    pub stride: usize,
}

/// What [`crate::loss::contrast::ContrastOutput`] holds, with the gradients left on the backend.
pub struct BackendContrast<B: Backend> {
    /// L_PA = Σ λ_i L_i (not multiplied by α).
    pub loss: f64,
    /// L_i per scale (unweighted).
    pub per_scale: [f64; SCALES],
    /// ∂L_PA/∂z_i, same layout as `z_i`.
    pub grads: [B::Buf; SCALES],
    /// Anchors with both positives and negatives, per scale.
    pub anchors_used: [usize; SCALES],
    /// The sample sizes of each of those anchors, scale by scale, classes ascending.
    pub anchors: Vec<AnchorCount>,
}

/// L_PA through the CPU reference: download, compute on the host, upload the gradients.
#[allow(clippy::too_many_arguments)] // the op's inputs, as in contrastive_loss
pub fn contrastive_loss_on_host<B: Backend>(
    be: &B,
    scales: &[ScaleBuf<'_, B>; SCALES],
    labels: &B::Labels,
    pred: &B::Labels,
    full_h: usize,
    full_w: usize,
    cfg: &ContrastConfig,
    seed: u64,
    step: u64,
) -> Result<BackendContrast<B>> {
    let labels = be.download_labels(labels)?;
    let pred = be.download_labels(pred)?;
    let zs = scales
        .iter()
        .map(|s| be.download(s.z))
        .collect::<Result<Vec<_>>>()?;
    let inputs: [ScaleInput; SCALES] = std::array::from_fn(|i| ScaleInput {
        z: &zs[i],
        b: scales[i].shape.n,
        d: scales[i].shape.c,
        h: scales[i].shape.h,
        w: scales[i].shape.w,
        stride: scales[i].stride,
    });
    let out = contrastive_loss(&inputs, &labels, &pred, full_h, full_w, cfg, seed, step)?;
    let grads = out
        .grads
        .iter()
        .map(|g| be.upload(g))
        .collect::<Result<Vec<_>>>()?;
    let grads: [B::Buf; SCALES] = grads
        .try_into()
        .map_err(|_| crate::Error::Shape("contrastive_loss: not four gradients".into()))?;
    Ok(BackendContrast {
        loss: out.loss,
        per_scale: out.per_scale,
        grads,
        anchors_used: out.anchors_used,
        anchors: out.anchors,
    })
}
