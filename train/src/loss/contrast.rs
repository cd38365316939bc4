//! The Contextrast contrastive loss L_PA (method doc, sections 2, 3 and 5): batch anchors per
//! class and scale, fused with the deepest scale, positives and (BANE) negatives sampled by
//! [`sample_anchor`], and a per-positive InfoNCE against the negatives only. CPU reference on
//! host buffers, with the exact gradient ∂L_PA/∂z_i for every scale.
//!
//! Cost per anchor is O(|P| + |N|) dot products: with s = â·z/τ every positive's loss is
//! `softplus(LSE_{q∈N}(s_q) − s_p)`, so one log-sum-exp over the negatives serves all positives
//! and no P×N matrix is ever built. Each scale's `z` is copied pixel-major once, so the gathers
//! at sampled pixels and the gradient's scatter read and write contiguous rows. Arithmetic is
//! f64 internally; inputs and gradients are f32.
use super::bane::{IGNORE, LabelMaps, SamplingConfig, downsample_nearest, sample_anchor};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Number of feature scales (strides 4, 8, 16, 32).
pub const SCALES: usize = 4;
/// Number of possible class ids in a u8 label map.
const CLASSES: usize = 256;

/// Contrastive-loss settings (training-config table `contrast`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContrastConfig {
    /// Temperature τ of the similarities s = â·z/τ.
    pub tau: f64,
    /// Per-scale weights λ_i of L_PA = Σ λ_i L_i (strides 4, 8, 16, 32).
    pub lambda: [f64; SCALES],
    /// Weight α of L_PA in L = L_CE + α·L_PA (applied by the trainer, not here).
    pub alpha: f64,
    /// Fusion weight of the anchor's own scale.
    pub w_l: f64,
    /// Fusion weight of the deepest scale's anchor.
    pub w_h: f64,
    /// Share of the training steps with the contrastive loss off.
    pub warmup_fraction: f64,
    /// Caps and BANE settings.
    pub sampling: SamplingConfig,
}

impl Default for ContrastConfig {
    fn default() -> Self {
        ContrastConfig {
            tau: 0.1,
            lambda: [0.1, 0.4, 0.7, 1.0],
            alpha: 0.1,
            w_l: 0.5,
            w_h: 0.5,
            warmup_fraction: 0.1,
            sampling: SamplingConfig::default(),
        }
    }
}

impl ContrastConfig {
    /// Checks the ranges; errors name the key as `contrast.<field>`.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |key: &str, msg: String| {
            Err(Error::Config {
                path: path.to_path_buf(),
                key: format!("contrast.{key}"),
                msg,
            })
        };
        if !(self.tau.is_finite() && self.tau > 0.0) {
            return bad("tau", format!("{} must be finite and > 0", self.tau));
        }
        if let Some(l) = self.lambda.iter().find(|l| !(l.is_finite() && **l >= 0.0)) {
            return bad("lambda", format!("{l} must be finite and >= 0"));
        }
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return bad("alpha", format!("{} must be finite and >= 0", self.alpha));
        }
        for (key, v) in [("w_l", self.w_l), ("w_h", self.w_h)] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(key, format!("{v} must be finite and >= 0"));
            }
        }
        if (self.w_l + self.w_h - 1.0).abs() > 1e-6 {
            return bad(
                "w_l",
                format!("w_l + w_h = {} must be 1", self.w_l + self.w_h),
            );
        }
        if !(0.0..=1.0).contains(&self.warmup_fraction) {
            return bad(
                "warmup_fraction",
                format!("{} is not in [0, 1]", self.warmup_fraction),
            );
        }
        let s = &self.sampling;
        if !(0.0..=1.0).contains(&s.hard_fraction) {
            return bad(
                "sampling.hard_fraction",
                format!("{} is not in [0, 1]", s.hard_fraction),
            );
        }
        if !(s.k_percentile > 0.0 && s.k_percentile <= 1.0) {
            return bad(
                "sampling.k_percentile",
                format!("{} is not in (0, 1]", s.k_percentile),
            );
        }
        Ok(())
    }
}

/// One scale's projected features: `z` is `[b, d, h, w]` (L2-normalised per pixel by the model,
/// which this function does not require), at `stride` from the full-resolution labels.
#[derive(Clone, Copy, Debug)]
pub struct ScaleInput<'a> {
    /// The features, `[b, d, h, w]`.
    pub z: &'a [f32],
    /// Batch size.
    pub b: usize,
    /// Feature channels (projection dimension).
    pub d: usize,
    /// Height at this scale.
    pub h: usize,
    /// Width at this scale.
    pub w: usize,
    /// Downsampling factor from the labels' resolution.
    pub stride: usize,
}

/// One scale's sizes: what [`check_inputs`] needs from a host or a device input.
#[derive(Clone, Copy, Debug)]
pub struct ScaleDims {
    /// Batch size.
    pub b: usize,
    /// Feature channels.
    pub d: usize,
    /// Height at this scale.
    pub h: usize,
    /// Width at this scale.
    pub w: usize,
    /// Downsampling factor from the labels' resolution.
    pub stride: usize,
    /// Number of values in the scale's `z`.
    pub values: usize,
}

impl ScaleInput<'_> {
    /// Its sizes, with `values = z.len()`.
    pub fn dims(&self) -> ScaleDims {
        ScaleDims {
            b: self.b,
            d: self.d,
            h: self.h,
            w: self.w,
            stride: self.stride,
            values: self.z.len(),
        }
    }
}

/// The input checks of L_PA, shared by the CPU reference and every backend's version, so all
/// refuse the same inputs with the same messages: label and prediction sizes, τ > 0, one batch
/// and feature size across scales, each scale `full / stride`, `z` of `b·d·h·w` values, and
/// pixel indices that fit in u32.
pub fn check_inputs(
    scales: &[ScaleDims; SCALES],
    labels: usize,
    pred: usize,
    full_h: usize,
    full_w: usize,
    tau: f64,
) -> Result<()> {
    let (b, d) = (scales[0].b, scales[0].d);
    if d == 0 {
        return Err(Error::Shape(
            "contrastive_loss: features have 0 channels".into(),
        ));
    }
    let full = b * full_h * full_w;
    if labels != full || pred != full {
        return Err(Error::Shape(format!(
            "contrastive_loss: labels {labels} / pred {pred} values, expected {b}×{full_h}×{full_w}"
        )));
    }
    if !(tau.is_finite() && tau > 0.0) {
        return Err(Error::Shape(format!(
            "contrastive_loss: tau {tau} must be > 0"
        )));
    }
    for (i, s) in scales.iter().enumerate() {
        if s.b != b || s.d != d {
            return Err(Error::Shape(format!(
                "contrastive_loss: scale {} has b={}, d={}, scale 1 has b={b}, d={d}",
                i + 1,
                s.b,
                s.d
            )));
        }
        if s.stride == 0 || s.h != full_h / s.stride || s.w != full_w / s.stride {
            return Err(Error::Shape(format!(
                "contrastive_loss: scale {} is {}×{} at stride {}, labels {full_h}×{full_w}",
                i + 1,
                s.h,
                s.w,
                s.stride
            )));
        }
        if s.values != b * d * s.h * s.w {
            return Err(Error::Shape(format!(
                "contrastive_loss: scale {} z has {} values, expected {b}×{d}×{}×{}",
                i + 1,
                s.values,
                s.h,
                s.w
            )));
        }
        if b * s.h * s.w > u32::MAX as usize {
            return Err(Error::Shape("contrastive_loss: scale too large".into()));
        }
    }
    Ok(())
}

/// L_PA, its parts and its gradient.
#[derive(Clone, Debug, PartialEq)]
pub struct ContrastOutput {
    /// L_PA = Σ λ_i L_i (not multiplied by α).
    pub loss: f64,
    /// L_i per scale (unweighted).
    pub per_scale: [f64; SCALES],
    /// ∂L_PA/∂z_i, same layout as `z_i`.
    pub grads: [Vec<f32>; SCALES],
    /// Anchors with both positives and negatives, per scale.
    pub anchors_used: [usize; SCALES],
    /// What each of those anchors was trained against, scale by scale.
    pub anchors: Vec<AnchorCount>,
}

/// The sample sizes of one anchor: how many of its negatives BANE supplied is the first thing
/// to look at when BANE does not help (no mis-predicted region, no hard negatives).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnchorCount {
    /// 0-based scale (0 = stride 4).
    pub scale: usize,
    /// The anchor's class id.
    pub class: u8,
    /// Positives sampled.
    pub positives: usize,
    /// BANE hard negatives sampled.
    pub hard: usize,
    /// Random negatives sampled.
    pub random: usize,
}

/// Per-class sums and counts of one scale's features over the batch (ignore excluded).
struct ClassMeans {
    counts: Vec<usize>,
    /// `[CLASSES, d]`: the mean a^n (zero for absent classes).
    means: Vec<f64>,
}

/// `z` (`[b, d, h, w]`) pixel-major, `[b·h·w, d]`: one pixel's features side by side, so the
/// gathers at sampled pixels read one cache line or two instead of `d` lines `h·w` apart.
fn pixel_major(s: &ScaleInput) -> Vec<f32> {
    let (d, hw) = (s.d, s.h * s.w);
    let mut zt = vec![0f32; s.z.len()];
    if zt.is_empty() {
        return zt;
    }
    for (img, zt_img) in s.z.chunks(d * hw).zip(zt.chunks_mut(d * hw)) {
        for (k, plane) in img.chunks(hw).enumerate() {
            for (pix, &v) in plane.iter().enumerate() {
                zt_img[pix * d + k] = v;
            }
        }
    }
    zt
}

/// Per-class means of one scale's pixel-major features `zt` over the batch.
fn class_means(zt: &[f32], d: usize, y: &[u8]) -> ClassMeans {
    let mut counts = vec![0usize; CLASSES];
    let mut means = vec![0f64; CLASSES * d];
    for (row, &l) in zt.chunks(d).zip(y) {
        if l == IGNORE {
            continue;
        }
        let n = usize::from(l);
        counts[n] += 1;
        for (m, &v) in means[n * d..(n + 1) * d].iter_mut().zip(row) {
            *m += f64::from(v);
        }
    }
    for n in 0..CLASSES {
        if counts[n] > 0 {
            let c = counts[n] as f64;
            means[n * d..(n + 1) * d].iter_mut().for_each(|v| *v /= c);
        }
    }
    ClassMeans { counts, means }
}

/// Numerically stable softplus log(1 + eˣ).
fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// Numerically stable logistic σ(x) = 1 / (1 + e⁻ˣ).
fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// The loss of one anchor: `mean_{p∈P} softplus(LSE_{q∈N}(s_q) − s_p)` with `s = anchor·z/τ`,
/// given the similarities' numerators `dots` (â·z) of the positives and of the negatives. Returns
/// the loss and ∂loss/∂s for positives then negatives. `pos` and `neg` must be non-empty.
pub fn anchor_loss(pos_dots: &[f64], neg_dots: &[f64], tau: f64) -> (f64, Vec<f64>, Vec<f64>) {
    let sn: Vec<f64> = neg_dots.iter().map(|v| v / tau).collect();
    let m = sn.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = sn.iter().map(|s| (s - m).exp()).sum();
    let lse = m + sum.ln();
    let inv_p = 1.0 / pos_dots.len() as f64;
    let mut loss = 0.0;
    let mut total = 0.0;
    let g_pos: Vec<f64> = pos_dots
        .iter()
        .map(|v| {
            let x = lse - v / tau;
            loss += softplus(x);
            let g = sigmoid(x) * inv_p;
            total += g;
            -g
        })
        .collect();
    let g_neg: Vec<f64> = sn.iter().map(|s| total * (s - lse).exp()).collect();
    (loss * inv_p, g_pos, g_neg)
}

/// What [`contrastive_loss`] is computed from, on the host: the four scales' projections, and
/// `labels` and `pred` (the detached argmax), both `[b, full_h, full_w]`.
pub struct HostInputs<'a> {
    /// The projections at strides 4, 8, 16, 32.
    pub scales: &'a [ScaleInput<'a>; SCALES],
    /// Ground-truth class ids (255 = ignore), `[b, full_h, full_w]`.
    pub labels: &'a [u8],
    /// Predicted class ids, `[b, full_h, full_w]`.
    pub pred: &'a [u8],
    /// Label height.
    pub full_h: usize,
    /// Label width.
    pub full_w: usize,
}

/// L_PA and ∂L_PA/∂z_i (method doc, sections 2, 3, 5) of `inputs`. Each scale's Y_i and ŷ_i are
/// the nearest downsampling of `labels` and `pred` by the scale's stride, which must give
/// exactly `h × w`. Sampling keys use `seed`, `step` and the scale number 1..=4. Gradients flow
/// into positives, negatives and, through the (fused) anchors, into every pixel that formed
/// a_i^n and a_4^n.
pub fn contrastive_loss(
    inputs: &HostInputs<'_>,
    cfg: &ContrastConfig,
    seed: u64,
    step: u64,
) -> Result<ContrastOutput> {
    let HostInputs {
        scales,
        labels,
        pred,
        full_h,
        full_w,
    } = *inputs;
    let dims: [ScaleDims; SCALES] = std::array::from_fn(|i| scales[i].dims());
    check_inputs(&dims, labels.len(), pred.len(), full_h, full_w, cfg.tau)?;
    let b = scales[0].b;
    let d = scales[0].d;

    let ys: Vec<Vec<u8>> = scales
        .iter()
        .map(|s| downsample_nearest(labels, b, full_h, full_w, s.stride))
        .collect::<Result<_>>()?;
    let preds: Vec<Vec<u8>> = scales
        .iter()
        .map(|s| downsample_nearest(pred, b, full_h, full_w, s.stride))
        .collect::<Result<_>>()?;
    let zts: Vec<Vec<f32>> = scales.iter().map(pixel_major).collect();
    let means: Vec<ClassMeans> = zts
        .iter()
        .zip(&ys)
        .map(|(zt, y)| class_means(zt, d, y))
        .collect();
    let deep = &means[SCALES - 1];

    let mut per_scale = [0f64; SCALES];
    let mut anchors_used = [0usize; SCALES];
    let mut anchors = Vec::new();
    // Pixel-major like `zts`; put back into `[b, d, h, w]` at the end.
    let mut grads64: Vec<Vec<f64>> = scales.iter().map(|s| vec![0f64; s.z.len()]).collect();
    // ∂L_PA/∂a_i^n, [CLASSES, d] per scale.
    let mut d_anchor: Vec<Vec<f64>> = (0..SCALES).map(|_| vec![0f64; CLASSES * d]).collect();

    for (i, s) in scales.iter().enumerate() {
        let zt = &zts[i];
        let row = |p: u32| &zt[p as usize * d..(p as usize + 1) * d];
        // Sampling first, so that the number of anchors (the mean's divisor) is known.
        let mut valid = Vec::new();
        for n in 0..CLASSES {
            if means[i].counts[n] == 0 {
                continue;
            }
            let smp = sample_anchor(
                &LabelMaps {
                    y: &ys[i],
                    pred: &preds[i],
                    b,
                    h: s.h,
                    w: s.w,
                },
                n as u8,
                &cfg.sampling,
                seed,
                step,
                i as u32 + 1,
            )?;
            let hard = smp.hard_negatives.len();
            let mut neg = smp.hard_negatives;
            neg.extend_from_slice(&smp.random_negatives);
            if !smp.positives.is_empty() && !neg.is_empty() {
                anchors.push(AnchorCount {
                    scale: i,
                    class: n as u8,
                    positives: smp.positives.len(),
                    hard,
                    random: neg.len() - hard,
                });
                valid.push((n, smp.positives, neg));
            }
        }
        anchors_used[i] = valid.len();
        if valid.is_empty() {
            continue;
        }
        let weight = cfg.lambda[i] / valid.len() as f64;
        let grad = &mut grads64[i];
        for (n, pos, neg) in valid {
            let own = &means[i].means[n * d..(n + 1) * d];
            let fused = i < SCALES - 1 && deep.counts[n] > 0;
            let anchor: Vec<f64> = if fused {
                let a4 = &deep.means[n * d..(n + 1) * d];
                own.iter()
                    .zip(a4)
                    .map(|(a, h)| cfg.w_l * a + cfg.w_h * h)
                    .collect()
            } else {
                own.to_vec()
            };
            let dot = |p: u32| -> f64 {
                anchor
                    .iter()
                    .zip(row(p))
                    .map(|(a, &v)| a * f64::from(v))
                    .sum::<f64>()
            };
            let pd: Vec<f64> = pos.iter().map(|&p| dot(p)).collect();
            let nd: Vec<f64> = neg.iter().map(|&q| dot(q)).collect();
            let (loss, gp, gn) = anchor_loss(&pd, &nd, cfg.tau);
            per_scale[i] += loss / anchors_used[i] as f64;
            // s = â·z/τ: ∂s/∂z = â/τ, ∂s/∂â = z/τ.
            let mut d_hat = vec![0f64; d];
            for (&p, &g) in pos.iter().zip(&gp).chain(neg.iter().zip(&gn)) {
                let g = g * weight / cfg.tau;
                let at = p as usize * d;
                for (k, &v) in row(p).iter().enumerate() {
                    grad[at + k] += g * anchor[k];
                    d_hat[k] += g * f64::from(v);
                }
            }
            let (wl, wh) = if fused {
                (cfg.w_l, cfg.w_h)
            } else {
                (1.0, 0.0)
            };
            for k in 0..d {
                d_anchor[i][n * d + k] += wl * d_hat[k];
                if fused {
                    d_anchor[SCALES - 1][n * d + k] += wh * d_hat[k];
                }
            }
        }
    }

    // Through the means: every pixel of class n at scale i gets ∂L/∂a_i^n / count.
    for i in 0..SCALES {
        let (m, da, grad) = (&means[i], &d_anchor[i], &mut grads64[i]);
        for (g_row, &l) in grad.chunks_mut(d).zip(&ys[i]) {
            if l == IGNORE {
                continue;
            }
            let n = usize::from(l);
            let c = m.counts[n] as f64;
            for (g, a) in g_row.iter_mut().zip(&da[n * d..(n + 1) * d]) {
                *g += a / c;
            }
        }
    }

    let loss = per_scale.iter().zip(&cfg.lambda).map(|(l, w)| l * w).sum();
    let grads = std::array::from_fn(|i| {
        let (hw, g64) = (scales[i].h * scales[i].w, &grads64[i]);
        let mut g = vec![0f32; g64.len()];
        if g.is_empty() {
            return g;
        }
        for (img, g_img) in g64.chunks(d * hw).zip(g.chunks_mut(d * hw)) {
            for (k, plane) in g_img.chunks_mut(hw).enumerate() {
                for (pix, v) in plane.iter_mut().enumerate() {
                    *v = img[pix * d + k] as f32;
                }
            }
        }
        g
    });
    Ok(ContrastOutput {
        loss,
        per_scale,
        grads,
        anchors_used,
        anchors,
    })
}
