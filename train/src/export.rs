//! ONNX export of the inference graph: batch norm folded into the preceding convolution,
//! training-only nodes (projection heads) dropped, metadata embedded. Written with tract's prost
//! types so no protobuf toolchain is needed, and checked by onnx.checker and onnxruntime in the
//! parity tests.
use crate::backend::Shape;
use crate::model::infer_shapes;
use crate::nn::graph::{Graph, NodeId, Op};
use crate::{Error, Result};
use contextrast_model::atomic::write_atomic;
use contextrast_model::meta::ModelMeta;
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use tract_onnx::pb;

/// Parameters on the host, keyed by the names of [`Graph::param_specs`].
pub type HostParams = BTreeMap<String, Vec<f32>>;

/// Opset 13: supported by tract (9–18), onnxruntime and TensorRT on JetPack alike; Resize there
/// takes `roi` and `scales` as inputs.
pub const OPSET: i64 = 13;
/// IR version 8 (ONNX 1.10+), the lowest that every consumer above reads with opset 13.
pub const IR_VERSION: i64 = 8;
pub use contextrast_model::BN_EPS;
/// Graph input and output names: the runtime and the Python tools look them up by name.
pub const INPUT_NAME: &str = "image";
/// Name of the graph output, the `[N, classes, H, W]` logits.
pub const OUTPUT_NAME: &str = "logits";

/// Writes `graph` with `params` as an ONNX model at `path` (atomically). The input `image` is
/// `[N, 3, H, W]` float with symbolic N, H, W (any multiple of `graph.size_multiple` works); the
/// output `logits` is `[N, C, H, W]`.
pub fn export_onnx(
    graph: &Graph,
    params: &HostParams,
    meta: &ModelMeta,
    path: &Path,
) -> Result<()> {
    let model = build_model(graph, params, meta).map_err(|msg| Error::Onnx {
        path: path.to_path_buf(),
        msg,
    })?;
    Ok(write_atomic(path, &model.encode_to_vec())?)
}

/// The ONNX model in memory; the error message says what is wrong (the caller adds the path).
pub fn build_model(
    graph: &Graph,
    params: &HostParams,
    meta: &ModelMeta,
) -> std::result::Result<pb::ModelProto, String> {
    if meta.num_classes() != graph.num_classes {
        return Err(format!(
            "metadata lists {} classes, the graph has {}",
            meta.num_classes(),
            graph.num_classes
        ));
    }
    if meta.size_multiple != graph.size_multiple {
        return Err(format!(
            "metadata size_multiple {} differs from the graph's {}",
            meta.size_multiple, graph.size_multiple
        ));
    }
    let m = graph.size_multiple;
    infer_shapes(graph, Shape::new(1, 3, m, m)).map_err(|e| e.to_string())?;
    let props = meta.to_props()?;

    let mut b = OnnxBuilder {
        graph,
        params,
        needed: BTreeSet::new(),
        nodes: Vec::new(),
        initializers: Vec::new(),
    };
    b.needed = b.export_set()?;
    for id in b.needed.clone() {
        b.emit(id)?;
    }
    let input = value_info(INPUT_NAME, vec![sym("N"), dim(3), sym("H"), sym("W")]);
    let output = value_info(
        OUTPUT_NAME,
        vec![sym("N"), dim(graph.num_classes as i64), sym("H"), sym("W")],
    );
    Ok(pb::ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "contextrast".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: "ContextrastNet segmentation (inference graph; batch norm folded)".into(),
        graph: Some(pb::GraphProto {
            name: "contextrast_net".into(),
            node: b.nodes,
            initializer: b.initializers,
            input: vec![input],
            output: vec![output],
            ..Default::default()
        }),
        metadata_props: props
            .into_iter()
            .map(|(key, value)| pb::StringStringEntryProto { key, value })
            .collect(),
        ..Default::default()
    })
}

/// Folds an inference-mode batch norm into the convolution before it:
/// `s = γ / √(var + eps)`, `W' = s·W` (per output channel), `b' = s·(b − mean) + β`.
/// Computed in f64 so folding adds no error beyond the final rounding to f32.
pub fn fold_batchnorm(
    weight: &[f32],
    bias: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
) -> (Vec<f32>, Vec<f32>) {
    let c_out = gamma.len();
    let per_out = weight.len() / c_out.max(1);
    let mut w = Vec::with_capacity(weight.len());
    let mut b = Vec::with_capacity(c_out);
    for o in 0..c_out {
        let s = gamma[o] as f64 / (var[o] as f64 + eps as f64).sqrt();
        w.extend(
            weight[o * per_out..(o + 1) * per_out]
                .iter()
                .map(|&v| (v as f64 * s) as f32),
        );
        let b0 = bias.map_or(0.0, |b| b[o] as f64);
        b.push((s * (b0 - mean[o] as f64) + beta[o] as f64) as f32);
    }
    (w, b)
}

struct OnnxBuilder<'a> {
    graph: &'a Graph,
    params: &'a HostParams,
    /// The nodes the logits depend on; nothing else is exported.
    needed: BTreeSet<NodeId>,
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
}

impl<'a> OnnxBuilder<'a> {
    /// The nodes the logits depend on (iterated in id order, which is topological). Walking
    /// back from the logits rather than filtering `training_only` also drops any dead branch.
    fn export_set(&self) -> std::result::Result<BTreeSet<NodeId>, String> {
        let nodes = &self.graph.nodes;
        let mut needed = BTreeSet::new();
        let mut stack = vec![self.graph.logits];
        while let Some(id) = stack.pop() {
            let node = nodes
                .get(id)
                .ok_or_else(|| format!("node id {id} does not exist"))?;
            if node.training_only {
                return Err(format!(
                    "node `{}` is training-only but the logits depend on it",
                    node.name
                ));
            }
            if needed.insert(id) {
                stack.extend(node.inputs.iter().copied());
            }
        }
        let names: BTreeSet<&str> = needed.iter().map(|&i| nodes[i].name.as_str()).collect();
        if names.len() != needed.len() {
            return Err("node names are not unique".into());
        }
        let inputs = needed.iter().filter(|&&i| nodes[i].op == Op::Input).count();
        if inputs != 1 {
            return Err(format!(
                "the logits depend on {inputs} input nodes, expected 1"
            ));
        }
        Ok(needed)
    }

    /// Exported consumers of node `id`.
    fn consumers(&self, id: NodeId) -> Vec<NodeId> {
        self.graph
            .consumers(id)
            .into_iter()
            .filter(|c| self.needed.contains(c))
            .collect()
    }

    /// The ONNX tensor name of node `id`'s output.
    fn tensor(&self, id: NodeId) -> String {
        let node = &self.graph.nodes[id];
        if id == self.graph.logits {
            OUTPUT_NAME.into()
        } else if node.op == Op::Input {
            INPUT_NAME.into()
        } else {
            node.name.clone()
        }
    }

    fn param(&self, name: &str, len: usize) -> std::result::Result<&'a [f32], String> {
        let params: &'a HostParams = self.params;
        let v = params
            .get(name)
            .ok_or_else(|| format!("parameter `{name}` is missing"))?;
        if v.len() != len {
            return Err(format!(
                "parameter `{name}` has {} values, expected {len}",
                v.len()
            ));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(format!("parameter `{name}` holds NaN or infinity"));
        }
        Ok(v)
    }

    fn emit(&mut self, id: NodeId) -> std::result::Result<(), String> {
        let g = self.graph;
        let node = &g.nodes[id];
        let ins: Vec<String> = node.inputs.iter().map(|&i| self.tensor(i)).collect();
        let out = self.tensor(id);
        match &node.op {
            Op::Input => {}
            Op::Conv { .. } => {
                // A conv feeding a batch norm is emitted by that batch norm, folded.
                let consumers = self.consumers(id);
                let feeds_bn = consumers
                    .iter()
                    .any(|&c| matches!(g.nodes[c].op, Op::BatchNorm { .. }));
                if !feeds_bn {
                    self.conv(id, None, &ins[0], &out)?;
                }
            }
            Op::BatchNorm { param, channels } => {
                let conv = node.inputs[0];
                if !matches!(g.nodes[conv].op, Op::Conv { .. }) {
                    return Err(format!(
                        "batch norm `{}` does not follow a convolution (its input is `{}`); only conv → BN can be folded",
                        node.name, g.nodes[conv].name
                    ));
                }
                if self.consumers(conv).len() != 1 || conv == g.logits {
                    return Err(format!(
                        "convolution `{}` feeds batch norm `{}` and other nodes; folding would change them",
                        g.nodes[conv].name, node.name
                    ));
                }
                let c = *channels;
                let bn = [
                    self.param(&format!("{param}.gamma"), c)?,
                    self.param(&format!("{param}.beta"), c)?,
                    self.param(&format!("{param}.running_mean"), c)?,
                    self.param(&format!("{param}.running_var"), c)?,
                ];
                if bn[3].iter().any(|&v| v < 0.0) {
                    return Err(format!(
                        "batch norm `{}` has a negative running variance",
                        node.name
                    ));
                }
                let conv_in = self.tensor(g.nodes[conv].inputs[0]);
                self.conv(conv, Some(bn), &conv_in, &out)?;
            }
            Op::Relu => self.node("Relu", &node.name, ins, &out, vec![]),
            Op::Add => self.node("Add", &node.name, ins, &out, vec![]),
            Op::Concat => self.node("Concat", &node.name, ins, &out, vec![attr_int("axis", 1)]),
            Op::Upsample { factor } => {
                let scales = format!("{}.scales", node.name);
                let f = *factor as f32;
                self.initializers
                    .push(tensor_f32(&scales, &[4], &[1.0, 1.0, f, f]));
                let attrs = vec![
                    attr_str("mode", "linear"),
                    attr_str("coordinate_transformation_mode", "half_pixel"),
                ];
                // Opset 13 Resize: X, roi (empty name = absent), scales.
                self.node(
                    "Resize",
                    &node.name,
                    vec![ins[0].clone(), String::new(), scales],
                    &out,
                    attrs,
                );
            }
            Op::L2Normalize => {
                return Err(format!(
                    "node `{}` (L2Normalize) is not exportable outside the training heads",
                    node.name
                ));
            }
        }
        Ok(())
    }

    /// Emits conv node `id` reading `input` and writing `out`, with `bn` = (γ, β, mean, var) folded in.
    fn conv(
        &mut self,
        id: NodeId,
        bn: Option<[&'a [f32]; 4]>,
        input: &str,
        out: &str,
    ) -> std::result::Result<(), String> {
        let node = &self.graph.nodes[id];
        let Op::Conv { param, spec, bias } = &node.op else {
            return Err(format!("node `{}` is not a convolution", node.name));
        };
        let weight = self.param(&format!("{param}.weight"), spec.weight_len())?;
        let b = if *bias {
            Some(self.param(&format!("{param}.bias"), spec.c_out)?)
        } else {
            None
        };
        let (w, b) = match bn {
            Some([gamma, beta, mean, var]) => {
                let (w, b) = fold_batchnorm(weight, b, gamma, beta, mean, var, BN_EPS);
                (w, Some(b))
            }
            None => (weight.to_vec(), b.map(<[f32]>::to_vec)),
        };
        let wname = format!("{param}.weight");
        let dims = [spec.c_out, spec.c_in, spec.k, spec.k].map(|d| d as i64);
        self.initializers.push(tensor_f32(&wname, &dims, &w));
        let mut inputs = vec![input.to_string(), wname];
        if let Some(b) = b {
            let bname = format!("{param}.bias");
            self.initializers
                .push(tensor_f32(&bname, &[spec.c_out as i64], &b));
            inputs.push(bname);
        }
        let (k, s, p) = (spec.k as i64, spec.stride as i64, spec.pad as i64);
        let attrs = vec![
            attr_ints("kernel_shape", &[k, k]),
            attr_ints("strides", &[s, s]),
            attr_ints("pads", &[p, p, p, p]),
            attr_ints("dilations", &[1, 1]),
            attr_int("group", 1),
        ];
        let name = node.name.clone();
        self.node("Conv", &name, inputs, out, attrs);
        Ok(())
    }

    fn node(
        &mut self,
        op: &str,
        name: &str,
        input: Vec<String>,
        out: &str,
        attribute: Vec<pb::AttributeProto>,
    ) {
        self.nodes.push(pb::NodeProto {
            input,
            output: vec![out.to_string()],
            name: name.to_string(),
            op_type: op.to_string(),
            attribute,
            ..Default::default()
        });
    }
}

fn dim(v: i64) -> pb::tensor_shape_proto::Dimension {
    pb::tensor_shape_proto::Dimension {
        value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)),
        ..Default::default()
    }
}

fn sym(name: &str) -> pb::tensor_shape_proto::Dimension {
    pb::tensor_shape_proto::Dimension {
        value: Some(pb::tensor_shape_proto::dimension::Value::DimParam(
            name.into(),
        )),
        ..Default::default()
    }
}

/// A float tensor value description with the given dims.
pub(crate) fn value_info(
    name: &str,
    dims: Vec<pb::tensor_shape_proto::Dimension>,
) -> pb::ValueInfoProto {
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto { dim: dims }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A float initializer, little-endian `raw_data` as the ONNX spec prescribes.
fn tensor_f32(name: &str, dims: &[i64], data: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn attr_int(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

fn attr_ints(name: &str, ints: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

fn attr_str(name: &str, s: &str) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::String as i32,
        s: s.as_bytes().to_vec(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ConvSpec;
    use crate::model::{NetConfig, contextrast_net};
    use crate::nn::graph::GraphBuilder;
    use contextrast_model::meta::sample;

    /// Deterministic values in [-1, 1) (an LCG: enough for test data).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
            })
            .collect()
    }

    /// Naive single-image convolution, f64 accumulation.
    fn conv(
        x: &[f32],
        h: usize,
        w: usize,
        wt: &[f32],
        b: Option<&[f32]>,
        s: &ConvSpec,
    ) -> Vec<f32> {
        let (oh, ow) = s.out_hw(h, w);
        let mut y = vec![0f32; s.c_out * oh * ow];
        for o in 0..s.c_out {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = b.map_or(0.0, |b| b[o] as f64);
                    for c in 0..s.c_in {
                        for ky in 0..s.k {
                            for kx in 0..s.k {
                                let iy = (oy * s.stride + ky) as isize - s.pad as isize;
                                let ix = (ox * s.stride + kx) as isize - s.pad as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    let xv = x[(c * h + iy as usize) * w + ix as usize] as f64;
                                    acc += xv * wt[((o * s.c_in + c) * s.k + ky) * s.k + kx] as f64;
                                }
                            }
                        }
                    }
                    y[(o * oh + oy) * ow + ox] = acc as f32;
                }
            }
        }
        y
    }

    #[test]
    fn folded_conv_equals_conv_then_batchnorm() {
        let spec = ConvSpec {
            c_in: 3,
            c_out: 5,
            k: 3,
            stride: 2,
            pad: 1,
        };
        let (h, w) = (9, 7);
        let x = values(3 * h * w, 1);
        let wt = values(spec.weight_len(), 2);
        let gamma: Vec<f32> = values(5, 3).iter().map(|v| 1.0 + 0.5 * v).collect();
        let beta = values(5, 4);
        let mean = values(5, 5);
        let var: Vec<f32> = values(5, 6).iter().map(|v| 0.05 + v.abs()).collect();
        for bias in [None, Some(values(5, 7))] {
            let y = conv(&x, h, w, &wt, bias.as_deref(), &spec);
            let hw = y.len() / 5;
            let want: Vec<f32> = (0..y.len())
                .map(|i| {
                    let c = i / hw;
                    (y[i] - mean[c]) / (var[c] + BN_EPS).sqrt() * gamma[c] + beta[c]
                })
                .collect();
            let (fw, fb) = fold_batchnorm(&wt, bias.as_deref(), &gamma, &beta, &mean, &var, BN_EPS);
            let got = conv(&x, h, w, &fw, Some(&fb), &spec);
            let max = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(max < 1e-5, "bias {:?}: max diff {max}", bias.is_some());
            // And the fold is not the identity: the outputs really changed.
            assert!(y.iter().zip(&want).any(|(a, b)| (a - b).abs() > 0.1));
        }
    }

    fn params_for(graph: &Graph) -> HostParams {
        graph
            .param_specs()
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let v = if s.name.ends_with("running_var") {
                    vec![1.0; s.numel()]
                } else {
                    values(s.numel(), i as u64)
                };
                (s.name, v)
            })
            .collect()
    }

    #[test]
    fn export_drops_heads_and_folds_every_bn() {
        let graph = contextrast_net(&NetConfig::default(), 4);
        let model = build_model(&graph, &params_for(&graph), &sample()).unwrap();
        let g = model.graph.unwrap();
        assert!(
            g.node
                .iter()
                .all(|n| n.op_type != "BatchNormalization" && !n.name.starts_with("proj"))
        );
        // Every exported conv that had a BN gained a bias initializer.
        let bn_convs = graph
            .nodes
            .iter()
            .filter(|n| !n.training_only && matches!(n.op, Op::BatchNorm { .. }))
            .count();
        let biases = g
            .initializer
            .iter()
            .filter(|t| t.name.ends_with(".bias"))
            .count();
        let conv_biases = graph
            .nodes
            .iter()
            .filter(|n| !n.training_only && matches!(n.op, Op::Conv { bias: true, .. }))
            .count();
        assert_eq!(biases, bn_convs + conv_biases);
        assert_eq!(g.output[0].name, OUTPUT_NAME);
        assert!(g.node.iter().any(|n| n.output == [OUTPUT_NAME]));
    }

    #[test]
    fn batchnorm_not_after_conv_is_refused() {
        let mut b = GraphBuilder::default();
        let x = b.input();
        let r = b.add("pre", Op::Relu, &[x]);
        let bn = b.add(
            "lonely.bn",
            Op::BatchNorm {
                param: "lonely.bn".into(),
                channels: 3,
            },
            &[r],
        );
        let graph = Graph {
            nodes: b.nodes,
            logits: bn,
            features: [0; 4],
            projections: [0; 4],
            num_classes: 3,
            size_multiple: 32,
            zero_init: Vec::new(),
        };
        let mut meta = sample();
        meta.class_names.truncate(3);
        meta.colors.truncate(3);
        meta.defect.truncate(3);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.onnx");
        let err = export_onnx(&graph, &params_for(&graph), &meta, &path)
            .unwrap_err()
            .to_string();
        contextrast_model::testing::assert_mentions(
            &err,
            &["bad.onnx", "`lonely.bn` does not follow a convolution"],
        );
        assert!(!path.exists());
    }

    #[test]
    fn missing_parameter_and_class_mismatch_are_refused() {
        let graph = contextrast_net(&NetConfig::default(), 4);
        let mut params = params_for(&graph);
        params.remove("head.fuse.bn.running_var");
        let err = build_model(&graph, &params, &sample()).unwrap_err();
        contextrast_model::testing::assert_mentions(&err, &["head.fuse.bn.running_var", "missing"]);
        // Training-only parameters are not needed for export.
        let mut params = params_for(&graph);
        params.retain(|k, _| !k.starts_with("proj"));
        assert!(build_model(&graph, &params, &sample()).is_ok());
        let graph5 = contextrast_net(&NetConfig::default(), 5);
        let err = build_model(&graph5, &params_for(&graph5), &sample()).unwrap_err();
        assert!(err.contains("4 classes") && err.contains("5"), "{err}");
    }
}
