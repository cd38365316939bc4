//! ContextrastNet: a small encoder with features at strides 4/8/16/32, an FPN-style decoder that
//! fuses all four scales for the segmentation head, an optional high-resolution refinement path
//! (stride 2 and full resolution) so that 1–3 px defects are classified where they are, and four
//! projection heads for the contrastive loss (training only, dropped at export: no inference cost).
use crate::backend::Shape;
use crate::nn::graph::{Graph, GraphBuilder, NodeId, Op};
use serde::{Deserialize, Serialize};

/// Size of the network. The default (`width` 16, `decoder` 32) is about 0.5 M parameters and
/// ~1.3 GFLOPs per 512×512 frame: it runs at line rate on a Jetson Orin Nano.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetConfig {
    /// Channels at stride 4; doubled at each deeper stage.
    pub width: usize,
    /// Channels of the FPN decoder.
    pub decoder: usize,
    /// Projection dimension D of the contrastive heads.
    pub proj_dim: usize,
    /// Channels of the high-resolution refinement path; 0 = none (the head predicts at stride 4
    /// and its logits are upsampled ×4, which blurs a 1-px scratch into its surroundings).
    /// With `refine` > 0 the stride-4 head is brought to stride 2 and fused with the stem's
    /// stride-2 features, then to full resolution and fused with a full-resolution conv of the
    /// image, and a correction predicted there is added to the upsampled stride-4 logits. Checkpoints written before this key existed
    /// read as 0, so they keep their architecture.
    #[serde(default)]
    pub refine: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            width: 16,
            decoder: 32,
            proj_dim: 64,
            refine: 0,
        }
    }
}

/// Builds the graph for `num_classes` classes.
pub fn contextrast_net(cfg: &NetConfig, num_classes: usize) -> Graph {
    let w = cfg.width;
    let d = cfg.decoder;
    let mut g = GraphBuilder::default();
    let x = g.input();

    // Encoder. Each stage: a strided conv, then a residual conv block.
    let stem1 = g.conv_bn_relu("enc.stem1", x, 3, w, 3, 2);
    let s = g.conv_bn_relu("enc.stem2", stem1, w, w, 3, 2);
    let chans = [w, 2 * w, 4 * w, 8 * w];
    let mut feats: [NodeId; 4] = [0; 4];
    let mut prev = s;
    let mut c_prev = w;
    for (i, &c) in chans.iter().enumerate() {
        let a = if i == 0 {
            prev
        } else {
            g.conv_bn_relu(&format!("enc.s{}a", i + 1), prev, c_prev, c, 3, 2)
        };
        let b = g.conv_bn_relu(&format!("enc.s{}b", i + 1), a, c, c, 3, 1);
        let f = g.add(format!("enc.s{}.res", i + 1), Op::Add, &[a, b]);
        feats[i] = f;
        prev = f;
        c_prev = c;
    }

    // FPN decoder: 1×1 laterals, top-down sums.
    let lat: Vec<NodeId> = (0..4)
        .map(|i| g.conv(&format!("dec.lat{}", i + 1), feats[i], chans[i], d, 1))
        .collect();
    let mut p = [0; 4];
    p[3] = lat[3];
    for i in (0..3).rev() {
        let up = g.add(
            format!("dec.up{}", i + 2),
            Op::Upsample { factor: 2 },
            &[p[i + 1]],
        );
        p[i] = g.add(format!("dec.p{}", i + 1), Op::Add, &[lat[i], up]);
    }
    // Head: every scale brought to stride 4 and concatenated, so thin defects see context.
    let mut parts = vec![p[0]];
    for (i, &pi) in p.iter().enumerate().skip(1) {
        parts.push(g.add(
            format!("head.up{}", i + 1),
            Op::Upsample { factor: 1 << i },
            &[pi],
        ));
    }
    let cat = g.add("head.cat", Op::Concat, &parts);
    let h = g.conv_bn_relu("head.fuse", cat, 4 * d, d, 1, 1);
    let h = g.conv_bn_relu("head.conv", h, d, d, 3, 1);
    let cls = g.conv("head.cls", h, d, num_classes, 1);
    let mut zero_init = Vec::new();
    let logits = if cfg.refine == 0 {
        g.add("logits", Op::Upsample { factor: 4 }, &[cls])
    } else {
        // The stride-4 prediction plus a full-resolution correction that starts at zero, so a
        // trained stride-4 model grown into this one predicts exactly as before at step 0.
        let coarse = g.add("head.up", Op::Upsample { factor: 4 }, &[cls]);
        let fine = refine_path(&mut g, x, stem1, h, w, d, cfg.refine, num_classes);
        zero_init.push(REFINE_CLS.to_string());
        g.add("logits", Op::Add, &[coarse, fine])
    };

    // Projection heads (paper §3.1): Conv1×1 → BN → ReLU → Conv1×1 → L2 norm.
    g.training_only = true;
    let mut proj = [0; 4];
    for i in 0..4 {
        let n = format!("proj{}", i + 1);
        let a = g.conv_bn_relu(&format!("{n}.a"), feats[i], chans[i], chans[i], 1, 1);
        let b = g.conv(&format!("{n}.b"), a, chans[i], cfg.proj_dim, 1);
        proj[i] = g.add(format!("{n}.norm"), Op::L2Normalize, &[b]);
    }
    g.training_only = false;

    Graph {
        nodes: g.nodes,
        logits,
        features: feats,
        projections: proj,
        num_classes,
        size_multiple: 32,
        zero_init,
    }
}

/// The high-resolution path: the stride-4 head `h` (`d` channels) reduced to `r` channels and
/// brought to stride 2 beside the stem's stride-2 features (`w` channels), a 3×3 conv there, then
/// to full resolution beside a 3×3 conv of the image itself, and a 3×3 conv at full resolution
/// that gives the per-class correction to the upsampled stride-4 logits. Every op is one the native engine, the CUDA backend and the ONNX
/// export already have. Cost at 640×480 with `r` = 8: about 0.9 GFLOPs on top of the encoder.
#[allow(clippy::too_many_arguments)]
fn refine_path(
    g: &mut GraphBuilder,
    x: NodeId,
    stem1: NodeId,
    h: NodeId,
    w: usize,
    d: usize,
    r: usize,
    num_classes: usize,
) -> NodeId {
    let full = g.conv_bn_relu("ref.full", x, 3, r, 3, 1);
    let reduce = g.conv_bn_relu("ref.reduce", h, d, r, 1, 1);
    let up2 = g.add("ref.up2", Op::Upsample { factor: 2 }, &[reduce]);
    let cat2 = g.add("ref.cat2", Op::Concat, &[up2, stem1]);
    let half = g.conv_bn_relu("ref.half", cat2, r + w, r, 3, 1);
    let up1 = g.add("ref.up1", Op::Upsample { factor: 2 }, &[half]);
    let cat1 = g.add("ref.cat1", Op::Concat, &[up1, full]);
    g.conv(REFINE_CLS, cat1, 2 * r, num_classes, 3)
}

/// The refinement path's classifier: its output is added to the upsampled stride-4 logits.
const REFINE_CLS: &str = "ref.cls";

/// Output shape of every node for an input of shape `input`, or an error naming the node.
pub fn infer_shapes(graph: &Graph, input: Shape) -> crate::Result<Vec<Shape>> {
    let mut shapes: Vec<Shape> = Vec::with_capacity(graph.nodes.len());
    for node in &graph.nodes {
        let ins: Vec<Shape> = node.inputs.iter().map(|&i| shapes[i]).collect();
        let err = |m: String| crate::Error::Shape(format!("node {}: {m}", node.name));
        let s = match &node.op {
            Op::Input => input,
            Op::Conv { spec, .. } => {
                if ins[0].c != spec.c_in {
                    return Err(err(format!(
                        "expects {} channels, got {}",
                        spec.c_in, ins[0].c
                    )));
                }
                if ins[0].h + 2 * spec.pad < spec.k || ins[0].w + 2 * spec.pad < spec.k {
                    return Err(err(format!("input {} smaller than the kernel", ins[0])));
                }
                spec.out_shape(ins[0])
            }
            Op::BatchNorm { channels, .. } => {
                if ins[0].c != *channels {
                    return Err(err(format!(
                        "expects {channels} channels, got {}",
                        ins[0].c
                    )));
                }
                ins[0]
            }
            Op::Relu | Op::L2Normalize => ins[0],
            Op::Upsample { factor } => ins[0].with_hw(ins[0].h * factor, ins[0].w * factor),
            Op::Add => {
                if ins[0] != ins[1] {
                    return Err(err(format!("adds {} and {}", ins[0], ins[1])));
                }
                ins[0]
            }
            Op::Concat => {
                let c = ins.iter().map(|s| s.c).sum();
                if ins
                    .iter()
                    .any(|s| s.n != ins[0].n || s.h != ins[0].h || s.w != ins[0].w)
                {
                    return Err(err("concatenates different spatial sizes".into()));
                }
                ins[0].with_c(c)
            }
        };
        shapes.push(s);
    }
    Ok(shapes)
}

/// Inference cost in FLOPs (2 per multiply-add; convolutions only, the rest is noise) for one
/// image of `h`×`w`, excluding training-only nodes.
pub fn inference_flops(graph: &Graph, h: usize, w: usize) -> crate::Result<u64> {
    let shapes = infer_shapes(graph, Shape::new(1, 3, h, w))?;
    Ok(graph
        .nodes
        .iter()
        .filter(|n| !n.training_only)
        .map(|n| match &n.op {
            Op::Conv { spec, .. } => spec.flops(shapes[n.inputs[0]]),
            _ => 0,
        })
        .sum())
}
