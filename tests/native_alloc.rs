//! The native engine allocates nothing per frame once planned: segmenting frames of a fixed
//! size, on one thread and on a pool of two, leaves the process-wide allocation count where
//! it was. (One test per binary: the counter is global.)
use contextrast::alloc_count::{CountingAlloc, allocations};
use contextrast::capture::Frame;
use contextrast::infer::native::NativeSegmenter;
use contextrast::infer::{EngineKind, ModelConfig, Segmentation, Segmenter};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[test]
fn segmenting_a_frame_allocates_nothing_in_steady_state() {
    let (w, h) = (320u32, 240u32);
    let mut frame = Frame::with_capacity(w, h);
    frame.reset(w, h);
    for (i, v) in frame.rgb.iter_mut().enumerate() {
        *v = (i * 13 % 251) as u8;
    }
    for threads in [1, 2] {
        let mut seg = NativeSegmenter::load(&ModelConfig {
            path: concat!(env!("CARGO_MANIFEST_DIR"), "/models/default.onnx").into(),
            threads,
            engine: EngineKind::Native,
            ..ModelConfig::default()
        })
        .unwrap_or_else(|_| panic!("the shipped model loads on the native engine"));
        let mut out = Segmentation::default();
        // Warm-up: plans, scratch, the pool's threads and the output buffer.
        for _ in 0..3 {
            seg.segment(&frame, &mut out).unwrap();
        }
        let before = allocations().0;
        let frames = 20;
        for _ in 0..frames {
            seg.segment(&frame, &mut out).unwrap();
        }
        let n = allocations().0 - before;
        // Rayon's job queue takes a fresh block after every 63 hand-offs to the pool (two
        // per frame): that, and nothing else, may show up with a pool.
        let allowed = if threads == 1 { 0 } else { frames / 30 };
        assert!(
            n <= allowed,
            "{threads} thread(s): {n} allocations in {frames} frames"
        );
        assert_eq!(out.probs.len(), 5 * 256 * 320);
    }
}
