//! `probs.npy` as a file on disk, read the way the product reads it (seeds: `scripts/fuzz`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let p = dir.path().join("probs.npy");
    if std::fs::write(&p, data).is_err() {
        return;
    }
    let _ = contextrast::train::npy::read_npy(&p);
});
