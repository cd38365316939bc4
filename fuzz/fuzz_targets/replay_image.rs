//! A replay folder with one PNG or JPEG (first byte even: `.png`, odd: `.jpg`): the line's path
//! from a file to a frame.
#![no_main]
use contextrast::capture::replay::{ReplayConfig, ReplaySource};
use contextrast::capture::{Frame, FrameSource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let name = if pick % 2 == 0 {
        "frame.png"
    } else {
        "frame.jpg"
    };
    contextrast_fuzz::as_file(name, rest, |dir, _| {
        let cfg = ReplayConfig {
            dir: dir.to_path_buf(),
            fps: 0.0,
            looping: false,
        };
        if let Ok(mut src) = ReplaySource::open(&cfg) {
            let mut frame = Frame::with_capacity(64, 48);
            let _ = src.next_frame(&mut frame);
        }
    });
});
