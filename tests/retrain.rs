//! `contextrast retrain` end to end on the synthetic line: the shipped model meets the shifted
//! variant and does poorly; fine-tuned on a few labelled shifted frames, the candidate does better
//! on a held-out shifted set, but this short fine-tune loses the few scratches and pits the
//! shipped model still finds there, so the gate refuses it, naming them; with a gate that
//! tolerates that, it is promoted (the previous model kept); a candidate trained on wrong labels
//! is refused and the running model stays; `rollback` restores the previous one.
// Test helpers may unwrap: a panic there is a failed test, not a crash on input.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
use common::live_model::install_model;
use common::{bin, ok_all, root};
use std::path::{Path, PathBuf};

fn synth(dir: &Path, name: &str, count: &str, seed: &str) -> PathBuf {
    let out = dir.join(name);
    common::synth(
        "info",
        &out,
        &format!("--variant shifted --width 256 --height 256 --count {count} --seed {seed}"),
    );
    out
}

/// The gate of the runs after the first: a defect class's recall may fall by up to 0.2.
const TOLERANT: &str = "[gate]\nrecall_tolerance = 0.2\n";

fn config(dir: &Path, data: &Path, holdout: &Path, gate: &str) -> PathBuf {
    let p = dir.join(format!(
        "retrain-{}.toml",
        data.file_name().and_then(|n| n.to_str()).unwrap_or("x")
    ));
    std::fs::write(
        &p,
        format!(
            "model = \"live/model.onnx\"\nwork = \"work\"\ndata = [\"{}\"]\nholdout = [\"{}\"]\ndevice = \"cpu\"\nthreads = 2\n\
             [train]\nsteps = 40\nbatch = 4\ncrop = [128, 128]\nlr = 0.005\nloss = \"ce\"\n{gate}",
            data.display(),
            holdout.display()
        ),
    )
    .expect("write config");
    p
}

/// `contextrast retrain` in `dir` on `data`: its output and the report it filed.
fn retrain(dir: &Path, data: &Path, holdout: &Path, gate: &str) -> (String, serde_json::Value) {
    let out = ok_all(
        bin("info")
            .current_dir(dir)
            .args(["retrain", "--config"])
            .arg(config(dir, data, holdout, gate)),
    );
    let r = report(&out);
    (out, r)
}

fn report(stdout: &str) -> serde_json::Value {
    let path = stdout
        .lines()
        .find(|l| l.ends_with("report.json"))
        .expect("retrain prints its report path");
    serde_json::from_slice(&std::fs::read(path).expect("report")).expect("report json")
}

/// Swaps belt (0) and part (1) in every mask: a labelling mistake.
fn break_labels(ds: &Path) {
    for e in std::fs::read_dir(ds.join("masks")).expect("masks") {
        let p = e.expect("entry").path();
        let mut m = image::open(&p).expect("mask").into_luma8();
        for px in m.pixels_mut() {
            px.0[0] = match px.0[0] {
                0 => 1,
                1 => 0,
                v => v,
            };
        }
        m.save(&p).expect("save mask");
    }
}

#[test]
fn retrain_promotes_a_better_model_refuses_a_broken_one_and_rolls_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let train = synth(d, "shifted-train", "20", "7001");
    let holdout = synth(d, "shifted-holdout", "10", "7002");
    let model = install_model(&d.join("live"));
    let shipped = std::fs::read(&model).expect("read");

    // The default gate: a better mIoU does not buy the defects the running model finds.
    let (out, r) = retrain(d, &train, &holdout, "");
    assert_eq!(r["promoted"], false, "{r:#}");
    let reasons = r["decision"]["reasons"].to_string();
    assert!(reasons.contains("scratch recall"), "{reasons}");
    assert!(out.contains("REFUSED"), "{out}");
    assert_eq!(std::fs::read(&model).expect("read"), shipped);

    // A gate that tolerates it: promoted, better on the held-out shifted frames.
    let (out, r) = retrain(d, &train, &holdout, TOLERANT);
    let (cur, cand) = (
        r["current"]["miou"].as_f64().unwrap_or(1.0),
        r["candidate"]["miou"].as_f64().unwrap_or(0.0),
    );
    assert!(
        cur < 0.25,
        "the shipped model should do poorly on the shifted line: {cur}"
    );
    assert!(
        cand > cur + 0.05,
        "fine-tuning should help: {cur} → {cand}\n{out}"
    );
    assert_eq!(r["promoted"], true, "{r:#}");
    let promoted = std::fs::read(&model).expect("read");
    assert_ne!(promoted, shipped);
    assert_eq!(
        std::fs::read(d.join("live/model.prev.onnx")).expect("prev kept"),
        shipped
    );
    assert!(out.contains("PROMOTED"), "{out}");
    let run_dir = Path::new(
        out.lines()
            .find(|l| l.ends_with("report.json"))
            .unwrap_or(""),
    )
    .parent()
    .map(Path::to_path_buf)
    .unwrap_or_default();
    for png in ["loss.png", "iou.png"] {
        let img = image::open(run_dir.join(png)).expect("plot decodes");
        assert_eq!((img.width(), img.height()), (900, 500));
    }

    // A candidate trained on wrong labels: refused, the running model untouched.
    let broken = synth(d, "broken", "20", "7003");
    break_labels(&broken);
    let (out, r) = retrain(d, &broken, &holdout, TOLERANT);
    assert_eq!(r["promoted"], false, "{r:#}");
    assert!(
        r["decision"]["reasons"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{r:#}"
    );
    assert!(out.contains("REFUSED"), "{out}");
    assert_eq!(
        std::fs::read(&model).expect("read"),
        promoted,
        "a refused candidate must not reach the line"
    );

    // Rollback puts the shipped model back.
    ok_all(
        bin("info")
            .current_dir(d)
            .args(["rollback", "--config"])
            .arg(config(d, &train, &holdout, TOLERANT)),
    );
    assert_eq!(std::fs::read(&model).expect("read"), shipped);
}

#[test]
fn the_shipped_retrain_config_loads() {
    let cfg =
        contextrast::retrain::RetrainConfig::load(&root().join("firmware-config/retrain.toml"))
            .expect("firmware-config/retrain.toml is valid");
    assert_eq!(
        cfg.checkpoint_path(),
        Path::new("/var/lib/contextrast/model.json")
    );
    assert_eq!(cfg.train.loss, "contextrast");
}
