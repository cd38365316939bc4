//! Export ↔ tract ↔ onnxruntime parity for ContextrastNet, with random weights and random batch
//! norm statistics (so folding is exercised), against an independent, deliberately naive
//! forward pass of the graph (BN unfolded). Also the loader's error paths.
// Test helpers may unwrap: a panic there is a failed test, not a crash on input.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use contextrast_model::meta::ModelMeta;
use contextrast_model::onnx_model::OnnxModel;
use contextrast_train::export::{HostParams, export_onnx};
use contextrast_train::model::{NetConfig, contextrast_net};
use contextrast_train::nn::graph::{Graph, Op, ParamKind};
use contextrast_train::npy::{read_npy, write_npy};
use prost::Message;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tract_onnx::pb;

const CLASSES: usize = 4;

/// SplitMix64: deterministic test data without a rand dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
}

/// LeCun-uniform conv weights (unit gain: activations and logits stay O(1), so an absolute
/// tolerance of 1e-4 means ~1e-5 relative) and BN statistics far from the identity, so a
/// folding mistake shows up in the logits.
fn random_params(graph: &Graph, seed: u64) -> HostParams {
    let mut rng = Rng(seed);
    graph
        .param_specs()
        .into_iter()
        .map(|s| {
            let n = s.numel();
            let (lo, hi) = match s.kind {
                ParamKind::ConvWeight => {
                    let fan_in = (s.dims[1] * s.dims[2] * s.dims[3]) as f32;
                    let a = (3.0 / fan_in).sqrt();
                    (-a, a)
                }
                ParamKind::ConvBias => (-0.1, 0.1),
                ParamKind::BnGamma => (0.5, 1.5),
                ParamKind::BnBeta => (-0.2, 0.2),
                ParamKind::BnRunningMean => (-0.3, 0.3),
                ParamKind::BnRunningVar => (0.3, 2.0),
            };
            (s.name, (0..n).map(|_| rng.uniform(lo, hi)).collect())
        })
        .collect()
}

fn meta() -> ModelMeta {
    ModelMeta {
        defect: vec![false, true, true, true],
        input_h: 64,
        input_w: 96,
        metrics: BTreeMap::from([
            ("miou".into(), 0.7312345678901234),
            ("biou".into(), 0.1 + 0.2),
        ]),
        provenance: BTreeMap::from([
            ("git_rev".into(), "0123abc".into()),
            ("seed".into(), "7".into()),
            ("date".into(), "2026-11-27".into()),
            ("tool_version".into(), "contextrast 0.1.0".into()),
        ]),
        ..contextrast_model::meta::sample()
    }
}

/// Exports a random ContextrastNet into `dir`; returns the graph, params and model path.
fn exported(dir: &Path, seed: u64) -> (Graph, HostParams, PathBuf) {
    exported_net(dir, &NetConfig::default(), seed)
}

fn exported_net(dir: &Path, cfg: &NetConfig, seed: u64) -> (Graph, HostParams, PathBuf) {
    let graph = contextrast_net(cfg, CLASSES);
    let params = random_params(&graph, seed);
    let path = dir.join("model.onnx");
    export_onnx(&graph, &params, &meta(), &path).unwrap();
    (graph, params, path)
}

fn random_input(n: usize, h: usize, w: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed);
    (0..n * 3 * h * w).map(|_| rng.uniform(-2.0, 2.0)).collect()
}

// ---- the naive reference forward (one image, CHW, BN in inference mode, unfolded) ----

struct Map {
    c: usize,
    h: usize,
    w: usize,
    v: Vec<f32>,
}

fn reference_forward(graph: &Graph, p: &HostParams, x: &[f32], h: usize, w: usize) -> Vec<f32> {
    let mut vals: Vec<Option<Map>> = Vec::new();
    for node in &graph.nodes {
        if node.training_only {
            vals.push(None);
            continue;
        }
        let inp = |i: usize| vals[node.inputs[i]].as_ref().unwrap();
        let out = match &node.op {
            Op::Input => Map {
                c: 3,
                h,
                w,
                v: x.to_vec(),
            },
            Op::Conv { param, spec, bias } => {
                let a = inp(0);
                let (oh, ow) = spec.out_hw(a.h, a.w);
                let wt = &p[&format!("{param}.weight")];
                let mut v = vec![0f32; spec.c_out * oh * ow];
                for o in 0..spec.c_out {
                    let b0 = if *bias {
                        p[&format!("{param}.bias")][o]
                    } else {
                        0.0
                    };
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut s = b0 as f64;
                            for ci in 0..spec.c_in {
                                for ky in 0..spec.k {
                                    for kx in 0..spec.k {
                                        let iy =
                                            (oy * spec.stride + ky) as isize - spec.pad as isize;
                                        let ix =
                                            (ox * spec.stride + kx) as isize - spec.pad as isize;
                                        if iy < 0
                                            || ix < 0
                                            || iy >= a.h as isize
                                            || ix >= a.w as isize
                                        {
                                            continue;
                                        }
                                        let xv = a.v[(ci * a.h + iy as usize) * a.w + ix as usize];
                                        let wv =
                                            wt[((o * spec.c_in + ci) * spec.k + ky) * spec.k + kx];
                                        s += xv as f64 * wv as f64;
                                    }
                                }
                            }
                            v[(o * oh + oy) * ow + ox] = s as f32;
                        }
                    }
                }
                Map {
                    c: spec.c_out,
                    h: oh,
                    w: ow,
                    v,
                }
            }
            Op::BatchNorm { param, .. } => {
                let a = inp(0);
                let g = |s: &str| &p[&format!("{param}.{s}")];
                let (gm, bt, mn, vr) = (g("gamma"), g("beta"), g("running_mean"), g("running_var"));
                let hw = a.h * a.w;
                let v = (0..a.v.len())
                    .map(|i| {
                        let c = i / hw;
                        (a.v[i] - mn[c]) / (vr[c] + 1e-5).sqrt() * gm[c] + bt[c]
                    })
                    .collect();
                Map {
                    c: a.c,
                    h: a.h,
                    w: a.w,
                    v,
                }
            }
            Op::Relu => {
                let a = inp(0);
                Map {
                    c: a.c,
                    h: a.h,
                    w: a.w,
                    v: a.v.iter().map(|v| v.max(0.0)).collect(),
                }
            }
            Op::Add => {
                let (a, b) = (inp(0), inp(1));
                Map {
                    c: a.c,
                    h: a.h,
                    w: a.w,
                    v: a.v.iter().zip(&b.v).map(|(x, y)| x + y).collect(),
                }
            }
            Op::Concat => {
                let parts: Vec<&Map> = (0..node.inputs.len()).map(inp).collect();
                let v = parts.iter().flat_map(|m| m.v.iter().copied()).collect();
                Map {
                    c: parts.iter().map(|m| m.c).sum(),
                    h: parts[0].h,
                    w: parts[0].w,
                    v,
                }
            }
            Op::Upsample { factor } => {
                let a = inp(0);
                let (oh, ow) = (a.h * factor, a.w * factor);
                // Half-pixel source coordinate, clamped below at 0; neighbour clamped at the edge.
                let src = |d: usize, n: usize| {
                    let s = ((d as f32 + 0.5) / *factor as f32 - 0.5).max(0.0);
                    let i0 = (s.floor() as usize).min(n - 1);
                    (i0, (i0 + 1).min(n - 1), s - i0 as f32)
                };
                let mut v = vec![0f32; a.c * oh * ow];
                for c in 0..a.c {
                    for y in 0..oh {
                        let (y0, y1, ly) = src(y, a.h);
                        for x in 0..ow {
                            let (x0, x1, lx) = src(x, a.w);
                            let at = |yy: usize, xx: usize| a.v[(c * a.h + yy) * a.w + xx];
                            let top = at(y0, x0) * (1.0 - lx) + at(y0, x1) * lx;
                            let bot = at(y1, x0) * (1.0 - lx) + at(y1, x1) * lx;
                            v[(c * oh + y) * ow + x] = top * (1.0 - ly) + bot * ly;
                        }
                    }
                }
                Map {
                    c: a.c,
                    h: oh,
                    w: ow,
                    v,
                }
            }
            Op::L2Normalize => unreachable!("training-only"),
        };
        vals.push(Some(out));
    }
    vals[graph.logits].take().unwrap().v
}

/// Max |a − b| and the fraction of pixels whose argmax over C agrees.
fn compare(a: &[f32], b: &[f32], n: usize, c: usize, hw: usize) -> (f32, f64) {
    assert_eq!(a.len(), b.len());
    let max_diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    let argmax = |v: &[f32], img: usize, p: usize| {
        (0..c)
            .max_by(|&i, &j| v[(img * c + i) * hw + p].total_cmp(&v[(img * c + j) * hw + p]))
            .unwrap()
    };
    let same = (0..n)
        .flat_map(|i| (0..hw).map(move |p| (i, p)))
        .filter(|&(i, p)| argmax(a, i, p) == argmax(b, i, p))
        .count();
    (max_diff, same as f64 / (n * hw) as f64)
}

fn assert_parity(what: &str, a: &[f32], b: &[f32], n: usize, hw: usize) {
    let (diff, agree) = compare(a, b, n, CLASSES, hw);
    println!(
        "{what}: max |diff| = {diff:.3e}, argmax agreement = {:.6}",
        agree
    );
    assert!(diff <= 1e-4, "{what}: max |diff| {diff}");
    assert!(agree >= 0.9999, "{what}: argmax agrees on {agree}");
}

#[test]
fn tract_matches_reference_forward_with_folded_bn() {
    let dir = tempfile::tempdir().unwrap();
    let (graph, params, path) = exported(dir.path(), 1);
    let (h, w) = (64, 96);
    let model = OnnxModel::load_at(&path, h, w).unwrap();
    assert_eq!(model.num_classes(), CLASSES);
    let x = random_input(1, h, w, 2);
    let got = model.run(&x, 1, h, w).unwrap();
    let want = reference_forward(&graph, &params, &x, h, w);
    // The logits must not be trivially small, or the tolerance would prove nothing.
    let spread = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    println!("max abs logit {spread}");
    assert!(spread > 0.1, "logits too small to compare: {spread}");
    assert_parity("tract vs reference", &got, &want, 1, h * w);
}

#[test]
fn tract_replans_for_new_batch_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let (graph, params, path) = exported(dir.path(), 3);
    let model = OnnxModel::load_at(&path, 64, 64).unwrap();
    let (n, h, w) = (2, 32, 64);
    let x = random_input(n, h, w, 4);
    let got = model.run(&x, n, h, w).unwrap();
    assert_eq!(got.len(), n * CLASSES * h * w);
    let img = 3 * h * w;
    let out = CLASSES * h * w;
    for i in 0..n {
        let want = reference_forward(&graph, &params, &x[i * img..(i + 1) * img], h, w);
        assert_parity(
            &format!("batch image {i}"),
            &got[i * out..(i + 1) * out],
            &want,
            1,
            h * w,
        );
    }
    let err = model.run(&x, n, 48, 64).unwrap_err().to_string();
    assert!(err.contains("values"), "{err}");
    let err = model
        .run(&random_input(1, 40, 64, 5), 1, 40, 64)
        .unwrap_err()
        .to_string();
    contextrast_model::testing::assert_mentions(&err, &["model.onnx", "multiple of 32"]);
}

#[test]
fn logits_chw_pads_odd_sizes_and_crops_back() {
    let dir = tempfile::tempdir().unwrap();
    let (graph, params, path) = exported(dir.path(), 9);
    let model = OnnxModel::load(&path).unwrap();
    let (h, w, ph, pw) = (40, 50, 64, 64);
    let x = random_input(1, h, w, 10);
    let got = model.logits_chw(&x, h, w).unwrap();
    // Reference: zero-pad to 64×64 by hand, run the naive forward, crop.
    let mut padded = vec![0.0; 3 * ph * pw];
    for c in 0..3 {
        for y in 0..h {
            padded[(c * ph + y) * pw..(c * ph + y) * pw + w]
                .copy_from_slice(&x[(c * h + y) * w..(c * h + y + 1) * w]);
        }
    }
    let full = reference_forward(&graph, &params, &padded, ph, pw);
    let want: Vec<f32> = (0..CLASSES)
        .flat_map(|c| (0..h).flat_map(move |y| (0..w).map(move |xx| (c, y, xx))))
        .map(|(c, y, xx)| full[(c * ph + y) * pw + xx])
        .collect();
    assert_parity("padded logits_chw vs reference", &got, &want, 1, h * w);
    assert!(model.logits_chw(&x[1..], h, w).is_err());
}

/// onnxruntime's output for `x` (`[n, 3, h, w]`) on the model at `path`, checked to be
/// `[n, CLASSES, h, w]`; `None` (and a SKIPPED line) where the Python venv is missing.
fn onnxruntime(
    dir: &Path,
    path: &Path,
    x: &[f32],
    n: usize,
    h: usize,
    w: usize,
) -> Option<Vec<f32>> {
    // scripts/test sets CONTEXTRAST_PYTHON; a developer's checkout has the venv at the root.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let python = std::env::var_os("CONTEXTRAST_PYTHON")
        .map_or_else(|| root.join(".venv/bin/python"), PathBuf::from);
    if !python.exists() {
        println!(
            "SKIPPED: {} missing; run scripts/setup-python to compare with onnxruntime",
            python.display()
        );
        return None;
    }
    let (inp, outp) = (dir.join("x.npy"), dir.join("y.npy"));
    write_npy(&inp, x, &[n, 3, h, w]).unwrap();
    let status = std::process::Command::new(&python)
        .arg(root.join("scripts/onnx_run.py"))
        .args([path, &inp, &outp])
        .args(["--threads", "1"])
        .status()
        .unwrap();
    assert!(status.success(), "onnx_run.py failed: {status}");
    let (ort, shape) = read_npy(&outp).unwrap();
    assert_eq!(shape, vec![n, CLASSES, h, w]);
    Some(ort)
}

#[test]
fn onnxruntime_matches_tract() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, path) = exported(dir.path(), 5);
    let (n, h, w) = (2, 64, 96);
    let x = random_input(n, h, w, 6);
    let Some(ort) = onnxruntime(dir.path(), &path, &x, n, h, w) else {
        return;
    };
    let tract = OnnxModel::load_at(&path, h, w)
        .unwrap()
        .run(&x, n, h, w)
        .unwrap();
    assert_parity("onnxruntime vs tract", &ort, &tract, n, h * w);
    let (graph, params, _) = exported(dir.path(), 5);
    let engine = engine_forward(&graph, &params, &x, n, h, w);
    assert_parity(
        "onnxruntime vs the engine's own forward",
        &ort,
        &engine,
        n,
        h * w,
    );
}

/// The high-resolution refinement path (full-resolution logits, no final Resize) exports and
/// runs the same in onnxruntime, tract, the engine and the naive reference.
#[test]
fn refine_net_matches_across_runtimes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = NetConfig {
        refine: 8,
        ..NetConfig::default()
    };
    let (graph, params, path) = exported_net(dir.path(), &cfg, 21);
    let (n, h, w) = (2, 64, 96);
    let x = random_input(n, h, w, 22);
    let tract = OnnxModel::load_at(&path, h, w)
        .unwrap()
        .run(&x, n, h, w)
        .unwrap();
    let engine = engine_forward(&graph, &params, &x, n, h, w);
    assert_parity("tract vs the engine (refine)", &tract, &engine, n, h * w);
    let one = h * w * CLASSES;
    let want = reference_forward(&graph, &params, &x[..3 * h * w], h, w);
    assert_parity(
        "engine vs reference (refine)",
        &engine[..one],
        &want,
        1,
        h * w,
    );
    let Some(ort) = onnxruntime(dir.path(), &path, &x, n, h, w) else {
        return;
    };
    assert_parity("onnxruntime vs tract (refine)", &ort, &tract, n, h * w);
}

/// The training engine's own eval-mode forward pass (BN unfolded, CPU backend).
fn engine_forward(
    graph: &Graph,
    p: &HostParams,
    x: &[f32],
    n: usize,
    h: usize,
    w: usize,
) -> Vec<f32> {
    use contextrast_train::backend::ops::Memory as _;
    use contextrast_train::backend::{Cpu, Shape};
    use contextrast_train::nn::exec::{Mode, forward};
    use contextrast_train::nn::params::Params;
    let mut params = Params::from_host(&Cpu, graph, p).unwrap();
    let acts = forward(
        &Cpu,
        graph,
        &mut params,
        x.to_vec(),
        Shape::new(n, 3, h, w),
        Mode::Eval,
        false,
    )
    .unwrap();
    Cpu.download(acts.get(graph.logits).unwrap()).unwrap()
}

#[test]
fn tract_matches_the_engines_forward_pass() {
    let dir = tempfile::tempdir().unwrap();
    let (graph, params, path) = exported(dir.path(), 11);
    let (n, h, w) = (2, 96, 64);
    let x = random_input(n, h, w, 12);
    let got = OnnxModel::load_at(&path, h, w)
        .unwrap()
        .run(&x, n, h, w)
        .unwrap();
    let engine = engine_forward(&graph, &params, &x, n, h, w);
    assert_parity("tract vs the engine's own forward", &got, &engine, n, h * w);
    // And the engine agrees with the independent naive reference, image by image.
    let one = h * w * CLASSES;
    for i in 0..n {
        let want = reference_forward(
            &graph,
            &params,
            &x[i * 3 * h * w..(i + 1) * 3 * h * w],
            h,
            w,
        );
        assert_parity(
            "engine vs reference",
            &engine[i * one..(i + 1) * one],
            &want,
            1,
            h * w,
        );
    }
}

#[test]
fn metadata_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, path) = exported(dir.path(), 7);
    let model = OnnxModel::load(&path).unwrap();
    assert_eq!(model.meta(), Some(&meta()));
    assert_eq!(model.num_classes(), CLASSES);
    let props = model.metadata_props();
    assert_eq!(props["classes"], "background,scratch,dent,stain");
    assert_eq!(props["defect_classes"], "scratch,dent,stain");
    assert_eq!(props["input_size"], "64x96");
}

#[test]
fn exported_graph_has_symbolic_io_and_no_training_heads() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, path) = exported(dir.path(), 8);
    let proto = pb::ModelProto::decode(std::fs::read(&path).unwrap().as_slice()).unwrap();
    assert_eq!(proto.opset_import[0].version, 13);
    let g = proto.graph.unwrap();
    let dims = |v: &pb::ValueInfoProto| -> Vec<String> {
        let Some(pb::type_proto::Value::TensorType(t)) = v.r#type.as_ref().unwrap().value.as_ref()
        else {
            panic!()
        };
        t.shape
            .as_ref()
            .unwrap()
            .dim
            .iter()
            .map(|d| format!("{:?}", d.value.as_ref().unwrap()))
            .collect()
    };
    assert_eq!(g.input[0].name, "image");
    assert_eq!(
        dims(&g.input[0]),
        [
            "DimParam(\"N\")",
            "DimValue(3)",
            "DimParam(\"H\")",
            "DimParam(\"W\")"
        ]
    );
    assert_eq!(g.output[0].name, "logits");
    assert_eq!(
        dims(&g.output[0]),
        [
            "DimParam(\"N\")",
            "DimValue(4)",
            "DimParam(\"H\")",
            "DimParam(\"W\")"
        ]
    );
    let ops: Vec<&str> = g.node.iter().map(|n| n.op_type.as_str()).collect();
    assert!(!ops.contains(&"BatchNormalization"));
    assert!(
        g.node.iter().all(|n| !n.name.starts_with("proj")),
        "projection heads exported"
    );
    // 17 convolutions: 9 conv+BN (folded) + 4 laterals + ... every conv on the logits path.
    let graph = contextrast_net(&NetConfig::default(), CLASSES);
    let convs = graph
        .nodes
        .iter()
        .filter(|n| !n.training_only && matches!(n.op, Op::Conv { .. }))
        .count();
    assert_eq!(ops.iter().filter(|&&o| o == "Conv").count(), convs);
    assert_eq!(ops.iter().filter(|&&o| o == "Resize").count(), 7);
}

// ---- loader errors ----

/// A one-node Relu model with the given input dims and no metadata.
fn relu_model(dims: &[i64]) -> Vec<u8> {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    let vi = |name: &str| pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(pb::GraphProto {
            name: "relu".into(),
            node: vec![pb::NodeProto {
                input: vec!["x".into()],
                output: vec!["y".into()],
                op_type: "Relu".into(),
                ..Default::default()
            }],
            input: vec![vi("x")],
            output: vec![vi("y")],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn malformed_bytes_error_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("garbage.onnx", b"\xff\xffthis is not a protobuf".to_vec()),
        ("empty.onnx", vec![]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = OnnxModel::load_at(&path, 32, 32).unwrap_err().to_string();
        contextrast_model::testing::assert_mentions(&err, &[name, "not an ONNX model"]);
    }
    let err = OnnxModel::load(&dir.path().join("missing.onnx"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.onnx"), "{err}");
}

#[test]
fn wrong_input_rank_or_channels_error_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rank3.onnx");
    std::fs::write(&path, relu_model(&[3, 32, 32])).unwrap();
    let err = OnnxModel::load_at(&path, 32, 32).unwrap_err().to_string();
    contextrast_model::testing::assert_mentions(&err, &["rank3.onnx", "rank 3"]);
    let path = dir.path().join("gray.onnx");
    std::fs::write(&path, relu_model(&[1, 1, 32, 32])).unwrap();
    let err = OnnxModel::load_at(&path, 32, 32).unwrap_err().to_string();
    contextrast_model::testing::assert_mentions(&err, &["gray.onnx", "1 channels"]);
}

#[test]
fn model_without_metadata_loads_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.onnx");
    std::fs::write(&path, relu_model(&[1, 3, 2, 2])).unwrap();
    let model = OnnxModel::load_at(&path, 2, 2).unwrap();
    assert!(model.meta().is_none());
    // Without metadata, `load` takes the class count from the declared output shape.
    assert_eq!(OnnxModel::load(&path).unwrap().num_classes(), 3);
    assert_eq!(model.num_classes(), 3);
    let x: Vec<f32> = (0..12).map(|i| i as f32 - 6.0).collect();
    let y = model.run(&x, 1, 2, 2).unwrap();
    assert_eq!(y, x.iter().map(|v| v.max(0.0)).collect::<Vec<_>>());
}
