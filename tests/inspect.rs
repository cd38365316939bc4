//! `contextrast inspect` end to end: the synthetic line through the real binary, checked against
//! an offline run of the same model; the tract Segmenter against onnxruntime; and the bad inputs
//! an installer meets (corrupt frame, wrong model, missing model, a camera path that is not one).
// Test helpers may unwrap: a panic there is a failed test, not a crash on input.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
use common::onnx_file::{dim, float_value, model_bytes};
use common::{bin, root, run, shipped_model};
use contextrast::capture::Frame;
use contextrast::config::LineConfig;
use contextrast::infer::native::load_segmenter;
use contextrast::infer::tract::TractSegmenter;
use contextrast::infer::{EngineKind, ModelConfig, Segmentation, Segmenter};
use contextrast::train::data::preprocess;
use contextrast::train::data::synth::{Variant, render};
use contextrast::train::npy::{read_npy, write_npy};
use contextrast_model::onnx_model::OnnxModel;
use std::path::{Path, PathBuf};
use std::process::Command;

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("line.toml");
    std::fs::write(&p, body).expect("write config");
    p
}

#[test]
fn shipped_configs_load_and_resolve_against_the_shipped_model() {
    for name in ["demo.toml", "example-line.toml"] {
        let path = root().join("firmware-config").join(name);
        let cfg = LineConfig::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let model = TractSegmenter::load(&ModelConfig {
            path: shipped_model(),
            ..ModelConfig::default()
        })
        .expect("shipped model loads");
        cfg.decision(model.info())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// Offline oracle: the train crate's preprocessing and model wrapper, softmax and 8-connected
/// components written here, independent of the runtime's code.
fn offline_defective(
    model: &OnnxModel,
    img: &image::RgbImage,
    defect: &[bool],
    min_area: usize,
) -> bool {
    let meta = model.meta().expect("metadata");
    let (w, h) = (img.width() as usize, img.height() as usize);
    let logits = model
        .logits_chw(&preprocess(img, meta.mean, meta.std), h, w)
        .expect("offline run");
    let c = model.num_classes();
    let n = w * h;
    let mut label = vec![0u8; n];
    for p in 0..n {
        let m = (0..c).map(|k| logits[k * n + p]).fold(f32::MIN, f32::max);
        let z: f32 = (0..c).map(|k| (logits[k * n + p] - m).exp()).sum();
        let mut best = (0u8, 0.0f32);
        for k in (0..c).filter(|&k| defect[k]) {
            let pk = (logits[k * n + p] - m).exp() / z;
            if pk >= 0.5 && pk > best.1 {
                best = (k as u8, pk);
            }
        }
        label[p] = best.0;
    }
    let mut seen = vec![false; n];
    for start in 0..n {
        if label[start] == 0 || seen[start] {
            continue;
        }
        let (mut stack, mut area) = (vec![start], 0);
        seen[start] = true;
        while let Some(p) = stack.pop() {
            area += 1;
            let (x, y) = ((p % w) as i64, (p / w) as i64);
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                        continue;
                    }
                    let q = ny as usize * w + nx as usize;
                    if !seen[q] && label[q] == label[start] {
                        seen[q] = true;
                        stack.push(q);
                    }
                }
            }
        }
        if area >= min_area {
            return true;
        }
    }
    false
}

/// Number of files below `dir`.
fn walk_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |rd| {
        rd.filter_map(|e| e.ok().map(|e| e.path()))
            .map(|p| if p.is_dir() { walk_files(&p) } else { 1 })
            .sum()
    })
}

#[test]
fn synthetic_line_verdicts_match_the_model_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let frames = 12u64;
    let (w, h) = (320u32, 256u32);
    let cfg = write_config(
        dir.path(),
        &format!(
            "[source]\nkind = \"synthetic\"\n[source.synthetic]\nseed = 4242\nwidth = {w}\nheight = {h}\nfps = 0\nframes = {frames}\n\
             [model]\npath = \"{}\"\nthreads = 1\n[pipeline]\nstatus_every_s = 0\n[decision]\nthreshold = 0.5\nmin_area_px = 4\n\
             [events]\ndir = \"events\"\n",
            shipped_model().display()
        ),
    );
    let summary = dir.path().join("summary.json");
    let (ok, stdout, err) = run(bin("warn")
        .args(["inspect", "--config"])
        .arg(&cfg)
        .arg("--summary-json")
        .arg(&summary));
    assert!(ok, "{err}");
    assert!(stdout.contains("inspect summary"), "{stdout}");
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).expect("summary written")).expect("json");
    let run = &s["run"];
    assert_eq!(run["frames_processed"], frames);
    assert_eq!(run["frames_dropped"], 0, "an unpaced source must not drop");
    assert_eq!(run["latency_ms"]["model"]["count"], frames);
    // Every reject verdict reached the reject scheduler (fired, merged, late or abandoned).
    assert_eq!(s["reject"]["scheduled"], run["rejects"], "{s:#}");
    // One event line per defective frame, each naming its saved image (original + overlay).
    let events_dir = dir.path().join("events");
    let file = std::fs::read_dir(&events_dir)
        .expect("events dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .expect("an events file");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .expect("read events")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let verdicts: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l.get("seq").is_some()).collect();
    assert_eq!(
        verdicts.len() as u64,
        run["defective_frames"].as_u64().unwrap_or(0),
        "{lines:#?}"
    );
    assert!(
        verdicts
            .iter()
            .all(|v| v["action"] == "reject"
                && v["defects"].as_array().is_some_and(|d| !d.is_empty()))
    );
    let images: usize = walk_files(&events_dir.join("images"));
    assert_eq!(
        images as u64,
        2 * s["images"]["written"].as_u64().unwrap_or(0)
    );
    assert_eq!(s["events"]["written"].as_u64(), Some(lines.len() as u64));

    let model = OnnxModel::load(&shipped_model()).expect("model");
    let defect = model.meta().expect("meta").defect.clone();
    let (mut defective, mut tp, mut fp, mut fn_) = (0u64, 0u64, 0u64, 0u64);
    for i in 0..frames {
        let (img, _, truth) = render(4242, i, Variant::Standard, w, h);
        let d = offline_defective(&model, &img, &defect, 4);
        defective += u64::from(d);
        match (truth.is_defective(), d) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (true, false) => fn_ += 1,
            _ => {}
        }
    }
    // Same model, same frames, same rule: the runtime's verdicts are the offline ones.
    assert_eq!(run["defective_frames"], defective, "{s:#}");
    let det = &s["detection"];
    assert_eq!(det["frames_true_reject"], tp, "{det:#}");
    assert_eq!(det["frames_false_reject"], fp, "{det:#}");
    assert_eq!(det["frames_missed"], fn_, "{det:#}");
    // And the model does find defects on this line (the offline rate is not trivially zero).
    assert!(tp > 0, "{det:#}");
}

#[test]
fn both_engines_match_onnxruntime() {
    let python = std::env::var_os("CONTEXTRAST_PYTHON")
        .map_or_else(|| root().join(".venv/bin/python"), PathBuf::from);
    if !python.exists() {
        eprintln!(
            "SKIPPED: {} missing; run scripts/setup-python to compare with onnxruntime",
            python.display()
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for engine in [EngineKind::Tract, EngineKind::Native] {
        let mut seg = load_segmenter(&ModelConfig {
            path: shipped_model(),
            threads: 1,
            engine,
            ..ModelConfig::default()
        })
        .expect("load");
        let name = seg.info().engine;
        // 200x120 is not a multiple of 32: both pad it (each its own way) and crop the output.
        for (i, (w, h)) in [(320u32, 256u32), (200, 120)].into_iter().enumerate() {
            let (img, _, _) = render(77, i as u64, Variant::Shifted, w, h);
            let mut frame = Frame::with_capacity(w, h);
            frame.reset(w, h);
            frame.rgb.copy_from_slice(img.as_raw());
            let mut out = Segmentation::default();
            seg.segment(&frame, &mut out).expect("segment");
            let rgb: Vec<f32> = img.as_raw().iter().map(|&v| f32::from(v)).collect();
            let rgb_path = dir.path().join("rgb.npy");
            let ref_path = dir.path().join("ref.npy");
            write_npy(&rgb_path, &rgb, &[h as usize, w as usize, 3]).expect("npy");
            let status = Command::new(&python)
                .arg(root().join("scripts/segment_reference.py"))
                .arg(shipped_model())
                .arg(&rgb_path)
                .arg(&ref_path)
                .status()
                .expect("python runs");
            assert!(status.success());
            let (want, shape) = read_npy(&ref_path).expect("reference output");
            let c = shape[0];
            assert_eq!(shape, [c, h as usize, w as usize]);
            let g = out.geom;
            assert_eq!((g.content_w, g.content_h), (w as usize, h as usize));
            let probs = out.scores.probs();
            let mut worst = 0.0f32;
            for k in 0..c {
                for y in 0..h as usize {
                    for x in 0..w as usize {
                        let a = probs[(k * g.map_h + y) * g.map_w + x];
                        let b = want[(k * h as usize + y) * w as usize + x];
                        worst = worst.max((a - b).abs());
                    }
                }
            }
            assert!(
                worst < 1e-4,
                "{w}x{h}: max |{name} − onnxruntime| = {worst}"
            );
            eprintln!("{w}x{h}: max |{name} − onnxruntime| on probabilities = {worst:.2e}");
        }
    }
}

/// A valid ONNX file whose input has rank 3.
fn rank3_model(path: &Path) {
    use tract_onnx::pb;
    let vi = |name: &str| float_value(name, vec![dim(3), dim(64), dim(64)]);
    let graph = pb::GraphProto {
        name: "rank3".into(),
        node: vec![pb::NodeProto {
            op_type: "Relu".into(),
            input: vec!["x".into()],
            output: vec!["y".into()],
            ..Default::default()
        }],
        input: vec![vi("x")],
        output: vec![vi("y")],
        ..Default::default()
    };
    std::fs::write(path, model_bytes(graph)).expect("write model");
}

#[test]
fn bad_inputs_give_clear_errors_or_counted_skips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();

    // A replay folder with one corrupt image: skipped and counted, the others judged.
    let frames = d.join("frames");
    std::fs::create_dir(&frames).expect("mkdir");
    for i in 0..3u64 {
        let (img, _, _) = render(5, i, Variant::Standard, 96, 64);
        img.save(frames.join(format!("f{i}.png"))).expect("png");
    }
    std::fs::write(frames.join("f1.png"), b"\x89PNG truncated").expect("corrupt");
    let body = |model: &Path, extra: &str| {
        format!(
            "[source]\nkind = \"replay\"\n[source.replay]\ndir = \"{}\"\nfps = 0\n[model]\npath = \"{}\"\nthreads = 1\n[pipeline]\nstatus_every_s = 0\n{extra}",
            frames.display(),
            model.display()
        )
    };
    let cfg = write_config(d, &body(&shipped_model(), ""));
    let summary = d.join("s.json");
    // As under systemd: each log line carries its syslog priority for the journal.
    let (ok, _, err) = run(bin("warn")
        .env("JOURNAL_STREAM", "8:1234")
        .args(["inspect", "--config"])
        .arg(&cfg)
        .arg("--summary-json")
        .arg(&summary));
    assert!(ok, "{err}");
    assert!(err.contains("f1.png"), "the skipped file is named: {err}");
    assert!(
        err.lines().any(|l| l.starts_with("<4>skipped frame")),
        "journal priority prefix: {err}"
    );
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).expect("summary")).expect("json");
    assert_eq!(s["run"]["frames_skipped"], 1);
    assert_eq!(s["run"]["frames_processed"], 2);

    // A model whose input has the wrong rank.
    let rank3 = d.join("rank3.onnx");
    rank3_model(&rank3);
    let (ok, _, err) = run(bin("warn")
        .args(["inspect", "--config"])
        .arg(write_config(d, &body(&rank3, ""))));
    assert!(!ok);
    contextrast_model::testing::assert_mentions(&err, &["rank3.onnx", "rank 3"]);

    // A missing model.
    let (ok, _, err) = run(bin("warn")
        .args(["inspect", "--config"])
        .arg(write_config(d, &body(&d.join("gone.onnx"), ""))));
    assert!(!ok);
    assert!(err.contains("gone.onnx"), "{err}");

    // A camera path that is not a video device: a regular file and /dev/null.
    for dev in [cfg.clone(), PathBuf::from("/dev/null")] {
        let text = format!(
            "[source]\nkind = \"v4l2\"\n[source.v4l2]\ndevice = \"{}\"\n[model]\npath = \"{}\"\n",
            dev.display(),
            shipped_model().display()
        );
        let (ok, _, err) = run(bin("warn")
            .args(["inspect", "--config"])
            .arg(write_config(&d.join("frames"), &text)));
        assert!(!ok);
        assert!(
            err.contains(&dev.display().to_string()) && err.contains("not a V4L2 video device"),
            "{err}"
        );
    }

    // A bad key in the config names the file and the key.
    let (ok, _, err) = run(bin("warn").args(["inspect", "--config"]).arg(write_config(
        d,
        &body(
            &shipped_model(),
            "[decision]\nthresholds = { rust = 0.3 }\n",
        ),
    )));
    assert!(!ok);
    contextrast_model::testing::assert_mentions(&err, &["line.toml", "decision.thresholds.rust"]);
}
