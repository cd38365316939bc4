//! The project's own forward-only engine for the models it exports (batch norm is already
//! folded into the convolutions by the export). It reads the ONNX file itself, so the runtime
//! ships one model format for both engines; a graph with any op it does not run goes to tract.
//! It exists because our network is many small convolutions at large spatial sizes, which
//! tract runs at a fraction of the GEMM peak, and because a planned arena makes a frame free
//! of heap allocation (see docs/BENCHMARKS.md for the measured difference).
mod exec;
mod gemm;
mod graph;
mod plan;
#[cfg(test)]
mod tests;

pub use exec::Workers;
pub use graph::{Layer, Net};
pub use plan::Plan;

use crate::capture::Frame;
use crate::infer::preprocess::Preprocess;
use crate::infer::setup::{ModelSetup, needs_plan};
use crate::infer::upsample::Upsample;
use crate::infer::{ModelConfig, ModelInfo, OutputKind, Segmentation, Segmenter};
use crate::{Error, Result};
use contextrast_model::meta::ModelMeta;
use prost::Message;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tract_onnx::pb;

/// Why a file cannot run on the native engine: it is not a usable model at all, or it uses
/// something only tract runs.
#[derive(Debug)]
pub enum Unsupported {
    /// The file is not a usable model (unreadable, malformed, inconsistent metadata).
    Broken(Error),
    /// The graph uses ops or shapes the native engine does not run (named); tract may run it.
    Ops(String),
}

/// A [`Segmenter`] on the native engine: the fused network, its threads and the plan for the
/// current frame size.
pub struct NativeSegmenter {
    net: Arc<Net>,
    setup: ModelSetup,
    workers: Workers,
    pre: Option<Preprocess>,
    plan: Option<Plan>,
    /// The final upsampling factor when the graph ends in one over logits (C > 1): it is split
    /// off, and the decision samples the logits where it needs them (`decide/logits.rs`).
    head_factor: Option<usize>,
    /// That upsampling at the planned size: frames hand out the logits before it.
    head_up: Option<Arc<Upsample>>,
}

impl NativeSegmenter {
    /// Loads `cfg.path`, or says why the native engine cannot run it.
    pub fn load(cfg: &ModelConfig) -> std::result::Result<NativeSegmenter, Unsupported> {
        let path = cfg.path.as_path();
        let broken = |m: String| Unsupported::Broken(Error::model(path, m));
        let Loaded {
            bytes,
            mut net,
            meta,
            declared,
        } = read(path)?;
        let c = net.out_channels;
        if let Some(m) = &meta
            && m.num_classes() != c
        {
            return Err(broken(format!(
                "metadata lists {} classes, the model outputs {c}",
                m.num_classes()
            )));
        }
        let setup = ModelSetup::resolve(cfg, &bytes, meta.as_ref(), c, declared, "native")
            .map_err(Unsupported::Broken)?;
        let workers = Workers::new(setup.threads).map_err(broken)?;
        let head_factor = if setup.output == OutputKind::Logits && c > 1 {
            net.split_final_upsampling()
        } else {
            None
        };
        let seg = NativeSegmenter {
            net: Arc::new(net),
            setup,
            workers,
            pre: None,
            plan: None,
            head_factor,
            head_up: None,
        };
        // Plan once now so a model whose shapes cannot work fails at load, not on a frame.
        let (h, w) = meta
            .as_ref()
            .map(|m| (m.input_h, m.input_w))
            .or(seg.setup.fixed)
            .unwrap_or((seg.setup.multiple, seg.setup.multiple));
        Plan::new(seg.net.clone(), h, w, 1).map_err(Unsupported::Ops)?;
        Ok(seg)
    }

    /// The model file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.setup.info.path
    }

    /// The network as read and fused (benchmarks plan it at their own sizes).
    pub fn net(&self) -> Arc<Net> {
        self.net.clone()
    }
}

/// A model file read for the native engine.
struct Loaded {
    bytes: Vec<u8>,
    net: Net,
    meta: Option<ModelMeta>,
    /// Input height and width when the graph fixes them.
    declared: Option<(usize, usize)>,
}

fn read(path: &Path) -> std::result::Result<Loaded, Unsupported> {
    let bytes = std::fs::read(path).map_err(|e| Unsupported::Broken(Error::io(path, e)))?;
    let broken = |m: String| Unsupported::Broken(Error::model(path, m));
    let proto = pb::ModelProto::decode(bytes.as_slice())
        .map_err(|e| broken(format!("not an ONNX model (protobuf decode failed: {e})")))?;
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| broken("not an ONNX model (no graph)".into()))?;
    contextrast_model::onnx_model::check_input(graph).map_err(broken)?;
    let meta = ModelMeta::from_props(
        proto
            .metadata_props
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str())),
    )
    .map_err(broken)?;
    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(1, |o| o.version);
    let net = Net::from_graph(graph, opset).map_err(Unsupported::Ops)?;
    let declared = contextrast_model::onnx_model::declared_input_hw(graph);
    Ok(Loaded {
        bytes,
        net,
        meta,
        declared,
    })
}

/// The whole network of an ONNX file as the native engine runs it (benchmarks compare it
/// with other engines op for op, final upsampling included).
pub fn load_net(path: &Path) -> std::result::Result<Net, Unsupported> {
    read(path).map(|l| l.net)
}

impl Segmenter for NativeSegmenter {
    fn info(&self) -> &ModelInfo {
        &self.setup.info
    }

    fn prepare(&mut self, frame_w: u32, frame_h: u32) -> Result<()> {
        if self.plan.is_some() && self.pre.as_ref().is_some_and(|p| p.fits(frame_w, frame_h)) {
            return Ok(());
        }
        let pre = self.setup.layout(frame_w, frame_h)?;
        let (h, w) = (pre.geom.map_h, pre.geom.map_w);
        let plan = Plan::new(self.net.clone(), h, w, self.workers.threads())
            .map_err(|m| Error::model(self.path(), m))?;
        self.workers.reserve(plan.scratch_len);
        if let Some(f) = self.head_factor {
            let [_, lh, lw] = plan.output_shape();
            if (lh * f, lw * f) != (h, w) {
                return Err(Error::model(
                    self.path(),
                    format!("outputs {}x{} logits for a {w}x{h} input", lw * f, lh * f),
                ));
            }
            self.head_up = Some(Arc::new(Upsample::new(lh, lw, h, w)));
        }
        log::info!(
            "model {} planned (native engine, {} thread{}) for {frame_w}x{frame_h} frames as \
             {w}x{h} input: {:.1} MiB of activations",
            self.setup.info.version,
            self.workers.threads(),
            if self.workers.threads() == 1 { "" } else { "s" },
            plan.activation_len() as f64 * 4.0 / (1 << 20) as f64,
        );
        self.pre = Some(pre);
        self.plan = Some(plan);
        Ok(())
    }

    fn segment(&mut self, frame: &Frame, out: &mut Segmentation) -> Result<()> {
        if needs_plan(self.pre.as_ref(), frame)? {
            self.prepare(frame.width, frame.height)?;
        }
        let (Some(pre), Some(plan)) = (&self.pre, &mut self.plan) else {
            return Err(Error::model(&self.setup.info.path, "not prepared"));
        };
        let t0 = Instant::now();
        pre.run(&frame.rgb, plan.input_mut());
        let t1 = Instant::now();
        let workers = &self.workers;
        workers.frame(|| plan.run(workers));
        let t2 = Instant::now();
        match &self.head_up {
            Some(up) => {
                let logits = out.scores.logits_mut(up);
                logits.clear();
                logits.extend_from_slice(plan.output());
            }
            None => self
                .setup
                .probabilities(plan.output(), out.scores.probs_mut()),
        }
        out.classes = self.setup.info.num_classes();
        out.geom = pre.geom;
        out.preprocess = t1 - t0;
        out.model = t2 - t1;
        out.postprocess = t2.elapsed();
        Ok(())
    }
}

/// Loads the model with the engine `cfg.engine` names: `auto` takes the native engine when it
/// runs the graph and tract otherwise (saying why in the log).
pub fn load_segmenter(cfg: &ModelConfig) -> Result<Box<dyn Segmenter>> {
    use crate::infer::EngineKind;
    use crate::infer::tract::TractSegmenter;
    match cfg.engine {
        EngineKind::Tract => Ok(Box::new(TractSegmenter::load(cfg)?)),
        EngineKind::Native => match NativeSegmenter::load(cfg) {
            Ok(s) => Ok(Box::new(s)),
            Err(Unsupported::Broken(e)) => Err(e),
            Err(Unsupported::Ops(m)) => Err(Error::model(
                &cfg.path,
                format!("the native engine cannot run it: {m} (use engine = \"tract\")"),
            )),
        },
        EngineKind::Auto => match NativeSegmenter::load(cfg) {
            Ok(s) => Ok(Box::new(s)),
            Err(Unsupported::Ops(m)) => {
                log::info!(
                    "{}: running on tract ({m}; the native engine runs our exports' ops only)",
                    cfg.path.display()
                );
                Ok(Box::new(TractSegmenter::load(cfg)?))
            }
            Err(Unsupported::Broken(e)) => Err(e),
        },
    }
}
