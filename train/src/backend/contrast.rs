//! The contrastive loss L_PA as a backend op: inputs and gradients are backend buffers. The
//! default implementation ([`contrastive_loss_on_host`]) downloads the projections, the labels
//! and the predictions, runs the CPU reference [`crate::loss::contrast::contrastive_loss`] and
//! uploads the gradients; a backend with its own kernels (CUDA) overrides it. The op returns
//! the gradients at once and the loss value as a [`PendingReport`]: on a GPU the value is read
//! back only when the caller asks, after it has queued the rest of the step.
use super::{Memory, Shape};
use crate::Result;
use crate::loss::bane::IGNORE;
use crate::loss::contrast::{
    AnchorCount, ContrastConfig, HostInputs, SCALES, ScaleInput, contrastive_loss,
};

/// One scale's projected features on the backend: `z` is `shape` = `[b, d, h, w]`, at `stride`
/// from the full-resolution labels.
pub struct ScaleBuf<'a, B: Memory> {
    /// The features.
    pub z: &'a B::Buf,
    /// Their shape, `[b, d, h, w]`.
    pub shape: Shape,
    /// Downsampling factor from the labels' resolution.
    pub stride: usize,
}

/// What L_PA is computed from: the four scales' projections, and `labels` and `pred` (the
/// detached argmax), both `[b, full_h, full_w]`, class ids below the model's `classes` (or 255
/// in `labels`; any other id is an error).
pub struct ContrastInputs<'a, B: Memory> {
    /// The projections at strides 4, 8, 16, 32.
    pub scales: &'a [ScaleBuf<'a, B>; SCALES],
    /// Ground-truth class ids, `[b, full_h, full_w]`.
    pub labels: &'a B::Labels,
    /// Predicted class ids, `[b, full_h, full_w]`.
    pub pred: &'a B::Labels,
    /// The model's number of classes.
    pub classes: usize,
    /// Label height.
    pub full_h: usize,
    /// Label width.
    pub full_w: usize,
}

/// L_PA's value and sample sizes: what the trainer logs and the checks compare, and nothing the
/// backward pass needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ContrastReport {
    /// L_PA = Σ λ_i L_i (not multiplied by α).
    pub loss: f64,
    /// L_i per scale (unweighted).
    pub per_scale: [f64; SCALES],
    /// Anchors with both positives and negatives, per scale.
    pub anchors_used: [usize; SCALES],
    /// The sample sizes of each of those anchors, scale by scale, classes ascending.
    pub anchors: Vec<AnchorCount>,
}

/// Reads a report back from a backend: a GPU backend's report is still being computed when the
/// op returns, and reading it waits for the device.
pub type ReportReader<B> = Box<dyn FnOnce(&B) -> Result<ContrastReport>>;

/// A [`ContrastReport`] that is either known or still on the backend.
pub enum PendingReport<B: Memory> {
    /// Already on the host.
    Ready(ContrastReport),
    /// Still being computed; the reader fetches it.
    OnDevice(ReportReader<B>),
}

impl<B: Memory> PendingReport<B> {
    /// The report, waiting for the backend if it is still there.
    pub fn resolve(self, be: &B) -> Result<ContrastReport> {
        match self {
            PendingReport::Ready(r) => Ok(r),
            PendingReport::OnDevice(read) => read(be),
        }
    }
}

/// What [`crate::loss::contrast::ContrastOutput`] holds, with the gradients left on the backend
/// and the report possibly still there: a caller queues the backward pass with `grads` first
/// and reads `report` last, so a GPU step never waits for the host midway.
pub struct BackendContrast<B: Memory> {
    /// ∂L_PA/∂z_i, same layout as `z_i`.
    pub grads: [B::Buf; SCALES],
    /// L_PA's value and sample sizes, to resolve after the backward pass is queued.
    pub report: PendingReport<B>,
}

impl<B: Memory> BackendContrast<B> {
    /// A result whose report is known.
    pub fn ready((report, grads): (ContrastReport, [B::Buf; SCALES])) -> Self {
        BackendContrast {
            grads,
            report: PendingReport::Ready(report),
        }
    }

    /// The report and the gradients, waiting for the backend (tests, checks, benchmarks).
    pub fn resolve(self, be: &B) -> Result<(ContrastReport, [B::Buf; SCALES])> {
        Ok((self.report.resolve(be)?, self.grads))
    }
}

/// L_PA through the CPU reference: download, compute on the host, upload the gradients.
pub fn contrastive_loss_on_host<B: Memory>(
    be: &B,
    inputs: &ContrastInputs<'_, B>,
    cfg: &ContrastConfig,
    seed: u64,
    step: u64,
) -> Result<BackendContrast<B>> {
    let ContrastInputs {
        scales,
        full_h,
        full_w,
        ..
    } = *inputs;
    let labels = be.download_labels(inputs.labels)?;
    let pred = be.download_labels(inputs.pred)?;
    check_classes(&labels, inputs.classes)?;
    let zs = scales
        .iter()
        .map(|s| be.download(s.z))
        .collect::<Result<Vec<_>>>()?;
    let host: [ScaleInput; SCALES] = std::array::from_fn(|i| ScaleInput {
        z: &zs[i],
        b: scales[i].shape.n,
        d: scales[i].shape.c,
        h: scales[i].shape.h,
        w: scales[i].shape.w,
        stride: scales[i].stride,
    });
    let out = contrastive_loss(
        &HostInputs {
            scales: &host,
            labels: &labels,
            pred: &pred,
            full_h,
            full_w,
        },
        cfg,
        seed,
        step,
    )?;
    let grads = out
        .grads
        .iter()
        .map(|g| be.upload(g))
        .collect::<Result<Vec<_>>>()?;
    let grads: [B::Buf; SCALES] = grads
        .try_into()
        .map_err(|_| crate::Error::Shape("contrastive_loss: not four gradients".into()))?;
    let report = ContrastReport {
        loss: out.loss,
        per_scale: out.per_scale,
        anchors_used: out.anchors_used,
        anchors: out.anchors,
    };
    Ok(BackendContrast::ready((report, grads)))
}

/// Labels must be class ids below the model's `classes` (or 255): a backend sizes its anchors
/// by `classes`, and the reference would make anchors of any other id.
pub fn check_classes(labels: &[u8], classes: usize) -> Result<()> {
    match labels
        .iter()
        .position(|&l| l != IGNORE && usize::from(l) >= classes)
    {
        Some(i) => Err(crate::Error::Shape(format!(
            "contrastive_loss: label {} at pixel {i} is not one of the model's {classes} classes",
            labels[i]
        ))),
        None => Ok(()),
    }
}
