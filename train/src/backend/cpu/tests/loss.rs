//! Cross-entropy and argmax: hand-computed numbers, ignore handling, finite differences.
use super::{Rng, assert_close, assert_close32, assert_shape_err, fd_grad};
use crate::backend::ops::*;
use crate::backend::{Cpu, IGNORE, Shape};

/// Two classes, three pixels in one row: logits (0, 0) labelled 0, (ln 3, 0) labelled 1,
/// (5, −5) ignored. Softmax of pixel 1 is (0.75, 0.25).
fn three_pixels() -> (Vec<f32>, Shape, Vec<u8>) {
    let l3 = 3f32.ln();
    (
        vec![0.0, l3, 5.0, 0.0, 0.0, -5.0],
        Shape::new(1, 2, 1, 3),
        vec![0, 1, IGNORE],
    )
}

#[test]
fn cross_entropy_mean_over_labelled_pixels() {
    let (logits, s, labels) = three_pixels();
    let (loss, g) = Cpu
        .softmax_cross_entropy(&logits, s, &labels, None)
        .unwrap();
    // (ln 2 + ln 4) / 2.
    assert_close32("loss", &loss, &[1.5 * 2f32.ln()], 1e-6);
    // Pixel 0: (0.5 − 1, 0.5)/2; pixel 1: (0.75, 0.25 − 1)/2; pixel 2: ignored.
    assert_close32("grad", &g, &[-0.25, 0.375, 0.0, 0.25, -0.375, 0.0], 1e-6);
}

#[test]
fn cross_entropy_with_class_weights_is_the_weighted_mean() {
    let (logits, s, labels) = three_pixels();
    let (loss, g) = Cpu
        .softmax_cross_entropy(&logits, s, &labels, Some(&vec![1.0, 3.0]))
        .unwrap();
    // (1·ln 2 + 3·ln 4) / (1 + 3) = 7·ln 2 / 4.
    assert_close32("loss", &loss, &[1.75 * 2f32.ln()], 1e-6);
    // Pixel 0: 1·(−0.5, 0.5)/4; pixel 1: 3·(0.75, −0.75)/4.
    assert_close32(
        "grad",
        &g,
        &[-0.125, 0.5625, 0.0, 0.125, -0.5625, 0.0],
        1e-6,
    );
}

#[test]
fn cross_entropy_without_labelled_pixels_is_zero() {
    let (logits, s, _) = three_pixels();
    let (loss, g) = Cpu
        .softmax_cross_entropy(&logits, s, &vec![IGNORE; 3], None)
        .unwrap();
    assert_eq!(loss, vec![0.0]);
    assert!(g.iter().all(|&v| v == 0.0));
}

#[test]
fn cross_entropy_gradient_matches_finite_differences() {
    let mut rng = Rng::new(21);
    let s = Shape::new(2, 4, 3, 5);
    let logits: Vec<f32> = rng.tensor(s).iter().map(|v| 3.0 * v).collect();
    let labels: Vec<u8> = (0..s.n * s.hw())
        .map(|i| {
            if i % 7 == 3 {
                IGNORE
            } else {
                (i * 5 % 4) as u8
            }
        })
        .collect();
    let weights = vec![0.5, 2.0, 1.0, 1.5];
    let (_, g) = Cpu
        .softmax_cross_entropy(&logits, s, &labels, Some(&weights))
        .unwrap();
    let fd = fd_grad(&logits, 1e-2, |l| {
        let (loss, _) = Cpu
            .softmax_cross_entropy(&l.to_vec(), s, &labels, Some(&weights))
            .unwrap();
        f64::from(loss[0])
    });
    assert_close("ce dlogits", &g, &fd, 5e-4, 1e-2);
}

#[test]
fn cross_entropy_rejects_out_of_range_labels_and_bad_lengths() {
    let (logits, s, _) = three_pixels();
    assert_shape_err(
        "label 2 of 2 classes",
        Cpu.softmax_cross_entropy(&logits, s, &vec![0, 2, 1], None),
    );
    assert_shape_err(
        "short labels",
        Cpu.softmax_cross_entropy(&logits, s, &vec![0, 1], None),
    );
    assert_shape_err(
        "short weights",
        Cpu.softmax_cross_entropy(&logits, s, &vec![0, 1, 1], Some(&vec![1.0])),
    );
}

#[test]
fn argmax_picks_the_largest_channel_and_the_first_on_ties() {
    // Three classes, four pixels: winners 2, 0, 1, and a three-way tie → 0.
    let s = Shape::new(1, 3, 2, 2);
    let logits = vec![0.0, 5.0, 1.0, 7.0, 1.0, 2.0, 3.0, 7.0, 2.0, -1.0, 2.0, 7.0];
    assert_eq!(Cpu.argmax_channels(&logits, s).unwrap(), vec![2, 0, 1, 0]);
    assert_shape_err(
        "300 classes",
        Cpu.argmax_channels(&vec![0.0; 300], Shape::new(1, 300, 1, 1)),
    );
}
