//! Convolution: forward against a direct loop, both backward passes against finite differences,
//! every tiling against the default one.
use super::super::conv;
use super::{Rng, assert_close, assert_close32, assert_shape_err, dot, fd_grad};
use crate::backend::ops::*;
use crate::backend::{ConvSpec, Cpu, Shape};

/// (input shape, spec): odd sizes, stride 2, padding, k = 1, 3 and 5, batch 2; the 1×1
/// stride-1 case takes the no-im2col path.
fn cases() -> Vec<(Shape, ConvSpec)> {
    let spec = |c_in, c_out, k, stride, pad| ConvSpec {
        c_in,
        c_out,
        k,
        stride,
        pad,
    };
    vec![
        (Shape::new(2, 3, 7, 5), spec(3, 4, 3, 2, 1)),
        (Shape::new(2, 3, 6, 7), spec(3, 5, 3, 1, 0)),
        (Shape::new(2, 4, 5, 5), spec(4, 3, 1, 1, 0)),
        (Shape::new(2, 3, 7, 6), spec(3, 2, 1, 2, 0)),
        (Shape::new(1, 2, 9, 8), spec(2, 3, 3, 2, 2)),
        (Shape::new(2, 2, 8, 7), spec(2, 3, 5, 1, 2)),
        (Shape::new(2, 2, 3, 3), spec(2, 2, 3, 3, 1)),
    ]
}

/// Direct 7-deep convolution in f64: the reference.
fn conv_direct(x: &[f32], xs: Shape, w: &[f32], b: Option<&[f32]>, s: &ConvSpec) -> Vec<f32> {
    let os = s.out_shape(xs);
    let mut y = vec![0.0; os.numel()];
    for n in 0..xs.n {
        for co in 0..s.c_out {
            for oy in 0..os.h {
                for ox in 0..os.w {
                    let mut acc = b.map_or(0.0, |b| f64::from(b[co]));
                    for ci in 0..s.c_in {
                        for ki in 0..s.k {
                            for kj in 0..s.k {
                                let iy = (oy * s.stride + ki) as isize - s.pad as isize;
                                let ix = (ox * s.stride + kj) as isize - s.pad as isize;
                                if iy < 0 || ix < 0 || iy >= xs.h as isize || ix >= xs.w as isize {
                                    continue;
                                }
                                let xv =
                                    x[((n * xs.c + ci) * xs.h + iy as usize) * xs.w + ix as usize];
                                let wv = w[((co * s.c_in + ci) * s.k + ki) * s.k + kj];
                                acc += f64::from(xv) * f64::from(wv);
                            }
                        }
                    }
                    y[((n * s.c_out + co) * os.h + oy) * os.w + ox] = acc as f32;
                }
            }
        }
    }
    y
}

#[test]
fn forward_matches_direct_convolution_for_every_tiling() {
    let mut rng = Rng::new(1);
    for (xs, spec) in cases() {
        let (x, w, b) = (
            rng.tensor(xs),
            rng.vec(spec.weight_len()),
            rng.vec(spec.c_out),
        );
        let want = conv_direct(&x, xs, &w, Some(&b[..]), &spec);
        let got = Cpu.conv2d_forward(&x, xs, &w, Some(&b), &spec).unwrap();
        assert_close32(&format!("{spec:?} default"), &got, &want, 1e-5);
        for tiles in [1, 2, 3, 7] {
            let got = conv::forward(&x, xs, &w, Some(&b[..]), &spec, Some(tiles)).unwrap();
            assert_close32(&format!("{spec:?} tiles {tiles}"), &got, &want, 1e-5);
        }
        let no_bias = Cpu.conv2d_forward(&x, xs, &w, None, &spec).unwrap();
        assert_close32(
            &format!("{spec:?} no bias"),
            &no_bias,
            &conv_direct(&x, xs, &w, None, &spec),
            1e-5,
        );
    }
}

#[test]
fn forward_of_a_known_kernel() {
    // 3×3 input, 2×2 kernel of ones, stride 1, no padding: sums of 2×2 windows, plus bias 0.5.
    let spec = ConvSpec {
        c_in: 1,
        c_out: 1,
        k: 2,
        stride: 1,
        pad: 0,
    };
    let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    let y = Cpu
        .conv2d_forward(
            &x,
            Shape::new(1, 1, 3, 3),
            &vec![1.0; 4],
            Some(&vec![0.5]),
            &spec,
        )
        .unwrap();
    assert_eq!(y, vec![12.5, 16.5, 24.5, 28.5]);
}

#[test]
fn backward_input_matches_finite_differences() {
    let mut rng = Rng::new(2);
    for (xs, spec) in cases() {
        let (x, w) = (rng.tensor(xs), rng.vec(spec.weight_len()));
        let r = rng.tensor(spec.out_shape(xs));
        let dx = Cpu.conv2d_backward_input(&r, &w, xs, &spec).unwrap();
        let fd = fd_grad(&x, 1e-2, |x| {
            dot(&r, &conv::forward(x, xs, &w, None, &spec, Some(1)).unwrap())
        });
        assert_close(&format!("dx {spec:?}"), &dx, &fd, 1e-3, 1e-3);
        for groups in [1, 2, 3] {
            let dx_g = conv::backward_input(&r, &w, xs, &spec, Some(groups)).unwrap();
            assert_close32(&format!("dx {spec:?} groups {groups}"), &dx_g, &dx, 1e-5);
        }
    }
}

#[test]
fn backward_weight_matches_finite_differences_and_accumulates() {
    let mut rng = Rng::new(3);
    for (xs, spec) in cases() {
        let (x, w, b) = (
            rng.tensor(xs),
            rng.vec(spec.weight_len()),
            rng.vec(spec.c_out),
        );
        let r = rng.tensor(spec.out_shape(xs));
        // Gradients accumulate: start from 1 and subtract it afterwards.
        let (mut dw, mut db) = (vec![1.0; w.len()], vec![1.0; b.len()]);
        Cpu.conv2d_backward_weight(&x, xs, &r, &spec, &mut dw, Some(&mut db))
            .unwrap();
        dw.iter_mut().chain(db.iter_mut()).for_each(|v| *v -= 1.0);
        let fd_w = fd_grad(&w, 1e-2, |w| {
            dot(&r, &conv_direct(&x, xs, w, Some(&b[..]), &spec))
        });
        let fd_b = fd_grad(&b, 1e-2, |b| {
            dot(&r, &conv_direct(&x, xs, &w, Some(b), &spec))
        });
        assert_close(&format!("dw {spec:?}"), &dw, &fd_w, 1e-3, 1e-3);
        assert_close(&format!("db {spec:?}"), &db, &fd_b, 1e-3, 1e-3);
        for tiles in [1, 2, 5] {
            let mut dw_t = vec![0.0; w.len()];
            conv::backward_weight(&x, xs, &r, &spec, &mut dw_t, None, Some(tiles)).unwrap();
            assert_close32(&format!("dw {spec:?} tiles {tiles}"), &dw_t, &dw, 1e-4);
        }
    }
}

#[test]
fn large_batch_one_conv_uses_tiles_and_stays_exact() {
    // Batch 1 and 40×40 outputs: the default plan may cut the image into column tiles.
    let mut rng = Rng::new(4);
    let xs = Shape::new(1, 3, 80, 80);
    let spec = ConvSpec {
        c_in: 3,
        c_out: 4,
        k: 3,
        stride: 2,
        pad: 1,
    };
    let (x, w) = (rng.tensor(xs), rng.vec(spec.weight_len()));
    let y = Cpu.conv2d_forward(&x, xs, &w, None, &spec).unwrap();
    assert_close32(
        "80×80 forward",
        &y,
        &conv_direct(&x, xs, &w, None, &spec),
        1e-5,
    );
    let r = rng.tensor(spec.out_shape(xs));
    let (mut dw, mut dw1) = (vec![0.0; w.len()], vec![0.0; w.len()]);
    Cpu.conv2d_backward_weight(&x, xs, &r, &spec, &mut dw, None)
        .unwrap();
    conv::backward_weight(&x, xs, &r, &spec, &mut dw1, None, Some(1)).unwrap();
    assert_close32("80×80 dw", &dw, &dw1, 1e-3);
}

#[test]
fn wrong_lengths_and_specs_are_shape_errors() {
    let xs = Shape::new(2, 3, 5, 5);
    let spec = ConvSpec {
        c_in: 3,
        c_out: 2,
        k: 3,
        stride: 1,
        pad: 1,
    };
    let (x, w, dy) = (
        vec![0.0; xs.numel()],
        vec![0.0; spec.weight_len()],
        vec![0.0; spec.out_shape(xs).numel()],
    );
    let short = vec![0.0; 3];
    assert_shape_err("short x", Cpu.conv2d_forward(&short, xs, &w, None, &spec));
    assert_shape_err("short w", Cpu.conv2d_forward(&x, xs, &short, None, &spec));
    assert_shape_err(
        "short b",
        Cpu.conv2d_forward(&x, xs, &w, Some(&short), &spec),
    );
    let wrong_c = ConvSpec { c_in: 4, ..spec };
    assert_shape_err("channels", Cpu.conv2d_forward(&x, xs, &w, None, &wrong_c));
    let too_big = ConvSpec {
        k: 9,
        pad: 0,
        ..spec
    };
    assert_shape_err(
        "kernel > input",
        Cpu.conv2d_forward(&x, xs, &vec![0.0; too_big.weight_len()], None, &too_big),
    );
    let stride0 = ConvSpec { stride: 0, ..spec };
    assert_shape_err("stride 0", Cpu.conv2d_forward(&x, xs, &w, None, &stride0));
    assert_shape_err("short dy", Cpu.conv2d_backward_input(&short, &w, xs, &spec));
    let (mut dw, mut db) = (vec![0.0; w.len()], vec![0.0; 1]);
    assert_shape_err(
        "short db",
        Cpu.conv2d_backward_weight(&x, xs, &dy, &spec, &mut dw, Some(&mut db)),
    );
    let mut dw_short = vec![0.0; 2];
    assert_shape_err(
        "short dw",
        Cpu.conv2d_backward_weight(&x, xs, &dy, &spec, &mut dw_short, None),
    );
}
