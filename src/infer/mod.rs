//! Segmentation of one frame: the [`Segmenter`] trait and its tract implementation (any ONNX
//! model, CPU). The pipeline holds a `Box<dyn Segmenter>`, so a faster engine for our own models
//! can be added beside tract without touching the rest.
pub mod preprocess;
pub mod tract;

use crate::Result;
use crate::capture::Frame;
use crate::decide::MapGeom;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

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
    pub path: PathBuf,
    /// Inference threads; 0 = all cores.
    pub threads: usize,
    /// Resize frames to `[height, width]`. Default: the size the ONNX fixes, else the frame's
    /// own size padded to the model's multiple (no resampling).
    pub input_size: Option<[usize; 2]>,
    pub output: OutputKind,
    /// Class names, for a model without metadata (C = 1: one name, the defect's).
    pub classes: Option<Vec<String>>,
    /// Which of `classes` are defects (default: all but the first when C > 1).
    pub defects: Option<Vec<String>>,
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
    /// Input sides must be multiples of this (default: from metadata, else 32).
    pub size_multiple: Option<usize>,
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
        }
    }
}

/// What the runtime needs to know about the loaded model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub class_names: Vec<String>,
    pub defect: Vec<bool>,
    pub colors: Vec<[u8; 3]>,
    /// Short identity for events: file stem and a hash of the bytes.
    pub version: String,
}

impl ModelInfo {
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }
}

/// Per-class probabilities of one frame at the model's output resolution.
#[derive(Clone, Debug, Default)]
pub struct Segmentation {
    /// `C × map_h × map_w`, channel-major.
    pub probs: Vec<f32>,
    pub classes: usize,
    pub geom: MapGeom,
    /// Time spent converting the frame into the model input, running the model, and turning
    /// its output into probabilities: the pipeline reports each as a stage.
    pub preprocess: Duration,
    pub model: Duration,
    pub postprocess: Duration,
}

/// A model that segments frames. `prepare` plans for a frame size ahead of the first frame.
pub trait Segmenter: Send {
    fn info(&self) -> &ModelInfo;
    fn prepare(&mut self, frame_w: u32, frame_h: u32) -> Result<()>;
    fn segment(&mut self, frame: &Frame, out: &mut Segmentation) -> Result<()>;
}

/// FNV-1a, 64 bit: a stable fingerprint of a model file for events (not security).
pub fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Softmax over channels of a channel-major `[C, n]` block, in place; `m` and `s` are scratch
/// of length `n` (kept by the caller so a frame allocates nothing).
pub fn softmax_channels(x: &mut [f32], c: usize, m: &mut [f32], s: &mut [f32]) {
    let n = m.len();
    m.copy_from_slice(&x[..n]);
    for k in 1..c {
        for (mi, &v) in m.iter_mut().zip(&x[k * n..(k + 1) * n]) {
            *mi = mi.max(v);
        }
    }
    s.fill(0.0);
    for k in 0..c {
        for ((v, &mi), si) in x[k * n..(k + 1) * n]
            .iter_mut()
            .zip(m.iter())
            .zip(s.iter_mut())
        {
            *v = (*v - mi).exp();
            *si += *v;
        }
    }
    for k in 0..c {
        for (v, &si) in x[k * n..(k + 1) * n].iter_mut().zip(s.iter()) {
            *v /= si;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_is_stable_for_large_logits() {
        // Two pixels, three classes; the second pixel's logits would overflow exp() unshifted.
        let mut x = vec![1.0, 1000.0, 2.0, 1001.0, 3.0, 999.0];
        let (mut m, mut s) = (vec![0.0; 2], vec![0.0; 2]);
        softmax_channels(&mut x, 3, &mut m, &mut s);
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
    fn fingerprint_is_fnv1a() {
        // Reference values of FNV-1a 64.
        assert_eq!(fingerprint(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fingerprint(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
