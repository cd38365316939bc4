use super::*;

fn scores(miou: f64, recall: &[(&str, f64)]) -> GateScores {
    GateScores {
        miou,
        recall: recall.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        // Every class segmented well enough for its recall to be guarded.
        iou: recall.iter().map(|(k, _)| (k.to_string(), 0.5)).collect(),
        ..GateScores::default()
    }
}

#[test]
fn the_gate_refuses_any_drop_beyond_tolerance_and_says_why() {
    let gate = Gate {
        miou_tolerance: 0.01,
        recall_tolerance: 0.02,
        guard_min_iou: 0.05,
    };
    let cur = scores(0.50, &[("pit", 0.40), ("stain", 0.90)]);
    assert!(
        gate.judge(&cur, &scores(0.495, &[("pit", 0.39), ("stain", 0.95)]))
            .promote
    );
    let d = gate.judge(&cur, &scores(0.48, &[("pit", 0.30), ("stain", 0.95)]));
    assert!(!d.promote);
    assert_eq!(d.reasons.len(), 2, "{:?}", d.reasons);
    assert!(
        d.reasons[0].contains("mIoU") && d.reasons[1].contains("pit"),
        "{:?}",
        d.reasons
    );
    // A class the candidate no longer finds at all counts as recall 0.
    assert!(!gate.judge(&cur, &scores(0.6, &[("stain", 0.95)])).promote);
    assert!(
        !gate
            .judge(&cur, &scores(f64::NAN, &[("pit", 0.5), ("stain", 0.95)]))
            .promote
    );
}

#[test]
fn promote_keeps_the_previous_model_and_rollback_restores_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model.onnx");
    let cand = dir.path().join("cand.onnx");
    std::fs::write(&model, b"old").expect("write");
    std::fs::write(&cand, b"new").expect("write");
    promote(&model, &cand).expect("promote");
    assert_eq!(std::fs::read(&model).expect("read"), b"new");
    assert_eq!(std::fs::read(previous_path(&model)).expect("read"), b"old");
    rollback(&model).expect("rollback");
    assert_eq!(std::fs::read(&model).expect("read"), b"old");
    assert_eq!(
        std::fs::read(dir.path().join("model.rolledback.onnx")).expect("read"),
        b"new"
    );
    // No previous model: a clear error naming the file.
    let lone = dir.path().join("lone.onnx");
    let e = rollback(&lone).expect_err("nothing to roll back to");
    assert!(e.to_string().contains("lone.prev.onnx"), "{e}");
}

#[test]
fn config_errors_name_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("retrain.toml");
    for (text, key) in [
        ("model = \"m.onnx\"\nwork = \"w\"\n", "data"),
        (
            "model = \"m.onnx\"\nwork = \"w\"\ndata = [\"d\"]\n[train]\ncrop = [100, 100]\n",
            "train.crop",
        ),
        (
            "model = \"m.onnx\"\nwork = \"w\"\ndata = [\"d\"]\n[gate]\nmiou_tolerance = 2\n",
            "gate.miou_tolerance",
        ),
        (
            "model = \"m.onnx\"\nwork = \"w\"\ndata = [\"d\"]\nnice = 40\n",
            "nice",
        ),
    ] {
        std::fs::write(&p, text).expect("write");
        let e = RetrainConfig::load(&p)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(key) && e.contains("retrain.toml"), "{text}: {e}");
    }
    std::fs::write(&p, "model = \"m.onnx\"\nwork = \"w\"\ndata = [\"d\"]\n").expect("write");
    let cfg = RetrainConfig::load(&p).expect("valid");
    assert_eq!(cfg.checkpoint_path(), dir.path().join("m.json"));
    assert_eq!(cfg.data, [dir.path().join("d")]);
}
