//! The binary as a user runs it: synth → train → export → eval (checkpoint and ONNX), and the
//! errors a user meets with bad input.
// Test helpers may unwrap: a panic there is a failed test, not a crash on input.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
use common::{bin, fails, read_json, stdout_ok, synth};
use std::path::Path;

#[test]
fn synth_train_export_eval_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("line");
    synth("warn", &data, "--count 12 --seed 4 --width 96 --height 64");
    let cfg = d.join("train.toml");
    std::fs::write(
        &cfg,
        "steps = 4\nbatch = 2\ncrop = [64, 64]\nval_every = 2\ncheckpoint_every = 2\n[model]\nwidth = 4\ndecoder = 8\nproj_dim = 4\n",
    )
    .unwrap();
    let run = d.join("run");
    stdout_ok(
        bin("warn")
            .args(["train", "--device", "cpu", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&run)
            .arg("--config")
            .arg(&cfg),
    );
    assert!(run.join("last.json").exists() && run.join("best.json").exists());

    let onnx = d.join("m.onnx");
    stdout_ok(
        bin("warn")
            .args(["export", "--checkpoint"])
            .arg(run.join("last.json"))
            .arg("--out")
            .arg(&onnx),
    );
    let (j1, j2) = (d.join("ck.json"), d.join("onnx.json"));
    let table = stdout_ok(
        bin("warn")
            .args(["eval", "--model"])
            .arg(run.join("last.json"))
            .arg("--data")
            .arg(&data)
            .arg("--json")
            .arg(&j1),
    );
    contextrast_model::testing::assert_mentions(&table, &["mIoU", "scratch"]);
    stdout_ok(
        bin("warn")
            .args(["eval", "--model"])
            .arg(&onnx)
            .arg("--data")
            .arg(&data)
            .arg("--json")
            .arg(&j2),
    );
    let (a, b) = (read_json(&j1), read_json(&j2));
    for r in [&a, &b] {
        for key in ["miou", "boundary_iou"] {
            let v = r[key].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{key} = {v}");
        }
        for (_, v) in r["per_class"].as_object().unwrap() {
            assert!((0.0..=1.0).contains(&v.as_f64().unwrap()));
        }
    }
    // The exported model is the checkpoint: same metrics through tract as through the engine.
    let d_miou = (a["miou"].as_f64().unwrap() - b["miou"].as_f64().unwrap()).abs();
    assert!(d_miou < 1e-3, "checkpoint {a} vs onnx {b}");
}

#[test]
fn bad_inputs_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let err = fails(
        bin("warn")
            .args(["eval", "--model"])
            .arg(d.join("nope.onnx"))
            .arg("--data")
            .arg(d),
    );
    assert!(
        err.contains("classes.toml") || err.contains("nope.onnx"),
        "{err}"
    );

    let data = d.join("line");
    synth("warn", &data, "--count 3 --width 64 --height 64");
    let bad = d.join("bad.onnx");
    std::fs::write(&bad, b"not a model").unwrap();
    let err = fails(
        bin("warn")
            .args(["eval", "--model"])
            .arg(&bad)
            .arg("--data")
            .arg(&data),
    );
    assert!(err.contains("bad.onnx"), "{err}");

    // A corrupt image in the dataset is named.
    let img = std::fs::read_dir(data.join("images"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&img, b"\x89PNG garbage").unwrap();
    let cfg = d.join("t.toml");
    std::fs::write(&cfg, "steps = 1\nbatch = 1\ncrop = [64, 64]\n").unwrap();
    let name = img.file_name().unwrap().to_string_lossy().into_owned();
    let err = fails(
        bin("warn")
            .args(["train", "--device", "cpu", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(d.join("r"))
            .arg("--config")
            .arg(&cfg),
    );
    assert!(err.contains(&name), "{err}");

    let err = fails(
        bin("warn")
            .args(["train", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(d.join("r"))
            .arg("--config")
            .arg(d.join("missing.toml")),
    );
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn segment_writes_masks_overlays_and_probs_and_skips_a_bad_image() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("line");
    synth("warn", &data, "--count 3 --seed 8 --width 200 --height 120");
    let images = data.join("images");
    std::fs::write(images.join("zz_broken.png"), b"\x89PNG not really").unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.onnx");
    let out = d.join("seg");
    let mut c = bin("warn");
    c.env("RUST_LOG", "info")
        .args(["segment", "--probs", "--model"])
        .arg(&model)
        .arg("--input")
        .arg(&images)
        .arg("--out")
        .arg(&out);
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    contextrast_model::testing::assert_mentions(&err, &["zz_broken.png", "1 failed"]);
    let masks: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("_mask.png"))
        .collect();
    assert_eq!(masks.len(), 3);
    for m in &masks {
        let mask = image::open(m).unwrap().to_luma8();
        // Masks come back at the frame's own size, with valid class ids only.
        assert_eq!(mask.dimensions(), (200, 120));
        assert!(mask.pixels().all(|p| p.0[0] < 5));
        let stem = m
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace("_mask.png", "");
        assert!(out.join(format!("{stem}_overlay.png")).exists());
        let (v, shape) =
            contextrast::train::npy::read_npy(&out.join(format!("{stem}_probs.npy"))).unwrap();
        // The shipped model's metadata says 256×256 input; 5 classes.
        assert_eq!(shape, vec![5, 256, 256]);
        assert!(v.iter().all(|x| x.is_finite()));
    }
}

/// `bench soak` as a user runs it, short: the line runs its frames, the swaps and SIGHUP
/// reloads it makes are applied and none refused, and it samples every frames/100.
#[test]
fn bench_soak_runs_the_line_with_swaps_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("soak.json");
    let plot = dir.path().join("soak.png");
    let out = stdout_ok(
        bin("warn")
            .args(["bench", "soak", "--frames", "6000", "--swap-every", "2000"])
            .args(["--reload-every", "2000", "--dir"])
            .arg(dir.path().join("work"))
            .arg("--json")
            .arg(&json)
            .arg("--plot")
            .arg(&plot),
    );
    assert!(out.contains("soak: 6000 frames"), "{out}");
    let r = read_json(&json);
    assert_eq!(r["frames"], 6000, "{r:#}");
    assert_eq!(
        (r["model_swaps_made"].as_u64(), r["sighups_sent"].as_u64()),
        (Some(2), Some(3))
    );
    // A swap and a reload that fall into one watcher period are applied as one.
    let swaps = r["engine_swaps"].as_u64().unwrap();
    assert!((1..=5).contains(&swaps), "{swaps} engine swaps");
    assert_eq!(r["reloads_refused"], 0);
    assert_eq!(r["samples"].as_array().unwrap().len(), 101);
    assert_eq!(r["summary"]["events"]["dropped"], 0);
    assert!(r["summary"]["events"]["written"].as_u64().unwrap() > 0);
    assert_eq!(r["slopes"]["fd_growth"], 0, "{:#}", r["slopes"]);
    for p in [&plot, &dir.path().join("soak-disk.png")] {
        assert!(image::open(p).is_ok(), "{}", p.display());
    }
}
