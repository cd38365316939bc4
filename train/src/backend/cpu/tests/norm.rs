//! Batch norm and L2 normalisation: hand-computed numbers and finite differences.
use super::{Rng, assert_close, assert_close32, assert_shape_err, dot, fd_grad};
use crate::backend::ops::*;
use crate::backend::{Cpu, Shape};

/// The training-mode forward with momentum 0.1 and eps 1e-5: `(y, mean, invstd)`.
fn bn_train(
    x: &Vec<f32>,
    xs: Shape,
    gamma: &Vec<f32>,
    beta: &Vec<f32>,
    running_mean: &mut Vec<f32>,
    running_var: &mut Vec<f32>,
) -> crate::Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    Cpu.batchnorm_forward_train(
        x,
        xs,
        BatchNormTrain {
            gamma,
            beta,
            running_mean,
            running_var,
            momentum: 0.1,
            eps: 1e-5,
        },
    )
}

#[test]
fn batchnorm_train_normalises_and_updates_running_stats_unbiased() {
    // Channel 0 holds 1, 2 (image 0) and 3, 4 (image 1): mean 2.5, biased var 1.25,
    // unbiased var 5/3. Channel 1 is constant 7: var 0.
    let xs = Shape::new(2, 2, 1, 2);
    let x = vec![1.0, 2.0, 7.0, 7.0, 3.0, 4.0, 7.0, 7.0];
    let (gamma, beta) = (vec![2.0, 1.0], vec![0.5, -1.0]);
    let (mut rm, mut rv) = (vec![0.0, 1.0], vec![1.0, 2.0]);
    let (y, mean, invstd) = bn_train(&x, xs, &gamma, &beta, &mut rm, &mut rv).unwrap();
    assert_close32("mean", &mean, &[2.5, 7.0], 1e-6);
    let is0 = 1.0 / (1.25f32 + 1e-5).sqrt();
    let is1 = 1.0 / 1e-5f32.sqrt();
    assert_close32("invstd", &invstd, &[is0, is1], 1e-3);
    // running = 0.9·old + 0.1·batch, with the unbiased variance.
    assert_close32("running_mean", &rm, &[0.25, 0.9 + 0.7], 1e-6);
    assert_close32("running_var", &rv, &[0.9 + 0.1 * 5.0 / 3.0, 1.8], 1e-6);
    let yv = |v: f32| 2.0 * (v - 2.5) * is0 + 0.5;
    assert_close32(
        "y",
        &y,
        &[yv(1.0), yv(2.0), -1.0, -1.0, yv(3.0), yv(4.0), -1.0, -1.0],
        1e-5,
    );
}

#[test]
fn batchnorm_eval_uses_running_stats() {
    let xs = Shape::new(1, 2, 1, 2);
    let x = vec![1.0, 3.0, -2.0, 0.0];
    let y = Cpu
        .batchnorm_forward_eval(
            &x,
            xs,
            BatchNormEval {
                gamma: &vec![2.0, 1.0],
                beta: &vec![0.0, 1.0],
                running_mean: &vec![1.0, -1.0],
                running_var: &vec![4.0, 0.25],
                eps: 0.0,
            },
        )
        .unwrap();
    // ch0: 2·(x − 1)/2; ch1: (x + 1)/0.5 + 1.
    assert_close32("eval", &y, &[0.0, 2.0, -1.0, 3.0], 1e-6);
}

#[test]
fn batchnorm_backward_matches_finite_differences() {
    let mut rng = Rng::new(11);
    let xs = Shape::new(2, 3, 3, 5);
    let (x, gamma, beta) = (rng.tensor(xs), rng.vec(3), rng.vec(3));
    let r = rng.tensor(xs);
    let fwd = |x: &[f32], g: &[f32], b: &[f32]| {
        let (mut rm, mut rv) = (vec![0.0; 3], vec![1.0; 3]);
        let (y, _, _) =
            bn_train(&x.to_vec(), xs, &g.to_vec(), &b.to_vec(), &mut rm, &mut rv).unwrap();
        dot(&r, &y)
    };
    let (mut rm, mut rv) = (vec![0.0; 3], vec![1.0; 3]);
    let (_, mean, invstd) = bn_train(&x, xs, &gamma, &beta, &mut rm, &mut rv).unwrap();
    let (mut dg, mut db) = (vec![0.5; 3], vec![0.5; 3]);
    let dx = Cpu
        .batchnorm_backward(
            &r,
            &x,
            xs,
            BatchNormSaved {
                gamma: &gamma,
                mean: &mean,
                invstd: &invstd,
            },
            &mut dg,
            &mut db,
        )
        .unwrap();
    dg.iter_mut().chain(db.iter_mut()).for_each(|v| *v -= 0.5);
    assert_close(
        "bn dx",
        &dx,
        &fd_grad(&x, 1e-3, |x| fwd(x, &gamma, &beta)),
        2e-3,
        1e-2,
    );
    assert_close(
        "bn dgamma",
        &dg,
        &fd_grad(&gamma, 1e-3, |g| fwd(&x, g, &beta)),
        2e-3,
        1e-2,
    );
    assert_close(
        "bn dbeta",
        &db,
        &fd_grad(&beta, 1e-3, |b| fwd(&x, &gamma, b)),
        2e-3,
        1e-2,
    );
}

#[test]
fn batchnorm_rejects_bad_lengths_and_single_values() {
    let xs = Shape::new(1, 2, 1, 1);
    let x = vec![1.0, 2.0];
    let (g, b) = (vec![1.0; 2], vec![0.0; 2]);
    let (mut rm, mut rv) = (vec![0.0; 2], vec![1.0; 2]);
    assert_shape_err(
        "one value per channel",
        bn_train(&x, xs, &g, &b, &mut rm, &mut rv),
    );
    let xs = Shape::new(2, 2, 1, 1);
    let x4 = vec![1.0; 4];
    let mut short = vec![0.0; 1];
    assert_shape_err(
        "short running_var",
        bn_train(&x4, xs, &g, &b, &mut rm, &mut short),
    );
    assert_shape_err(
        "short x",
        Cpu.batchnorm_forward_eval(
            &x,
            xs,
            BatchNormEval {
                gamma: &g,
                beta: &b,
                running_mean: &rm,
                running_var: &rv,
                eps: 1e-5,
            },
        ),
    );
    let (mut dg, mut db) = (vec![0.0; 2], vec![0.0; 2]);
    assert_shape_err(
        "short dy",
        Cpu.batchnorm_backward(
            &x,
            &x4,
            xs,
            BatchNormSaved {
                gamma: &g,
                mean: &rm,
                invstd: &rv,
            },
            &mut dg,
            &mut db,
        ),
    );
}

#[test]
fn l2_normalize_gives_unit_vectors_and_keeps_zero_vectors() {
    // Pixel 0 is (3, 4), pixel 1 is (0, 0).
    let xs = Shape::new(1, 2, 1, 2);
    let x = vec![3.0, 0.0, 4.0, 0.0];
    let z = Cpu.l2_normalize_forward(&x, xs).unwrap();
    assert_close32("z", &z, &[0.6, 0.0, 0.8, 0.0], 1e-7);
    // Below the floor the map is v / 1e-12, so the gradient is dy / 1e-12.
    let dx = Cpu
        .l2_normalize_backward(&vec![0.0, 1e-12, 0.0, -2e-12], &x, xs)
        .unwrap();
    assert_close32("dx at zero", &dx[1..2], &[1.0], 1e-6);
    assert_close32("dx at zero", &dx[3..4], &[-2.0], 1e-6);
    // At (3, 4) with dy = (1, 0): (dy − z·(z·dy))/5 = ((1, 0) − 0.6·(0.6, 0.8))/5.
    let dx = Cpu
        .l2_normalize_backward(&vec![1.0, 0.0, 0.0, 0.0], &x, xs)
        .unwrap();
    assert_close32("dx at (3,4)", &[dx[0], dx[2]], &[0.128, -0.096], 1e-7);
}

#[test]
fn l2_normalize_backward_matches_finite_differences() {
    let mut rng = Rng::new(12);
    let xs = Shape::new(2, 5, 3, 3);
    let (x, r) = (rng.tensor(xs), rng.tensor(xs));
    let dx = Cpu.l2_normalize_backward(&r, &x, xs).unwrap();
    let fd = fd_grad(&x, 1e-3, |x| {
        dot(&r, &Cpu.l2_normalize_forward(&x.to_vec(), xs).unwrap())
    });
    assert_close("l2 dx", &dx, &fd, 2e-3, 1e-2);
    assert_shape_err(
        "short x",
        Cpu.l2_normalize_backward(&r, &x[1..].to_vec(), xs),
    );
}
