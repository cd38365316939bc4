//! `LineConfig::parse` on any text (seeds: firmware-config/*.toml).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = contextrast::config::LineConfig::parse(text, std::path::Path::new("line.toml"));
});
