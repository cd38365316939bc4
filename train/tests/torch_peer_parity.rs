//! The engine against an independent implementation: `scripts/torch_peer.py`, the method written
//! in PyTorch from docs/METHOD.md, with autograd for every gradient.
//!
//! - L_PA (with and without BANE): the same anchors and the very same sampled pixels (the hash
//!   keys and BANE's EDT and percentile rewritten in torch), the loss to f64 precision and
//!   ∂L_PA/∂z from autograd against the engine's hand-written backward.
//! - One training step of ContextrastNet from the engine's initial parameters: cross-entropy,
//!   L_PA and every parameter and batch-norm statistic after SGD.
//!
//! PyTorch comes from the venv `scripts/setup-torch` makes (`$CONTEXTRAST_TORCH_PYTHON`, else
//! `.venv-torch/bin/python`); without it each test prints what it skipped.
// Test helpers may unwrap: a panic there is a failed test, not a crash on input.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::Rng;
use common::contrast_cases::maps;
use contextrast_train::backend::ops::*;
use contextrast_train::backend::{Cpu, Shape};
use contextrast_train::loss::bane::{LabelMaps, SamplingConfig, downsample_nearest, sample_anchor};
use contextrast_train::loss::contrast::{
    ContrastConfig, HostInputs, SCALES, ScaleInput, contrastive_loss,
};
use contextrast_train::model::{NetConfig, contextrast_net};
use contextrast_train::nn::exec::Grads;
use contextrast_train::nn::params::Params;
use contextrast_train::npy::{read_npy, write_npy};
use contextrast_train::trainer::{ContrastStep, Sgd, train_step};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// PyTorch's Python, or `None` after printing the skip line. A `$CONTEXTRAST_TORCH_PYTHON` that
/// does not exist fails instead: scripts/test sets it, so CI cannot skip these by accident.
fn torch_python(test: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CONTEXTRAST_TORCH_PYTHON") {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "CONTEXTRAST_TORCH_PYTHON={} does not exist",
            p.display()
        );
        return Some(p);
    }
    let python = root().join(".venv-torch/bin/python");
    if python.exists() {
        Some(python)
    } else {
        println!(
            "SKIPPED: {test}: {} missing; run scripts/setup-torch",
            python.display()
        );
        None
    }
}

/// Runs `torch_peer.py <mode> <case>` and returns its result.json.
fn run_peer(python: &Path, mode: &str, case: &Path) -> Value {
    let out = std::process::Command::new(python)
        .arg(root().join("scripts/torch_peer.py"))
        .arg(mode)
        .arg(case)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "torch_peer.py {mode} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(case.join("result.json")).unwrap()).unwrap()
}

/// A label map as the f32 `.npy` the peer reads (class ids are exact in f32).
fn write_labels(path: &Path, v: &[u8], dims: &[usize]) {
    let f: Vec<f32> = v.iter().map(|&l| f32::from(l)).collect();
    write_npy(path, &f, dims).unwrap();
}

/// The loss constants and sampling keys in the peer's case.json, plus `extra`.
fn case_json(cfg: &ContrastConfig, seed: u64, step: u64, extra: Value) -> String {
    let s = &cfg.sampling;
    let mut case = json!({
        "tau": cfg.tau, "lambda": cfg.lambda, "w_l": cfg.w_l, "w_h": cfg.w_h,
        "alpha": cfg.alpha, "max_pos": s.max_pos, "max_neg": s.max_neg,
        "hard_fraction": s.hard_fraction, "k_percentile": s.k_percentile, "bane": s.bane,
        "seed": seed, "step": step,
    });
    if let (Some(m), Value::Object(e)) = (case.as_object_mut(), extra) {
        m.extend(e);
    }
    case.to_string()
}

fn indices(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

struct LossCase {
    b: usize,
    d: usize,
    h: usize,
    w: usize,
    classes: &'static [u8],
    sampling: SamplingConfig,
    seed: u64,
    step: u64,
}

fn check_loss_case(python: &Path, name: &str, c: &LossCase, rng_seed: u64) {
    let mut rng = Rng(rng_seed);
    let (labels, pred) = maps(&mut rng, (c.b, c.h, c.w), c.classes, 5, 0.1);
    let strides = [4usize, 8, 16, 32];
    let zs: Vec<Vec<f32>> = strides
        .iter()
        .map(|s| rng.vec(c.b * c.d * (c.h / s) * (c.w / s)))
        .collect();
    let cfg = ContrastConfig {
        sampling: c.sampling.clone(),
        ..ContrastConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    for (i, (z, s)) in zs.iter().zip(strides).enumerate() {
        let p = dir.path().join(format!("z{}.npy", i + 1));
        write_npy(&p, z, &[c.b, c.d, c.h / s, c.w / s]).unwrap();
    }
    write_labels(&dir.path().join("labels.npy"), &labels, &[c.b, c.h, c.w]);
    write_labels(&dir.path().join("pred.npy"), &pred, &[c.b, c.h, c.w]);
    let case = case_json(&cfg, c.seed, c.step, json!({}));
    std::fs::write(dir.path().join("case.json"), case).unwrap();
    let torch = run_peer(python, "loss", dir.path());

    let inputs: [ScaleInput; SCALES] = std::array::from_fn(|i| ScaleInput {
        z: &zs[i],
        b: c.b,
        d: c.d,
        h: c.h / strides[i],
        w: c.w / strides[i],
        stride: strides[i],
    });
    let ours = contrastive_loss(
        &HostInputs {
            scales: &inputs,
            labels: &labels,
            pred: &pred,
            full_h: c.h,
            full_w: c.w,
        },
        &cfg,
        c.seed,
        c.step,
    )
    .unwrap();

    // The same anchors, each with the very same positives, hard and random negatives.
    let anchors = torch["anchors"].as_array().unwrap();
    assert_eq!(anchors.len(), ours.anchors.len(), "{name}: anchor count");
    let mut hard_total = 0;
    for (a, o) in anchors.iter().zip(&ours.anchors) {
        let (i, class) = (
            a["scale"].as_u64().unwrap() as usize,
            a["class"].as_u64().unwrap() as u8,
        );
        assert_eq!((i, class), (o.scale, o.class), "{name}: anchor order");
        let (sh, sw) = (c.h / strides[i], c.w / strides[i]);
        let y = downsample_nearest(&labels, c.b, c.h, c.w, strides[i]).unwrap();
        let p = downsample_nearest(&pred, c.b, c.h, c.w, strides[i]).unwrap();
        let smp = sample_anchor(
            &LabelMaps {
                y: &y,
                pred: &p,
                b: c.b,
                h: sh,
                w: sw,
            },
            class,
            &cfg.sampling,
            c.seed,
            c.step,
            i as u32 + 1,
        )
        .unwrap();
        let at = format!("{name}: scale {} class {class}", i + 1);
        assert_eq!(indices(&a["positives"]), smp.positives, "{at}: positives");
        assert_eq!(
            indices(&a["hard"]),
            smp.hard_negatives,
            "{at}: hard negatives"
        );
        assert_eq!(
            indices(&a["random"]),
            smp.random_negatives,
            "{at}: random negatives"
        );
        hard_total += smp.hard_negatives.len();
    }
    assert_eq!(
        hard_total > 0,
        cfg.sampling.bane,
        "{name}: the case must exercise BANE exactly when it is on"
    );

    // The loss to f64 precision (both sum in f64 from the same f32 inputs).
    let tl = torch["loss"].as_f64().unwrap();
    println!(
        "{name}: {} anchors, {hard_total} hard negatives, L_PA {} (torch − engine = {:.1e})",
        anchors.len(),
        ours.loss,
        tl - ours.loss
    );
    assert!(
        (tl - ours.loss).abs() <= 1e-9 * tl.abs().max(1.0),
        "{name}: L_PA torch {tl} vs engine {}",
        ours.loss
    );
    for (i, v) in torch["per_scale"].as_array().unwrap().iter().enumerate() {
        let v = v.as_f64().unwrap();
        assert!(
            (v - ours.per_scale[i]).abs() <= 1e-9 * v.abs().max(1.0),
            "{name}: L_{} torch {v} vs engine {}",
            i + 1,
            ours.per_scale[i]
        );
    }
    // Autograd's gradient against the engine's (stored as f32).
    for i in 0..SCALES {
        let (g, _) = read_npy(&dir.path().join(format!("grad{}.npy", i + 1))).unwrap();
        let scale = g.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = g
            .iter()
            .zip(&ours.grads[i])
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            worst <= 1e-6 * scale + 1e-12,
            "{name}: dL/dz{} differs by {worst} (largest |g| {scale})",
            i + 1
        );
        println!(
            "{name}: dL/dz{} worst difference {:.1e} of the largest |g|",
            i + 1,
            worst / scale.max(f32::MIN_POSITIVE)
        );
        if ours.anchors_used[i] > 0 {
            assert!(
                scale > 0.0,
                "{name}: scale {} has anchors but no gradient",
                i + 1
            );
        }
    }
}

#[test]
fn contrastive_loss_matches_pytorch_autograd() {
    let Some(python) = torch_python("contrastive_loss_matches_pytorch_autograd") else {
        return;
    };
    let small_caps = SamplingConfig {
        max_pos: 40,
        max_neg: 60,
        ..SamplingConfig::default()
    };
    let cases = [
        // Caps far below the candidate counts: the hash keys decide, BANE takes its half.
        (
            "BANE, small caps",
            LossCase {
                b: 2,
                d: 8,
                h: 64,
                w: 96,
                classes: &[0, 1, 2, 3],
                sampling: small_caps.clone(),
                seed: 7,
                step: 3,
            },
        ),
        // Odd sizes (not multiples of 32), one image, a full-strength BANE.
        (
            "BANE, K = 1, all hard",
            LossCase {
                b: 1,
                d: 5,
                h: 70,
                w: 45,
                classes: &[0, 1, 2],
                sampling: SamplingConfig {
                    hard_fraction: 1.0,
                    k_percentile: 1.0,
                    ..small_caps.clone()
                },
                seed: 1,
                step: 0,
            },
        ),
        (
            "CCL (BANE off), default caps",
            LossCase {
                b: 3,
                d: 16,
                h: 64,
                w: 64,
                classes: &[0, 1, 2, 3, 4],
                sampling: SamplingConfig {
                    bane: false,
                    ..SamplingConfig::default()
                },
                seed: 11,
                step: 12345,
            },
        ),
    ];
    for (k, (name, case)) in cases.iter().enumerate() {
        check_loss_case(&python, name, case, 100 + k as u64);
    }
}

/// Largest |a − b| and largest |b| of two equally long slices.
fn worst_diff(a: &[f32], b: &[f32]) -> (f32, f32) {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold((0f32, 0f32), |(d, m), (x, y)| {
        (d.max((x - y).abs()), m.max(y.abs()))
    })
}

#[test]
fn training_step_matches_pytorch() {
    let Some(python) = torch_python("training_step_matches_pytorch") else {
        return;
    };
    let model = NetConfig {
        width: 4,
        decoder: 8,
        proj_dim: 8,
        refine: 0,
    };
    let classes = 3;
    let graph = contextrast_net(&model, classes);
    let shape = Shape::new(2, 3, 64, 96);
    let mut rng = Rng(5);
    let x = rng.vec(shape.numel());
    let (labels, _) = maps(&mut rng, (shape.n, shape.h, shape.w), &[0, 1, 2], 7, 0.1);
    // Random negatives only: BANE reads the argmax, which near-ties could flip between the
    // engine's f32 and PyTorch's f64 forward; its sampling is checked on fixed predictions above.
    let contrast = ContrastConfig {
        sampling: SamplingConfig {
            bane: false,
            max_pos: 64,
            max_neg: 96,
            ..SamplingConfig::default()
        },
        ..ContrastConfig::default()
    };
    let sgd = Sgd {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 5e-4,
    };
    for with_contrast in [false, true] {
        let name = if with_contrast { "CE + L_PA" } else { "CE" };
        let be = Cpu;
        let mut params = Params::init(&be, &graph, 3).unwrap();
        let before = params.to_host(&be).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pdir = dir.path().join("params");
        std::fs::create_dir(&pdir).unwrap();
        for (n, v) in &before {
            write_npy(&pdir.join(format!("{n}.npy")), v, &[v.len()]).unwrap();
        }
        write_npy(
            &dir.path().join("x.npy"),
            &x,
            &[shape.n, 3, shape.h, shape.w],
        )
        .unwrap();
        write_labels(
            &dir.path().join("labels.npy"),
            &labels,
            &[shape.n, shape.h, shape.w],
        );
        let extra = json!({
            "classes": classes, "width": model.width, "decoder": model.decoder,
            "proj_dim": model.proj_dim, "contrast": with_contrast,
            "lr": sgd.lr, "momentum": sgd.momentum, "weight_decay": sgd.weight_decay,
        });
        let case = case_json(&contrast, 9, 4, extra);
        std::fs::write(dir.path().join("case.json"), case).unwrap();
        let torch = run_peer(&python, "step", dir.path());

        let mut grads = Grads::zeros(&be, &params).unwrap();
        let mut vel = Grads::zeros(&be, &params).unwrap().values;
        let (ce, stats) = train_step(
            &be,
            &graph,
            &mut params,
            &mut grads,
            &mut vel,
            &x,
            &labels,
            shape,
            None,
            &sgd,
            with_contrast.then_some(ContrastStep {
                cfg: &contrast,
                seed: 9,
                step: 4,
            }),
        )
        .unwrap();
        let ce = f64::from(be.download(&ce).unwrap()[0]);
        let tce = torch["ce"].as_f64().unwrap();
        assert!(
            (ce - tce).abs() <= 1e-5 * tce,
            "{name}: CE engine {ce} vs torch {tce}"
        );
        assert_eq!(stats.is_some(), with_contrast, "{name}: L_PA computed");
        if let Some(st) = stats {
            let tl = torch["l_pa"].as_f64().unwrap();
            assert!(
                (st.l_pa - tl).abs() <= 1e-4 * tl,
                "{name}: L_PA engine {} vs torch {tl}",
                st.l_pa
            );
        }
        // Every parameter's and statistic's change, against PyTorch's.
        let after = params.to_host(&be).unwrap();
        let mut checked = 0;
        let mut worst_rel = 0f32;
        for (n, v0) in &before {
            let (t1, _) = read_npy(&dir.path().join("after").join(format!("{n}.npy")))
                .unwrap_or_else(|e| panic!("{name}: torch has no parameter {n}: {e}"));
            let ours: Vec<f32> = after[n].iter().zip(v0).map(|(a, b)| a - b).collect();
            let theirs: Vec<f32> = t1.iter().zip(v0).map(|(a, b)| a - b).collect();
            let (worst, largest) = worst_diff(&ours, &theirs);
            assert!(
                worst <= 1e-3 * largest + 1e-7,
                "{name}: {n} changed by up to {largest}, engine and torch differ by {worst}"
            );
            // Some changes are zero in exact arithmetic (a bias right before batch norm): f32
            // noise there is measured against the absolute floor, not the change.
            worst_rel = worst_rel.max(worst / largest.max(1e-4));
            checked += 1;
        }
        println!(
            "{name}: {checked} tensors, worst difference {worst_rel:.1e} of the largest change (or of 1e-4)"
        );
        let torch_count = std::fs::read_dir(dir.path().join("after")).unwrap().count();
        assert_eq!(checked, torch_count, "{name}: parameter sets differ");
    }
}
