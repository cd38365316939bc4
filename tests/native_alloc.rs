//! The native engine and the decision allocate nothing per frame once planned: segmenting
//! and judging frames of a fixed size, on one thread and on a pool of two, leaves the
//! process-wide allocation count where it was, both for the shipped model (a full-resolution
//! correction: probabilities at the map's size) and for a stride-4 model (logits handed to the
//! decision before their final upsampling). (One test per binary: the counter is global.)
// Test helpers may unwrap: a panic there is a failed test, not a crash on input.
#![allow(clippy::unwrap_used, clippy::expect_used)]
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
    let dir = tempfile::tempdir().unwrap();
    let stride4 = dir.path().join("stride4.onnx");
    export_stride4(&stride4);
    let shipped =
        std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/models/default.onnx"));
    for (model, threads) in [(&shipped, 1), (&shipped, 2), (&stride4, 1), (&stride4, 2)] {
        let mut seg = NativeSegmenter::load(&ModelConfig {
            path: model.clone(),
            threads,
            engine: EngineKind::Native,
            ..ModelConfig::default()
        })
        .unwrap_or_else(|_| panic!("{} loads on the native engine", model.display()));
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
            match &out.scores {
                Scores::Logits(logits) => {
                    decider.decide_logits(seq, logits, &out.geom, &mut verdict)
                }
                Scores::Probs(p) => decider.decide(seq, p, &out.geom, &mut verdict),
            }
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
        // The 320×256 map (240 rows padded to a multiple of 32): the stride-4 model's logits
        // before their ×4 upsampling, the shipped model's probabilities at full resolution.
        match &out.scores {
            Scores::Logits(logits) => {
                assert!(
                    model == &stride4,
                    "only the stride-4 model splits its upsampling"
                );
                assert_eq!(logits.data.len(), 5 * 64 * 80);
                assert_eq!(logits.up.out_hw(), (256, 320));
            }
            Scores::Probs(p) => {
                assert!(model == &shipped, "the stride-4 model hands out logits");
                assert_eq!(p.len(), 5 * 256 * 320);
            }
        }
    }
}

/// A stride-4 ContextrastNet (no refinement path) with the shipped model's classes, exported.
fn export_stride4(path: &std::path::Path) {
    use contextrast::train::backend::Cpu;
    use contextrast::train::model::{NetConfig, contextrast_net};
    use contextrast::train::nn::params::Params;
    let meta = contextrast_model::meta::ModelMeta {
        class_names: ["belt", "part", "scratch", "pit", "stain"]
            .map(String::from)
            .to_vec(),
        colors: vec![
            [40, 40, 40],
            [70, 130, 180],
            [255, 0, 0],
            [255, 200, 0],
            [160, 0, 200],
        ],
        defect: vec![false, false, true, true, true],
        ..contextrast_model::meta::sample()
    };
    let graph = contextrast_net(&NetConfig::default(), 5);
    let host = Params::init(&Cpu, &graph, 3)
        .unwrap()
        .to_host(&Cpu)
        .unwrap();
    contextrast::train::export::export_onnx(&graph, &host, &meta, path).unwrap();
}
