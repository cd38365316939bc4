//! CUDA ↔ CPU parity: every op on random inputs (several shapes, odd sizes, stride 2, ignore
//! labels, absent classes) on both backends. Integers must be identical, floats within the
//! tolerance each test states. Without a GPU each test prints "SKIPPED (no CUDA): <op>" and
//! passes, so the suite runs everywhere and bites on a GPU host (scripts/gpu-check).
use contextrast_train::Result;
use contextrast_train::backend::cuda::Cuda;
use contextrast_train::backend::ops::*;
use contextrast_train::backend::{ConvSpec, Cpu, IGNORE, Shape};

mod common;
use common::{Rng, gpu};

/// Both backends with the same host data uploaded.
struct Pair {
    cpu: Cpu,
    gpu: Cuda,
}

impl Pair {
    fn up(&self, v: &[f32]) -> Result<(Vec<f32>, <Cpu as Memory>::Buf, <Cuda as Memory>::Buf)> {
        Ok((v.to_vec(), self.cpu.upload(v)?, self.gpu.upload(v)?))
    }
    fn down(
        &self,
        c: &<Cpu as Memory>::Buf,
        g: &<Cuda as Memory>::Buf,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((self.cpu.download(c)?, self.gpu.download(g)?))
    }
}

// `default()` rather than the unit literal: the CPU backend may gain fields (a thread pool).
#[allow(clippy::default_constructed_unit_structs)]
fn pair(op: &str) -> Option<Pair> {
    gpu(op).map(|gpu| Pair {
        cpu: Cpu::default(),
        gpu,
    })
}

/// `|c − g| ≤ atol + rtol·max(|c|, |g|)` everywhere, with `atol = rtol · max|c|` so that
/// sums which cancel to near zero are judged against the size of their terms.
#[track_caller]
fn assert_close(op: &str, cpu: &[f32], gpu: &[f32], rtol: f32) {
    assert_eq!(cpu.len(), gpu.len(), "{op}: lengths differ");
    let scale = cpu.iter().fold(0f32, |m, v| m.max(v.abs()));
    let atol = rtol * scale.max(1e-30);
    let mut worst = (0usize, 0f32);
    for (i, (c, g)) in cpu.iter().zip(gpu).enumerate() {
        assert!(
            c.is_finite() == g.is_finite(),
            "{op}[{i}]: cpu {c} vs cuda {g}"
        );
        let err = (c - g).abs() - (atol + rtol * c.abs().max(g.abs()));
        if err > worst.1 {
            worst = (i, err);
        }
    }
    let i = worst.0;
    assert!(
        worst.1 <= 0.0,
        "{op}[{i}]: cpu {} vs cuda {} beyond rtol {rtol} (scale {scale})",
        cpu[i],
        gpu[i]
    );
}

#[test]
fn elementwise_ops_match_exactly() -> Result<()> {
    let Some(p) = pair("elementwise (add, add_assign, scale, fill, relu)") else {
        return Ok(());
    };
    let mut rng = Rng(1);
    for n in [1usize, 7, 1000, 65_537] {
        let (_, ac, ag) = p.up(&rng.vec(n))?;
        let (_, bc, bg) = p.up(&rng.vec(n))?;
        let (c, g) = p.down(&p.cpu.add(&ac, &bc)?, &p.gpu.add(&ag, &bg)?)?;
        assert_eq!(c, g, "add n={n}");

        let (mut accc, mut accg) = (p.cpu.add(&ac, &bc)?, p.gpu.add(&ag, &bg)?);
        p.cpu.add_assign(&mut accc, &ac)?;
        p.gpu.add_assign(&mut accg, &ag)?;
        p.cpu.scale(&mut accc, -0.37)?;
        p.gpu.scale(&mut accg, -0.37)?;
        let (c, g) = p.down(&accc, &accg)?;
        assert_eq!(c, g, "add_assign + scale n={n}");

        let (yc, yg) = (p.cpu.relu_forward(&ac)?, p.gpu.relu_forward(&ag)?);
        let (c, g) = p.down(&yc, &yg)?;
        assert_eq!(c, g, "relu_forward n={n}");
        let (c, g) = p.down(
            &p.cpu.relu_backward(&bc, &yc)?,
            &p.gpu.relu_backward(&bg, &yg)?,
        )?;
        assert_eq!(c, g, "relu_backward n={n}");

        p.cpu.fill(&mut accc, 2.5)?;
        p.gpu.fill(&mut accg, 2.5)?;
        let (c, g) = p.down(&accc, &accg)?;
        assert_eq!(c, g, "fill n={n}");
        assert!(g.iter().all(|&v| v == 2.5));
    }
    let (_, ac, ag) = p.up(&rng.vec(4))?;
    let (_, bc, bg) = p.up(&rng.vec(5))?;
    assert!(
        p.cpu.add(&ac, &bc).is_err() && p.gpu.add(&ag, &bg).is_err(),
        "length mismatch must be an error"
    );
    Ok(())
}

#[test]
fn sgd_step_matches() -> Result<()> {
    let Some(p) = pair("sgd_step") else {
        return Ok(());
    };
    let mut rng = Rng(2);
    let n = 4099;
    let (_, mut pc, mut pg) = p.up(&rng.vec(n))?;
    let (_, gc, gg) = p.up(&rng.vec(n))?;
    let (_, mut vc, mut vg) = p.up(&vec![0.0; n])?;
    for _ in 0..3 {
        p.cpu.sgd_step(&mut pc, &gc, &mut vc, 0.01, 0.9, 5e-4)?;
        p.gpu.sgd_step(&mut pg, &gg, &mut vg, 0.01, 0.9, 5e-4)?;
    }
    let (c, g) = p.down(&pc, &pg)?;
    assert_close("sgd param", &c, &g, 1e-6);
    let (c, g) = p.down(&vc, &vg)?;
    assert_close("sgd velocity", &c, &g, 1e-6);
    Ok(())
}

/// `(n, c_in, h, w, c_out, k, stride, pad)`.
type ConvCase = (usize, usize, usize, usize, usize, usize, usize, usize);

/// Odd sizes, stride 2, 1×1 (the im2col-free path), a kernel as large as the padded input,
/// and more channels than pixels.
const CONV_CASES: &[ConvCase] = &[
    (2, 3, 9, 7, 5, 3, 1, 1),
    (3, 4, 8, 8, 6, 3, 2, 1),
    (1, 5, 7, 9, 4, 1, 1, 0),
    (2, 6, 11, 10, 3, 1, 2, 0),
    (2, 3, 6, 5, 4, 5, 2, 2),
    (1, 2, 3, 3, 3, 3, 1, 0),
    (2, 16, 4, 3, 24, 3, 1, 1),
];

#[test]
fn conv2d_forward_matches() -> Result<()> {
    let Some(p) = pair("conv2d_forward") else {
        return Ok(());
    };
    let mut rng = Rng(3);
    for &(n, c_in, h, w, c_out, k, stride, pad) in CONV_CASES {
        let spec = ConvSpec {
            c_in,
            c_out,
            k,
            stride,
            pad,
        };
        let xs = Shape::new(n, c_in, h, w);
        let (_, xc, xg) = p.up(&rng.vec(xs.numel()))?;
        let (_, wc, wg) = p.up(&rng.vec(spec.weight_len()))?;
        let (_, bc, bg) = p.up(&rng.vec(c_out))?;
        for bias in [false, true] {
            let yc = p
                .cpu
                .conv2d_forward(&xc, xs, &wc, bias.then_some(&bc), &spec)?;
            let yg = p
                .gpu
                .conv2d_forward(&xg, xs, &wg, bias.then_some(&bg), &spec)?;
            let (c, g) = p.down(&yc, &yg)?;
            assert_eq!(c.len(), spec.out_shape(xs).numel());
            assert_close(
                &format!("conv2d_forward {spec:?} {xs} bias={bias}"),
                &c,
                &g,
                1e-4,
            );
        }
    }
    Ok(())
}

#[test]
fn conv2d_backward_input_matches() -> Result<()> {
    let Some(p) = pair("conv2d_backward_input") else {
        return Ok(());
    };
    let mut rng = Rng(4);
    for &(n, c_in, h, w, c_out, k, stride, pad) in CONV_CASES {
        let spec = ConvSpec {
            c_in,
            c_out,
            k,
            stride,
            pad,
        };
        let xs = Shape::new(n, c_in, h, w);
        let (_, dyc, dyg) = p.up(&rng.vec(spec.out_shape(xs).numel()))?;
        let (_, wc, wg) = p.up(&rng.vec(spec.weight_len()))?;
        let dxc = p.cpu.conv2d_backward_input(&dyc, &wc, xs, &spec)?;
        let dxg = p.gpu.conv2d_backward_input(&dyg, &wg, xs, &spec)?;
        let (c, g) = p.down(&dxc, &dxg)?;
        assert_eq!(c.len(), xs.numel());
        assert_close(
            &format!("conv2d_backward_input {spec:?} {xs}"),
            &c,
            &g,
            1e-4,
        );
    }
    Ok(())
}

#[test]
fn conv2d_backward_weight_accumulates_and_matches() -> Result<()> {
    let Some(p) = pair("conv2d_backward_weight") else {
        return Ok(());
    };
    let mut rng = Rng(5);
    for &(n, c_in, h, w, c_out, k, stride, pad) in CONV_CASES {
        let spec = ConvSpec {
            c_in,
            c_out,
            k,
            stride,
            pad,
        };
        let xs = Shape::new(n, c_in, h, w);
        let (_, xc, xg) = p.up(&rng.vec(xs.numel()))?;
        let (_, dyc, dyg) = p.up(&rng.vec(spec.out_shape(xs).numel()))?;
        // Non-zero starting gradients: the op must add, not overwrite.
        let (_, mut dwc, mut dwg) = p.up(&rng.vec(spec.weight_len()))?;
        let (_, mut dbc, mut dbg) = p.up(&rng.vec(c_out))?;
        p.cpu
            .conv2d_backward_weight(&xc, xs, &dyc, &spec, &mut dwc, Some(&mut dbc))?;
        p.gpu
            .conv2d_backward_weight(&xg, xs, &dyg, &spec, &mut dwg, Some(&mut dbg))?;
        p.cpu
            .conv2d_backward_weight(&xc, xs, &dyc, &spec, &mut dwc, None)?;
        p.gpu
            .conv2d_backward_weight(&xg, xs, &dyg, &spec, &mut dwg, None)?;
        let what = format!("{spec:?} {xs}");
        let (c, g) = p.down(&dwc, &dwg)?;
        assert_close(&format!("conv2d dw {what}"), &c, &g, 1e-4);
        let (c, g) = p.down(&dbc, &dbg)?;
        assert_close(&format!("conv2d db {what}"), &c, &g, 1e-4);
    }
    Ok(())
}

#[test]
fn conv2d_shape_errors_do_not_panic() -> Result<()> {
    let Some(p) = pair("conv2d errors") else {
        return Ok(());
    };
    let spec = ConvSpec {
        c_in: 3,
        c_out: 2,
        k: 5,
        stride: 1,
        pad: 0,
    };
    let xs = Shape::new(1, 3, 3, 3);
    let x = p.gpu.upload(&[0.0; 27])?;
    let w = p.gpu.upload(&vec![0.0; spec.weight_len()])?;
    assert!(
        p.gpu.conv2d_forward(&x, xs, &w, None, &spec).is_err(),
        "kernel larger than input"
    );
    let spec = ConvSpec { k: 3, ..spec };
    let short = p.gpu.upload(&[0.0; 26])?;
    assert!(
        p.gpu.conv2d_forward(&short, xs, &w, None, &spec).is_err(),
        "short input"
    );
    Ok(())
}

const BN_SHAPES: &[Shape] = &[
    Shape::new(2, 3, 5, 7),
    Shape::new(1, 4, 1, 3),
    Shape::new(4, 8, 16, 16),
    Shape::new(3, 1, 9, 1),
];

#[test]
fn batchnorm_train_forward_and_backward_match() -> Result<()> {
    let Some(p) = pair("batchnorm (train forward, backward)") else {
        return Ok(());
    };
    let mut rng = Rng(6);
    for &xs in BN_SHAPES {
        // An offset and scale per tensor so the statistics are not trivially (0, 1).
        let x: Vec<f32> = rng.vec(xs.numel()).iter().map(|v| 3.0 * v + 0.5).collect();
        let (_, xc, xg) = p.up(&x)?;
        let (_, gc, gg) = p.up(&rng.vec(xs.c))?;
        let (_, bc, bg) = p.up(&rng.vec(xs.c))?;
        let (_, mut rmc, mut rmg) = p.up(&rng.vec(xs.c))?;
        let rv: Vec<f32> = rng.vec(xs.c).iter().map(|v| v.abs() + 0.5).collect();
        let (_, mut rvc, mut rvg) = p.up(&rv)?;
        let (yc, mc, ic) = p.cpu.batchnorm_forward_train(
            &xc,
            xs,
            BatchNormTrain {
                gamma: &gc,
                beta: &bc,
                running_mean: &mut rmc,
                running_var: &mut rvc,
                momentum: 0.1,
                eps: 1e-5,
            },
        )?;
        let (yg, mg, ig) = p.gpu.batchnorm_forward_train(
            &xg,
            xs,
            BatchNormTrain {
                gamma: &gg,
                beta: &bg,
                running_mean: &mut rmg,
                running_var: &mut rvg,
                momentum: 0.1,
                eps: 1e-5,
            },
        )?;
        for (name, c, g) in [
            ("y", &yc, &yg),
            ("mean", &mc, &mg),
            ("invstd", &ic, &ig),
            ("running_mean", &rmc, &rmg),
            ("running_var", &rvc, &rvg),
        ] {
            let (c, g) = p.down(c, g)?;
            assert_close(
                &format!("batchnorm_forward_train {name} {xs}"),
                &c,
                &g,
                1e-4,
            );
        }
        let (_, dyc, dyg) = p.up(&rng.vec(xs.numel()))?;
        let (_, mut dgc, mut dgg) = p.up(&rng.vec(xs.c))?;
        let (_, mut dbc, mut dbg) = p.up(&rng.vec(xs.c))?;
        let dxc = p.cpu.batchnorm_backward(
            &dyc,
            &xc,
            xs,
            BatchNormSaved {
                gamma: &gc,
                mean: &mc,
                invstd: &ic,
            },
            &mut dgc,
            &mut dbc,
        )?;
        let dxg = p.gpu.batchnorm_backward(
            &dyg,
            &xg,
            xs,
            BatchNormSaved {
                gamma: &gg,
                mean: &mg,
                invstd: &ig,
            },
            &mut dgg,
            &mut dbg,
        )?;
        for (name, c, g) in [
            ("dx", &dxc, &dxg),
            ("dgamma", &dgc, &dgg),
            ("dbeta", &dbc, &dbg),
        ] {
            let (c, g) = p.down(c, g)?;
            assert_close(&format!("batchnorm_backward {name} {xs}"), &c, &g, 1e-4);
        }
    }
    Ok(())
}

#[test]
fn batchnorm_eval_matches() -> Result<()> {
    let Some(p) = pair("batchnorm_forward_eval") else {
        return Ok(());
    };
    let mut rng = Rng(7);
    for &xs in BN_SHAPES {
        let (_, xc, xg) = p.up(&rng.vec(xs.numel()))?;
        let (_, gc, gg) = p.up(&rng.vec(xs.c))?;
        let (_, bc, bg) = p.up(&rng.vec(xs.c))?;
        let (_, rmc, rmg) = p.up(&rng.vec(xs.c))?;
        let rv: Vec<f32> = rng.vec(xs.c).iter().map(|v| v.abs() + 0.1).collect();
        let (_, rvc, rvg) = p.up(&rv)?;
        let yc = p.cpu.batchnorm_forward_eval(
            &xc,
            xs,
            BatchNormEval {
                gamma: &gc,
                beta: &bc,
                running_mean: &rmc,
                running_var: &rvc,
                eps: 1e-5,
            },
        )?;
        let yg = p.gpu.batchnorm_forward_eval(
            &xg,
            xs,
            BatchNormEval {
                gamma: &gg,
                beta: &bg,
                running_mean: &rmg,
                running_var: &rvg,
                eps: 1e-5,
            },
        )?;
        let (c, g) = p.down(&yc, &yg)?;
        assert_close(&format!("batchnorm_forward_eval {xs}"), &c, &g, 1e-5);
    }
    Ok(())
}

#[test]
fn resize_bilinear_forward_and_backward_match() -> Result<()> {
    let Some(p) = pair("resize_bilinear (forward, backward)") else {
        return Ok(());
    };
    let mut rng = Rng(8);
    // Up ×2, odd up, down, from 1×1, identity, mixed up/down.
    let cases = [
        ((5, 7), (10, 14)),
        ((5, 7), (9, 13)),
        ((8, 9), (3, 4)),
        ((1, 1), (4, 4)),
        ((8, 8), (8, 8)),
        ((7, 5), (3, 9)),
    ];
    for ((h, w), (oh, ow)) in cases {
        let xs = Shape::new(2, 3, h, w);
        let (_, xc, xg) = p.up(&rng.vec(xs.numel()))?;
        let (c, g) = p.down(
            &p.cpu.resize_bilinear_forward(&xc, xs, oh, ow)?,
            &p.gpu.resize_bilinear_forward(&xg, xs, oh, ow)?,
        )?;
        assert_eq!(c.len(), xs.with_hw(oh, ow).numel());
        assert_close(&format!("resize forward {xs} -> {oh}x{ow}"), &c, &g, 1e-5);
        let (_, dyc, dyg) = p.up(&rng.vec(xs.with_hw(oh, ow).numel()))?;
        let (c, g) = p.down(
            &p.cpu.resize_bilinear_backward(&dyc, xs, oh, ow)?,
            &p.gpu.resize_bilinear_backward(&dyg, xs, oh, ow)?,
        )?;
        assert_eq!(c.len(), xs.numel());
        assert_close(&format!("resize backward {xs} -> {oh}x{ow}"), &c, &g, 1e-5);
    }
    Ok(())
}

#[test]
fn concat_and_split_match_and_invert() -> Result<()> {
    let Some(p) = pair("concat_channels / split_channels") else {
        return Ok(());
    };
    let mut rng = Rng(9);
    let shapes = [
        Shape::new(2, 1, 5, 3),
        Shape::new(2, 3, 5, 3),
        Shape::new(2, 2, 5, 3),
    ];
    let data: Vec<Vec<f32>> = shapes.iter().map(|s| rng.vec(s.numel())).collect();
    let cpu_parts: Vec<_> = data
        .iter()
        .map(|d| p.cpu.upload(d))
        .collect::<Result<_>>()?;
    let gpu_parts: Vec<_> = data
        .iter()
        .map(|d| p.gpu.upload(d))
        .collect::<Result<_>>()?;
    let cc = p
        .cpu
        .concat_channels(&cpu_parts.iter().zip(shapes).collect::<Vec<_>>())?;
    let cg = p
        .gpu
        .concat_channels(&gpu_parts.iter().zip(shapes).collect::<Vec<_>>())?;
    let (c, g) = p.down(&cc, &cg)?;
    assert_eq!(c, g, "concat_channels");
    // Channel 1..4 of image 1 is the second part's image 1.
    let (hw, ct) = (15, 6);
    assert_eq!(&g[(ct + 1) * hw..(ct + 4) * hw], &data[1][3 * hw..6 * hw]);
    let sg = p.gpu.split_channels(&cg, &shapes)?;
    let sc = p.cpu.split_channels(&cc, &shapes)?;
    for (i, (c, g)) in sc.iter().zip(&sg).enumerate() {
        let (c, g) = p.down(c, g)?;
        assert_eq!(c, g, "split_channels part {i}");
        assert_eq!(g, data[i], "split inverts concat, part {i}");
    }
    let bad = [Shape::new(2, 1, 5, 3), Shape::new(2, 1, 5, 4)];
    assert!(
        p.gpu.split_channels(&cg, &bad).is_err(),
        "parts with other h, w"
    );
    Ok(())
}

#[test]
fn l2_normalize_forward_and_backward_match() -> Result<()> {
    let Some(p) = pair("l2_normalize (forward, backward)") else {
        return Ok(());
    };
    let mut rng = Rng(10);
    for xs in [
        Shape::new(2, 64, 5, 7),
        Shape::new(1, 3, 1, 1),
        Shape::new(3, 17, 4, 4),
    ] {
        let mut x = rng.vec(xs.numel());
        // Pixel 0 of image 0 is all zero: the clamped branch.
        for c in 0..xs.c {
            x[c * xs.hw()] = 0.0;
        }
        let (_, xc, xg) = p.up(&x)?;
        let (c, g) = p.down(
            &p.cpu.l2_normalize_forward(&xc, xs)?,
            &p.gpu.l2_normalize_forward(&xg, xs)?,
        )?;
        assert_close(&format!("l2_normalize_forward {xs}"), &c, &g, 1e-5);
        let (_, dyc, dyg) = p.up(&rng.vec(xs.numel()))?;
        let (c, g) = p.down(
            &p.cpu.l2_normalize_backward(&dyc, &xc, xs)?,
            &p.gpu.l2_normalize_backward(&dyg, &xg, xs)?,
        )?;
        assert_close(&format!("l2_normalize_backward {xs}"), &c, &g, 1e-4);
    }
    Ok(())
}

/// Labels over `classes` (a subset, so other classes are absent), `ignore_every`-th pixel IGNORE.
fn labels(rng: &mut Rng, n: usize, classes: &[u8], ignore_every: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            if rng.below(ignore_every) == 0 {
                IGNORE
            } else {
                classes[rng.below(classes.len() as u64) as usize]
            }
        })
        .collect()
}

#[test]
fn softmax_cross_entropy_matches() -> Result<()> {
    let Some(p) = pair("softmax_cross_entropy") else {
        return Ok(());
    };
    let mut rng = Rng(11);
    let shapes = [
        Shape::new(2, 5, 7, 9),
        Shape::new(1, 2, 1, 33),
        Shape::new(3, 19, 16, 16),
    ];
    for shape in shapes {
        let logits: Vec<f32> = rng.vec(shape.numel()).iter().map(|v| 4.0 * v).collect();
        let (_, lc, lg) = p.up(&logits)?;
        let present: Vec<u8> = (0..shape.c as u8).filter(|c| c % 3 != 1).collect();
        let y = labels(&mut rng, shape.n * shape.hw(), &present, 5);
        let (yc, yg) = (p.cpu.upload_labels(&y)?, p.gpu.upload_labels(&y)?);
        let w: Vec<f32> = (0..shape.c).map(|_| rng.f().abs() + 0.1).collect();
        let (_, wc, wg) = p.up(&w)?;
        for weighted in [false, true] {
            let (loss_c, grad_c) =
                p.cpu
                    .softmax_cross_entropy(&lc, shape, &yc, weighted.then_some(&wc))?;
            let (loss_g, grad_g) =
                p.gpu
                    .softmax_cross_entropy(&lg, shape, &yg, weighted.then_some(&wg))?;
            let what = format!("{shape} weighted={weighted}");
            let (c, g) = p.down(&loss_c, &loss_g)?;
            assert_eq!(g.len(), 1);
            assert_close(&format!("cross-entropy loss {what}"), &c, &g, 1e-5);
            let (c, g) = p.down(&grad_c, &grad_g)?;
            assert_close(&format!("cross-entropy grad {what}"), &c, &g, 1e-4);
        }
    }
    // No labelled pixel: loss 0, gradient 0.
    let shape = Shape::new(1, 3, 2, 2);
    let lg = p.gpu.upload(&rng.vec(shape.numel()))?;
    let yg = p.gpu.upload_labels(&[IGNORE; 4])?;
    let (loss, grad) = p.gpu.softmax_cross_entropy(&lg, shape, &yg, None)?;
    assert_eq!(p.gpu.download(&loss)?, vec![0.0]);
    assert!(p.gpu.download(&grad)?.iter().all(|&v| v == 0.0));
    Ok(())
}

#[test]
fn argmax_channels_is_identical() -> Result<()> {
    let Some(p) = pair("argmax_channels") else {
        return Ok(());
    };
    let mut rng = Rng(12);
    for shape in [
        Shape::new(2, 5, 7, 9),
        Shape::new(1, 1, 3, 3),
        Shape::new(2, 19, 16, 17),
    ] {
        // Quantised logits make ties common: the first maximum must win on both backends.
        let logits: Vec<f32> = (0..shape.numel()).map(|_| rng.below(4) as f32).collect();
        let (_, lc, lg) = p.up(&logits)?;
        let c = p.cpu.download_labels(&p.cpu.argmax_channels(&lc, shape)?)?;
        let g = p.gpu.download_labels(&p.gpu.argmax_channels(&lg, shape)?)?;
        assert_eq!(g.len(), shape.n * shape.hw());
        assert_eq!(c, g, "argmax_channels {shape}");
    }
    Ok(())
}
