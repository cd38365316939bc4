//! Runs a [`Graph`] forward and backward on any backend. Activations of every node are kept for
//! the backward pass; training-only nodes (projection heads) run only when asked for.
use crate::backend::ops::{BatchNormEval, BatchNormSaved, BatchNormTrain};
use crate::backend::{Backend, Shape};
use crate::model::infer_shapes;
use crate::nn::graph::{Graph, NodeId, Op};
use crate::nn::params::Params;
use crate::{Error, Result};

/// Batch norm with batch statistics (and running-stat updates), or with the running ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics; running statistics updated.
    Train,
    /// Running statistics, left unchanged.
    Eval,
}

/// Batch-norm momentum, PyTorch's default; the epsilon is the model format's (the exporter folds
/// with the same one).
pub const BN_MOMENTUM: f32 = 0.1;
pub use contextrast_model::BN_EPS;

/// Every node's output of one forward pass.
pub struct Activations<B: Backend> {
    /// Each node's output, by [`NodeId`]; `None` for nodes that did not run.
    pub values: Vec<Option<B::Buf>>,
    /// Each node's output shape, by [`NodeId`] (inferred for every node).
    pub shapes: Vec<Shape>,
    bn_saved: Vec<Option<(B::Buf, B::Buf)>>,
    mode: Mode,
}

impl<B: Backend> Activations<B> {
    /// The output of node `id`, if it ran.
    pub fn get(&self, id: NodeId) -> Result<&B::Buf> {
        self.values[id]
            .as_ref()
            .ok_or_else(|| Error::Shape(format!("node {id} did not run")))
    }
}

/// Gradients of the trainable parameters, aligned with `Params::specs` (`None` for state).
pub struct Grads<B: Backend> {
    /// One gradient per parameter; `None` for batch-norm running statistics.
    pub values: Vec<Option<B::Buf>>,
}

impl<B: Backend> Grads<B> {
    /// Zero gradients for every trainable parameter of `params`.
    pub fn zeros(be: &B, params: &Params<B>) -> Result<Self> {
        let values = params
            .specs
            .iter()
            .map(|s| {
                if s.trainable() {
                    be.zeros(s.numel()).map(Some)
                } else {
                    Ok(None)
                }
            })
            .collect::<Result<_>>()?;
        Ok(Grads { values })
    }
    /// Sets every gradient back to zero.
    pub fn clear(&mut self, be: &B) -> Result<()> {
        for g in self.values.iter_mut().flatten() {
            be.fill(g, 0.0)?;
        }
        Ok(())
    }
}

/// Forward pass. `with_heads` also runs the training-only projection heads.
pub fn forward<B: Backend>(
    be: &B,
    graph: &Graph,
    params: &mut Params<B>,
    input: B::Buf,
    shape: Shape,
    mode: Mode,
    with_heads: bool,
) -> Result<Activations<B>> {
    if shape.c != 3
        || !shape.h.is_multiple_of(graph.size_multiple)
        || !shape.w.is_multiple_of(graph.size_multiple)
    {
        return Err(Error::Shape(format!(
            "input {shape}: needs 3 channels and a size that is a multiple of {}",
            graph.size_multiple
        )));
    }
    if be.len(&input) != shape.numel() {
        return Err(Error::Shape(format!(
            "input buffer of {} for {shape}",
            be.len(&input)
        )));
    }
    let shapes = infer_shapes(graph, shape)?;
    let n = graph.nodes.len();
    let mut values: Vec<Option<B::Buf>> = (0..n).map(|_| None).collect();
    let mut bn_saved: Vec<Option<(B::Buf, B::Buf)>> = (0..n).map(|_| None).collect();
    let mut input = Some(input);
    for (id, node) in graph.nodes.iter().enumerate() {
        if node.training_only && !with_heads {
            continue;
        }
        let arg = |k: usize| -> Result<&B::Buf> {
            values[node.inputs[k]]
                .as_ref()
                .ok_or_else(|| Error::Shape(format!("node {}: input not computed", node.name)))
        };
        let xs = node.inputs.first().map(|&i| shapes[i]).unwrap_or(shape);
        let out = match &node.op {
            Op::Input => input
                .take()
                .ok_or_else(|| Error::Shape("two input nodes".into()))?,
            Op::Conv { param, spec, bias } => {
                let w = params.get(&format!("{param}.weight"))?;
                let b = if *bias {
                    Some(params.get(&format!("{param}.bias"))?)
                } else {
                    None
                };
                be.conv2d_forward(arg(0)?, xs, w, b, spec)?
            }
            Op::BatchNorm { param, .. } => {
                let g = params.index_of(&format!("{param}.gamma"))?;
                match mode {
                    Mode::Train => {
                        // gamma, beta, running_mean, running_var are consecutive (param_specs).
                        let (head, tail) = params.values.split_at_mut(g + 2);
                        let (rm, rv) = tail.split_at_mut(1);
                        let p = BatchNormTrain {
                            gamma: &head[g],
                            beta: &head[g + 1],
                            running_mean: &mut rm[0],
                            running_var: &mut rv[0],
                            momentum: BN_MOMENTUM,
                            eps: BN_EPS,
                        };
                        let (y, mean, invstd) = be.batchnorm_forward_train(arg(0)?, xs, p)?;
                        bn_saved[id] = Some((mean, invstd));
                        y
                    }
                    Mode::Eval => {
                        let v = &params.values;
                        let p = BatchNormEval {
                            gamma: &v[g],
                            beta: &v[g + 1],
                            running_mean: &v[g + 2],
                            running_var: &v[g + 3],
                            eps: BN_EPS,
                        };
                        be.batchnorm_forward_eval(arg(0)?, xs, p)?
                    }
                }
            }
            Op::Relu => be.relu_forward(arg(0)?)?,
            Op::Upsample { factor } => {
                be.resize_bilinear_forward(arg(0)?, xs, xs.h * factor, xs.w * factor)?
            }
            Op::Add => be.add(arg(0)?, arg(1)?)?,
            Op::Concat => {
                let parts: Vec<(&B::Buf, Shape)> = node
                    .inputs
                    .iter()
                    .map(|&i| {
                        values[i].as_ref().map(|b| (b, shapes[i])).ok_or_else(|| {
                            Error::Shape(format!("node {}: input missing", node.name))
                        })
                    })
                    .collect::<Result<_>>()?;
                be.concat_channels(&parts)?
            }
            Op::L2Normalize => be.l2_normalize_forward(arg(0)?, xs)?,
        };
        values[id] = Some(out);
    }
    Ok(Activations {
        values,
        shapes,
        bn_saved,
        mode,
    })
}

fn accumulate<B: Backend>(be: &B, slot: &mut Option<B::Buf>, g: B::Buf) -> Result<()> {
    match slot {
        Some(acc) => be.add_assign(acc, &g),
        None => {
            *slot = Some(g);
            Ok(())
        }
    }
}

/// Backward pass from gradients on output nodes (`seeds`), accumulating parameter gradients
/// into `grads`. Needs a `Mode::Train` forward.
pub fn backward<B: Backend>(
    be: &B,
    graph: &Graph,
    params: &Params<B>,
    acts: &Activations<B>,
    seeds: Vec<(NodeId, B::Buf)>,
    grads: &mut Grads<B>,
) -> Result<()> {
    if acts.mode != Mode::Train {
        return Err(Error::Shape(
            "backward needs a training-mode forward pass".into(),
        ));
    }
    let n = graph.nodes.len();
    let mut dys: Vec<Option<B::Buf>> = (0..n).map(|_| None).collect();
    for (id, g) in seeds {
        if be.len(&g) != acts.shapes[id].numel() {
            return Err(Error::Shape(format!(
                "gradient for {} has {} values, expected {}",
                graph.nodes[id].name,
                be.len(&g),
                acts.shapes[id].numel()
            )));
        }
        accumulate(be, &mut dys[id], g)?;
    }
    for id in (0..n).rev() {
        let Some(dy) = dys[id].take() else { continue };
        let node = &graph.nodes[id];
        let xs = node
            .inputs
            .first()
            .map(|&i| acts.shapes[i])
            .unwrap_or(acts.shapes[id]);
        // Gradients into the image itself are never needed.
        let wants = |k: usize| !matches!(graph.nodes[node.inputs[k]].op, Op::Input);
        match &node.op {
            Op::Input => {}
            Op::Conv { param, spec, bias } => {
                let x = acts.get(node.inputs[0])?;
                let wi = params.index_of(&format!("{param}.weight"))?;
                if wants(0) {
                    let dx = be.conv2d_backward_input(&dy, &params.values[wi], xs, spec)?;
                    accumulate(be, &mut dys[node.inputs[0]], dx)?;
                }
                let (head, tail) = grads.values.split_at_mut(wi + 1);
                let dw = head[wi]
                    .as_mut()
                    .ok_or_else(|| Error::Shape("no weight grad".into()))?;
                let db = if *bias { tail[0].as_mut() } else { None };
                be.conv2d_backward_weight(x, xs, &dy, spec, dw, db)?;
            }
            Op::BatchNorm { param, .. } => {
                let g = params.index_of(&format!("{param}.gamma"))?;
                let (mean, invstd) = acts.bn_saved[id]
                    .as_ref()
                    .ok_or_else(|| Error::Shape(format!("{}: no saved statistics", node.name)))?;
                let (head, tail) = grads.values.split_at_mut(g + 1);
                let dgamma = head[g]
                    .as_mut()
                    .ok_or_else(|| Error::Shape("no gamma grad".into()))?;
                let dbeta = tail[0]
                    .as_mut()
                    .ok_or_else(|| Error::Shape("no beta grad".into()))?;
                let saved = BatchNormSaved {
                    gamma: &params.values[g],
                    mean,
                    invstd,
                };
                let x = acts.get(node.inputs[0])?;
                let dx = be.batchnorm_backward(&dy, x, xs, saved, dgamma, dbeta)?;
                accumulate(be, &mut dys[node.inputs[0]], dx)?;
            }
            Op::Relu => {
                let dx = be.relu_backward(&dy, acts.get(id)?)?;
                accumulate(be, &mut dys[node.inputs[0]], dx)?;
            }
            Op::Upsample { .. } => {
                let o = acts.shapes[id];
                let dx = be.resize_bilinear_backward(&dy, xs, o.h, o.w)?;
                accumulate(be, &mut dys[node.inputs[0]], dx)?;
            }
            Op::Add => {
                let (a, b) = (node.inputs[0], node.inputs[1]);
                // One input takes `dy` itself, the other a copy made by accumulation.
                let mut copy = be.zeros(be.len(&dy))?;
                be.add_assign(&mut copy, &dy)?;
                accumulate(be, &mut dys[a], dy)?;
                accumulate(be, &mut dys[b], copy)?;
            }
            Op::Concat => {
                let shapes: Vec<Shape> = node.inputs.iter().map(|&i| acts.shapes[i]).collect();
                let parts = be.split_channels(&dy, &shapes)?;
                for (&i, p) in node.inputs.iter().zip(parts) {
                    accumulate(be, &mut dys[i], p)?;
                }
            }
            Op::L2Normalize => {
                let dx = be.l2_normalize_backward(&dy, acts.get(node.inputs[0])?, xs)?;
                accumulate(be, &mut dys[node.inputs[0]], dx)?;
            }
        }
    }
    Ok(())
}
