//! The contrastive loss L_PA on the device (kernels/contrast.cu), computing what the CPU
//! reference [`crate::loss::contrast::contrastive_loss`] computes: the same sampled pixels
//! (integer-exact EDT, percentile and hash-keyed selection), the same loss and gradients up to
//! the summation order of f64 sums (the per-class feature sums and the sampled gradients use
//! atomics; see docs in the kernel file).
//!
//! Which path the CUDA backend takes is [`Cuda::loss_path`], as its options ask
//! ([`super::CudaOptions`]): by default these kernels, checked against the host reference on the
//! first step ([`super::contrast_check`]), which keeps the rest of the run on the host if they
//! disagree; `CONTEXTRAST_CUDA_LOSS=device` skips the check and `host` always uses the reference.
//!
//! Nothing here waits for the device: the anchors are the model's classes (known on the host;
//! a class absent at a scale gets no positives and so no anchor), each scale's weight λ_i / (its
//! anchors used) is counted in the loss kernel, and the loss value and sample sizes stay on the
//! device until the caller resolves the [`PendingReport`] (the trainer does so once the step's
//! backward pass and SGD are queued). Gradients stay on the device.
use super::{Cuda, backend_err, check_len, dim, driver_err, elems_cfg};
use crate::backend::ops::{ContrastOps, Memory as _};
use crate::backend::{
    BackendContrast, ContrastInputs, ContrastReport, PendingReport, ScaleBuf, Shape,
};
use crate::loss::bane::{AnchorSamples, IGNORE, LabelMaps, SamplingConfig};
use crate::loss::contrast::{self, AnchorCount, ContrastConfig, SCALES, ScaleDims};
use crate::loss::sampling::anchor_key_base;
use crate::{Error, Result};
use cudarc::driver::{CudaSlice, CudaView, DeviceRepr, LaunchConfig, ValidAsZeroBits};
use std::sync::Once;

type Buf = CudaSlice<f32>;

/// Where the CUDA backend computes L_PA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossPath {
    /// Download, CPU reference, upload (verified by the CUDA training parity test).
    Host,
    /// kernels/contrast.cu, everything on the device, unchecked.
    Device,
    /// The kernels, after the first step's result matched the host reference's; the host
    /// reference for the whole run if it did not. The default: no GPU model is trusted untested.
    Checked,
}

/// The path taken when `CONTEXTRAST_CUDA_LOSS` is unset ([`super::CudaOptions::from_env`]).
pub const DEFAULT_LOSS_PATH: LossPath = LossPath::Checked;

/// Class ids a u8 label map can hold.
const CLASSES: usize = 256;
/// Threads of the one-block-per-anchor kernels (sampling, per-anchor loss, reductions).
const ANCHOR_BLOCK: u32 = 512;
/// Threads of the other kernels.
const BLOCK: u32 = 256;

/// Parses `CONTEXTRAST_CUDA_LOSS`: `checked`, `device` or `host` (any case), else `None`.
pub fn parse_loss_path(v: &str) -> Option<LossPath> {
    match v.trim().to_ascii_lowercase().as_str() {
        "checked" | "auto" => Some(LossPath::Checked),
        "device" | "gpu" | "cuda" => Some(LossPath::Device),
        "host" | "cpu" => Some(LossPath::Host),
        _ => None,
    }
}

/// Says once per process where L_PA runs, when a backend first asks.
fn log_loss_path(path: LossPath) {
    static LOGGED: Once = Once::new();
    LOGGED.call_once(|| match path {
        LossPath::Host => log::info!(
            "CUDA contrastive loss: host reference (download, CPU, upload), as CONTEXTRAST_CUDA_LOSS=host asks"
        ),
        LossPath::Device => {
            log::info!("CUDA contrastive loss: on the device (kernels/contrast.cu), unchecked")
        }
        LossPath::Checked => log::info!(
            "CUDA contrastive loss: on the device (kernels/contrast.cu), checked against the host reference on the first step"
        ),
    });
}

/// A grid-stride launch over `n` items (x) for each of `y` anchors or channels.
fn grid2(n: usize, y: usize) -> LaunchConfig {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, 1 << 16) as u32;
    LaunchConfig {
        grid_dim: (blocks, y.max(1) as u32, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// `x`×`y` blocks of `threads`.
fn blocks(x: usize, y: usize, threads: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (x.max(1) as u32, y.max(1) as u32, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The largest count a grid dimension other than x takes.
fn grid_y(what: &str, v: usize) -> Result<usize> {
    if v > 65_535 {
        return Err(Error::Shape(format!(
            "{what} = {v} exceeds a CUDA grid's y dimension"
        )));
    }
    Ok(v)
}

/// One scale's sampled pixels, on the device: per anchor (classes ascending) the positives
/// `[A, pos_cap]`, the negatives `[A, neg_cap]` (hard ones first, then random, as the CPU
/// concatenates them) and `counts [A, 3]` = (|P|, |hard|, |random|).
pub struct DeviceSamples {
    /// The anchor classes, ascending: row `a` of each array is `classes[a]`.
    pub classes: Vec<u8>,
    /// Positives, `[A, pos_cap]` flat pixel indices; each row's first |P| are valid.
    pub pos_idx: CudaSlice<u32>,
    /// Negatives, `[A, neg_cap]`; each row's first |hard| + |random| are valid.
    pub neg_idx: CudaSlice<u32>,
    /// `[A, 3]`: (|P|, |hard|, |random|) per anchor.
    pub counts: CudaSlice<i32>,
    /// Row length of `pos_idx`: `max_pos`, at most the pixel count.
    pub pos_cap: usize,
    /// Row length of `neg_idx`: `max_neg`, at most the pixel count.
    pub neg_cap: usize,
}

/// Per-class counts `[256]` and feature sums `[256, d]` of one scale.
pub struct ClassStats {
    /// Labelled pixels per class id, `[256]`.
    pub counts: CudaSlice<i32>,
    /// Feature sums per class id, `[256, d]`.
    pub sums: CudaSlice<f64>,
}

impl Cuda {
    /// Where L_PA runs, as the options asked; the first call in a process logs it.
    pub fn loss_path(&self) -> LossPath {
        log_loss_path(self.options.loss);
        self.options.loss
    }

    fn alloc_t<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        what: &str,
        len: usize,
    ) -> Result<CudaSlice<T>> {
        // Never zero-length: a kernel may get the pointer of an empty list.
        self.stream
            .alloc_zeros::<T>(len.max(1))
            .map_err(|e| driver_err(&format!("allocating {what} ({len})"), e))
    }

    fn up_t<T: DeviceRepr + ValidAsZeroBits>(&self, what: &str, v: &[T]) -> Result<CudaSlice<T>> {
        // An empty list (a scale whose labels are all 255 has no classes) would be a zero-byte
        // allocation, which the driver refuses (CUDA_ERROR_INVALID_VALUE) on some devices:
        // one zero instead, as alloc_t does; the kernels never read it (A = 0).
        if v.is_empty() {
            return self.alloc_t(what, 0);
        }
        self.stream
            .clone_htod(v)
            .map_err(|e| driver_err(&format!("uploading {what}"), e))
    }

    /// Copies to the host without waiting; call [`Cuda::synchronize`] before trusting a batch.
    fn down_t<T: DeviceRepr>(&self, what: &str, v: &CudaSlice<T>) -> Result<Vec<T>> {
        self.stream
            .clone_dtoh(v)
            .map_err(|e| driver_err(&format!("downloading {what}"), e))
    }

    /// Downloads any device buffer and waits for it (for tests and diagnostics).
    pub fn download_t<T: DeviceRepr>(&self, v: &CudaSlice<T>) -> Result<Vec<T>> {
        let out = self.down_t("buffer", v)?;
        self.synchronize()?;
        Ok(out)
    }

    /// Nearest downsampling of a label-like map `[b, h, w]` by `stride` (bane.rs
    /// `downsample_nearest`): `[b, h/stride, w/stride]`.
    pub fn contrast_downsample(
        &self,
        labels: &CudaSlice<u8>,
        b: usize,
        h: usize,
        w: usize,
        stride: usize,
    ) -> Result<CudaSlice<u8>> {
        if stride == 0 {
            return Err(Error::Shape("downsample_nearest: stride 0".into()));
        }
        check_len("downsample_nearest labels", labels.len(), b * h * w)?;
        let (ho, wo) = (h / stride, w / stride);
        let n = b * ho * wo;
        let mut out = self.alloc_t::<u8>("downsampled labels", n)?;
        if n > 0 {
            let (bi, hi, wi) = (dim("b", b)?, dim("h", h)?, dim("w", w)?);
            let (si, hoi, woi) = (dim("stride", stride)?, dim("h", ho)?, dim("w", wo)?);
            dim("b·h·w", b * h * w)?;
            launch!(self, "ctr_downsample", elems_cfg(n);
                labels, &mut out, &bi, &hi, &wi, &si, &hoi, &woi)?;
        }
        Ok(out)
    }

    /// Per-class counts and feature sums of `z` `[b, d, h, w]` over the labels `y` `[b, h, w]`
    /// (ignore excluded): the parts of contrast.rs `class_means`.
    pub fn contrast_class_stats(
        &self,
        z: &Buf,
        shape: Shape,
        y: &CudaSlice<u8>,
    ) -> Result<ClassStats> {
        check_len("class_stats z", z.len(), shape.numel())?;
        let pixels = shape.n * shape.hw();
        check_len("class_stats labels", y.len(), pixels)?;
        dim("class_stats z", shape.numel())?;
        let mut counts = self.alloc_t::<i32>("class counts", CLASSES)?;
        let mut sums = self.alloc_t::<f64>("class sums", CLASSES * shape.c)?;
        if pixels > 0 {
            let (b, d, hw) = (
                dim("b", shape.n)?,
                dim("d", shape.c)?,
                dim("h·w", shape.hw())?,
            );
            // Enough blocks per channel to fill the device, few enough to keep the shared-memory
            // partial sums worth it.
            let chunks = pixels.div_ceil(BLOCK as usize * 16).clamp(1, 1024);
            let cfg = blocks(chunks, grid_y("d", shape.c.max(1))?, BLOCK);
            launch!(self, "ctr_class_stats", cfg; z, y, &b, &d, &hw, &mut counts, &mut sums)?;
        }
        Ok(ClassStats { counts, sums })
    }

    /// Squared EDT of each anchor's BANE error mask E = {ŷ = m ∧ Y ∉ {m, 255}} per image (the
    /// device's edt.rs `edt_squared`), downloaded as `[classes, b, h, w]`: 0 outside E,
    /// `NO_BACKGROUND` where E fills its image. For the parity tests.
    pub fn contrast_edt(
        &self,
        y: &CudaSlice<u8>,
        pred: &CudaSlice<u8>,
        b: usize,
        h: usize,
        w: usize,
        classes: &[u8],
    ) -> Result<Vec<u32>> {
        let classes_dev = self.up_t("classes", &classes_i32(classes))?;
        let maps = LabelMaps { y, pred, b, h, w };
        let d2 = self.edt_device(&maps, &classes_dev, classes.len())?;
        let mut v = self.down_t("d2", &d2)?;
        self.synchronize()?;
        v.truncate(classes.len() * b * h * w);
        Ok(v)
    }

    /// The EDT passes for `a` anchors: `d2 [a, b, h, w]`.
    fn edt_device(
        &self,
        maps: &LabelMaps<'_, CudaSlice<u8>>,
        classes: &CudaSlice<i32>,
        a: usize,
    ) -> Result<CudaSlice<u32>> {
        let LabelMaps { y, pred, b, h, w } = *maps;
        let n = b * h * w;
        check_len("edt labels", y.len(), n)?;
        check_len("edt predictions", pred.len(), n)?;
        // edt.rs: the largest finite result must stay below NO_BACKGROUND.
        if n > 0 {
            let max_d2 = (h as u128 - 1).pow(2) + (w as u128 - 1).pow(2);
            if max_d2 >= u128::from(u32::MAX) {
                return Err(Error::Shape(format!(
                    "edt_squared: {h}×{w} is too large for u32 squared distances"
                )));
            }
        }
        let total = a
            .checked_mul(n)
            .and_then(|v| v.checked_mul(3))
            .ok_or_else(|| Error::Shape("edt: size overflows".into()))?;
        dim("edt anchors·pixels·3", total)?;
        let mut g = self.alloc_t::<i64>("EDT columns", a * n)?;
        let mut scratch = self.alloc_t::<i64>("EDT scratch", total)?;
        let mut d2 = self.alloc_t::<u32>("EDT", a * n)?;
        if n == 0 || a == 0 {
            return Ok(d2);
        }
        let (bi, hi, wi) = (dim("b", b)?, dim("h", h)?, dim("w", w)?);
        let ay = grid_y("anchors", a)?;
        launch!(self, "ctr_edt_cols", grid2(b * w, ay);
            y, pred, classes, &bi, &hi, &wi, &mut g, &mut scratch)?;
        launch!(self, "ctr_edt_rows", grid2(b * h, ay);
            &g, &bi, &hi, &wi, &mut d2, &mut scratch)?;
        Ok(d2)
    }

    /// Samples every anchor class of `classes` (ascending, distinct, no 255) at one scale: the
    /// device's bane.rs `sample_anchor` for all of them at once, from the scale's Y_i and ŷ_i
    /// `maps`; `scale` is the method's i (1..=4).
    pub fn contrast_sample(
        &self,
        maps: &LabelMaps<'_, CudaSlice<u8>>,
        classes: &[u8],
        cfg: &SamplingConfig,
        seed: u64,
        step: u64,
        scale: u32,
    ) -> Result<DeviceSamples> {
        if classes.contains(&IGNORE) || !classes.is_sorted_by(|a, b| a < b) {
            return Err(Error::Shape(
                "contrast_sample: classes must be ascending, distinct and not 255".into(),
            ));
        }
        let classes_dev = self.up_t("classes", &classes_i32(classes))?;
        let bases = self.up_t("key bases", &key_bases(classes, seed, step, scale))?;
        let bases = bases.slice(..);
        self.sample_device(maps, classes, &classes_dev, &bases, cfg)
    }

    /// The kernels of [`Cuda::contrast_sample`], with the classes and their sampling keys'
    /// bases (sampling.rs `anchor_key_base`) already on the device.
    fn sample_device(
        &self,
        maps: &LabelMaps<'_, CudaSlice<u8>>,
        classes: &[u8],
        classes_dev: &CudaSlice<i32>,
        bases: &CudaView<'_, u64>,
        cfg: &SamplingConfig,
    ) -> Result<DeviceSamples> {
        let LabelMaps { y, pred, b, h, w } = *maps;
        let n = b * h * w;
        check_len("sample_anchor labels", y.len(), n)?;
        check_len("sample_anchor predictions", pred.len(), n)?;
        if n > u32::MAX as usize {
            return Err(Error::Shape(format!(
                "sample_anchor: {b}×{h}×{w} pixels exceed u32 indices"
            )));
        }
        let a = classes.len();
        let pos_cap = cfg.max_pos.min(n);
        let neg_cap = cfg.max_neg.min(n);
        let hard_cap = cfg.hard_cap().min(n);
        let mut pos_idx = self.alloc_t::<u32>("positives", a * pos_cap)?;
        let mut neg_idx = self.alloc_t::<u32>("negatives", a * neg_cap)?;
        let mut counts = self.alloc_t::<i32>("sample counts", a * 3)?;
        if a > 0 && n > 0 {
            let mut flags = self.alloc_t::<u8>("BANE flags", a * n)?;
            if hard_cap > 0 {
                let d2 = self.edt_device(maps, classes_dev, a)?;
                let (hw, k) = (dim("h·w", h * w)?, cfg.k_percentile);
                let bi = dim("b", b)?;
                let cfg = blocks(b, grid_y("anchors", a)?, BLOCK);
                launch!(self, "ctr_bane_candidates", cfg;
                    y, pred, classes_dev, &d2, &bi, &hw, &k, &mut flags)?;
            }
            let (ni, pc, hc, nc) = (n as i64, pos_cap as i64, hard_cap as i64, neg_cap as i64);
            let cfg = blocks(a, 1, ANCHOR_BLOCK);
            launch!(self, "ctr_sample", cfg;
                y, &mut flags, classes_dev, bases, &ni, &pc, &hc, &nc,
                &mut pos_idx, &mut neg_idx, &mut counts)?;
        }
        Ok(DeviceSamples {
            classes: classes.to_vec(),
            pos_idx,
            neg_idx,
            counts,
            pos_cap,
            neg_cap,
        })
    }

    /// Downloads [`DeviceSamples`] as the CPU's [`AnchorSamples`], one per class. For tests.
    pub fn contrast_download_samples(&self, s: &DeviceSamples) -> Result<Vec<AnchorSamples>> {
        let counts = self.down_t("sample counts", &s.counts)?;
        let pos = self.down_t("positives", &s.pos_idx)?;
        let neg = self.down_t("negatives", &s.neg_idx)?;
        self.synchronize()?;
        (0..s.classes.len())
            .map(|a| {
                let (np, nh, nr) = sample_counts(&counts, a);
                // Counts beyond the caps would be a kernel bug: an error, not a slice panic.
                if np > s.pos_cap || nh + nr > s.neg_cap {
                    return Err(backend_err(
                        "contrast_download_samples",
                        format!(
                            "anchor {a}: counts ({np}, {nh}, {nr}) exceed the caps ({}, {})",
                            s.pos_cap, s.neg_cap
                        ),
                    ));
                }
                let p0 = a * s.pos_cap;
                let n0 = a * s.neg_cap;
                Ok(AnchorSamples {
                    positives: pos[p0..p0 + np].to_vec(),
                    hard_negatives: neg[n0..n0 + nh].to_vec(),
                    random_negatives: neg[n0 + nh..n0 + nh + nr].to_vec(),
                })
            })
            .collect()
    }

    /// L_PA and its gradients on the device: what `contrastive_loss` computes (see the module
    /// doc), with the same errors for bad shapes. `classes` is the model's class count: every
    /// class is an anchor slot at every scale. Returns with the work queued; the report reads
    /// it back (and refuses labels of other classes, which the reference would make anchors of).
    pub fn contrastive_loss_device(
        &self,
        inputs: &ContrastInputs<'_, Cuda>,
        cfg: &ContrastConfig,
        seed: u64,
        step: u64,
    ) -> Result<BackendContrast<Cuda>> {
        let ContrastInputs {
            scales,
            labels,
            pred,
            classes,
            full_h,
            full_w,
        } = *inputs;
        let b = scales[0].shape.n;
        let d = scales[0].shape.c;
        check_inputs(scales, labels.len(), pred.len(), full_h, full_w, cfg)?;
        if classes == 0 || classes > usize::from(IGNORE) {
            return Err(Error::Shape(format!(
                "contrastive_loss: {classes} classes; u8 label maps hold 1 to 255"
            )));
        }
        let dims: [Shape; SCALES] = std::array::from_fn(|i| scales[i].shape);
        let slots: Vec<u8> = (0..classes).map(|c| c as u8).collect();
        let slots_dev = self.up_t("classes", &classes_i32(&slots))?;
        let bases: Vec<u64> = (1..=SCALES as u32)
            .flat_map(|scale| key_bases(&slots, seed, step, scale))
            .collect();
        let bases = self.up_t("key bases", &bases)?;

        // Phase 1: Y_i, ŷ_i and the class statistics of every scale.
        let mut ys = Vec::with_capacity(SCALES);
        let mut preds = Vec::with_capacity(SCALES);
        let mut stats = Vec::with_capacity(SCALES);
        for s in scales {
            let y = self.contrast_downsample(labels, b, full_h, full_w, s.stride)?;
            let p = self.contrast_downsample(pred, b, full_h, full_w, s.stride)?;
            stats.push(self.contrast_class_stats(s.z, s.shape, &y)?);
            ys.push(y);
            preds.push(p);
        }

        // Phase 2: every class slot's anchor (zero where the class is absent) and samples (no
        // positives where it is absent: never used).
        let mut anchor_vecs = Vec::with_capacity(SCALES);
        let mut samples = Vec::with_capacity(SCALES);
        for i in 0..SCALES {
            let s = &dims[i];
            let keys = bases.slice(i * classes..(i + 1) * classes);
            let maps = LabelMaps {
                y: &ys[i],
                pred: &preds[i],
                b,
                h: s.h,
                w: s.w,
            };
            let smp = self.sample_device(&maps, &slots, &slots_dev, &keys, &cfg.sampling)?;
            anchor_vecs.push(self.anchor_vectors(&stats, i, &slots_dev, classes, d, cfg)?);
            samples.push(smp);
        }

        // Phase 3: per-anchor losses, gradients into the sampled pixels and into the anchors;
        // anchors without positives or negatives contribute nothing.
        let mut grads64 = dims
            .iter()
            .map(|s| self.alloc_t::<f64>("f64 gradient", s.numel()))
            .collect::<Result<Vec<_>>>()?;
        let mut dhat = self.alloc_t::<f64>("anchor gradients", SCALES * CLASSES * d)?;
        let mut losses = Vec::with_capacity(SCALES);
        let (di, per) = (dim("d", d)?, CLASSES * d);
        let (ai, ay) = (classes as i32, grid_y("anchors", classes)?);
        for i in 0..SCALES {
            let smp = &samples[i];
            let mut loss = self.alloc_t::<f64>("anchor losses", classes)?;
            let hw = dim("h·w", dims[i].hw())?;
            let (pc, nc) = (smp.pos_cap as i64, smp.neg_cap as i64);
            let mut pos_v = self.alloc_t::<f64>("positive dots", classes * smp.pos_cap)?;
            let mut neg_v = self.alloc_t::<f64>("negative dots", classes * smp.neg_cap)?;
            let av = &anchor_vecs[i];
            launch!(self, "ctr_dots", grid2(smp.pos_cap + smp.neg_cap, ay);
                scales[i].z, av, &smp.counts, &smp.pos_idx, &smp.neg_idx, &pc, &nc, &di, &hw,
                &mut pos_v, &mut neg_v)?;
            let mut pos_c = self.alloc_t::<f64>("positive coefficients", classes * smp.pos_cap)?;
            let mut neg_c = self.alloc_t::<f64>("negative coefficients", classes * smp.neg_cap)?;
            let (tau, lambda) = (cfg.tau, cfg.lambda[i]);
            launch!(self, "ctr_anchor_loss", blocks(classes, 1, ANCHOR_BLOCK);
                &smp.counts, &pos_v, &neg_v, &pc, &nc, &tau, &lambda, &ai, &mut loss,
                &mut pos_c, &mut neg_c)?;
            let entries = (smp.pos_cap + smp.neg_cap) * d;
            launch!(self, "ctr_scatter_samples", grid2(entries, ay);
                &mut grads64[i], av, &smp.counts, &smp.pos_idx, &smp.neg_idx, &pos_c, &neg_c,
                &pc, &nc, &di, &hw)?;
            if d > 0 {
                let mut view = dhat.slice_mut(i * per..(i + 1) * per);
                launch!(self, "ctr_anchor_dhat", blocks(grid_y("d", d)?, ay, ANCHOR_BLOCK);
                    scales[i].z, &slots_dev, &smp.counts, &smp.pos_idx, &smp.neg_idx,
                    &pos_c, &neg_c, &pc, &nc, &di, &hw, &mut view)?;
            }
            losses.push(loss);
        }

        // Phase 4: through the fusion (of the classes present at the deepest scale) and the
        // means into every labelled pixel, then to f32.
        let mut d_anchor = self.alloc_t::<f64>("anchor gradients", SCALES * per)?;
        if d > 0 {
            let (wl, wh) = (cfg.w_l, cfg.w_h);
            launch!(self, "ctr_anchor_grad", elems_cfg(per);
                &dhat, &stats[SCALES - 1].counts, &di, &wl, &wh, &mut d_anchor)?;
        }
        let mut grads = Vec::with_capacity(SCALES);
        for i in 0..SCALES {
            let s = &dims[i];
            let n = s.numel();
            let mut g = self.alloc(n)?;
            if n > 0 {
                let (bi, hw) = (dim("b", s.n)?, dim("h·w", s.hw())?);
                let da = d_anchor.slice(i * per..(i + 1) * per);
                launch!(self, "ctr_means_backward", elems_cfg(n);
                    &ys[i], &stats[i].counts, &da, &bi, &di, &hw, &mut grads64[i])?;
                let nl = n as i64;
                launch!(self, "ctr_to_f32", elems_cfg(n); &grads64[i], &mut g, &nl)?;
            }
            grads.push(g);
        }
        let grads: [Buf; SCALES] = grads
            .try_into()
            .map_err(|_| backend_err("contrastive_loss", "not four gradients"))?;

        let queued = QueuedReport {
            class_counts: stats.into_iter().map(|s| s.counts).collect(),
            sample_counts: samples.into_iter().map(|s| s.counts).collect(),
            losses,
            classes,
            lambda: cfg.lambda,
        };
        Ok(BackendContrast {
            grads,
            report: PendingReport::OnDevice(Box::new(move |cuda: &Cuda| queued.read(cuda))),
        })
    }

    /// The (fused) anchors `[A, d]` of scale `i` for the `a` classes of `classes_dev`; zero for
    /// a class absent at the scale.
    fn anchor_vectors(
        &self,
        stats: &[ClassStats],
        i: usize,
        classes_dev: &CudaSlice<i32>,
        a: usize,
        d: usize,
        cfg: &ContrastConfig,
    ) -> Result<CudaSlice<f64>> {
        let mut out = self.alloc_t::<f64>("anchors", a * d)?;
        if a > 0 && d > 0 {
            let (own, deep) = (&stats[i], &stats[SCALES - 1]);
            let (ai, di) = (a as i32, dim("d", d)?);
            let fuse = i32::from(i < SCALES - 1);
            let (wl, wh) = (cfg.w_l, cfg.w_h);
            launch!(self, "ctr_anchor_vectors", elems_cfg(a * d);
                &own.sums, &own.counts, &deep.sums, &deep.counts, classes_dev, &ai, &di,
                &fuse, &wl, &wh, &mut out)?;
        }
        Ok(out)
    }
}

impl ContrastOps for Cuda {
    /// On the path [`Cuda::loss_path`] names: by default the device kernels, checked against
    /// the host reference on the first step.
    fn contrastive_loss(
        &self,
        inputs: &ContrastInputs<'_, Cuda>,
        cfg: &ContrastConfig,
        seed: u64,
        step: u64,
    ) -> Result<BackendContrast<Cuda>> {
        let host =
            || crate::backend::contrast::contrastive_loss_on_host(self, inputs, cfg, seed, step);
        let device = || self.contrastive_loss_device(inputs, cfg, seed, step);
        match self.loss_path() {
            LossPath::Device => device(),
            LossPath::Host => host(),
            LossPath::Checked => self.contrastive_loss_checked(host, device),
        }
    }

    fn contrastive_loss_path(&self) -> Option<String> {
        Some(self.loss_label())
    }
}

/// What the report of a queued L_PA reads back, per scale: the class counts `[256]`, the
/// sample counts `[classes, 3]` and the per-anchor losses `[classes]`.
struct QueuedReport {
    class_counts: Vec<CudaSlice<i32>>,
    sample_counts: Vec<CudaSlice<i32>>,
    losses: Vec<CudaSlice<f64>>,
    classes: usize,
    lambda: [f64; SCALES],
}

impl QueuedReport {
    /// Waits for the device and assembles the report as the CPU reference does.
    fn read(&self, cuda: &Cuda) -> Result<ContrastReport> {
        let down = |what: &str, v: &[CudaSlice<i32>]| -> Result<Vec<Vec<i32>>> {
            v.iter().map(|c| cuda.down_t(what, c)).collect()
        };
        let class_counts = down("class counts", &self.class_counts)?;
        let samples = down("sample counts", &self.sample_counts)?;
        let losses = self
            .losses
            .iter()
            .map(|l| cuda.down_t("anchor losses", l))
            .collect::<Result<Vec<_>>>()?;
        cuda.synchronize()?;
        for (i, counts) in class_counts.iter().enumerate() {
            if let Some(c) = (self.classes..CLASSES).find(|&c| counts[c] > 0) {
                return Err(Error::Shape(format!(
                    "contrastive_loss: the labels hold class {c} at scale {}, but the model has {} classes",
                    i + 1,
                    self.classes
                )));
            }
        }
        let mut anchors = Vec::new();
        let mut anchors_used = [0usize; SCALES];
        let mut per_scale = [0f64; SCALES];
        for i in 0..SCALES {
            let first = anchors.len();
            for class in 0..self.classes {
                let (np, nh, nr) = sample_counts(&samples[i], class);
                if np > 0 && nh + nr > 0 {
                    anchors.push(AnchorCount {
                        scale: i,
                        class: class as u8,
                        positives: np,
                        hard: nh,
                        random: nr,
                    });
                }
            }
            let used = &anchors[first..];
            anchors_used[i] = used.len();
            // Summed as the reference sums: each anchor's loss over the scale's count.
            for a in used {
                per_scale[i] += losses[i][usize::from(a.class)] / used.len() as f64;
            }
        }
        let loss = per_scale.iter().zip(&self.lambda).map(|(l, w)| l * w).sum();
        Ok(ContrastReport {
            loss,
            per_scale,
            anchors_used,
            anchors,
        })
    }
}

/// The sampling keys' bases of `classes` at `scale` (sampling.rs `anchor_key_base`).
fn key_bases(classes: &[u8], seed: u64, step: u64, scale: u32) -> Vec<u64> {
    classes
        .iter()
        .map(|&m| anchor_key_base(seed, step, scale, u32::from(m)))
        .collect()
}

/// `(|P|, |hard|, |random|)` of anchor `a` from a downloaded `counts [A, 3]`.
fn sample_counts(counts: &[i32], a: usize) -> (usize, usize, usize) {
    let c = |k: usize| usize::try_from(counts[a * 3 + k]).unwrap_or(0);
    (c(0), c(1), c(2))
}

fn classes_i32(classes: &[u8]) -> Vec<i32> {
    classes.iter().map(|&c| i32::from(c)).collect()
}

/// The checks of `contrastive_loss` (shared with the CPU reference), plus the device's own
/// launch-size limit.
fn check_inputs(
    scales: &[ScaleBuf<'_, Cuda>; SCALES],
    labels: usize,
    pred: usize,
    full_h: usize,
    full_w: usize,
    cfg: &ContrastConfig,
) -> Result<()> {
    let dims: [ScaleDims; SCALES] = std::array::from_fn(|i| {
        let (sh, s) = (scales[i].shape, &scales[i]);
        ScaleDims {
            b: sh.n,
            d: sh.c,
            h: sh.h,
            w: sh.w,
            stride: s.stride,
            values: s.z.len(),
        }
    });
    contrast::check_inputs(&dims, labels, pred, full_h, full_w, cfg.tau)?;
    for s in scales {
        dim("contrastive_loss z", s.shape.numel())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_path_parses_both_spellings() {
        assert_eq!(parse_loss_path("device"), Some(LossPath::Device));
        assert_eq!(parse_loss_path(" DEVICE\n"), Some(LossPath::Device));
        assert_eq!(parse_loss_path("host"), Some(LossPath::Host));
        assert_eq!(parse_loss_path("Checked"), Some(LossPath::Checked));
        assert_eq!(parse_loss_path("auto"), Some(LossPath::Checked));
        assert_eq!(parse_loss_path("fast"), None);
    }

    #[test]
    fn sample_counts_reads_rows() {
        let c = [3, 1, 2, 5, 0, 7];
        assert_eq!(sample_counts(&c, 0), (3, 1, 2));
        assert_eq!(sample_counts(&c, 1), (5, 0, 7));
    }
}
