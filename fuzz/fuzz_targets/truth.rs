//! `truth.json` as a file on disk, read the way the product reads it (seeds: `scripts/fuzz`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    contextrast_fuzz::as_file("truth.json", data, |dir, _| {
        let _ = contextrast::train::data::synth::load_truth(dir);
    });
});
