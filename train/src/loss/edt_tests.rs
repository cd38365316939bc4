//! EDT against hand-worked values and an O(n²) brute force.
use super::edt::{NO_BACKGROUND, edt_squared};
use super::test_util::Rng;

/// The definition, literally: nearest non-mask pixel of the image.
fn brute(mask: &[bool], h: usize, w: usize) -> Vec<u32> {
    (0..h * w)
        .map(|p| {
            if !mask[p] {
                return 0;
            }
            let (py, px) = ((p / w) as i64, (p % w) as i64);
            (0..h * w)
                .filter(|&q| !mask[q])
                .map(|q| {
                    let (qy, qx) = ((q / w) as i64, (q % w) as i64);
                    ((py - qy).pow(2) + (px - qx).pow(2)) as u32
                })
                .min()
                .unwrap_or(NO_BACKGROUND)
        })
        .collect()
}

fn parse(rows: &[&str]) -> (Vec<bool>, usize, usize) {
    let mask = rows
        .iter()
        .flat_map(|r| r.bytes().map(|c| c == b'#'))
        .collect();
    (mask, rows.len(), rows[0].len())
}

#[test]
fn strip_in_a_row() {
    let (m, h, w) = parse(&[".#####."]);
    assert_eq!(edt_squared(&m, h, w).unwrap(), vec![0, 1, 4, 9, 4, 1, 0]);
}

#[test]
fn border_is_not_background() {
    let (m, h, w) = parse(&["####."]);
    assert_eq!(edt_squared(&m, h, w).unwrap(), vec![16, 9, 4, 1, 0]);
}

#[test]
fn one_background_pixel_in_a_square() {
    let (m, h, w) = parse(&["###", "#.#", "###"]);
    assert_eq!(
        edt_squared(&m, h, w).unwrap(),
        vec![2, 1, 2, 1, 0, 1, 2, 1, 2]
    );
    let (m, h, w) = parse(&[".####", "#####", "#####"]);
    assert_eq!(
        edt_squared(&m, h, w).unwrap(),
        vec![0, 1, 4, 9, 16, 1, 2, 5, 10, 17, 4, 5, 8, 13, 20]
    );
}

#[test]
fn empty_and_full_masks() {
    assert_eq!(edt_squared(&[false; 12], 3, 4).unwrap(), vec![0; 12]);
    assert_eq!(
        edt_squared(&[true; 12], 3, 4).unwrap(),
        vec![NO_BACKGROUND; 12]
    );
    assert_eq!(edt_squared(&[true], 1, 1).unwrap(), vec![NO_BACKGROUND]);
    assert_eq!(edt_squared(&[], 0, 5).unwrap(), Vec::<u32>::new());
}

#[test]
fn wrong_length_is_an_error() {
    let err = edt_squared(&[true; 5], 2, 3).unwrap_err().to_string();
    assert!(err.contains("5 pixels") && err.contains("2×3"), "{err}");
}

#[test]
fn matches_brute_force_on_random_small_masks() {
    let mut rng = Rng::new(1);
    for case in 0..600 {
        let (h, w) = (1 + rng.below(12), 1 + rng.below(12));
        let density = [0.05, 0.3, 0.5, 0.8, 0.97][case % 5];
        let m = rng.mask(h * w, density);
        assert_eq!(
            edt_squared(&m, h, w).unwrap(),
            brute(&m, h, w),
            "case {case}: {h}×{w} {m:?}"
        );
    }
}

#[test]
fn matches_brute_force_on_sparse_background() {
    // Few background pixels far apart stress the parabola envelope (many pops).
    let mut rng = Rng::new(2);
    for case in 0..20 {
        let (h, w) = (20 + rng.below(30), 20 + rng.below(30));
        let mut m = vec![true; h * w];
        for _ in 0..1 + rng.below(4) {
            m[rng.below(h * w)] = false;
        }
        assert_eq!(
            edt_squared(&m, h, w).unwrap(),
            brute(&m, h, w),
            "case {case}: {h}×{w}"
        );
    }
}
