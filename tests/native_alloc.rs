//! The native engine and the decision allocate nothing per frame once planned: segmenting
//! and judging frames of a fixed size, on one thread and on a pool of two, leaves the
//! process-wide allocation count where it was. (One test per binary: the counter is global.)
use contextrast::capture::Frame;
use contextrast::decide::{Decider, DecisionConfig, Verdict};
use contextrast::infer::native::NativeSegmenter;
use contextrast::infer::{EngineKind, ModelConfig, Scores, Segmentation, Segmenter};
use contextrast::sys::alloc_count::{CountingAlloc, allocations};

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
        let mut decider = Decider::new(DecisionConfig {
            roi: Vec::new(),
            defect: vec![false, false, true, true, true],
            threshold: vec![0.5; 5],
            min_area_px: vec![4.0; 5],
            confirm_k: 1,
            confirm_n: 3,
        })
        .unwrap();
        let (mut out, mut verdict) = (Segmentation::default(), Verdict::new());
        let mut judge = |seq| {
            seg.segment(&frame, &mut out).unwrap();
            let Scores::Logits(logits) = &out.scores else {
                panic!("our model's head hands out logits");
            };
            decider
                .decide_logits(seq, logits, &out.geom, &mut verdict)
                .unwrap();
        };
        // Warm-up: plans, scratch, the pool's threads and the output buffers.
        for seq in 0..3 {
            judge(seq);
        }
        let before = allocations().0;
        let frames = 20;
        for seq in 0..frames {
            judge(seq);
        }
        let n = allocations().0 - before;
        // Rayon's job queue takes a fresh block after every 63 hand-offs to the pool (one
        // per frame): that, and nothing else, may show up with a pool.
        let allowed = if threads == 1 { 0 } else { frames / 30 };
        assert!(
            n <= allowed,
            "{threads} thread(s): {n} allocations in {frames} frames"
        );
        // The ×4 head's logits for the 320×256 map (240 rows padded to a multiple of 32).
        let Scores::Logits(logits) = &out.scores else {
            unreachable!()
        };
        assert_eq!(logits.data.len(), 5 * 64 * 80);
        assert_eq!(logits.up.out_hw(), (256, 320));
    }
}
