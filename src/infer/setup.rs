//! What every engine resolves the same way from a model file and its `[model]` config: class
//! names, defect flags, normalisation, input layout and output kind, and the conversion of the
//! model's output into probabilities. Shared so tract and the native engine cannot disagree.
use crate::infer::preprocess::Preprocess;
use crate::infer::{ModelConfig, ModelInfo, OutputKind, fingerprint, softmax_channels};
use crate::{Error, Result};
use contextrast_model::meta::ModelMeta;

/// Normalisation assumed for a foreign model when the config gives none.
pub const DEFAULT_MEAN: [f32; 3] = [0.45; 3];
/// Standard deviation assumed for a foreign model when the config gives none (0–1 pixel scale).
pub const DEFAULT_STD: [f32; 3] = [0.25; 3];

/// A colour per class: the model's own, else a fixed palette (class 0 black: background).
pub fn palette(n: usize, colors: Option<&[[u8; 3]]>) -> Vec<[u8; 3]> {
    const P: [[u8; 3]; 8] = [
        [0, 0, 0],
        [0, 160, 0],
        [230, 25, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
    ];
    (0..n)
        .map(|i| {
            colors
                .and_then(|c| c.get(i).copied())
                .unwrap_or(P[i % P.len()])
        })
        .collect()
}

/// The resolved facts a segmenter needs besides its engine.
#[derive(Clone, Debug)]
pub struct ModelSetup {
    /// Classes, defect flags, colours, version and engine of the model.
    pub info: ModelInfo,
    /// Normalisation mean per channel, 0–1 scale (config, else metadata, else [`DEFAULT_MEAN`]).
    pub mean: [f32; 3],
    /// Normalisation std per channel, 0–1 scale (config, else metadata, else [`DEFAULT_STD`]).
    pub std: [f32; 3],
    /// Resize frames to this (h, w); `None` = the frame's own size, padded to `multiple`.
    pub fixed: Option<(usize, usize)>,
    /// Input sides are padded to multiples of this (config, else metadata, else 32).
    pub multiple: usize,
    /// What the output channels hold, `Auto` resolved.
    pub output: OutputKind,
    /// Inference threads (the config's 0 resolved to the core count).
    pub threads: usize,
}

impl ModelSetup {
    /// Resolves `cfg` against the model's metadata (class names and defect flags come from the
    /// model; `mean`, `std` and `size_multiple` from the config where it sets them), for a model
    /// with `c` output channels whose file holds `bytes`; `declared_hw` is the input size the
    /// graph fixes.
    pub fn resolve(
        cfg: &ModelConfig,
        bytes: &[u8],
        meta: Option<&ModelMeta>,
        c: usize,
        declared_hw: Option<(usize, usize)>,
        engine: &'static str,
    ) -> Result<ModelSetup> {
        let path = cfg.path.as_path();
        let bad = |msg: String| Error::model(path, msg);
        let class_names = match (meta, &cfg.classes) {
            (Some(m), _) => m.class_names.clone(),
            (None, Some(names)) if names.len() == c => names.clone(),
            (None, Some(names)) => {
                return Err(bad(format!(
                    "the config names {} classes, the model outputs {c}",
                    names.len()
                )));
            }
            (None, None) => (0..c).map(|i| format!("class{i}")).collect(),
        };
        let defect = match (meta, &cfg.defects) {
            (Some(m), _) => m.defect.clone(),
            (None, Some(d)) => {
                if let Some(unknown) = d.iter().find(|n| !class_names.contains(n)) {
                    return Err(bad(format!(
                        "defect class `{unknown}` is not one of {class_names:?}"
                    )));
                }
                class_names.iter().map(|n| d.contains(n)).collect()
            }
            (None, None) => (0..c).map(|i| c == 1 || i > 0).collect(),
        };
        let mean = cfg.mean.or(meta.map(|m| m.mean)).unwrap_or(DEFAULT_MEAN);
        let std = cfg.std.or(meta.map(|m| m.std)).unwrap_or(DEFAULT_STD);
        if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) || mean.iter().any(|m| !m.is_finite()) {
            return Err(bad(format!(
                "normalisation mean {mean:?} / std {std:?} is invalid"
            )));
        }
        let multiple = cfg
            .size_multiple
            .or(meta.map(|m| m.size_multiple))
            .unwrap_or(32)
            .max(1);
        let fixed = cfg.input_size.map(|[h, w]| (h, w)).or(declared_hw);
        let output = match (cfg.output, c) {
            (OutputKind::Auto, 1) if meta.is_none() => OutputKind::Probabilities,
            (OutputKind::Auto, _) => OutputKind::Logits,
            (k, _) => k,
        };
        let threads = if cfg.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            cfg.threads
        };
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let info = ModelInfo {
            path: path.to_path_buf(),
            colors: palette(c, meta.map(|m| m.colors.as_slice())),
            class_names,
            defect,
            version: format!("{stem}-{:012x}", fingerprint(bytes) >> 16),
            engine,
        };
        Ok(ModelSetup {
            info,
            mean,
            std,
            fixed,
            multiple,
            output,
            threads,
        })
    }

    /// The input layout for frames of `frame_w`×`frame_h`, or an error for an empty size.
    pub fn layout(&self, frame_w: u32, frame_h: u32) -> Result<Preprocess> {
        if frame_w == 0 || frame_h == 0 {
            return Err(Error::model(
                &self.info.path,
                format!("empty frame size {frame_w}x{frame_h}"),
            ));
        }
        Ok(match self.fixed {
            Some((h, w)) => Preprocess::resized(frame_w, frame_h, w, h, self.mean, self.std),
            None => Preprocess::padded(frame_w, frame_h, self.multiple, self.mean, self.std),
        })
    }

    /// Turns the model's `[C, h, w]` output `data` into probabilities in `out.probs`: a
    /// softmax over channels for logits (a sigmoid for C = 1), a copy for probabilities.
    pub fn probabilities(&self, data: &[f32], out: &mut Vec<f32>) {
        let c = self.info.num_classes();
        out.resize(data.len(), 0.0);
        match (self.output, c) {
            (OutputKind::Logits, 1) => {
                for (p, &v) in out.iter_mut().zip(data) {
                    *p = 1.0 / (1.0 + (-v).exp());
                }
            }
            (OutputKind::Logits, _) => softmax_channels(data, out, c),
            (OutputKind::Probabilities | OutputKind::Auto, _) => out.copy_from_slice(data),
        }
    }
}

/// Checks `frame` and says whether a segmenter planned for `pre` must plan for its size first:
/// the opening of every engine's `segment`.
pub fn needs_plan(pre: Option<&Preprocess>, frame: &crate::capture::Frame) -> Result<bool> {
    check_frame(frame)?;
    Ok(!pre.is_some_and(|p| p.fits(frame.width, frame.height)))
}

/// Checks that a frame's buffer holds exactly `width × height` RGB pixels.
pub fn check_frame(frame: &crate::capture::Frame) -> Result<()> {
    if frame.rgb.len() == frame.width as usize * frame.height as usize * 3 {
        return Ok(());
    }
    Err(Error::frame(
        frame.name.clone(),
        format!(
            "{} bytes for a {}x{} RGB frame",
            frame.rgb.len(),
            frame.width,
            frame.height
        ),
    ))
}
