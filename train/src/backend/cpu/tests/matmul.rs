//! The gemm wrapper's views and checks, and the peak measurement.
use super::super::gemm_peak_gflops;
use super::super::matmul::{MatMut, MatRef, gemm};
use super::{Rng, assert_close32, assert_shape_err};

#[test]
fn strided_and_transposed_views_multiply_correctly() {
    let mut rng = Rng::new(51);
    let (m, k, n) = (5, 7, 3);
    let (a, b) = (rng.vec(m * k), rng.vec(k * n));
    let mut want = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            want[i * n + j] = (0..k)
                .map(|q| f64::from(a[i * k + q]) * f64::from(b[q * n + j]))
                .sum::<f64>() as f32;
        }
    }
    let mut c = vec![0.0; m * n];
    gemm(
        MatMut::rows(&mut c, m, n),
        MatRef::rows(&a, m, k),
        MatRef::rows(&b, k, n),
        false,
    )
    .unwrap();
    assert_close32("row-major", &c, &want, 1e-5);
    // Aᵀ stored as k×m and read through a transposed view; accumulate on top of 1.
    let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
    let mut c = vec![1.0; m * n];
    gemm(
        MatMut::rows(&mut c, m, n),
        MatRef::rows_t(&at, k, m),
        MatRef::rows(&b, k, n),
        true,
    )
    .unwrap();
    let plus_one: Vec<f32> = want.iter().map(|v| v + 1.0).collect();
    assert_close32("transposed lhs, accumulate", &c, &plus_one, 1e-5);
}

#[test]
fn out_of_bounds_and_mismatched_views_are_errors() {
    let (a, b) = (vec![0.0; 6], vec![0.0; 6]);
    let mut c = vec![0.0; 4];
    assert_shape_err(
        "inner dims",
        gemm(
            MatMut::rows(&mut c, 2, 2),
            MatRef::rows(&a, 2, 3),
            MatRef::rows(&b, 2, 3),
            false,
        ),
    );
    let too_long = MatRef {
        data: &a,
        rows: 3,
        cols: 3,
        rs: 3,
        cs: 1,
    };
    let (mut c9, b9) = (vec![0.0; 9], vec![0.0; 9]);
    assert_shape_err(
        "lhs past end",
        gemm(
            MatMut::rows(&mut c9, 3, 3),
            too_long,
            MatRef::rows(&b9, 3, 3),
            false,
        ),
    );
    let overlapping = MatMut {
        data: &mut c,
        rows: 2,
        cols: 2,
        rs: 1,
        cs: 1,
    };
    assert_shape_err(
        "overlapping dst",
        gemm(
            overlapping,
            MatRef::rows(&a, 2, 3),
            MatRef::rows(&b, 3, 2),
            false,
        ),
    );
}

#[test]
fn peak_is_zero_for_empty_and_finite_for_small_products() {
    assert_eq!(gemm_peak_gflops(0, 8, 8, 1), 0.0);
    for threads in [1, 2] {
        let g = gemm_peak_gflops(32, 16, 48, threads);
        assert!(g.is_finite() && g > 0.0, "{threads} threads: {g}");
    }
}
