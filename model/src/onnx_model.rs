//! Loading and running an ONNX segmentation model through tract (pure Rust, CPU): the runtime's
//! portable inference path and the first check of every export. tract needs concrete shapes to
//! optimise, so a plan is built per input size and cached; the metadata is read from the same
//! bytes tract parses, so model and metadata always belong together.
use crate::meta::ModelMeta;
use crate::{Error, Result};
use prost::Message;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tract_onnx::pb;
use tract_onnx::prelude::*;

/// Optimised plans kept per (n, h, w); a line camera uses one size, tools a few.
const MAX_PLANS: usize = 4;

/// An optimised, runnable tract plan for one input shape.
pub type TractPlan = Arc<TypedRunnableModel>;

/// A cached plan: its (n, h, w) key, the plan, and the output channels it produces.
type CachedPlan = ((usize, usize, usize), TractPlan, usize);

/// A loaded model: metadata plus optimised tract plans.
pub struct OnnxModel {
    path: PathBuf,
    meta: Option<ModelMeta>,
    props: BTreeMap<String, String>,
    /// The parsed, not yet shaped model: re-planned for each new input size.
    model: InferenceModel,
    num_classes: usize,
    /// Input height and width when the graph fixes them (a foreign model exported at one size).
    declared_hw: Option<(usize, usize)>,
    /// Plans by (n, h, w), with the output channels each produces.
    plans: Mutex<Vec<CachedPlan>>,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("path", &self.path)
            .field("num_classes", &self.num_classes)
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl OnnxModel {
    /// Loads `path`. With Contextrast metadata the plan for its input size (batch 1) is built
    /// now, so a model that cannot run fails at load, not on the first frame; other sizes are
    /// planned on first use. A foreign model must declare its output channels (or use
    /// [`OnnxModel::load_at`]).
    pub fn load(path: &Path) -> Result<OnnxModel> {
        let (mut model, declared_c) = Self::open(path)?;
        match (
            model.meta.as_ref().map(|m| (m.input_h, m.input_w)),
            declared_c,
        ) {
            (Some((h, w)), _) => model.check_plan(h, w)?,
            (None, Some(c)) => model.num_classes = c,
            (None, None) => {
                return Err(Error::Onnx {
                    path: path.to_path_buf(),
                    msg: "no metadata and no declared output channels; load it at a size instead"
                        .into(),
                });
            }
        }
        Ok(model)
    }

    /// Loads `path` and builds the plan for one `h`×`w` image (batch 1) now.
    pub fn load_at(path: &Path, h: usize, w: usize) -> Result<OnnxModel> {
        let (mut model, _) = Self::open(path)?;
        model.check_plan(h, w)?;
        Ok(model)
    }

    /// Parses and checks the file; also returns the output channels the graph declares.
    fn open(path: &Path) -> Result<(OnnxModel, Option<usize>)> {
        let err = |msg: String| Error::Onnx {
            path: path.to_path_buf(),
            msg,
        };
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let proto = pb::ModelProto::decode(bytes.as_slice())
            .map_err(|e| err(format!("not an ONNX model (protobuf decode failed: {e})")))?;
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| err("not an ONNX model (no graph)".into()))?;
        check_input(graph).map_err(err)?;
        let declared_c = declared_channels(graph);
        let declared_hw = declared_input_hw(graph);
        let props: BTreeMap<String, String> = proto
            .metadata_props
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect();
        let meta = ModelMeta::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(err)?;
        let model = catch_tract(path, "reading the graph", || {
            tract_onnx::onnx().model_for_proto_model(&proto)
        })?;
        let loaded = OnnxModel {
            path: path.to_path_buf(),
            meta,
            props,
            model,
            num_classes: declared_c.unwrap_or(0),
            declared_hw,
            plans: Mutex::new(Vec::new()),
        };
        Ok((loaded, declared_c))
    }

    /// Builds the batch-1 plan for `h`×`w`, sets the class count from it and checks it against
    /// the metadata.
    fn check_plan(&mut self, h: usize, w: usize) -> Result<()> {
        self.num_classes = self.plan(1, h, w)?.1;
        if let Some(m) = &self.meta
            && m.num_classes() != self.num_classes
        {
            return Err(Error::Onnx {
                path: self.path.clone(),
                msg: format!(
                    "metadata lists {} classes, the model outputs {}",
                    m.num_classes(),
                    self.num_classes
                ),
            });
        }
        Ok(())
    }

    /// The file the model was loaded from (for error messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The Contextrast metadata; `None` for a model exported elsewhere.
    pub fn meta(&self) -> Option<&ModelMeta> {
        self.meta.as_ref()
    }

    /// All `metadata_props` entries, including plain keys of foreign models.
    pub fn metadata_props(&self) -> &BTreeMap<String, String> {
        &self.props
    }

    /// Input height and width, when the graph fixes them; `None` when they are symbolic.
    pub fn declared_input_hw(&self) -> Option<(usize, usize)> {
        self.declared_hw
    }

    /// Output channels C of `logits`.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Runs a normalised NCHW batch (`n·3·h·w` values) and returns the logits `[n, C, h, w]`.
    /// A new size builds (and caches) a new plan, which takes a moment; keep the size fixed in
    /// a real-time loop.
    pub fn run(&self, input: &[f32], n: usize, h: usize, w: usize) -> Result<Vec<f32>> {
        let err = |msg: String| Error::Onnx {
            path: self.path.clone(),
            msg,
        };
        if input.len() != n * 3 * h * w {
            return Err(Error::Shape(format!(
                "input has {} values, [{n}, 3, {h}, {w}] needs {}",
                input.len(),
                n * 3 * h * w
            )));
        }
        let (plan, c) = self.plan(n, h, w)?;
        let x = Tensor::from_shape(&[n, 3, h, w], input).map_err(|e| err(format!("{e:#}")))?;
        let outputs = catch_tract(&self.path, &format!("running [{n}, 3, {h}, {w}]"), || {
            plan.run(tvec!(x.into()))
        })?;
        let y = outputs
            .first()
            .ok_or_else(|| err("the model produced no output".into()))?;
        if y.shape() != [n, c, h, w] {
            return Err(err(format!(
                "output shape {:?}, expected [{n}, {c}, {h}, {w}]",
                y.shape()
            )));
        }
        let data = y
            .try_as_plain_ram()
            .and_then(|v| v.as_slice::<f32>().map(<[f32]>::to_vec))
            .map_err(|e| err(format!("output is not float32: {e:#}")))?;
        Ok(data)
    }

    /// Logits `[C, h, w]` for one normalised CHW image of any size: padded at the bottom and
    /// right to the model's size multiple (zeros, i.e. the mean colour), run, and cropped back.
    /// This is what an evaluation or a camera of arbitrary resolution needs.
    pub fn logits_chw(&self, chw: &[f32], h: usize, w: usize) -> Result<Vec<f32>> {
        if chw.len() != 3 * h * w {
            return Err(Error::Shape(format!(
                "image has {} values, [3, {h}, {w}] needs {}",
                chw.len(),
                3 * h * w
            )));
        }
        let m = self.meta.as_ref().map_or(1, |m| m.size_multiple);
        let (ph, pw) = (h.div_ceil(m) * m, w.div_ceil(m) * m);
        if (ph, pw) == (h, w) {
            return self.run(chw, 1, h, w);
        }
        let mut x = vec![0.0; 3 * ph * pw];
        for c in 0..3 {
            for y in 0..h {
                x[(c * ph + y) * pw..(c * ph + y) * pw + w]
                    .copy_from_slice(&chw[(c * h + y) * w..(c * h + y + 1) * w]);
            }
        }
        let y = self.run(&x, 1, ph, pw)?;
        let classes = y.len() / (ph * pw);
        let mut out = Vec::with_capacity(classes * h * w);
        for c in 0..classes {
            for row in 0..h {
                out.extend_from_slice(&y[(c * ph + row) * pw..(c * ph + row) * pw + w]);
            }
        }
        Ok(out)
    }

    /// The cached plan for `(n, h, w)` and the class count, building it if needed. The runtime
    /// runs it directly, so its input tensor is filled in place instead of copied.
    pub fn plan(&self, n: usize, h: usize, w: usize) -> Result<(TractPlan, usize)> {
        let err = |msg: String| Error::Onnx {
            path: self.path.clone(),
            msg,
        };
        if n == 0 || h == 0 || w == 0 {
            return Err(err(format!("empty input size [{n}, 3, {h}, {w}]")));
        }
        if let Some(m) = &self.meta
            && (!h.is_multiple_of(m.size_multiple) || !w.is_multiple_of(m.size_multiple))
        {
            return Err(err(format!(
                "input {h}x{w} is not a multiple of {} (model metadata)",
                m.size_multiple
            )));
        }
        let key = (n, h, w);
        {
            let plans = self
                .plans
                .lock()
                .map_err(|_| err("plan cache poisoned".into()))?;
            if let Some((_, p, c)) = plans.iter().find(|(k, _, _)| *k == key) {
                return Ok((p.clone(), *c));
            }
        }
        let shaped = catch_tract(&self.path, &format!("planning [{n}, 3, {h}, {w}]"), || {
            self.model
                .clone()
                .with_input_fact(0, f32::fact([n, 3, h, w]).into())
                .and_then(|m| m.into_optimized())
        })?;
        let outlet = shaped
            .output_outlets()
            .map_err(|e| err(format!("{e:#}")))?
            .first()
            .copied();
        let outlet = outlet.ok_or_else(|| err("the model has no output".into()))?;
        let fact = shaped
            .outlet_fact(outlet)
            .map_err(|e| err(format!("{e:#}")))?;
        let dims: Option<Vec<usize>> = fact.shape.as_concrete().map(<[usize]>::to_vec);
        let c = match dims.as_deref() {
            Some(&[on, c, oh, ow]) if on == n && oh == h && ow == w && c > 0 => c,
            _ => {
                return Err(err(format!(
                    "output is {:?}, expected [{n}, C, {h}, {w}]",
                    fact.shape
                )));
            }
        };
        let plan = catch_tract(&self.path, "making the plan runnable", || {
            shaped.into_runnable()
        })?;
        let mut plans = self
            .plans
            .lock()
            .map_err(|_| err("plan cache poisoned".into()))?;
        if plans.len() >= MAX_PLANS {
            plans.remove(0);
        }
        plans.push((key, plan.clone(), c));
        Ok((plan, c))
    }
}

/// Runs a tract call on a model from `path`, turning its error, or its panic, into an error
/// naming the file. tract asserts on some malformed graphs (a missing initialiser, sizes that
/// overflow; found by `tests/fuzz.rs`): a bad file must not take the line down with it.
pub fn catch_tract<T>(path: &Path, what: &str, f: impl FnOnce() -> TractResult<T>) -> Result<T> {
    let err = |msg: String| Error::Onnx {
        path: path.to_path_buf(),
        msg,
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(|e| err(format!("{what}: {e:#}"))),
        Err(p) => {
            let why = p
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("no message");
            Err(err(format!(
                "tract failed while {what} (a malformed model?): {why}"
            )))
        }
    }
}

/// Channels (dim 1) of the first output, when the graph declares them as a number.
fn declared_channels(graph: &pb::GraphProto) -> Option<usize> {
    use pb::tensor_shape_proto::dimension::Value;
    let out = graph.output.first()?;
    let Some(pb::type_proto::Value::TensorType(t)) = out.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    match t.shape.as_ref()?.dim.get(1)?.value.as_ref()? {
        Value::DimValue(c) if *c > 0 => usize::try_from(*c).ok(),
        _ => None,
    }
}

/// Height and width of the single input, when both are fixed numbers.
pub fn declared_input_hw(graph: &pb::GraphProto) -> Option<(usize, usize)> {
    use pb::tensor_shape_proto::dimension::Value;
    let inits: std::collections::BTreeSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let input = graph
        .input
        .iter()
        .find(|i| !inits.contains(i.name.as_str()))?;
    let Some(pb::type_proto::Value::TensorType(t)) = input.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    let dims = &t.shape.as_ref()?.dim;
    let fixed = |i: usize| match dims.get(i)?.value.as_ref()? {
        Value::DimValue(v) if *v > 0 => usize::try_from(*v).ok(),
        _ => None,
    };
    Some((fixed(2)?, fixed(3)?))
}

/// The graph must have one float input `[N, 3, H, W]` (dims may be symbolic). Checked on the
/// proto, before tract, so the error says what is wrong instead of a shape-inference failure.
pub fn check_input(graph: &pb::GraphProto) -> std::result::Result<(), String> {
    use pb::tensor_shape_proto::dimension::Value;
    let inits: std::collections::BTreeSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&pb::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !inits.contains(i.name.as_str()))
        .collect();
    let [input] = inputs.as_slice() else {
        return Err(format!("expected 1 input, found {}", inputs.len()));
    };
    let Some(pb::type_proto::Value::TensorType(t)) =
        input.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(format!("input `{}` is not a tensor", input.name));
    };
    if t.elem_type != pb::tensor_proto::DataType::Float as i32 {
        return Err(format!(
            "input `{}` has element type {}, expected float",
            input.name, t.elem_type
        ));
    }
    let Some(shape) = &t.shape else {
        // No declared shape: the plan's input fact decides, and tract checks the rest.
        return Ok(());
    };
    if shape.dim.len() != 4 {
        return Err(format!(
            "input `{}` has rank {}, expected 4 ([N, 3, H, W])",
            input.name,
            shape.dim.len()
        ));
    }
    if let Some(Value::DimValue(c)) = &shape.dim[1].value
        && *c != 3
    {
        return Err(format!(
            "input `{}` has {c} channels, expected 3 (RGB)",
            input.name
        ));
    }
    Ok(())
}
