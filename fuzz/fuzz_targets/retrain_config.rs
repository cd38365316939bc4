//! `retrain.toml` as a file on disk, read the way the product reads it (seeds: `scripts/fuzz`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    contextrast_fuzz::as_file("retrain.toml", data, |_, p| {
        let _ = contextrast::retrain::RetrainConfig::load(p);
    });
});
