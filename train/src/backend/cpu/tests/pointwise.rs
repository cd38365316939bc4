//! Elementwise ops, ReLU and SGD.
use super::{Rng, assert_close, assert_close32, assert_shape_err, dot, fd_grad};
use crate::backend::Cpu;
use crate::backend::ops::*;

#[test]
fn elementwise_ops_on_small_and_parallel_sizes() {
    // 40 000 elements crosses the single-thread threshold.
    for len in [5, 40_000] {
        let a: Vec<f32> = (0..len).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..len).map(|i| 2.0 * i as f32).collect();
        let sum = Cpu.add(&a, &b).unwrap();
        assert!(
            sum.iter().enumerate().all(|(i, &v)| v == 3.0 * i as f32),
            "add, len {len}"
        );
        let mut acc = a.clone();
        Cpu.add_assign(&mut acc, &b).unwrap();
        assert_eq!(acc, sum, "add_assign, len {len}");
        Cpu.scale(&mut acc, -0.5).unwrap();
        assert!(
            acc.iter().enumerate().all(|(i, &v)| v == -1.5 * i as f32),
            "scale, len {len}"
        );
        Cpu.fill(&mut acc, 0.25).unwrap();
        assert!(acc.iter().all(|&v| v == 0.25), "fill, len {len}");
    }
    assert_shape_err("add", Cpu.add(&vec![0.0; 3], &vec![0.0; 2]));
    assert_shape_err(
        "add_assign",
        Cpu.add_assign(&mut vec![0.0; 3], &vec![0.0; 4]),
    );
}

#[test]
fn relu_forward_backward() {
    let x = vec![-2.0, -0.0, 0.5, 3.0, f32::NAN];
    let y = Cpu.relu_forward(&x).unwrap();
    assert_eq!(&y[..4], &[0.0, 0.0, 0.5, 3.0]);
    assert!(y[4].is_nan(), "NaN must propagate");
    let dx = Cpu
        .relu_backward(&vec![1.0, 2.0, 3.0, 4.0, 5.0], &y)
        .unwrap();
    assert_eq!(dx, vec![0.0, 0.0, 3.0, 4.0, 0.0]);
    assert_shape_err("relu_backward", Cpu.relu_backward(&vec![1.0], &y));
}

#[test]
fn relu_backward_matches_finite_differences() {
    let mut rng = Rng::new(41);
    // Keep inputs away from the kink at 0.
    let x: Vec<f32> = rng
        .vec(60)
        .iter()
        .map(|&v| if v.abs() < 0.1 { v + 0.2 } else { v })
        .collect();
    let r = rng.vec(60);
    let dx = Cpu
        .relu_backward(&r, &Cpu.relu_forward(&x).unwrap())
        .unwrap();
    let fd = fd_grad(&x, 1e-3, |x| {
        dot(&r, &Cpu.relu_forward(&x.to_vec()).unwrap())
    });
    assert_close("relu dx", &dx, &fd, 1e-4, 1e-3);
}

#[test]
fn sgd_steps_follow_the_pytorch_rule() {
    let (mut p, mut v) = (vec![1.0, -2.0], vec![0.2, 0.0]);
    let g = vec![0.5, 1.0];
    Cpu.sgd_step(&mut p, &g, &mut v, 0.1, 0.9, 0.01).unwrap();
    // g' = g + 0.01·p = (0.51, 0.98); v = 0.9·v + g' = (0.69, 0.98); p −= 0.1·v.
    assert_close32("velocity", &v, &[0.69, 0.98], 2e-6);
    assert_close32("param", &p, &[0.931, -2.098], 2e-6);
    Cpu.sgd_step(&mut p, &g, &mut v, 0.1, 0.9, 0.0).unwrap();
    // v = 0.9·(0.69, 0.98) + (0.5, 1.0) = (1.121, 1.882).
    assert_close32("velocity 2", &v, &[1.121, 1.882], 2e-6);
    assert_close32("param 2", &p, &[0.8189, -2.2862], 2e-6);
    assert_shape_err(
        "sgd velocity",
        Cpu.sgd_step(&mut p, &g, &mut vec![0.0], 0.1, 0.9, 0.0),
    );
}
