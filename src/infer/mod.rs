//! Segmentation of one frame: the [`Segmenter`] trait and its two engines, `native/` (our own
//! forward engine for the ops our exports use) and `tract.rs` (any ONNX model, CPU), with what
//! both resolve alike in `setup.rs`, frame normalisation in `preprocess.rs`, the score map's
//! geometry in `geom.rs` and the head's low-resolution logits with their upsampling taps in
//! `upsample.rs`. `decide` builds on these; nothing here knows about verdicts. The pipeline holds
//! a `Box<dyn Segmenter>`, so an engine is chosen per model without touching the rest.
pub mod geom;
pub mod native;
pub mod preprocess;
pub mod setup;
pub mod tract;
pub mod upsample;

use crate::Result;
use crate::capture::Frame;
pub use geom::MapGeom;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
pub use upsample::{Logits, Scores};

/// What the model's output channels hold.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// Logits for C > 1 (softmax), probabilities for C = 1; logits for our own models.
    #[default]
    Auto,
    /// Unnormalised scores: softmax over classes (C > 1) or a sigmoid (C = 1).
    Logits,
    /// Already probabilities: used as they are.
    Probabilities,
}

/// `[model]` of a line config. Our own models carry classes, normalisation and size in their
/// metadata; these keys are for a model exported elsewhere (and override nothing ours declares
/// unless set).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// The model file (ONNX); relative to the config file.
    pub path: PathBuf,
    /// Inference threads; 0 = all cores.
    pub threads: usize,
    /// Resize frames to `[height, width]`. Default: the size the ONNX fixes, else the frame's
    /// own size padded to the model's multiple (no resampling).
    pub input_size: Option<[usize; 2]>,
    /// What the output channels hold (`auto`, `logits`, `probabilities`).
    pub output: OutputKind,
    /// Class names, for a model without metadata (C = 1: one name, the defect's).
    pub classes: Option<Vec<String>>,
    /// Which of `classes` are defects (default: all but the first when C > 1).
    pub defects: Option<Vec<String>>,
    /// Per-channel (R, G, B) normalisation mean, on the 0–1 pixel scale:
    /// input = (pixel / 255 − mean) / std.
    pub mean: Option<[f32; 3]>,
    /// Per-channel (R, G, B) normalisation standard deviation, on the 0–1 pixel scale (see `mean`).
    pub std: Option<[f32; 3]>,
    /// Input sides must be multiples of this (default: from metadata, else 32).
    pub size_multiple: Option<usize>,
    /// Which engine runs the model.
    pub engine: EngineKind,
}

/// The inference engine. The native engine runs the ops our exports use (convolution, ReLU,
/// add, concat, integer-factor bilinear resize) with planned memory and no per-frame
/// allocation; tract runs any ONNX.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Native when the graph uses only the ops it runs, else tract.
    #[default]
    Auto,
    /// Our own engine; fails to load a graph with ops it does not run.
    Native,
    /// tract, which runs any ONNX model on the CPU.
    Tract,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            path: PathBuf::from("models/default.onnx"),
            threads: 0,
            input_size: None,
            output: OutputKind::Auto,
            classes: None,
            defects: None,
            mean: None,
            std: None,
            size_multiple: None,
            engine: EngineKind::Auto,
        }
    }
}

/// What the runtime needs to know about the loaded model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    /// The model file it was loaded from.
    pub path: PathBuf,
    /// Class names, one per output channel.
    pub class_names: Vec<String>,
    /// Per class: whether it is a defect class.
    pub defect: Vec<bool>,
    /// Per class: the RGB colour of overlays (the model's own, else a fixed palette).
    pub colors: Vec<[u8; 3]>,
    /// Short identity for events: file stem and a hash of the bytes.
    pub version: String,
    /// Which engine runs it: "native" or "tract".
    pub engine: &'static str,
}

impl ModelInfo {
    /// Number of classes (output channels).
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }
}

/// Per-class scores of one frame at the model's output resolution.
#[derive(Clone, Debug, Default)]
pub struct Segmentation {
    /// Probabilities `C × map_h × map_w`, channel-major, or the logits they come from.
    pub scores: Scores,
    /// Number of classes `C`.
    pub classes: usize,
    /// Where the score map sits in the frame.
    pub geom: MapGeom,
    /// Time spent converting the frame into the model input, running the model, and turning
    /// its output into `scores`: the pipeline reports each as a stage.
    pub preprocess: Duration,
    /// See `preprocess`.
    pub model: Duration,
    /// See `preprocess`.
    pub postprocess: Duration,
}

/// A model that segments frames. `prepare` plans for a frame size ahead of the first frame.
pub trait Segmenter: Send {
    /// What the runtime needs to know about the model.
    fn info(&self) -> &ModelInfo;
    /// Plans for frames of `frame_w`×`frame_h` (layout, buffers), so the first frame need not.
    fn prepare(&mut self, frame_w: u32, frame_h: u32) -> Result<()>;
    /// Segments `frame` into `out`, reusing its buffers; plans first when the frame size changed.
    fn segment(&mut self, frame: &Frame, out: &mut Segmentation) -> Result<()>;
}

/// FNV-1a, 64 bit: a stable fingerprint of a model file for events (not security).
pub fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Pixels per softmax block: the block's max and sum stay in L1 and the logits are read once.
const BLOCK: usize = 512;

/// `exp(x)` for `x ≤ 0`, branch-free so the compiler vectorises it: x = i·ln 2 + r with
/// |r| ≤ ln 2 / 2 (Cody–Waite, ln 2 split in two so r is exact), e^r by its degree-6 Taylor
/// polynomial, 2^i through the exponent bits. Relative error < 5e-7, at the level of f32
/// rounding. Inputs under -87 return ~0 (no denormals).
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.max(-87.0);
    // Round to nearest by the 1.5·2^23 trick: `f32::round` is a libm call on baseline x86-64
    // (no SSE4.1) and would stop the loop from vectorising.
    const MAGIC: f32 = 12_582_912.0;
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let i = t - MAGIC;
    let r = (x - i * LN2_HI) - i * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // The integer i sits in t's low mantissa bits: read it there rather than by `as i32`,
    // whose saturating conversion does not vectorise. i ∈ [-126, 0], so the exponent is valid.
    let i_bits = t.to_bits().wrapping_sub(MAGIC.to_bits());
    f32::from_bits(i_bits.wrapping_add(127) << 23) * p
}

/// Softmax over channels of a channel-major `[C, n]` block of logits `src`, written to `dst`,
/// in pixel blocks so each logit is read once from memory and no scratch is allocated.
pub fn softmax_channels(src: &[f32], dst: &mut [f32], c: usize) {
    let n = src.len() / c.max(1);
    softmax_strided(src, n, dst, n, c, n);
}

/// [`softmax_channels`] over `n` pixels whose channel `k` starts at `k·src_stride` in `src`
/// and is written at `k·dst_stride` in `dst`: a row of a plane-major output, for instance.
/// Runs with AVX2 where the CPU has it (the build targets baseline x86-64, SSE2 only).
pub fn softmax_strided(
    src: &[f32],
    src_stride: usize,
    dst: &mut [f32],
    dst_stride: usize,
    c: usize,
    n: usize,
) {
    let lay = Strides {
        src_stride,
        dst_stride,
        c,
        n,
    };
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { softmax_avx2(src, dst, lay) };
    }
    softmax_body(src, dst, lay);
}

/// Where a strided softmax reads and writes: `c` channels of `n` pixels, channel `k` at
/// `k·src_stride` in the source and `k·dst_stride` in the destination.
#[derive(Clone, Copy)]
struct Strides {
    src_stride: usize,
    dst_stride: usize,
    c: usize,
    n: usize,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn softmax_avx2(src: &[f32], dst: &mut [f32], lay: Strides) {
    softmax_body(src, dst, lay);
}

/// The portable body, inlined into each instruction-set variant.
#[inline(always)]
fn softmax_body(src: &[f32], dst: &mut [f32], lay: Strides) {
    let Strides {
        src_stride,
        dst_stride,
        c,
        n,
    } = lay;
    let (mut mb, mut sb) = ([0f32; BLOCK], [0f32; BLOCK]);
    let mut p0 = 0;
    while p0 < n {
        let len = BLOCK.min(n - p0);
        let (m, s) = (&mut mb[..len], &mut sb[..len]);
        m.copy_from_slice(&src[p0..p0 + len]);
        for k in 1..c {
            for (mi, &v) in m.iter_mut().zip(&src[k * src_stride + p0..][..len]) {
                *mi = mi.max(v);
            }
        }
        s.fill(0.0);
        for k in 0..c {
            // Equal-length slices let the compiler drop bounds checks and vectorise.
            let sk = &src[k * src_stride + p0..][..len];
            let dk = &mut dst[k * dst_stride + p0..][..len];
            for j in 0..len {
                let e = exp_nonpositive(sk[j] - m[j]);
                dk[j] = e;
                s[j] += e;
            }
        }
        for si in s.iter_mut() {
            *si = 1.0 / *si;
        }
        for k in 0..c {
            let dk = &mut dst[k * dst_stride + p0..][..len];
            for j in 0..len {
                dk[j] *= s[j];
            }
        }
        p0 += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_is_stable_for_large_logits() {
        // Two pixels, three classes; the second pixel's logits would overflow exp() unshifted.
        let logits = vec![1.0, 1000.0, 2.0, 1001.0, 3.0, 999.0];
        let mut x = vec![0.0; 6];
        softmax_channels(&logits, &mut x, 3);
        let e = [1f64.exp(), 2f64.exp(), 3f64.exp()];
        let z: f64 = e.iter().sum();
        for k in 0..3 {
            assert!((f64::from(x[k * 2]) - e[k] / z).abs() < 1e-6);
        }
        let e = [0f64.exp(), 1f64.exp(), (-1f64).exp()];
        let z: f64 = e.iter().sum();
        for k in 0..3 {
            assert!((f64::from(x[k * 2 + 1]) - e[k] / z).abs() < 1e-6, "{x:?}");
        }
    }

    #[test]
    fn fast_exp_is_accurate_on_its_range() {
        let mut worst = 0.0f64;
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let want = f64::from(x).exp();
            let rel = (f64::from(exp_nonpositive(x)) - want).abs() / want;
            worst = worst.max(rel);
        }
        assert!(worst < 5e-7, "worst relative error {worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(-1000.0) < 1e-37);
    }

    #[test]
    fn softmax_blocks_cover_every_pixel() {
        // More pixels than one block, not a multiple of it.
        let (c, n) = (4, 1300);
        let logits: Vec<f32> = (0..c * n)
            .map(|i| ((i * 37) % 101) as f32 * 0.1 - 5.0)
            .collect();
        let mut out = vec![f32::NAN; c * n];
        softmax_channels(&logits, &mut out, c);
        for p in 0..n {
            let z: f64 = (0..c).map(|k| f64::from(logits[k * n + p]).exp()).sum();
            for k in 0..c {
                let want = f64::from(logits[k * n + p]).exp() / z;
                assert!(
                    (f64::from(out[k * n + p]) - want).abs() < 1e-6,
                    "pixel {p} class {k}"
                );
            }
        }
    }

    #[test]
    fn fingerprint_is_fnv1a() {
        // Reference values of FNV-1a 64.
        assert_eq!(fingerprint(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fingerprint(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
