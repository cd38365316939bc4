//! Keys and capped selection.
use super::sampling::{
    anchor_key_base, key_from_base, pixel_key, select_smallest_keys, splitmix64,
};
use super::test_util::Rng;
use rayon::prelude::*;

#[test]
fn splitmix64_is_the_reference_sequence() {
    // SplitMix64 seeded with 0 (Vigna's reference implementation): first two outputs.
    assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
    assert_eq!(splitmix64(0x9E37_79B9_7F4A_7C15), 0x6E78_9E6A_A1B9_65F4);
}

#[test]
fn pixel_key_pinned_values() {
    // Computed independently with Python integers from the module doc's formula; the CUDA port
    // checks against the same numbers.
    assert_eq!(pixel_key(42, 7, 3, 5, 123_456), 0xB1AE_E57F_22BF_A592);
    assert_eq!(pixel_key(0, 0, 1, 0, 0), 0x19AE_FFC3_9B6F_4E53);
    assert_eq!(
        pixel_key(u64::MAX, 100_000, 4, 254, u32::MAX),
        0x9C26_0EA1_1DA9_DB93
    );
    assert_eq!(
        key_from_base(anchor_key_base(42, 7, 3, 5), 123_456),
        pixel_key(42, 7, 3, 5, 123_456)
    );
}

#[test]
fn every_key_input_matters() {
    let k = pixel_key(1, 2, 3, 4, 5);
    for other in [
        pixel_key(9, 2, 3, 4, 5),
        pixel_key(1, 9, 3, 4, 5),
        pixel_key(1, 2, 9, 4, 5),
    ] {
        assert_ne!(k, other);
    }
    assert_ne!(k, pixel_key(1, 2, 3, 9, 5));
    assert_ne!(k, pixel_key(1, 2, 3, 4, 9));
    // scale and class occupy separate halves: (scale 1, class 0) is not (scale 0, class 2³²…).
    assert_ne!(pixel_key(1, 2, 1, 0, 5), pixel_key(1, 2, 0, 1, 5));
}

#[test]
fn smallest_keys_with_ties_by_index() {
    let cands = [10, 11, 12, 13, 14];
    let keys = [5, 1, 5, 3, 5];
    assert_eq!(
        select_smallest_keys(&cands, &keys, 3).unwrap(),
        vec![10, 11, 13]
    );
    assert_eq!(
        select_smallest_keys(&cands, &keys, 4).unwrap(),
        vec![10, 11, 12, 13]
    );
    assert_eq!(select_smallest_keys(&cands, &keys, 1).unwrap(), vec![11]);
    assert_eq!(
        select_smallest_keys(&cands, &keys, 0).unwrap(),
        Vec::<u32>::new()
    );
    assert_eq!(
        select_smallest_keys(&cands, &keys, 9).unwrap(),
        cands.to_vec()
    );
    // Unsorted input comes back sorted by index.
    assert_eq!(
        select_smallest_keys(&[14, 12, 10], &[5, 5, 5], 2).unwrap(),
        vec![10, 12]
    );
    assert_eq!(
        select_smallest_keys(&[14, 12, 10], &[5, 5, 5], 3).unwrap(),
        vec![10, 12, 14]
    );
}

#[test]
fn length_mismatch_is_an_error() {
    let err = select_smallest_keys(&[1, 2], &[1], 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("2 candidates but 1 keys"), "{err}");
}

#[test]
fn matches_a_full_sort() {
    let mut rng = Rng::new(3);
    for case in 0..200 {
        let n = rng.below(300);
        let cands: Vec<u32> = (0..n as u32).map(|i| i * 3 + (case % 3)).collect();
        // Few distinct keys, so ties are common.
        let keys: Vec<u64> = (0..n).map(|_| rng.below(20) as u64).collect();
        let cap = rng.below(n + 2);
        let mut sorted: Vec<(u64, u32)> = keys.iter().copied().zip(cands.iter().copied()).collect();
        sorted.sort();
        let mut want: Vec<u32> = sorted.iter().take(cap).map(|&(_, c)| c).collect();
        want.sort();
        assert_eq!(
            select_smallest_keys(&cands, &keys, cap).unwrap(),
            want,
            "case {case}"
        );
    }
}

#[test]
fn selection_ignores_thread_count_and_order() {
    let cands: Vec<u32> = (0..5000).map(|i| i * 7).collect();
    let keys_with = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            cands
                .par_iter()
                .map(|&p| pixel_key(11, 3, 2, 1, p))
                .collect::<Vec<u64>>()
        })
    };
    let sequential: Vec<u64> = cands.iter().map(|&p| pixel_key(11, 3, 2, 1, p)).collect();
    assert_eq!(keys_with(1), sequential);
    assert_eq!(keys_with(4), sequential);

    let want = select_smallest_keys(&cands, &sequential, 300).unwrap();
    assert_eq!(want.len(), 300);
    let rev_c: Vec<u32> = cands.iter().rev().copied().collect();
    let rev_k: Vec<u64> = rev_c.iter().map(|&p| pixel_key(11, 3, 2, 1, p)).collect();
    assert_eq!(select_smallest_keys(&rev_c, &rev_k, 300).unwrap(), want);
    // Any permutation: interleave odd and even positions.
    let perm: Vec<u32> = cands
        .iter()
        .skip(1)
        .step_by(2)
        .chain(cands.iter().step_by(2))
        .copied()
        .collect();
    let perm_k: Vec<u64> = perm.iter().map(|&p| pixel_key(11, 3, 2, 1, p)).collect();
    assert_eq!(select_smallest_keys(&perm, &perm_k, 300).unwrap(), want);
}
