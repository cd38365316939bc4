//! Hash-keyed deterministic sampling (method doc, section 3). Every candidate pixel gets a 64-bit
//! key that depends only on (seed, step, scale, anchor class, flat pixel index); a capped set is
//! the `cap` candidates with the smallest keys. Keys depend on nothing else (no RNG state, no
//! thread or visiting order), so the CPU and CUDA backends pick the very same pixels.
//!
//! The mix, to be written again in CUDA C with `unsigned long long` (all arithmetic wraps mod 2⁶⁴):
//! ```text
//! splitmix64(x):  z = x + 0x9E3779B97F4A7C15
//!                 z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
//!                 z = (z ^ (z >> 27)) * 0x94D049BB133111EB
//!                 return z ^ (z >> 31)
//! base  = splitmix64(splitmix64(seed ^ (step * 0xD6E8FEB86659FD93)) ^ ((scale << 32) | class))
//! key   = splitmix64(base ^ flat_pixel_index)
//! ```
//! `scale` is the method's i (1 = stride 4 … 4 = stride 32), `class` the anchor class id, and
//! `flat_pixel_index` = b·h·w + y·w + x at that scale. `splitmix64` is the whole SplitMix64 step
//! (the increment then the finaliser), so `splitmix64(0)` is SplitMix64's first output for
//! seed 0, 0xE220A8397B1DCDAF.
use crate::{Error, Result};

/// The multiplier that spreads `step` before mixing (an odd 64-bit constant).
pub const STEP_MULTIPLIER: u64 = 0xD6E8_FEB8_6659_FD93;

pub use contextrast_model::rng::splitmix64;

/// The per-anchor part of the key, computed once per (seed, step, scale, class) so that each
/// pixel costs one `splitmix64` (on CUDA: a kernel argument).
#[inline]
pub fn anchor_key_base(seed: u64, step: u64, scale: u32, anchor_class: u32) -> u64 {
    let s = splitmix64(seed ^ step.wrapping_mul(STEP_MULTIPLIER));
    splitmix64(s ^ ((u64::from(scale) << 32) | u64::from(anchor_class)))
}

/// The key of one pixel given its anchor's [`anchor_key_base`].
#[inline]
pub fn key_from_base(base: u64, flat_pixel_index: u32) -> u64 {
    splitmix64(base ^ u64::from(flat_pixel_index))
}

/// The sampling key of a pixel (see the module doc for the exact mix).
#[inline]
pub fn pixel_key(
    seed: u64,
    step: u64,
    scale: u32,
    anchor_class: u32,
    flat_pixel_index: u32,
) -> u64 {
    key_from_base(
        anchor_key_base(seed, step, scale, anchor_class),
        flat_pixel_index,
    )
}

/// The `cap` candidates with the smallest keys (ties broken by the smaller index), sorted by
/// index. `keys[i]` is the key of `candidates[i]`; candidates are expected to be distinct.
///
/// Expected linear time: one `select_nth_unstable` finds the cut, then a filter keeps the input
/// order, so no sort happens when the candidates come sorted by index (as every caller in this
/// module passes them); otherwise only the `cap` kept ones are sorted.
pub fn select_smallest_keys(candidates: &[u32], keys: &[u64], cap: usize) -> Result<Vec<u32>> {
    if candidates.len() != keys.len() {
        return Err(Error::Shape(format!(
            "select_smallest_keys: {} candidates but {} keys",
            candidates.len(),
            keys.len()
        )));
    }
    let mut out: Vec<u32> = if cap >= candidates.len() {
        candidates.to_vec()
    } else if cap == 0 {
        Vec::new()
    } else {
        let mut pairs: Vec<(u64, u32)> = keys
            .iter()
            .copied()
            .zip(candidates.iter().copied())
            .collect();
        let (_, &mut cut, _) = pairs.select_nth_unstable(cap - 1);
        candidates
            .iter()
            .zip(keys)
            .filter(|&(&c, &k)| (k, c) <= cut)
            .map(|(&c, _)| c)
            .collect()
    };
    if !out.is_sorted() {
        out.sort_unstable();
    }
    Ok(out)
}
