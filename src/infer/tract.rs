//! [`Segmenter`] over tract (pure Rust, CPU): runs any ONNX segmentation model with one NCHW
//! float input and one `[1, C, h, w]` output. Our own models bring classes, normalisation and
//! size in their metadata; a foreign model gets them from the `[model]` config.
use crate::capture::Frame;
use crate::infer::preprocess::Preprocess;
use crate::infer::setup::{ModelSetup, needs_plan};
use crate::infer::{ModelConfig, ModelInfo, Segmentation, Segmenter};
use crate::{Error, Result};
use contextrast_model::onnx_model::{OnnxModel, TractPlan, catch_tract};
use std::path::Path;
use std::time::Instant;
use tract_linalg::multithread::{Executor, multithread_tract_scope};
use tract_onnx::prelude::*;

/// A [`Segmenter`] on tract: any ONNX model with one NCHW float input, one `[1, C, h, w]` output.
pub struct TractSegmenter {
    model: OnnxModel,
    setup: ModelSetup,
    executor: Executor,
    pre: Option<Preprocess>,
    plan: Option<TractPlan>,
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
        let setup = ModelSetup::resolve(
            cfg,
            &bytes,
            model.meta(),
            model.num_classes(),
            model.declared_input_hw(),
            "tract",
        )?;
        let executor = if setup.threads > 1 {
            Executor::multithread_with_name(setup.threads, "infer")
        } else {
            Executor::SingleThread
        };
        Ok(TractSegmenter {
            model,
            setup,
            executor,
            pre: None,
            plan: None,
        })
    }

    /// The model file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.setup.info.path
    }
}

impl Segmenter for TractSegmenter {
    fn info(&self) -> &ModelInfo {
        &self.setup.info
    }

    fn prepare(&mut self, frame_w: u32, frame_h: u32) -> Result<()> {
        if self.plan.is_some() && self.pre.as_ref().is_some_and(|p| p.fits(frame_w, frame_h)) {
            return Ok(());
        }
        let pre = self.setup.layout(frame_w, frame_h)?;
        let t0 = Instant::now();
        let (plan, c) = self.model.plan(1, pre.geom.map_h, pre.geom.map_w)?;
        if c != self.setup.info.num_classes() {
            return Err(Error::model(
                self.path(),
                format!(
                    "outputs {c} channels, expected {}",
                    self.setup.info.num_classes()
                ),
            ));
        }
        log::info!(
            "model {} planned for {}x{} frames as {}x{} input in {:.1} s",
            self.setup.info.version,
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
        if needs_plan(self.pre.as_ref(), frame)? {
            self.prepare(frame.width, frame.height)?;
        }
        let (Some(pre), Some(plan)) = (&self.pre, &self.plan) else {
            return Err(Error::model(self.path(), "not prepared"));
        };
        let g = pre.geom;
        let err = |e: TractError| Error::model(&self.setup.info.path, format!("{e:#}"));
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
        let outputs = catch_tract(&self.setup.info.path, "running a frame", || {
            multithread_tract_scope(self.executor.clone(), || plan.run(tvec!(input.into())))
        })?;
        let y = outputs
            .first()
            .ok_or_else(|| Error::model(&self.setup.info.path, "the model produced no output"))?;
        let c = self.setup.info.num_classes();
        if y.shape() != [1, c, g.map_h, g.map_w] {
            return Err(Error::model(
                &self.setup.info.path,
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
        self.setup.probabilities(data, out.scores.probs_mut());
        out.classes = c;
        out.geom = g;
        out.preprocess = t1 - t0;
        out.model = t2 - t1;
        out.postprocess = t2.elapsed();
        Ok(())
    }
}
