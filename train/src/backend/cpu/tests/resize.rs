//! Bilinear resize: PyTorch's `align_corners=False` numbers and the adjoint by finite differences.
use super::{Rng, assert_close, assert_close32, assert_shape_err, dot, fd_grad};
use crate::backend::ops::*;
use crate::backend::{Cpu, Shape};

#[test]
fn upsample_2x2_to_4x4_matches_pytorch() {
    // torch.nn.functional.interpolate([[1, 2], [3, 4]], size=4, mode="bilinear", align_corners=False)
    let y = Cpu
        .resize_bilinear_forward(&vec![1.0, 2.0, 3.0, 4.0], Shape::new(1, 1, 2, 2), 4, 4)
        .unwrap();
    #[rustfmt::skip]
    let want = [
        1.0, 1.25, 1.75, 2.0,
        1.5, 1.75, 2.25, 2.5,
        2.5, 2.75, 3.25, 3.5,
        3.0, 3.25, 3.75, 4.0,
    ];
    assert_close32("2×2 → 4×4", &y, &want, 1e-6);
}

#[test]
fn downsample_by_two_averages_blocks_and_same_size_is_identity() {
    let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
    let xs = Shape::new(1, 1, 4, 4);
    let y = Cpu.resize_bilinear_forward(&x, xs, 2, 2).unwrap();
    assert_close32("4×4 → 2×2", &y, &[2.5, 4.5, 10.5, 12.5], 1e-6);
    assert_close32(
        "identity",
        &Cpu.resize_bilinear_forward(&x, xs, 4, 4).unwrap(),
        &x,
        0.0,
    );
    // 1×3 → 1×2: src = (d + ½)·1.5 − ½ = 0.25, 1.75.
    let y = Cpu
        .resize_bilinear_forward(&vec![0.0, 4.0, 8.0], Shape::new(1, 1, 1, 3), 1, 2)
        .unwrap();
    assert_close32("3 → 2", &y, &[1.0, 7.0], 1e-6);
}

#[test]
fn backward_matches_finite_differences() {
    let mut rng = Rng::new(31);
    for (xs, oh, ow) in [
        (Shape::new(2, 2, 3, 5), 7, 9),
        (Shape::new(2, 3, 7, 9), 3, 4),
        (Shape::new(1, 2, 5, 4), 5, 7),
    ] {
        let x = rng.tensor(xs);
        let r = rng.vec(xs.n * xs.c * oh * ow);
        let dx = Cpu.resize_bilinear_backward(&r, xs, oh, ow).unwrap();
        let fd = fd_grad(&x, 1e-2, |x| {
            dot(
                &r,
                &Cpu.resize_bilinear_forward(&x.to_vec(), xs, oh, ow)
                    .unwrap(),
            )
        });
        assert_close(&format!("resize dx {xs} → {oh}×{ow}"), &dx, &fd, 1e-3, 1e-3);
    }
}

#[test]
fn wrong_lengths_are_shape_errors() {
    let xs = Shape::new(1, 2, 3, 3);
    assert_shape_err(
        "short x",
        Cpu.resize_bilinear_forward(&vec![0.0; 17], xs, 6, 6),
    );
    assert_shape_err(
        "short dy",
        Cpu.resize_bilinear_backward(&vec![0.0; 71], xs, 6, 6),
    );
    assert_shape_err(
        "empty input",
        Cpu.resize_bilinear_forward(&vec![], Shape::new(1, 1, 0, 3), 2, 2),
    );
}
