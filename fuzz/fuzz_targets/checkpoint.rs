//! `checkpoint::load` with one of its two files replaced by the input: the first byte picks the
//! JSON (even) or the safetensors file (odd); the other file is the shipped model's.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

const JSON: &[u8] = include_bytes!("../../models/default.json");
const TENSORS: &[u8] = include_bytes!("../../models/default.safetensors");

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(dir) = tempfile::tempdir() else { return };
    let (json, tensors) = if pick % 2 == 0 {
        (rest, TENSORS)
    } else {
        (JSON, rest)
    };
    let d = dir.path();
    if std::fs::write(d.join("default.json"), json).is_err()
        || std::fs::write(d.join("default.safetensors"), tensors).is_err()
    {
        return;
    }
    let _ = contextrast::train::checkpoint::load(&Path::new(d).join("default.json"));
});
