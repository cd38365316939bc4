//! Any bytes as the line's model file: loaded by the runtime (native engine, else tract),
//! planned for a small frame and run once (seed: models/default.onnx).
#![no_main]
use contextrast::capture::Frame;
use contextrast::infer::native::load_segmenter;
use contextrast::infer::{ModelConfig, Segmentation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    contextrast_fuzz::as_file("model.onnx", data, |_, path| {
        let cfg = ModelConfig {
            path: path.to_path_buf(),
            threads: 1,
            ..ModelConfig::default()
        };
        let Ok(mut seg) = load_segmenter(&cfg) else {
            return;
        };
        let (w, h) = (64, 48);
        if seg.prepare(w, h).is_err() {
            return;
        }
        let mut frame = Frame::with_capacity(w, h);
        frame.reset(w, h);
        let mut out = Segmentation::default();
        let _ = seg.segment(&frame, &mut out);
    });
});
