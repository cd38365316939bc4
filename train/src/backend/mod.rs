//! The `Backend` trait: every op the engine needs, forward and backward, on buffers that live on
//! the backend. Nothing above this layer touches raw host data except through `upload`/`download`,
//! so the CUDA backend slots in without changing the model, the losses or the trainer.
use crate::Result;
use serde::{Deserialize, Serialize};

pub mod contrast;
pub mod cpu;
pub mod cuda;
pub use contrast::{BackendContrast, ContrastReport, PendingReport, ScaleBuf};
pub use cpu::Cpu;

/// An NCHW tensor shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub const fn new(n: usize, c: usize, h: usize, w: usize) -> Self {
        Shape { n, c, h, w }
    }
    pub const fn numel(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    pub const fn hw(&self) -> usize {
        self.h * self.w
    }
    /// The same shape with another channel count.
    pub const fn with_c(&self, c: usize) -> Self {
        Shape { c, ..*self }
    }
    /// The same shape with another spatial size.
    pub const fn with_hw(&self, h: usize, w: usize) -> Self {
        Shape { h, w, ..*self }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}, {}, {}, {}]", self.n, self.c, self.h, self.w)
    }
}

/// A square 2-D convolution: weights `[c_out, c_in, k, k]`, optional bias `[c_out]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConvSpec {
    pub c_in: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvSpec {
    /// Output spatial size for an input of `h`×`w` (PyTorch/ONNX floor rule).
    pub const fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        (
            (h + 2 * self.pad - self.k) / self.stride + 1,
            (w + 2 * self.pad - self.k) / self.stride + 1,
        )
    }
    /// Output shape for input shape `x`.
    pub const fn out_shape(&self, x: Shape) -> Shape {
        let (h, w) = self.out_hw(x.h, x.w);
        Shape::new(x.n, self.c_out, h, w)
    }
    pub const fn weight_len(&self) -> usize {
        self.c_out * self.c_in * self.k * self.k
    }
    /// Multiply-accumulates of one forward pass for input `x`, times two (FLOPs).
    pub const fn flops(&self, x: Shape) -> u64 {
        let o = self.out_shape(x);
        2 * (o.numel() * self.c_in * self.k * self.k) as u64
    }
}

/// Label value that every loss and metric skips.
pub const IGNORE: u8 = 255;

/// The ops of the engine. `Buf` is a flat f32 buffer on the backend; `Labels` a flat u8 class map.
/// Shapes travel beside the buffers; each op checks the lengths it is given and returns
/// `Error::Shape` rather than panicking. Ops named `*_backward_*` that take `&mut` gradient
/// buffers accumulate into them (`+=`), so shared parameters and fan-out just work.
pub trait Backend: Send + Sync + 'static {
    type Buf: Send + Sync + 'static;
    type Labels: Send + Sync + 'static;

    /// Short name for logs ("cpu", "cuda:0 (Orin)").
    fn name(&self) -> String;

    // ---- memory ----
    fn zeros(&self, len: usize) -> Result<Self::Buf>;
    fn upload(&self, data: &[f32]) -> Result<Self::Buf>;
    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>>;
    fn upload_labels(&self, data: &[u8]) -> Result<Self::Labels>;
    fn download_labels(&self, labels: &Self::Labels) -> Result<Vec<u8>>;
    fn len(&self, buf: &Self::Buf) -> usize;
    fn labels_len(&self, labels: &Self::Labels) -> usize;
    fn fill(&self, buf: &mut Self::Buf, value: f32) -> Result<()>;
    /// Waits until every op issued so far has finished, and reports any error it raised. A GPU
    /// backend only enqueues work, so timing an op needs this; on the CPU every op is done when
    /// it returns, hence the no-op default.
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    // ---- elementwise ----
    /// `a + b`.
    fn add(&self, a: &Self::Buf, b: &Self::Buf) -> Result<Self::Buf>;
    /// `acc += x`: gradient accumulation.
    fn add_assign(&self, acc: &mut Self::Buf, x: &Self::Buf) -> Result<()>;
    /// `buf *= s`.
    fn scale(&self, buf: &mut Self::Buf, s: f32) -> Result<()>;
    fn relu_forward(&self, x: &Self::Buf) -> Result<Self::Buf>;
    /// `dx = dy · [y > 0]`, from the forward output `y`.
    fn relu_backward(&self, dy: &Self::Buf, y: &Self::Buf) -> Result<Self::Buf>;

    // ---- convolution ----
    /// Returns `y` of shape `spec.out_shape(xs)`.
    fn conv2d_forward(
        &self,
        x: &Self::Buf,
        xs: Shape,
        w: &Self::Buf,
        b: Option<&Self::Buf>,
        spec: &ConvSpec,
    ) -> Result<Self::Buf>;
    /// `dx` of shape `xs` from `dy` of shape `spec.out_shape(xs)`.
    fn conv2d_backward_input(
        &self,
        dy: &Self::Buf,
        w: &Self::Buf,
        xs: Shape,
        spec: &ConvSpec,
    ) -> Result<Self::Buf>;
    /// `dw += ∂L/∂w`, `db += ∂L/∂b`.
    fn conv2d_backward_weight(
        &self,
        x: &Self::Buf,
        xs: Shape,
        dy: &Self::Buf,
        spec: &ConvSpec,
        dw: &mut Self::Buf,
        db: Option<&mut Self::Buf>,
    ) -> Result<()>;

    // ---- batch norm (statistics per channel over N, H, W) ----
    /// Training mode: normalises with the batch statistics and updates the running ones
    /// (PyTorch rule: `r = (1 − momentum)·r + momentum·batch`, unbiased variance).
    /// Returns `(y, mean, invstd)`; the last two are kept for the backward pass.
    #[allow(clippy::too_many_arguments)]
    fn batchnorm_forward_train(
        &self,
        x: &Self::Buf,
        xs: Shape,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        running_mean: &mut Self::Buf,
        running_var: &mut Self::Buf,
        momentum: f32,
        eps: f32,
    ) -> Result<(Self::Buf, Self::Buf, Self::Buf)>;
    #[allow(clippy::too_many_arguments)]
    fn batchnorm_forward_eval(
        &self,
        x: &Self::Buf,
        xs: Shape,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        running_mean: &Self::Buf,
        running_var: &Self::Buf,
        eps: f32,
    ) -> Result<Self::Buf>;
    /// Backward of the training-mode forward. Returns `dx`; accumulates `dgamma`, `dbeta`.
    #[allow(clippy::too_many_arguments)]
    fn batchnorm_backward(
        &self,
        dy: &Self::Buf,
        x: &Self::Buf,
        xs: Shape,
        gamma: &Self::Buf,
        mean: &Self::Buf,
        invstd: &Self::Buf,
        dgamma: &mut Self::Buf,
        dbeta: &mut Self::Buf,
    ) -> Result<Self::Buf>;

    // ---- resize and layout ----
    /// Bilinear resize, half-pixel centres (PyTorch `align_corners=False`, ONNX `half_pixel`;
    /// source coordinates below 0 clamp to 0). Output `[n, c, out_h, out_w]`.
    fn resize_bilinear_forward(
        &self,
        x: &Self::Buf,
        xs: Shape,
        out_h: usize,
        out_w: usize,
    ) -> Result<Self::Buf>;
    /// `dx` of shape `xs` from `dy` of shape `[n, c, out_h, out_w]`.
    fn resize_bilinear_backward(
        &self,
        dy: &Self::Buf,
        xs: Shape,
        out_h: usize,
        out_w: usize,
    ) -> Result<Self::Buf>;
    /// Concatenates along channels; all parts share n, h, w.
    fn concat_channels(&self, parts: &[(&Self::Buf, Shape)]) -> Result<Self::Buf>;
    /// The inverse of `concat_channels`: splits `dy` into parts with the given shapes.
    fn split_channels(&self, dy: &Self::Buf, shapes: &[Shape]) -> Result<Vec<Self::Buf>>;

    /// Per-pixel L2 normalisation over channels: `z = v / max(‖v‖₂, 1e-12)`.
    fn l2_normalize_forward(&self, x: &Self::Buf, xs: Shape) -> Result<Self::Buf>;
    /// `dx` from `dy` and the forward input `x`.
    fn l2_normalize_backward(&self, dy: &Self::Buf, x: &Self::Buf, xs: Shape) -> Result<Self::Buf>;

    // ---- losses and predictions ----
    /// Softmax cross-entropy over channels, averaged over labelled pixels (weighted mean with
    /// `class_weights` when given, PyTorch convention); pixels labelled [`IGNORE`] are skipped.
    /// Returns `(loss as a 1-element buffer, dlogits of the mean loss)`. With no labelled pixel the
    /// loss is 0 and the gradient zero.
    fn softmax_cross_entropy(
        &self,
        logits: &Self::Buf,
        shape: Shape,
        labels: &Self::Labels,
        class_weights: Option<&Self::Buf>,
    ) -> Result<(Self::Buf, Self::Buf)>;
    /// Per-pixel argmax over channels: `[n, h, w]` class ids.
    fn argmax_channels(&self, logits: &Self::Buf, shape: Shape) -> Result<Self::Labels>;

    // ---- optimiser ----
    /// SGD with momentum and decoupled-from-nothing weight decay, PyTorch rule:
    /// `g = grad + wd·p; v = μ·v + g; p −= lr·v`.
    fn sgd_step(
        &self,
        param: &mut Self::Buf,
        grad: &Self::Buf,
        velocity: &mut Self::Buf,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
    ) -> Result<()>;

    // ---- the contrastive loss ----
    /// L_PA and ∂L_PA/∂z_i (method doc, sections 2–5) on backend buffers: what
    /// [`crate::loss::contrast::contrastive_loss`] computes, with `labels` and `pred` (the
    /// detached argmax) `[b, full_h, full_w]`, class ids below the model's `classes` (or 255
    /// in `labels`; any other id is an error). The default runs that CPU reference on the host
    /// ([`contrast::contrastive_loss_on_host`]); a backend with its own kernels overrides it and
    /// may leave the report on the device until [`BackendContrast::report`] is resolved.
    #[allow(clippy::too_many_arguments)]
    fn contrastive_loss(
        &self,
        scales: &[ScaleBuf<'_, Self>; crate::loss::contrast::SCALES],
        labels: &Self::Labels,
        pred: &Self::Labels,
        classes: usize,
        full_h: usize,
        full_w: usize,
        cfg: &crate::loss::contrast::ContrastConfig,
        seed: u64,
        step: u64,
    ) -> Result<BackendContrast<Self>>
    where
        Self: Sized,
    {
        contrast::contrastive_loss_on_host(
            self, scales, labels, pred, classes, full_h, full_w, cfg, seed, step,
        )
    }

    /// Where [`Backend::contrastive_loss`] runs, in words, when the backend has more than the
    /// one way; the trainer records it in each checkpoint's provenance.
    fn contrastive_loss_path(&self) -> Option<String> {
        None
    }
}

/// A buffer with its shape.
pub struct Tensor<B: Backend> {
    pub buf: B::Buf,
    pub shape: Shape,
}

impl<B: Backend> Tensor<B> {
    pub fn new(buf: B::Buf, shape: Shape) -> Self {
        Tensor { buf, shape }
    }
}

/// Poly learning-rate schedule of the paper: `lr · (1 − step/total)^power`.
pub fn poly_lr(base: f32, step: u64, total: u64, power: f32) -> f32 {
    if total == 0 {
        return base;
    }
    let frac = (step.min(total) as f32) / (total as f32);
    base * (1.0 - frac).max(0.0).powf(power)
}
