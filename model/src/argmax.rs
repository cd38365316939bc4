//! Per-pixel argmax over class planes: the prediction the trainer scores and the CLI draws.

/// Writes into `out` (one label per pixel) the channel with the largest value of `planes`
/// (`C` planes of `out.len()` values each); the first channel wins ties, and a NaN never wins.
/// Plane-major so the inner loop streams one plane at a time.
pub fn argmax_into(planes: &[f32], out: &mut [u8]) {
    let hw = out.len();
    out.fill(0);
    if hw == 0 || planes.len() < hw {
        return;
    }
    let mut best = planes[..hw].to_vec();
    for (c, plane) in planes.chunks_exact(hw).enumerate().skip(1) {
        for ((b, o), &v) in best.iter_mut().zip(out.iter_mut()).zip(plane) {
            if v > *b {
                *b = v;
                *o = c as u8;
            }
        }
    }
}

/// The argmax labels of the first `c` planes of a `C×H×W` tensor with `hw = H·W`.
pub fn argmax_chw(logits: &[f32], c: usize, hw: usize) -> Vec<u8> {
    let mut out = vec![0u8; hw];
    argmax_into(&logits[..(c * hw).min(logits.len())], &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_channel_wins_first_on_ties_nan_never() {
        // Two pixels, three classes: pixel 0 ties classes 1 and 2; pixel 1 has a NaN in class 1.
        let planes = [0.0, 0.5, 2.0, f32::NAN, 2.0, 0.25];
        assert_eq!(argmax_chw(&planes, 3, 2), vec![1, 0]);
        assert_eq!(argmax_chw(&planes, 1, 2), vec![0, 0]);
        assert_eq!(argmax_chw(&planes, 0, 2), vec![0, 0]);
    }
}
