//! CUDA ↔ CPU parity of the contrastive loss L_PA (kernels/contrast.cu against
//! train/src/loss/): nearest downsampling, class statistics, the exact EDT, BANE candidates and
//! the hash-keyed selection must be identical (same pixel indices); the loss, per-scale values
//! and gradients within the tolerances each test states. Random inputs, several shapes, odd
//! sizes, ignore labels, absent classes, empty and full error regions, BANE on and off.
//! Without a GPU each test prints "SKIPPED (no CUDA): <op>" and passes, so the suite runs
//! everywhere and bites on a GPU host:
//! `cargo test -p contextrast-train --test cuda_contrast_parity -- --nocapture`.
use contextrast_train::Result;
use contextrast_train::backend::cuda::CudaOptions;
use contextrast_train::backend::cuda::contrast::LossPath;
use contextrast_train::backend::ops::*;
use contextrast_train::backend::{Backend, ContrastInputs, Cpu, ScaleBuf, Shape};
use contextrast_train::loss::bane::{
    IGNORE, LabelMaps, SamplingConfig, downsample_nearest, sample_anchor,
};
use contextrast_train::loss::contrast::{ContrastConfig, SCALES};
use contextrast_train::loss::edt::edt_squared;

mod common;
use common::contrast_cases::{
    Case, STRIDES, assert_close64, case, cases, configs, cpu_reference, maps,
};
use common::{Rng, gpu};

/// `|c − g| ≤ atol + rtol·max(|c|, |g|)` everywhere, with `atol = rtol · max|c|`.
#[track_caller]
fn assert_close(op: &str, cpu: &[f32], gpu: &[f32], rtol: f32) {
    assert_eq!(cpu.len(), gpu.len(), "{op}: lengths differ");
    let scale = cpu.iter().fold(0f32, |m, v| m.max(v.abs()));
    let atol = rtol * scale.max(1e-30);
    for (i, (c, g)) in cpu.iter().zip(gpu).enumerate() {
        assert!(
            (c - g).abs() <= atol + rtol * c.abs().max(g.abs()),
            "{op}[{i}]: cpu {c} vs cuda {g} beyond rtol {rtol} (scale {scale})"
        );
    }
}

#[test]
fn downsample_nearest_is_identical() -> Result<()> {
    let Some(cuda) = gpu("contrast downsample_nearest") else {
        return Ok(());
    };
    let mut rng = Rng(1);
    for (b, h, w) in [(1, 4, 4), (2, 64, 96), (3, 70, 45), (1, 33, 31), (2, 5, 3)] {
        let (y, _) = maps(&mut rng, (b, h, w), &[0, 1, 2, 7], 5, 0.1);
        let dev = cuda.upload_labels(&y)?;
        for stride in [1, 2, 4, 8, 16, 32] {
            let c = downsample_nearest(&y, b, h, w, stride)?;
            let g = cuda.download_labels(&cuda.contrast_downsample(&dev, b, h, w, stride)?)?;
            assert_eq!(&g[..c.len()], &c[..], "{b}×{h}×{w} stride {stride}");
        }
    }
    Ok(())
}

#[test]
fn class_stats_match() -> Result<()> {
    let Some(cuda) = gpu("contrast class statistics (counts, sums)") else {
        return Ok(());
    };
    let mut rng = Rng(2);
    for (b, d, h, w) in [(1, 1, 1, 1), (2, 8, 16, 24), (3, 5, 17, 9), (2, 64, 32, 32)] {
        let (y, _) = maps(&mut rng, (b, h, w), &[0, 3, 4, 200], 3, 0.2);
        let z: Vec<f32> = (0..b * d * h * w)
            .map(|_| (rng.below(2001) as f32 / 1000.0) - 1.0)
            .collect();
        let st = cuda.contrast_class_stats(
            &cuda.upload(&z)?,
            Shape::new(b, d, h, w),
            &cuda.upload_labels(&y)?,
        )?;
        let counts = cuda.download_t(&st.counts)?;
        let sums = cuda.download_t(&st.sums)?;
        let hw = h * w;
        let mut cc = vec![0i32; 256];
        let mut cs = vec![0f64; 256 * d];
        for (p, &l) in y.iter().enumerate() {
            if l == IGNORE {
                continue;
            }
            cc[usize::from(l)] += 1;
            for k in 0..d {
                cs[usize::from(l) * d + k] += f64::from(z[(p / hw) * d * hw + k * hw + p % hw]);
            }
        }
        assert_eq!(&counts[..256], &cc[..], "counts {b}×{d}×{h}×{w}");
        for (i, (c, g)) in cs.iter().zip(&sums).enumerate() {
            assert!(
                (c - g).abs() <= 1e-9 * c.abs().max(1.0),
                "sum[{i}] {c} vs {g}"
            );
        }
    }
    Ok(())
}

#[test]
fn edt_is_identical() -> Result<()> {
    let Some(cuda) = gpu("contrast exact squared EDT") else {
        return Ok(());
    };
    let mut rng = Rng(3);
    // One mask per image, encoded as anchor class 1's error region: ŷ = 1, Y = 0.
    for (h, w) in [(1, 1), (1, 9), (9, 1), (7, 5), (16, 16), (33, 17), (64, 96)] {
        let n = h * w;
        let mut masks: Vec<Vec<bool>> = vec![vec![false; n], vec![true; n]];
        let mut one = vec![false; n];
        one[n / 2] = true;
        masks.push(one);
        for density in [0.1, 0.5, 0.95] {
            masks.push((0..n).map(|_| rng.chance(density)).collect());
        }
        // Rectangles: long straight edges and ties.
        let mut rect = vec![false; n];
        for r in h / 4..(3 * h).div_ceil(4) {
            for c in w / 3..w {
                rect[r * w + c] = true;
            }
        }
        masks.push(rect);
        let b = masks.len();
        let y = vec![0u8; b * n];
        let pred: Vec<u8> = masks.iter().flatten().map(|&m| u8::from(m)).collect();
        let got = cuda.contrast_edt(
            &cuda.upload_labels(&y)?,
            &cuda.upload_labels(&pred)?,
            b,
            h,
            w,
            &[1],
        )?;
        for (bi, m) in masks.iter().enumerate() {
            let want = edt_squared(m, h, w)?;
            assert_eq!(&got[bi * n..(bi + 1) * n], &want[..], "{h}×{w} mask {bi}");
        }
    }
    // Several anchors at once on label maps with ignore.
    let (b, h, w) = (3, 23, 41);
    let (y, pred) = maps(&mut rng, (b, h, w), &[0, 1, 2, 5], 6, 0.1);
    // Class 3 is absent (an empty error mask); the last anchor is a present one, so a grid that
    // stops an anchor short shows.
    let classes = [0u8, 1, 2, 3, 5];
    let got = cuda.contrast_edt(
        &cuda.upload_labels(&y)?,
        &cuda.upload_labels(&pred)?,
        b,
        h,
        w,
        &classes,
    )?;
    let n = h * w;
    for (a, &m) in classes.iter().enumerate() {
        for bi in 0..b {
            let e: Vec<bool> = (0..n)
                .map(|p| {
                    let (l, q) = (y[bi * n + p], pred[bi * n + p]);
                    q == m && l != m && l != IGNORE
                })
                .collect();
            let want = edt_squared(&e, h, w)?;
            let off = (a * b + bi) * n;
            assert_eq!(&got[off..off + n], &want[..], "class {m} image {bi}");
        }
    }
    Ok(())
}

/// Sampling configurations: defaults, caps that bite, BANE off, extreme percentiles and shares.
fn sampling_cases() -> Vec<SamplingConfig> {
    let base = SamplingConfig::default();
    vec![
        base.clone(),
        SamplingConfig {
            max_pos: 7,
            max_neg: 11,
            ..base.clone()
        },
        SamplingConfig {
            max_pos: 50,
            max_neg: 40,
            bane: false,
            ..base.clone()
        },
        SamplingConfig {
            max_pos: 0,
            max_neg: 0,
            ..base.clone()
        },
        SamplingConfig {
            max_neg: 64,
            hard_fraction: 1.0,
            k_percentile: 1.0,
            ..base.clone()
        },
        SamplingConfig {
            max_pos: 33,
            max_neg: 97,
            hard_fraction: 0.3,
            k_percentile: 0.1,
            ..base
        },
    ]
}

#[test]
fn sampling_selects_the_same_pixels() -> Result<()> {
    let Some(cuda) = gpu("contrast sampling (BANE candidates, hash-keyed caps)") else {
        return Ok(());
    };
    let mut rng = Rng(4);
    let shapes = [
        (1, 1, 1),
        (2, 16, 16),
        (3, 17, 9),
        (2, 40, 64),
        (1, 128, 96),
    ];
    for (si, &(b, h, w)) in shapes.iter().enumerate() {
        let (mut y, mut pred) = maps(&mut rng, (b, h, w), &[0, 1, 2, 5], 4, 0.1);
        if b >= 2 {
            // Image 0: labelled 1 everywhere, predicted 0 everywhere: a full error region
            // for anchor 0. Image 1 (last): perfect prediction, no error region.
            let n = h * w;
            y[..n].fill(1);
            pred[..n].fill(0);
            let last = (b - 1) * n;
            let copy = y[last..].to_vec();
            pred[last..].copy_from_slice(&copy);
        }
        let (yd, pd) = (cuda.upload_labels(&y)?, cuda.upload_labels(&pred)?);
        // 9 never occurs (no positives); 5 may be rare.
        // Class 3 is absent (an empty error mask); the last anchor is a present one, so a grid that
        // stops an anchor short shows.
        let classes = [0u8, 1, 2, 3, 5];
        for (ci, cfg) in sampling_cases().iter().enumerate() {
            for (seed, step, scale) in [(0u64, 0u64, 1u32), (7, 123, 3)] {
                let dev = cuda.contrast_sample(
                    &LabelMaps {
                        y: &yd,
                        pred: &pd,
                        b,
                        h,
                        w,
                    },
                    &classes,
                    cfg,
                    seed,
                    step,
                    scale,
                )?;
                let got = cuda.contrast_download_samples(&dev)?;
                for (a, &m) in classes.iter().enumerate() {
                    let want = sample_anchor(
                        &LabelMaps {
                            y: &y,
                            pred: &pred,
                            b,
                            h,
                            w,
                        },
                        m,
                        cfg,
                        seed,
                        step,
                        scale,
                    )?;
                    assert_eq!(
                        got[a], want,
                        "shape {si} ({b}×{h}×{w}) config {ci} class {m} seed {seed} step {step}"
                    );
                }
            }
        }
    }
    Ok(())
}

/// The scales of a case on a backend.
fn upload<B: Backend>(be: &B, c: &Case) -> Result<Vec<(B::Buf, Shape)>> {
    STRIDES
        .iter()
        .zip(&c.z)
        .map(|(&s, z)| Ok((be.upload(z)?, Shape::new(c.b, c.d, c.h / s, c.w / s))))
        .collect()
}

fn scale_bufs<B: Backend>(bufs: &[(B::Buf, Shape)]) -> [ScaleBuf<'_, B>; SCALES] {
    std::array::from_fn(|i| ScaleBuf {
        z: &bufs[i].0,
        shape: bufs[i].1,
        stride: STRIDES[i],
    })
}

#[test]
fn whole_contrastive_loss_matches() -> Result<()> {
    let Some(cuda) =
        gpu("contrastive loss L_PA on the device (loss, per scale, gradients, counts)")
    else {
        return Ok(());
    };
    for c in cases() {
        let bufs = upload(&cuda, &c)?;
        let scales = scale_bufs(&bufs);
        let (yd, pd) = (cuda.upload_labels(&c.labels)?, cuda.upload_labels(&c.pred)?);
        for (cname, cfg) in configs() {
            for (seed, step) in [(0u64, 0u64), (42, 977)] {
                let what = format!("{} / {cname} / seed {seed} step {step}", c.name);
                let want = cpu_reference(&c, &cfg, seed, step)?;
                let k = c.classes();
                let (got, grads) = cuda
                    .contrastive_loss_device(
                        &ContrastInputs {
                            scales: &scales,
                            labels: &yd,
                            pred: &pd,
                            classes: k,
                            full_h: c.h,
                            full_w: c.w,
                        },
                        &cfg,
                        seed,
                        step,
                    )?
                    .resolve(&cuda)?;
                // Integers: identical.
                assert_eq!(got.anchors_used, want.anchors_used, "{what}: anchors_used");
                assert_eq!(got.anchors, want.anchors, "{what}: per-anchor counts");
                // f64 throughout; only summation orders differ.
                assert_close64(&format!("{what}: loss"), want.loss, got.loss, 1e-9);
                for (i, g) in grads.iter().enumerate() {
                    let op = format!("{what}: L_{}", i + 1);
                    assert_close64(&op, want.per_scale[i], got.per_scale[i], 1e-9);
                    let g = cuda.download(g)?;
                    assert_close(
                        &format!("{what}: grad scale {}", i + 1),
                        &want.grads[i],
                        &g,
                        1e-5,
                    );
                }
            }
        }
    }
    Ok(())
}

#[test]
fn whole_loss_shape_errors_do_not_panic() -> Result<()> {
    let Some(cuda) = gpu("contrastive loss L_PA shape errors") else {
        return Ok(());
    };
    let mut rng = Rng(6);
    let c = case(&mut rng, "errors", (2, 4, 64, 64), &[0, 1]);
    let bufs = upload(&cuda, &c)?;
    let scales = scale_bufs(&bufs);
    let short = cuda.upload_labels(&c.labels[1..])?;
    let pd = cuda.upload_labels(&c.pred)?;
    let cfg = ContrastConfig::default();
    let k = c.classes();
    assert!(
        cuda.contrastive_loss_device(
            &ContrastInputs {
                scales: &scales,
                labels: &short,
                pred: &pd,
                classes: k,
                full_h: c.h,
                full_w: c.w
            },
            &cfg,
            0,
            0
        )
        .is_err()
    );
    let yd = cuda.upload_labels(&c.labels)?;
    assert!(
        cuda.contrastive_loss_device(
            &ContrastInputs {
                scales: &scales,
                labels: &yd,
                pred: &pd,
                classes: k,
                full_h: c.h + 32,
                full_w: c.w
            },
            &cfg,
            0,
            0
        )
        .is_err()
    );
    for bad in [0, 256] {
        assert!(
            cuda.contrastive_loss_device(
                &ContrastInputs {
                    scales: &scales,
                    labels: &yd,
                    pred: &pd,
                    classes: bad,
                    full_h: c.h,
                    full_w: c.w
                },
                &cfg,
                0,
                0
            )
            .is_err(),
            "{bad} classes"
        );
    }
    // Labels of a class the model does not have: refused when the report is read (the
    // reference would make anchors of them), with the class named.
    let e = cuda
        .contrastive_loss_device(
            &ContrastInputs {
                scales: &scales,
                labels: &yd,
                pred: &pd,
                classes: 1,
                full_h: c.h,
                full_w: c.w,
            },
            &cfg,
            0,
            0,
        )?
        .resolve(&cuda)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("class 1") && e.contains("1 classes"), "{e}");
    Ok(())
}

/// Runs without a GPU: the host path (`contrastive_loss_on_host`, which the CPU backend takes,
/// and the CUDA backend with CONTEXTRAST_CUDA_LOSS=host or after a failed first-step check) is
/// the CPU reference, gradients uploaded unchanged.
#[test]
#[allow(clippy::default_constructed_unit_structs)] // as in cuda_parity.rs
fn host_path_through_the_backend_is_the_reference() -> Result<()> {
    let be = Cpu::default();
    for c in cases().into_iter().take(2) {
        let bufs = upload(&be, &c)?;
        let scales = scale_bufs(&bufs);
        let (yd, pd) = (be.upload_labels(&c.labels)?, be.upload_labels(&c.pred)?);
        let cfg = ContrastConfig::default();
        let want = cpu_reference(&c, &cfg, 3, 4)?;
        let (got, grads) = be
            .contrastive_loss(
                &ContrastInputs {
                    scales: &scales,
                    labels: &yd,
                    pred: &pd,
                    classes: c.classes(),
                    full_h: c.h,
                    full_w: c.w,
                },
                &cfg,
                3,
                4,
            )?
            .resolve(&be)?;
        assert_eq!(got.loss, want.loss);
        assert_eq!(got.per_scale, want.per_scale);
        assert_eq!(got.anchors_used, want.anchors_used);
        assert_eq!(got.anchors, want.anchors);
        for (g, w) in grads.iter().zip(&want.grads) {
            assert_eq!(&be.download(g)?, w);
        }
        // A label outside the model's classes is refused, by pixel.
        let few = c.classes() - 2;
        let e = be
            .contrastive_loss(
                &ContrastInputs {
                    scales: &scales,
                    labels: &yd,
                    pred: &pd,
                    classes: few,
                    full_h: c.h,
                    full_w: c.w,
                },
                &cfg,
                3,
                4,
            )
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(&format!("model's {few} classes")), "{e}");
    }
    Ok(())
}

/// The backend op on CUDA, on whichever path `CONTEXTRAST_CUDA_LOSS` selects (by default the
/// kernels, checked on the first call, which must keep them; `device`; `host`), as the trainer
/// calls it.
#[test]
fn backend_op_on_cuda_matches_the_reference() -> Result<()> {
    let Some(cuda) =
        gpu("Backend::contrastive_loss on CUDA (the path CONTEXTRAST_CUDA_LOSS selects)")
    else {
        return Ok(());
    };
    println!("CUDA contrastive loss path: {:?}", cuda.loss_path());
    for c in cases().into_iter().take(3) {
        let bufs = upload(&cuda, &c)?;
        let scales = scale_bufs(&bufs);
        let (yd, pd) = (cuda.upload_labels(&c.labels)?, cuda.upload_labels(&c.pred)?);
        let cfg = ContrastConfig::default();
        let want = cpu_reference(&c, &cfg, 11, 12)?;
        let (got, grads) = cuda
            .contrastive_loss(
                &ContrastInputs {
                    scales: &scales,
                    labels: &yd,
                    pred: &pd,
                    classes: c.classes(),
                    full_h: c.h,
                    full_w: c.w,
                },
                &cfg,
                11,
                12,
            )?
            .resolve(&cuda)?;
        assert_eq!(got.anchors, want.anchors, "{}: per-anchor counts", c.name);
        assert_close64(&format!("{}: loss", c.name), want.loss, got.loss, 1e-9);
        for (i, g) in grads.iter().enumerate() {
            let g = cuda.download(g)?;
            assert_close(
                &format!("{}: grad {}", c.name, i + 1),
                &want.grads[i],
                &g,
                1e-5,
            );
        }
    }
    common::assert_check_kept_the_kernels(&cuda, "Backend::contrastive_loss");
    Ok(())
}

/// On the default (checked) path, a first call with nothing to compare (one class: no anchor has
/// negatives) settles nothing; the next call with anchors does.
#[test]
fn checked_path_waits_for_a_call_with_anchors() -> Result<()> {
    if CudaOptions::from_env().loss != LossPath::Checked {
        println!("not run (CONTEXTRAST_CUDA_LOSS picks the path): the first-call check");
        return Ok(());
    }
    let Some(cuda) = gpu("the checked L_PA path's first call") else {
        return Ok(());
    };
    let cfg = ContrastConfig::default();
    let all = cases();
    for (c, want_used, want) in [(&all[3], 0, None), (&all[0], 1, Some(LossPath::Device))] {
        let bufs = upload(&cuda, c)?;
        let (yd, pd) = (cuda.upload_labels(&c.labels)?, cuda.upload_labels(&c.pred)?);
        let (got, _) = cuda
            .contrastive_loss(
                &ContrastInputs {
                    scales: &scale_bufs(&bufs),
                    labels: &yd,
                    pred: &pd,
                    classes: c.classes(),
                    full_h: c.h,
                    full_w: c.w,
                },
                &cfg,
                1,
                2,
            )?
            .resolve(&cuda)?;
        let used: usize = got.anchors_used.iter().sum();
        assert_eq!(used.min(1), want_used, "{}: anchors used {used}", c.name);
        assert_eq!(
            cuda.checked_loss_path(),
            want,
            "{}: {}",
            c.name,
            cuda.loss_label()
        );
    }
    Ok(())
}
