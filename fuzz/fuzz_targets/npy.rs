//! `probs.npy` as a file on disk, read the way the product reads it (seeds: `scripts/fuzz`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    contextrast_fuzz::as_file("probs.npy", data, |_, p| {
        let _ = contextrast::train::npy::read_npy(p);
    });
});
