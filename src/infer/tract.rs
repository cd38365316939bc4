//! [`Segmenter`] over tract (pure Rust, CPU): runs any ONNX segmentation model with one NCHW
//! float input and one `[1, C, h, w]` output. Our own models bring classes, normalisation and
//! size in their metadata; a foreign model gets them from the `[model]` config.
use crate::capture::Frame;
use crate::infer::preprocess::Preprocess;
use crate::infer::{
    ModelConfig, ModelInfo, OutputKind, Segmentation, Segmenter, fingerprint, softmax_channels,
};
use crate::{Error, Result};
use contextrast_train::onnx_model::{OnnxModel, Plan};
use std::path::Path;
use std::time::Instant;
use tract_linalg::multithread::{Executor, multithread_tract_scope};
use tract_onnx::prelude::*;

/// Normalisation assumed for a foreign model when the config gives none.
pub const DEFAULT_MEAN: [f32; 3] = [0.45; 3];
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

pub struct TractSegmenter {
    model: OnnxModel,
    info: ModelInfo,
    mean: [f32; 3],
    std: [f32; 3],
    /// Resize to this (h, w); `None` = the frame's own size, padded.
    fixed: Option<(usize, usize)>,
    multiple: usize,
    output: OutputKind,
    executor: Executor,
    pre: Option<Preprocess>,
    plan: Option<Plan>,
}

impl TractSegmenter {
    /// Loads and checks the model; the plan for the frame size is built by [`Segmenter::prepare`].
    pub fn load(cfg: &ModelConfig) -> Result<TractSegmenter> {
        let path = cfg.path.as_path();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let model = match OnnxModel::load(path) {
            Ok(m) => m,
            // A foreign model with symbolic output channels: plan it at a size to learn C.
            Err(_) if cfg.input_size.is_some() || cfg.classes.is_some() => {
                let [h, w] = cfg.input_size.unwrap_or([256, 256]);
                OnnxModel::load_at(path, h, w)?
            }
            Err(e) => return Err(e.into()),
        };
        let c = model.num_classes();
        let meta = model.meta().cloned();
        let bad = |msg: String| Error::model(path, msg);
        let class_names = match (&meta, &cfg.classes) {
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
        let defect = match (&meta, &cfg.defects) {
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
        let mean = cfg
            .mean
            .or(meta.as_ref().map(|m| m.mean))
            .unwrap_or(DEFAULT_MEAN);
        let std = cfg
            .std
            .or(meta.as_ref().map(|m| m.std))
            .unwrap_or(DEFAULT_STD);
        if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) || mean.iter().any(|m| !m.is_finite()) {
            return Err(bad(format!(
                "normalisation mean {mean:?} / std {std:?} is invalid"
            )));
        }
        let multiple = cfg
            .size_multiple
            .or(meta.as_ref().map(|m| m.size_multiple))
            .unwrap_or(32)
            .max(1);
        let fixed = cfg
            .input_size
            .map(|[h, w]| (h, w))
            .or(model.declared_input_hw());
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
        let executor = if threads > 1 {
            Executor::multithread_with_name(threads, "infer")
        } else {
            Executor::SingleThread
        };
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let info = ModelInfo {
            path: path.to_path_buf(),
            colors: palette(c, meta.as_ref().map(|m| m.colors.as_slice())),
            class_names,
            defect,
            version: format!("{stem}-{:012x}", fingerprint(&bytes) >> 16),
        };
        Ok(TractSegmenter {
            model,
            info,
            mean,
            std,
            fixed,
            multiple,
            output,
            executor,
            pre: None,
            plan: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.info.path
    }
}

impl Segmenter for TractSegmenter {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn prepare(&mut self, frame_w: u32, frame_h: u32) -> Result<()> {
        if self.plan.is_some() && self.pre.as_ref().is_some_and(|p| p.fits(frame_w, frame_h)) {
            return Ok(());
        }
        if frame_w == 0 || frame_h == 0 {
            return Err(Error::model(
                self.path(),
                format!("empty frame size {frame_w}x{frame_h}"),
            ));
        }
        let pre = match self.fixed {
            Some((h, w)) => Preprocess::resized(frame_w, frame_h, w, h, self.mean, self.std),
            None => Preprocess::padded(frame_w, frame_h, self.multiple, self.mean, self.std),
        };
        let t0 = Instant::now();
        let (plan, c) = self.model.plan(1, pre.geom.map_h, pre.geom.map_w)?;
        if c != self.info.num_classes() {
            return Err(Error::model(
                self.path(),
                format!("outputs {c} channels, expected {}", self.info.num_classes()),
            ));
        }
        log::info!(
            "model {} planned for {}x{} frames as {}x{} input in {:.1} s",
            self.info.version,
            frame_w,
            frame_h,
            pre.geom.map_w,
            pre.geom.map_h,
            t0.elapsed().as_secs_f64()
        );
        self.pre = Some(pre);
        self.plan = Some(plan);
        Ok(())
    }

    fn segment(&mut self, frame: &Frame, out: &mut Segmentation) -> Result<()> {
        if frame.rgb.len() != frame.width as usize * frame.height as usize * 3 {
            return Err(Error::frame(
                frame.name.clone(),
                format!(
                    "{} bytes for a {}x{} RGB frame",
                    frame.rgb.len(),
                    frame.width,
                    frame.height
                ),
            ));
        }
        if !self
            .pre
            .as_ref()
            .is_some_and(|p| p.fits(frame.width, frame.height))
        {
            self.prepare(frame.width, frame.height)?;
        }
        let (Some(pre), Some(plan)) = (&self.pre, &self.plan) else {
            return Err(Error::model(self.path(), "not prepared"));
        };
        let g = pre.geom;
        let err = |e: TractError| Error::model(&self.info.path, format!("{e:#}"));
        // SAFETY: f32 has no invalid bit patterns and `Preprocess::run` writes every element
        // (content and padding), so nothing uninitialised is read.
        let mut input =
            unsafe { Tensor::uninitialized::<f32>(&[1, 3, g.map_h, g.map_w]) }.map_err(err)?;
        let t0 = Instant::now();
        {
            let mut view = input.try_as_plain_ram_mut().map_err(err)?;
            pre.run(&frame.rgb, view.as_slice_mut::<f32>().map_err(err)?);
        }
        let t1 = Instant::now();
        let outputs =
            multithread_tract_scope(self.executor.clone(), || plan.run(tvec!(input.into())))
                .map_err(err)?;
        let y = outputs
            .first()
            .ok_or_else(|| Error::model(&self.info.path, "the model produced no output"))?;
        let c = self.info.num_classes();
        if y.shape() != [1, c, g.map_h, g.map_w] {
            return Err(Error::model(
                &self.info.path,
                format!(
                    "output shape {:?}, expected [1, {c}, {}, {}]",
                    y.shape(),
                    g.map_h,
                    g.map_w
                ),
            ));
        }
        let t2 = Instant::now();
        let view = y.try_as_plain_ram().map_err(err)?;
        let data = view.as_slice::<f32>().map_err(err)?;
        out.probs.resize(data.len(), 0.0);
        out.classes = c;
        out.geom = g;
        match (self.output, c) {
            (OutputKind::Logits, 1) => {
                for (p, &v) in out.probs.iter_mut().zip(data) {
                    *p = 1.0 / (1.0 + (-v).exp());
                }
            }
            (OutputKind::Logits, _) => softmax_channels(data, &mut out.probs, c),
            (OutputKind::Probabilities | OutputKind::Auto, _) => out.probs.copy_from_slice(data),
        }
        out.preprocess = t1 - t0;
        out.model = t2 - t1;
        out.postprocess = t2.elapsed();
        Ok(())
    }
}
