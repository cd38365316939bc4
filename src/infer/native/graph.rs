//! An ONNX graph read into the native engine's layer list. Only the ops our exports use are
//! accepted (Conv, Relu, Add, Concat on channels, Resize by an integer factor with linear
//! half-pixel sampling); anything else is refused with the op's name, so `engine = "auto"` can
//! hand the file to tract instead. Reading also fuses: a ReLU and an Add that follow a
//! convolution run in its epilogue, while the output tile is still in cache.
use contextrast_model::ConvSpec;
use std::collections::HashMap;
use tract_onnx::pb;

/// One layer of the network.
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    /// A convolution, with its fused epilogue.
    Conv(Conv),
    /// Element-wise `max(x, 0)` (one not fused into a convolution).
    Relu,
    /// Element-wise sum of two tensors of one shape.
    Add,
    /// Concatenation along channels.
    Concat,
    /// Bilinear upsampling by an integer factor, half-pixel centres (ONNX `half_pixel`).
    Resize {
        /// Integer upsampling factor, the same on both axes.
        factor: usize,
        /// What is applied to each output value after the resize.
        epi: Epilogue,
    },
}

/// What a layer does to each output value while it is in cache: ReLU, then `+ add`, then ReLU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Epilogue {
    pub relu: bool,
    /// Value added (a fused residual or FPN sum); listed last in the step's inputs.
    pub add: Option<usize>,
    pub relu_after: bool,
}

impl Epilogue {
    pub fn is_none(&self) -> bool {
        *self == Epilogue::default()
    }
}

/// A convolution: `y = conv(x) + bias`, then its epilogue.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    pub spec: ConvSpec,
    /// `c_out × (c_in·k·k)`, row-major (ONNX's OIHW flattened).
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub epi: Epilogue,
}

impl Conv {
    fn is_pointwise(&self) -> bool {
        self.spec.k == 1 && self.spec.stride == 1 && self.spec.pad == 0
    }
}

/// One step: a layer reading values `inputs` and writing value `output`.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub name: String,
    pub layer: Layer,
    /// Values read; a fused `Conv::add` is listed here too, last.
    pub inputs: Vec<usize>,
    pub output: usize,
}

/// A network: steps in execution order over values `0..values`; value 0 is the image.
#[derive(Clone, Debug, PartialEq)]
pub struct Net {
    /// The steps, in execution order.
    pub steps: Vec<Step>,
    /// Number of values (tensors); ids are `0..values`.
    pub values: usize,
    /// Id of the network's output value.
    pub output: usize,
    /// Output channels, known without a size because no accepted op changes channels by size.
    pub out_channels: usize,
}

/// The input value's id.
pub const INPUT: usize = 0;

impl Net {
    /// Reads `graph` (of default-domain opset `opset`); the error says which node or tensor
    /// the engine cannot run.
    pub fn from_graph(graph: &pb::GraphProto, opset: i64) -> Result<Net, String> {
        let mut consts: HashMap<&str, (Vec<i64>, Vec<f32>)> = HashMap::new();
        for t in &graph.initializer {
            consts.insert(t.name.as_str(), (t.dims.clone(), floats(t)?));
        }
        let inputs: Vec<&pb::ValueInfoProto> = graph
            .input
            .iter()
            .filter(|i| !consts.contains_key(i.name.as_str()))
            .collect();
        let [input] = inputs.as_slice() else {
            return Err(format!("expected 1 input, found {}", inputs.len()));
        };
        let mut ids: HashMap<&str, usize> = HashMap::from([(input.name.as_str(), INPUT)]);
        let mut steps = Vec::new();
        for node in &graph.node {
            let name = if node.name.is_empty() {
                node.output.first().cloned().unwrap_or_default()
            } else {
                node.name.clone()
            };
            if node.op_type == "Constant" {
                let [out] = node.output.as_slice() else {
                    return Err(format!("Constant `{name}` must have one output"));
                };
                let t = node
                    .attribute
                    .iter()
                    .find(|a| a.name == "value")
                    .and_then(|a| a.t.as_ref())
                    .ok_or_else(|| format!("Constant `{name}` has no tensor `value`"))?;
                consts.insert(out.as_str(), (t.dims.clone(), floats(t)?));
                continue;
            }
            if !node.domain.is_empty() && node.domain != "ai.onnx" {
                return Err(format!("node `{name}` is in domain `{}`", node.domain));
            }
            let [out] = node.output.as_slice() else {
                return Err(format!("node `{name}` has {} outputs", node.output.len()));
            };
            let value = |i: usize| -> Result<usize, String> {
                let n = node
                    .input
                    .get(i)
                    .ok_or_else(|| format!("node `{name}` lacks input {i}"))?;
                ids.get(n.as_str()).copied().ok_or_else(|| {
                    format!("node `{name}` reads `{n}`, which no earlier node produces")
                })
            };
            let konst = |i: usize| -> Option<&(Vec<i64>, Vec<f32>)> {
                node.input
                    .get(i)
                    .filter(|n| !n.is_empty())
                    .and_then(|n| consts.get(n.as_str()))
            };
            let (layer, inputs) = match node.op_type.as_str() {
                "Conv" => {
                    let (dims, w) = konst(1)
                        .ok_or_else(|| format!("Conv `{name}`: weight is not a constant"))?;
                    let bias = match node.input.get(2).filter(|n| !n.is_empty()) {
                        None => None,
                        Some(_) => Some(
                            &konst(2)
                                .ok_or_else(|| format!("Conv `{name}`: bias is not a constant"))?
                                .1,
                        ),
                    };
                    (
                        Layer::Conv(conv(node, &name, dims, w, bias)?),
                        vec![value(0)?],
                    )
                }
                "Relu" => (Layer::Relu, vec![value(0)?]),
                "Add" => {
                    if node.input.len() != 2 || konst(0).is_some() || konst(1).is_some() {
                        return Err(format!(
                            "Add `{name}` must add two computed tensors (no constants)"
                        ));
                    }
                    (Layer::Add, vec![value(0)?, value(1)?])
                }
                "Concat" => {
                    let axis = int_attr(node, "axis").unwrap_or(1);
                    if axis != 1 && axis != -3 {
                        return Err(format!("Concat `{name}` on axis {axis}, not channels"));
                    }
                    let ins = (0..node.input.len()).map(value).collect::<Result<_, _>>()?;
                    (Layer::Concat, ins)
                }
                "Resize" if opset < 11 => {
                    return Err(format!(
                        "Resize `{name}` of opset {opset} (before half_pixel)"
                    ));
                }
                "Resize" => {
                    let factor = resize_factor(node, &name, konst(2), node.input.len())?;
                    let epi = Epilogue::default();
                    (Layer::Resize { factor, epi }, vec![value(0)?])
                }
                op => return Err(format!("op `{op}` (node `{name}`) is not supported")),
            };
            let output = ids.len();
            if ids.insert(out.as_str(), output).is_some() {
                return Err(format!("tensor `{out}` is produced twice"));
            }
            steps.push(Step {
                name,
                layer,
                inputs,
                output,
            });
        }
        let [out] = graph.output.as_slice() else {
            return Err(format!("expected 1 output, found {}", graph.output.len()));
        };
        let output = *ids
            .get(out.name.as_str())
            .ok_or_else(|| format!("output `{}` is not computed by the graph", out.name))?;
        if output == INPUT {
            return Err("the output is the input".into());
        }
        let mut net = Net {
            steps,
            values: ids.len(),
            output,
            out_channels: 0,
        };
        net.out_channels = net.channels()?[output];
        net.fuse();
        net.split_concat_convs();
        net.prune();
        Ok(net)
    }

    /// Channels of every value (the input has 3), checking each layer's channel contract.
    pub fn channels(&self) -> Result<Vec<usize>, String> {
        let mut c = vec![0usize; self.values];
        c[INPUT] = 3;
        for s in &self.steps {
            let ins: Vec<usize> = s.inputs.iter().map(|&i| c[i]).collect();
            c[s.output] = match &s.layer {
                Layer::Conv(conv) => {
                    if ins[0] != conv.spec.c_in {
                        return Err(format!(
                            "Conv `{}` expects {} channels, gets {}",
                            s.name, conv.spec.c_in, ins[0]
                        ));
                    }
                    if ins.len() > 1 && ins[1] != conv.spec.c_out {
                        return Err(format!("`{}` adds tensors of different channels", s.name));
                    }
                    conv.spec.c_out
                }
                Layer::Resize { .. } => {
                    if ins.len() > 1 && ins[1] != ins[0] {
                        return Err(format!("`{}` adds tensors of different channels", s.name));
                    }
                    ins[0]
                }
                Layer::Relu => ins[0],
                Layer::Add => {
                    if ins[0] != ins[1] {
                        return Err(format!(
                            "Add `{}` adds {} and {} channels",
                            s.name, ins[0], ins[1]
                        ));
                    }
                    ins[0]
                }
                Layer::Concat => ins.iter().sum(),
            };
        }
        Ok(c)
    }

    /// How many steps read each value (the output counts as read once more).
    pub fn readers(&self) -> Vec<usize> {
        let mut n = vec![0; self.values];
        for s in &self.steps {
            for &i in &s.inputs {
                n[i] += 1;
            }
        }
        n[self.output] += 1;
        n
    }

    /// Folds ReLU into the convolution before it, and an Add into a convolution that produces
    /// one of its operands; each only where the convolution's output has no other reader. The
    /// fused step runs where the Add was, when both operands exist.
    fn fuse(&mut self) {
        let producer = |steps: &[Step], v: usize| steps.iter().position(|s| s.output == v);
        let mut i = 0;
        while i < self.steps.len() {
            let readers = self.readers();
            let s = &self.steps[i];
            match s.layer {
                Layer::Relu => {
                    let v = s.inputs[0];
                    if let Some(p) = producer(&self.steps, v)
                        && readers[v] == 1
                        && matches!(&self.steps[p].layer, Layer::Conv(c) if c.epi.is_none())
                    {
                        let out = s.output;
                        if let Layer::Conv(c) = &mut self.steps[p].layer {
                            c.epi.relu = true;
                        }
                        self.steps[p].output = out;
                        self.steps.remove(i);
                        continue;
                    }
                }
                Layer::Add => {
                    let (a, b) = (s.inputs[0], s.inputs[1]);
                    let conv_of = |v: usize| {
                        producer(&self.steps, v).filter(|&p| {
                            readers[v] == 1
                                && matches!(&self.steps[p].layer, Layer::Conv(c) if c.epi.add.is_none() && !c.epi.relu_after)
                        })
                    };
                    // Prefer the later convolution: the earlier operand's life grows less.
                    let pick = match (conv_of(a), conv_of(b)) {
                        (Some(pa), Some(pb)) if pa > pb => Some((pa, b)),
                        (_, Some(pb)) if a != b => Some((pb, a)),
                        (Some(pa), None) if a != b => Some((pa, b)),
                        _ => None,
                    };
                    if let Some((p, other)) = pick {
                        let out = s.output;
                        let mut fused = self.steps[p].clone();
                        if let Layer::Conv(c) = &mut fused.layer {
                            c.epi.add = Some(other);
                        }
                        fused.inputs.push(other);
                        fused.output = out;
                        self.steps[i] = fused;
                        self.steps.remove(p);
                        continue;
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }
}

impl Net {
    /// Rewrites a 1×1 convolution over a channel concat as a sum of 1×1 convolutions, one per
    /// concat input, and moves each past an upsampling that feeds it (a 1×1 convolution and a
    /// bilinear resize are both linear, per pixel and per channel respectively, so they
    /// commute). Our head concatenates three upsampled decoder levels: it then convolves them
    /// at their own resolution (4, 16 and 64 times fewer pixels) and upsamples while summing,
    /// and the concat buffer disappears. Equal up to float rounding.
    fn split_concat_convs(&mut self) {
        let mut i = 0;
        while i < self.steps.len() {
            let readers = self.readers();
            let producer = |steps: &[Step], v: usize| steps.iter().position(|s| s.output == v);
            let Layer::Conv(conv) = &self.steps[i].layer else {
                i += 1;
                continue;
            };
            let cat_value = self.steps[i].inputs[0];
            let cat = producer(&self.steps, cat_value).filter(|&p| {
                self.steps[p].layer == Layer::Concat
                    && readers[cat_value] == 1
                    && conv.is_pointwise()
                    && conv.epi.add.is_none()
                    && !conv.epi.relu_after
            });
            let Some(cat) = cat else {
                i += 1;
                continue;
            };
            let Ok(channels) = self.channels() else {
                return;
            };
            let (conv, name, output) = (
                conv.clone(),
                self.steps[i].name.clone(),
                self.steps[i].output,
            );
            let parts = self.steps[cat].inputs.clone();
            let (c_in, c_out) = (conv.spec.c_in, conv.spec.c_out);
            let mut new_steps = Vec::new();
            let mut acc: Option<usize> = None;
            let mut off = 0;
            for (j, &x) in parts.iter().enumerate() {
                let cj = channels[x];
                let weight: Vec<f32> = (0..c_out)
                    .flat_map(|o| {
                        conv.weight[o * c_in + off..o * c_in + off + cj]
                            .iter()
                            .copied()
                    })
                    .collect();
                off += cj;
                let last = j + 1 == parts.len();
                let out = if last { output } else { self.new_value() };
                let epi = Epilogue {
                    relu: false,
                    add: acc,
                    relu_after: last && conv.epi.relu,
                };
                let part = Conv {
                    spec: ConvSpec {
                        c_in: cj,
                        ..conv.spec
                    },
                    weight,
                    bias: if j == 0 {
                        conv.bias.clone()
                    } else {
                        vec![0.0; c_out]
                    },
                    epi: Epilogue::default(),
                };
                let up = producer(&self.steps, x).and_then(|p| match self.steps[p].layer {
                    Layer::Resize { factor, epi }
                        if epi.is_none() && readers[x] == 1 && c_out <= cj =>
                    {
                        Some((factor, self.steps[p].inputs[0]))
                    }
                    _ => None,
                });
                let with_add = |mut ins: Vec<usize>| {
                    ins.extend(acc);
                    ins
                };
                match up {
                    Some((factor, z)) => {
                        let q = self.new_value();
                        new_steps.push(Step {
                            name: format!("{name}.part{j}"),
                            layer: Layer::Conv(part),
                            inputs: vec![z],
                            output: q,
                        });
                        new_steps.push(Step {
                            name: format!("{name}.part{j}.up"),
                            layer: Layer::Resize { factor, epi },
                            inputs: with_add(vec![q]),
                            output: out,
                        });
                    }
                    None => new_steps.push(Step {
                        name: format!("{name}.part{j}"),
                        layer: Layer::Conv(Conv { epi, ..part }),
                        inputs: with_add(vec![x]),
                        output: out,
                    }),
                }
                acc = Some(out);
            }
            let n = new_steps.len();
            self.steps.splice(i..=i, new_steps);
            i += n;
        }
    }

    /// Removes a final plain upsampling and returns its factor, so the caller can hand out the
    /// logits before it; `None` (and nothing removed) when the graph does not end in one.
    pub fn split_final_upsampling(&mut self) -> Option<usize> {
        let last = self.steps.last()?;
        let readers = self.readers();
        match last.layer {
            Layer::Resize { factor, epi }
                if epi.is_none() && last.output == self.output && readers[last.inputs[0]] == 1 =>
            {
                self.output = last.inputs[0];
                self.steps.pop();
                Some(factor)
            }
            _ => None,
        }
    }

    fn new_value(&mut self) -> usize {
        self.values += 1;
        self.values - 1
    }

    /// Drops steps whose output nobody reads (left behind by rewrites).
    fn prune(&mut self) {
        loop {
            let readers = self.readers();
            let before = self.steps.len();
            self.steps.retain(|s| readers[s.output] > 0);
            if self.steps.len() == before {
                return;
            }
        }
    }
}

/// A tensor's values as f32: `raw_data` (little-endian) or `float_data`.
fn floats(t: &pb::TensorProto) -> Result<Vec<f32>, String> {
    const FLOAT: i32 = pb::tensor_proto::DataType::Float as i32;
    const INT64: i32 = pb::tensor_proto::DataType::Int64 as i32;
    match t.data_type {
        FLOAT if !t.raw_data.is_empty() => {
            if !t.raw_data.len().is_multiple_of(4) {
                return Err(format!("tensor `{}` has a truncated raw_data", t.name));
            }
            Ok(t.raw_data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        }
        FLOAT => Ok(t.float_data.clone()),
        // Shapes and axes: kept as floats only to be read as such (none is used as weights).
        INT64 if !t.raw_data.is_empty() => Ok(t
            .raw_data
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect()),
        INT64 => Ok(t.int64_data.iter().map(|&v| v as f32).collect()),
        _ => Ok(Vec::new()),
    }
}

fn attr<'a>(node: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn int_attr(node: &pb::NodeProto, name: &str) -> Option<i64> {
    attr(node, name).map(|a| a.i)
}

fn ints_attr(node: &pb::NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

fn str_attr(node: &pb::NodeProto, name: &str) -> Option<String> {
    attr(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

/// A square, undilated, ungrouped, symmetrically padded convolution.
fn conv(
    node: &pb::NodeProto,
    name: &str,
    dims: &[i64],
    w: &[f32],
    bias: Option<&Vec<f32>>,
) -> Result<Conv, String> {
    let bad = |m: &str| Err(format!("Conv `{name}`: {m}"));
    let &[co, ci, kh, kw] = dims else {
        return bad("weight is not 4-D");
    };
    let to = |v: i64| usize::try_from(v).ok().filter(|&v| v > 0);
    let (Some(c_out), Some(c_in), Some(k), Some(kw)) = (to(co), to(ci), to(kh), to(kw)) else {
        return bad("weight has an empty dimension");
    };
    if k != kw {
        return bad("kernel is not square");
    }
    // Checked: a damaged file's dims may overflow the product (found by tests/fuzz.rs).
    let want = [c_in, k, k]
        .iter()
        .try_fold(c_out, |acc, &d| acc.checked_mul(d));
    if want != Some(w.len()) {
        return bad("weight data does not match its dims");
    }
    if int_attr(node, "group").unwrap_or(1) != 1 {
        return bad("grouped convolution");
    }
    if ints_attr(node, "dilations").is_some_and(|d| d.iter().any(|&v| v != 1)) {
        return bad("dilated convolution");
    }
    if str_attr(node, "auto_pad").is_some_and(|p| p != "NOTSET" && !p.is_empty()) {
        return bad("auto_pad");
    }
    let strides = ints_attr(node, "strides").unwrap_or_else(|| vec![1, 1]);
    let pads = ints_attr(node, "pads").unwrap_or_else(|| vec![0; 4]);
    let (Some(&s), Some(&p)) = (strides.first(), pads.first()) else {
        return bad("empty strides or pads");
    };
    if strides.iter().any(|&v| v != s) || pads.iter().any(|&v| v != p) || s < 1 || p < 0 {
        return bad("strides or pads differ between axes");
    }
    let bias = match bias {
        Some(b) if b.len() == c_out => b.clone(),
        Some(_) => return bad("bias length differs from the output channels"),
        None => vec![0.0; c_out],
    };
    Ok(Conv {
        spec: ConvSpec {
            c_in,
            c_out,
            k,
            stride: s as usize,
            pad: p as usize,
        },
        weight: w.to_vec(),
        bias,
        epi: Epilogue::default(),
    })
}

/// The integer upsampling factor of a linear, half-pixel Resize with constant scales
/// `[1, 1, f, f]`.
fn resize_factor(
    node: &pb::NodeProto,
    name: &str,
    scales: Option<&(Vec<i64>, Vec<f32>)>,
    n_inputs: usize,
) -> Result<usize, String> {
    let bad = |m: String| Err(format!("Resize `{name}`: {m}"));
    let mode = str_attr(node, "mode").unwrap_or_else(|| "nearest".into());
    if mode != "linear" {
        return bad(format!("mode `{mode}`"));
    }
    let ctm =
        str_attr(node, "coordinate_transformation_mode").unwrap_or_else(|| "half_pixel".into());
    // pytorch_half_pixel differs only for an output of length 1, which upsampling never makes.
    if ctm != "half_pixel" && ctm != "pytorch_half_pixel" {
        return bad(format!("coordinate_transformation_mode `{ctm}`"));
    }
    if int_attr(node, "antialias").unwrap_or(0) != 0 || attr(node, "axes").is_some() {
        return bad("antialias or axes".into());
    }
    if n_inputs > 3 {
        return bad("sizes instead of scales".into());
    }
    let Some((_, s)) = scales else {
        return bad("scales are not a constant".into());
    };
    match s.as_slice() {
        &[1.0, 1.0, a, b] if a == b && a >= 1.0 && a.fract() == 0.0 && a <= 64.0 => Ok(a as usize),
        other => bad(format!(
            "scales {other:?} are not [1, 1, f, f] with an integer f"
        )),
    }
}
