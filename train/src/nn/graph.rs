//! The model as a small static graph. The executor (forward/backward), the ONNX exporter and the
//! checkpoint format all walk this one description, so they cannot disagree about the network.
use crate::backend::ConvSpec;
use serde::{Deserialize, Serialize};

/// Index of a node in [`Graph::nodes`]. Inputs always have smaller indices (topological order).
pub type NodeId = usize;

/// One operation. Parameters are named by `param` prefix:
/// conv → `{param}.weight` `[c_out, c_in, k, k]` and, with `bias`, `{param}.bias` `[c_out]`;
/// batch norm → `{param}.gamma`, `{param}.beta`, `{param}.running_mean`, `{param}.running_var`
/// (each `[channels]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// The normalised image batch `[n, 3, h, w]`.
    Input,
    /// 2-D convolution of its one input.
    Conv {
        /// Parameter name prefix.
        param: String,
        /// Channels, kernel size, stride and padding.
        spec: ConvSpec,
        /// Whether it has a `{param}.bias`.
        bias: bool,
    },
    /// Batch normalisation over channels (batch statistics in training, running ones otherwise).
    BatchNorm {
        /// Parameter name prefix.
        param: String,
        /// Number of channels normalised.
        channels: usize,
    },
    /// Elementwise `max(x, 0)`.
    Relu,
    /// Bilinear upsampling (half-pixel) by an integer factor.
    Upsample {
        /// Scale factor of height and width.
        factor: usize,
    },
    /// Elementwise sum of two same-shaped inputs.
    Add,
    /// Channel concatenation of its inputs, in order.
    Concat,
    /// Per-pixel L2 normalisation over channels (projection heads; training only).
    L2Normalize,
}

/// One node of a [`Graph`]: an operation applied to earlier nodes' outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Human-readable name; also the ONNX node's name, so the exporter needs it unique.
    pub name: String,
    /// What it computes.
    pub op: Op,
    /// Its inputs, all with smaller ids.
    pub inputs: Vec<NodeId>,
    /// Part of the projection heads: never run at inference, never exported.
    pub training_only: bool,
}

/// A whole network with its named outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    /// All nodes, in topological order.
    pub nodes: Vec<Node>,
    /// Segmentation logits at input resolution, `[n, classes, h, w]`.
    pub logits: NodeId,
    /// Encoder features at strides 4, 8, 16, 32.
    pub features: [NodeId; 4],
    /// L2-normalised projection-head outputs at strides 4, 8, 16, 32 (training only).
    pub projections: [NodeId; 4],
    /// Number of segmentation classes (channels of `logits`).
    pub num_classes: usize,
    /// Input height and width must be multiples of this (the deepest stride).
    pub size_multiple: usize,
    /// Convolutions (by `param`) whose weights start at zero rather than Kaiming: a residual
    /// branch added to a trained network then leaves its output unchanged at the first step.
    #[serde(default)]
    pub zero_init: Vec<String>,
}

/// A parameter's role, for initialisation, weight decay and export.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParamKind {
    /// Convolution kernel `[c_out, c_in, k, k]`.
    ConvWeight,
    /// Convolution bias `[c_out]`.
    ConvBias,
    /// Batch-norm scale γ.
    BnGamma,
    /// Batch-norm shift β.
    BnBeta,
    /// Running statistics: state, not trained.
    BnRunningMean,
    /// Running variance: state, not trained.
    BnRunningVar,
}

/// Name, dims and kind of one parameter tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamSpec {
    /// `{param}.{suffix}`, e.g. `enc.stem1.conv.weight`.
    pub name: String,
    /// Tensor shape.
    pub dims: Vec<usize>,
    /// Its role.
    pub kind: ParamKind,
    /// Belongs to a training-only node.
    pub training_only: bool,
}

impl ParamSpec {
    /// Number of scalars (product of `dims`).
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }
    /// Whether SGD updates it (everything but batch-norm running statistics).
    pub fn trainable(&self) -> bool {
        !matches!(
            self.kind,
            ParamKind::BnRunningMean | ParamKind::BnRunningVar
        )
    }
}

impl Graph {
    /// Every parameter the graph uses, in node order.
    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let mut out = Vec::new();
        for node in &self.nodes {
            let t = node.training_only;
            match &node.op {
                Op::Conv { param, spec, bias } => {
                    out.push(ParamSpec {
                        name: format!("{param}.weight"),
                        dims: vec![spec.c_out, spec.c_in, spec.k, spec.k],
                        kind: ParamKind::ConvWeight,
                        training_only: t,
                    });
                    if *bias {
                        out.push(ParamSpec {
                            name: format!("{param}.bias"),
                            dims: vec![spec.c_out],
                            kind: ParamKind::ConvBias,
                            training_only: t,
                        });
                    }
                }
                Op::BatchNorm { param, channels } => {
                    for (suffix, kind) in [
                        ("gamma", ParamKind::BnGamma),
                        ("beta", ParamKind::BnBeta),
                        ("running_mean", ParamKind::BnRunningMean),
                        ("running_var", ParamKind::BnRunningVar),
                    ] {
                        out.push(ParamSpec {
                            name: format!("{param}.{suffix}"),
                            dims: vec![*channels],
                            kind,
                            training_only: t,
                        });
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Nodes that consume node `id`.
    pub fn consumers(&self, id: NodeId) -> Vec<NodeId> {
        (0..self.nodes.len())
            .filter(|&j| self.nodes[j].inputs.contains(&id))
            .collect()
    }
}

/// Builder used by the model definitions.
#[derive(Default)]
pub struct GraphBuilder {
    /// Nodes added so far.
    pub nodes: Vec<Node>,
    /// Marks the nodes added while set as training-only (projection heads).
    pub training_only: bool,
}

impl GraphBuilder {
    /// Appends a node and returns its id.
    pub fn add(&mut self, name: impl Into<String>, op: Op, inputs: &[NodeId]) -> NodeId {
        self.nodes.push(Node {
            name: name.into(),
            op,
            inputs: inputs.to_vec(),
            training_only: self.training_only,
        });
        self.nodes.len() - 1
    }
    /// Appends the `input` node.
    pub fn input(&mut self) -> NodeId {
        self.add("input", Op::Input, &[])
    }
    /// Conv (no bias) → BN → ReLU, the network's basic unit.
    pub fn conv_bn_relu(
        &mut self,
        name: &str,
        x: NodeId,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
    ) -> NodeId {
        let spec = ConvSpec {
            c_in,
            c_out,
            k,
            stride,
            pad: k / 2,
        };
        let c = self.add(
            format!("{name}.conv"),
            Op::Conv {
                param: format!("{name}.conv"),
                spec,
                bias: false,
            },
            &[x],
        );
        let b = self.add(
            format!("{name}.bn"),
            Op::BatchNorm {
                param: format!("{name}.bn"),
                channels: c_out,
            },
            &[c],
        );
        self.add(format!("{name}.relu"), Op::Relu, &[b])
    }
    /// Conv with bias, no norm (projections, classifier).
    pub fn conv(&mut self, name: &str, x: NodeId, c_in: usize, c_out: usize, k: usize) -> NodeId {
        let spec = ConvSpec {
            c_in,
            c_out,
            k,
            stride: 1,
            pad: k / 2,
        };
        self.add(
            name,
            Op::Conv {
                param: name.to_string(),
                spec,
                bias: true,
            },
            &[x],
        )
    }
}
