use super::graph::{Conv, Epilogue, INPUT, Layer, Net, Step};
use super::*;
use contextrast_model::ConvSpec;

#[path = "../../../tests/common/onnx_file.rs"]
mod onnx_file;
use onnx_file::{dim, dim_param, float_value, model_bytes};

/// Deterministic values in [-1, 1).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn conv(c_in: usize, c_out: usize, k: usize, stride: usize, seed: u64) -> Conv {
    Conv {
        spec: ConvSpec {
            c_in,
            c_out,
            k,
            stride,
            pad: k / 2,
        },
        weight: noise(c_out * c_in * k * k, seed),
        bias: noise(c_out, seed + 1),
        epi: Epilogue::default(),
    }
}

/// Naive direct convolution of `x` (`[c_in, h, w]`), for reference.
fn conv_ref(c: &Conv, x: &[f32], h: usize, w: usize) -> (Vec<f32>, usize, usize) {
    let s = c.spec;
    let (oh, ow) = s.out_hw(h, w);
    let mut y = vec![0f32; s.c_out * oh * ow];
    for o in 0..s.c_out {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = f64::from(c.bias[o]);
                for i in 0..s.c_in {
                    for ky in 0..s.k {
                        for kx in 0..s.k {
                            let iy = (oy * s.stride + ky) as isize - s.pad as isize;
                            let ix = (ox * s.stride + kx) as isize - s.pad as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let wv = c.weight[((o * s.c_in + i) * s.k + ky) * s.k + kx];
                            let xv = x[(i * h + iy as usize) * w + ix as usize];
                            acc += f64::from(wv) * f64::from(xv);
                        }
                    }
                }
                y[(o * oh + oy) * ow + ox] = acc as f32;
            }
        }
    }
    (y, oh, ow)
}

/// Naive half-pixel bilinear upsampling by `f` (ONNX `half_pixel`, clamped at the edges).
fn resize_ref(x: &[f32], c: usize, h: usize, w: usize, f: usize) -> Vec<f32> {
    let (oh, ow) = (h * f, w * f);
    let src = |d: usize, n: usize| {
        let s = ((d as f64 + 0.5) / f as f64 - 0.5).max(0.0);
        let i0 = (s.floor() as usize).min(n - 1);
        (i0, (i0 + 1).min(n - 1), s - i0 as f64)
    };
    let mut y = vec![0f32; c * oh * ow];
    for ch in 0..c {
        for oy in 0..oh {
            let (y0, y1, ly) = src(oy, h);
            for ox in 0..ow {
                let (x0, x1, lx) = src(ox, w);
                let v = |yy: usize, xx: usize| f64::from(x[(ch * h + yy) * w + xx]);
                let top = v(y0, x0) * (1.0 - lx) + v(y0, x1) * lx;
                let bot = v(y1, x0) * (1.0 - lx) + v(y1, x1) * lx;
                y[(ch * oh + oy) * ow + ox] = (top * (1.0 - ly) + bot * ly) as f32;
            }
        }
    }
    y
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn step(name: &str, layer: Layer, inputs: Vec<usize>, output: usize) -> Step {
    Step {
        name: name.into(),
        layer,
        inputs,
        output,
    }
}

/// A small graph with every layer kind, unfused: two paths from a strided conv, upsampled
/// back, added, concatenated with a 1×1 branch, activated, and a 3×3 head.
fn toy_net() -> Net {
    let c1 = conv(3, 6, 3, 2, 1); // 1: [6, h/2, w/2]
    let c2 = conv(6, 6, 3, 1, 2); // 2
    let steps = vec![
        step("c1", Layer::Conv(c1), vec![INPUT], 1),
        step("c2", Layer::Conv(c2), vec![1], 2),
        step("add", Layer::Add, vec![1, 2], 3),
        step(
            "up",
            Layer::Resize {
                factor: 2,
                epi: Epilogue::default(),
            },
            vec![3],
            4,
        ), // [6, h, w]
        step("c3", Layer::Conv(conv(3, 5, 1, 1, 3)), vec![INPUT], 5),
        step("cat", Layer::Concat, vec![4, 5], 6), // [11, h, w]
        step("relu", Layer::Relu, vec![6], 7),
        step("head", Layer::Conv(conv(11, 4, 3, 1, 4)), vec![7], 8),
    ];
    Net {
        steps,
        values: 9,
        output: 8,
        out_channels: 4,
    }
}

fn toy_ref(net: &Net, x: &[f32], h: usize, w: usize) -> Vec<f32> {
    let Layer::Conv(c1) = &net.steps[0].layer else {
        unreachable!()
    };
    let Layer::Conv(c2) = &net.steps[1].layer else {
        unreachable!()
    };
    let Layer::Conv(c3) = &net.steps[4].layer else {
        unreachable!()
    };
    let Layer::Conv(head) = &net.steps[7].layer else {
        unreachable!()
    };
    let (a, h2, w2) = conv_ref(c1, x, h, w);
    let (b, _, _) = conv_ref(c2, &a, h2, w2);
    let s: Vec<f32> = a.iter().zip(&b).map(|(a, b)| a + b).collect();
    let up = resize_ref(&s, 6, h2, w2, 2);
    let (p, _, _) = conv_ref(c3, x, h, w);
    let mut cat = up;
    cat.extend_from_slice(&p);
    let r: Vec<f32> = cat.iter().map(|v| v.max(0.0)).collect();
    conv_ref(head, &r, h, w).0
}

#[test]
fn every_layer_matches_a_naive_reference_on_one_and_two_threads() {
    let net = Arc::new(toy_net());
    for (h, w) in [(8, 12), (16, 10)] {
        let x = noise(3 * h * w, 7);
        let want = toy_ref(&net, &x, h, w);
        for threads in [1, 2] {
            let mut plan = Plan::new(net.clone(), h, w, threads).unwrap();
            let mut workers = Workers::new(threads).unwrap();
            workers.reserve(plan.scratch_len);
            plan.input_mut().copy_from_slice(&x);
            plan.run(&workers);
            let d = max_diff(plan.output(), &want);
            assert!(d < 1e-4, "{h}x{w}, {threads} threads: max difference {d}");
        }
    }
}

#[test]
fn odd_sizes_and_strides_match_the_reference() {
    // Stride 2 on odd sizes, and a 5×5 kernel, where im2col's padding edges matter most.
    // 3×3 stride 1 takes the direct (no im2col) path, including 1-pixel and 2-pixel images.
    let cases = [
        (3, 2, 7, 9),
        (5, 1, 6, 5),
        (3, 2, 5, 4),
        (1, 2, 7, 7),
        (3, 1, 7, 9),
        (3, 1, 1, 5),
        (3, 1, 2, 40),
    ];
    for (k, stride, h, w) in cases {
        let c = conv(3, 7, k, stride, 11);
        let net = Arc::new(Net {
            steps: vec![step("c", Layer::Conv(c.clone()), vec![INPUT], 1)],
            values: 2,
            output: 1,
            out_channels: 7,
        });
        let x = noise(3 * h * w, 5);
        let mut plan = Plan::new(net, h, w, 1).unwrap();
        let mut workers = Workers::new(1).unwrap();
        workers.reserve(plan.scratch_len);
        plan.input_mut().copy_from_slice(&x);
        plan.run(&workers);
        let d = max_diff(plan.output(), &conv_ref(&c, &x, h, w).0);
        assert!(d < 1e-5, "k {k} stride {stride} {h}x{w}: {d}");
    }
}

#[test]
fn the_planner_shares_memory_and_writes_concat_inputs_in_place() {
    let net = Arc::new(toy_net());
    let (h, w) = (64, 64);
    let plan = Plan::new(net.clone(), h, w, 1).unwrap();
    // The upsampled sum and the 1×1 branch live inside the concat's output.
    assert!(plan.in_place[4] && plan.in_place[5]);
    assert_eq!(plan.offsets[4], plan.offsets[6]);
    assert_eq!(plan.offsets[5], plan.offsets[6] + 6 * h * w);
    // Sharing: the arena is smaller than all values side by side.
    let all: usize = (0..net.values)
        .filter(|&v| !plan.in_place[v])
        .map(|v| plan.shapes[v].iter().product::<usize>())
        .sum();
    assert!(plan.arena_len() < all, "{} vs {all}", plan.arena_len());
}

#[test]
fn shapes_that_cannot_work_are_refused_with_the_step() {
    let net = Arc::new(toy_net());
    // 1×1 input: the stride-2 conv gives 1×1, the ×2 resize 2×2, the concat sees 2×2 vs 1×1.
    let e = Plan::new(net, 1, 1, 1).unwrap_err();
    assert!(e.contains("`cat`"), "{e}");
}

fn shipped() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.onnx")
}

#[test]
fn the_shipped_model_fuses_every_relu_and_add() {
    let proto = pb::ModelProto::decode(std::fs::read(shipped()).unwrap().as_slice()).unwrap();
    let net = Net::from_graph(proto.graph.as_ref().unwrap(), 13).unwrap();
    let count = |f: &dyn Fn(&Layer) -> bool| net.steps.iter().filter(|s| f(&s.layer)).count();
    assert_eq!(count(&|l| matches!(l, Layer::Relu | Layer::Add)), 0);
    // The refinement path's two concats (stride 2 and full resolution) are copied: a split
    // like the head's would need its 3×3 convolutions to commute with the upsampling.
    assert_eq!(count(&|l| matches!(l, Layer::Concat)), 2);
    // Nine encoder convolutions, the 3×3 head and the refinement path's three carry their
    // ReLU; the split head fuse applies its ReLU after the last sum, in an upsampling epilogue.
    assert_eq!(count(&|l| matches!(l, Layer::Conv(c) if c.epi.relu)), 13);
    assert_eq!(
        count(&|l| matches!(l, Layer::Resize { epi, .. } if epi.relu_after && epi.add.is_some())),
        1
    );
    // Four residual sums, three FPN sums and the full-resolution correction ride in convolution
    // epilogues; the head's four concat parts are summed through three epilogues.
    assert_eq!(
        count(&|l| matches!(l, Layer::Conv(c) if c.epi.add.is_some())),
        8
    );
    assert_eq!(
        count(&|l| matches!(l, Layer::Resize { epi, .. } if epi.add.is_some())),
        3
    );
    assert_eq!(net.out_channels, 5);
}

/// A one-node ONNX graph of op `op` on the image, with `attrs`.
fn one_node(
    op: &str,
    attrs: Vec<pb::AttributeProto>,
    extra: Vec<pb::TensorProto>,
) -> pb::GraphProto {
    let vi = |name: &str| pb::ValueInfoProto {
        name: name.into(),
        ..Default::default()
    };
    let mut inputs = vec!["image".to_string()];
    inputs.extend(extra.iter().map(|t| t.name.clone()));
    pb::GraphProto {
        node: vec![pb::NodeProto {
            input: inputs,
            output: vec!["y".into()],
            name: "n0".into(),
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        }],
        initializer: extra,
        input: vec![vi("image")],
        output: vec![vi("y")],
        ..Default::default()
    }
}

#[test]
fn unsupported_ops_and_attributes_are_named() {
    let e = Net::from_graph(&one_node("Sigmoid", vec![], vec![]), 13).unwrap_err();
    assert!(e.contains("op `Sigmoid`") && e.contains("n0"), "{e}");
    let mode = pb::AttributeProto {
        name: "mode".into(),
        s: b"nearest".to_vec(),
        ..Default::default()
    };
    let scales = pb::TensorProto {
        name: "s".into(),
        dims: vec![4],
        data_type: pb::tensor_proto::DataType::Float as i32,
        float_data: vec![1.0, 1.0, 2.0, 2.0],
        ..Default::default()
    };
    let mut g = one_node("Resize", vec![mode], vec![]);
    g.node[0].input = vec!["image".into(), String::new(), "s".into()];
    g.initializer = vec![scales];
    let e = Net::from_graph(&g, 13).unwrap_err();
    assert!(e.contains("mode `nearest`"), "{e}");
    let e = Net::from_graph(&g, 10).unwrap_err();
    assert!(e.contains("opset 10"), "{e}");
}

#[test]
fn the_native_engine_matches_tract_on_the_shipped_model() {
    // 200×120 is not a multiple of 32: padding and cropping are exercised too.
    assert_native_matches_tract(&shipped(), &[(256, 192), (200, 120)], 31, 97, 7);
}

/// The native engine and tract load `path` with the same classes and give the same
/// probabilities (to 1e-4) on a patterned frame of each size `(w, h)`.
fn assert_native_matches_tract(
    path: &std::path::Path,
    sizes: &[(u32, u32)],
    a: usize,
    b: usize,
    c: usize,
) {
    use crate::infer::tract::TractSegmenter;
    let cfg = |engine| ModelConfig {
        path: path.to_path_buf(),
        threads: 1,
        engine,
        ..ModelConfig::default()
    };
    let mut native = NativeSegmenter::load(&cfg(crate::infer::EngineKind::Native)).unwrap();
    let mut tract = TractSegmenter::load(&cfg(crate::infer::EngineKind::Tract)).unwrap();
    assert_eq!(native.info().class_names, tract.info().class_names);
    for &(w, h) in sizes {
        let mut frame = Frame::with_capacity(w, h);
        frame.reset(w, h);
        for (i, v) in frame.rgb.iter_mut().enumerate() {
            *v = ((i * a + (i / b) * c) % 256) as u8;
        }
        let (mut x, mut y) = (Segmentation::default(), Segmentation::default());
        native.segment(&frame, &mut x).unwrap();
        tract.segment(&frame, &mut y).unwrap();
        assert_eq!(x.geom, y.geom);
        let d = max_diff(&x.scores.probs(), &y.scores.probs());
        assert!(d < 1e-4, "{w}x{h}: max probability difference {d}");
    }
}

/// The high-resolution network (full-resolution classifier, no final Resize) runs in the native
/// engine as in tract: exported here from random weights with non-trivial batch norm.
#[test]
fn the_native_engine_matches_tract_on_a_refine_network() {
    use contextrast_train::backend::Cpu;
    use contextrast_train::model::{NetConfig, contextrast_net};
    use contextrast_train::nn::params::Params;
    let net_cfg = NetConfig {
        width: 8,
        decoder: 8,
        proj_dim: 4,
        refine: 4,
    };
    let meta = contextrast_model::meta::sample();
    let graph = contextrast_net(&net_cfg, meta.class_names.len());
    let mut host = Params::init(&Cpu, &graph, 3)
        .unwrap()
        .to_host(&Cpu)
        .unwrap();
    let mut rng = contextrast_model::rng::SplitMix64::seeded(4);
    for (name, v) in host.iter_mut() {
        for x in v.iter_mut() {
            *x = if name.ends_with("running_var") {
                0.5 + rng.f32()
            } else {
                *x + 0.1 * rng.normal()
            };
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("refine.onnx");
    contextrast_train::export::export_onnx(&graph, &host, &meta, &path).unwrap();
    assert_native_matches_tract(&path, &[(160, 96), (100, 70)], 29, 89, 5);
}

/// A valid model the native engine cannot run: a 1×1 convolution then a Sigmoid, with
/// symbolic height and width and two output channels.
fn sigmoid_model(path: &std::path::Path) {
    let vi = |name: &str, c: i64| {
        float_value(name, vec![dim(1), dim(c), dim_param("H"), dim_param("W")])
    };
    let node = |op: &str, inputs: &[&str], out: &str| pb::NodeProto {
        op_type: op.into(),
        name: out.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![out.into()],
        ..Default::default()
    };
    let graph = pb::GraphProto {
        node: vec![
            node("Conv", &["image", "w"], "z"),
            node("Sigmoid", &["z"], "y"),
        ],
        initializer: vec![pb::TensorProto {
            name: "w".into(),
            dims: vec![2, 3, 1, 1],
            data_type: pb::tensor_proto::DataType::Float as i32,
            float_data: noise(6, 3),
            ..Default::default()
        }],
        input: vec![vi("image", 3)],
        output: vec![vi("y", 2)],
        ..Default::default()
    };
    std::fs::write(path, model_bytes(graph)).unwrap();
}

#[test]
fn auto_falls_back_to_tract_and_native_names_what_it_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sigmoid.onnx");
    sigmoid_model(&path);
    let cfg = |engine| ModelConfig {
        path: path.clone(),
        threads: 1,
        engine,
        ..ModelConfig::default()
    };
    let e = match load_segmenter(&cfg(crate::infer::EngineKind::Native)) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("the native engine must refuse a Sigmoid"),
    };
    contextrast_model::testing::assert_mentions(
        &e,
        &["sigmoid.onnx", "op `Sigmoid`", "engine = \"tract\""],
    );
    let mut auto = load_segmenter(&cfg(crate::infer::EngineKind::Auto)).unwrap();
    assert_eq!(auto.info().engine, "tract");
    let mut frame = Frame::with_capacity(64, 32);
    frame.reset(64, 32);
    let mut out = Segmentation::default();
    auto.segment(&frame, &mut out).unwrap();
    assert_eq!(out.classes, 2);
    // Our own model on `auto` runs natively.
    let ours = load_segmenter(&ModelConfig {
        path: shipped(),
        ..ModelConfig::default()
    })
    .unwrap();
    assert_eq!(ours.info().engine, "native");
}
