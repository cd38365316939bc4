use super::*;
use contextrast_train::data::synth::{Variant, generate};

#[path = "../../tests/common/live_model.rs"]
mod live_model;
use live_model::install_model;

/// `count` labelled synthetic frames in `dir/name`.
fn labelled(dir: &Path, name: &str, count: usize, seed: u64) -> PathBuf {
    let out = dir.join(name);
    generate(&out, count, seed, Variant::Shifted, 64, 64).expect("synthetic set");
    out
}

/// A retrain config in `dir` (model in `dir/live`, work in `dir/work`).
fn config(dir: &Path, data: &[&Path], holdout: &[&Path]) -> RetrainConfig {
    let list = |ps: &[&Path]| {
        ps.iter()
            .map(|p| format!("\"{}\"", p.display()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let p = dir.join("retrain.toml");
    std::fs::write(
        &p,
        format!(
            "model = \"live/model.onnx\"\nwork = \"work\"\ndata = [{}]\nholdout = [{}]\ndevice = \"cpu\"\nthreads = 2\n\
             [train]\nsteps = 40\nbatch = 4\ncrop = [64, 64]\nlr = 0.005\nloss = \"ce\"\n",
            list(data),
            list(holdout)
        ),
    )
    .expect("write config");
    RetrainConfig::load(&p).expect("valid config")
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_new_run_builds_its_sets_and_an_interrupted_one_is_resumed_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    install_model(&d.join("live"));
    let train = labelled(d, "train", 10, 11);
    let holdout = labelled(d, "holdout", 4, 12);
    let cfg = config(d, &[&train, &d.join("not-a-folder")], &[&holdout]);
    // Left over from an earlier run that ended before its first checkpoint.
    let stale = cfg.work.join("current/stale.txt");
    std::fs::create_dir_all(stale.parent().expect("parent")).expect("mkdir");
    std::fs::write(&stale, b"old").expect("write");

    let run = RetrainRun::prepare(&cfg, "contextrast retrain --config x").expect("prepare");
    assert!(!run.resuming());
    assert!(!stale.exists(), "a run without a checkpoint starts afresh");
    let dirs = WorkDirs::new(&cfg.work);
    let (n_train, n_val) = (
        lines(&dirs.data.join("train.txt")).len(),
        lines(&dirs.data.join("val.txt")).len(),
    );
    assert_eq!(n_train + n_val, 10);
    assert_eq!(run.holdout(), dirs.current.join("holdout"));
    assert_eq!(
        lines(&run.holdout().join("val.txt")).len(),
        4,
        "all held out"
    );
    let o = run.train_options();
    assert_eq!(
        (o.data.as_path(), o.out.as_path()),
        (dirs.data.as_path(), dirs.run.as_path())
    );
    assert!(o.resume);
    assert_eq!(
        o.init_from.as_deref(),
        Some(cfg.checkpoint_path().as_path())
    );
    assert_eq!(o.provenance["command"], "contextrast retrain --config x");
    assert_eq!(
        o.provenance["retrained_from"],
        cfg.checkpoint_path().display().to_string()
    );
    assert_eq!((o.config.steps, o.config.val_every), (40, 40));
    drop(run);

    // A power cut after a checkpoint: the next start resumes with the sets as they were, even
    // though the labelled data changed meanwhile.
    std::fs::create_dir_all(&dirs.run).expect("mkdir");
    std::fs::write(dirs.run.join("last.json"), b"{}").expect("write");
    let before = lines(&dirs.data.join("train.txt"));
    std::fs::remove_dir_all(&train).expect("rm");
    let run = RetrainRun::prepare(&cfg, "again").expect("resume");
    assert!(run.resuming());
    assert_eq!(lines(&dirs.data.join("train.txt")), before);
    assert_eq!(lines(&run.holdout().join("val.txt")).len(), 4);
}

#[test]
fn without_usable_data_the_run_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    install_model(&d.join("live"));
    let cfg = config(d, &[&d.join("gone")], &[]);
    let e = RetrainRun::prepare(&cfg, "x")
        .err()
        .expect("no data")
        .to_string();
    assert!(e.contains("no training images"), "{e}");
}

#[test]
fn a_model_without_metadata_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let model = install_model(&d.join("live"));
    std::fs::write(&model, b"not onnx").expect("write");
    let train = labelled(d, "train", 4, 1);
    let e = RetrainRun::prepare(&config(d, &[&train], &[]), "x")
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.starts_with("the running model: ") && e.contains("model.onnx"),
        "{e}"
    );
}

#[test]
fn the_fine_tune_config_is_a_short_run_validated_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut cfg = config(d, &[d], &[]);
    let base = TrainConfig::default();
    let tc = fine_tune_config(&base, &cfg);
    assert_eq!((tc.steps, tc.batch, tc.crop), (40, 4, [64, 64]));
    assert_eq!(tc.loss, LossKind::Ce);
    assert_eq!(tc.val_every, 40, "validated only at the end");
    assert_eq!(tc.checkpoint_every, 10, "at least every 10 steps");
    assert_eq!(tc.threads, 2);
    cfg.train.steps = 500;
    cfg.train.loss = "contextrast".into();
    let tc = fine_tune_config(&base, &cfg);
    assert_eq!((tc.checkpoint_every, tc.loss), (50, LossKind::Contextrast));
    assert_eq!(
        tc.model, base.model,
        "the network stays the running model's"
    );
}

#[test]
fn merge_holdout_holds_out_every_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = labelled(dir.path(), "a", 5, 3);
    let b = labelled(dir.path(), "b", 3, 4);
    let out = dir.path().join("holdout");
    let names: Vec<String> = ["belt", "part", "scratch", "pit", "stain"]
        .map(String::from)
        .to_vec();
    merge_holdout(&[a, b], &names, &out).expect("merge");
    let mut val = lines(&out.join("val.txt"));
    assert_eq!(val.len(), 8, "{val:?}");
    val.sort();
    val.dedup();
    assert_eq!(val.len(), 8, "each image once");
    let ds = Dataset::open(&out).expect("a dataset");
    assert_eq!(ds.val.len(), 8);
}

fn report(promoted: bool) -> Report {
    let s = |miou| GateScores {
        miou,
        iou: BTreeMap::from([("belt".to_string(), miou)]),
        ..GateScores::default()
    };
    Report {
        created_unix: 1_700_000_000,
        model: "/live/model.onnx".into(),
        train_images: 8,
        holdout_images: 4,
        steps: 40,
        loss: vec![(1, 0.9), (2, 0.7)],
        current: s(0.2),
        candidate: s(0.3),
        decision: Decision {
            promote: promoted,
            reasons: if promoted {
                Vec::new()
            } else {
                vec!["mIoU worse".into()]
            },
            unguarded: Vec::new(),
        },
        promoted,
    }
}

#[test]
fn a_judged_run_is_filed_with_its_report_and_plots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("work");
    let dirs = WorkDirs::new(&work);
    std::fs::create_dir_all(&dirs.run).expect("mkdir");
    std::fs::write(dirs.current.join("candidate.onnx"), b"cand").expect("write");
    let r = report(false);
    let done = file_run(&work, &dirs.current, &r).expect("filed");
    assert_eq!(done, work.join("runs/1700000000-refused"));
    assert!(!dirs.current.exists(), "the next run starts afresh");
    assert!(done.join("candidate.onnx").is_file());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(done.join("report.json")).expect("report"))
            .expect("json");
    let mut keys: Vec<&str> = json
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "candidate",
            "created_unix",
            "current",
            "decision",
            "holdout_images",
            "loss",
            "model",
            "promoted",
            "steps",
            "train_images"
        ]
    );
    assert_eq!(json["promoted"], false);
    assert_eq!(json["decision"]["reasons"][0], "mIoU worse");
    assert_eq!(json["loss"][1][0], 2);
    write_plots(&done, &r, &["belt".to_string()]);
    for png in ["loss.png", "iou.png"] {
        assert!(done.join(png).is_file(), "{png}");
    }
    let promoted = WorkDirs::new(&work);
    std::fs::create_dir_all(&promoted.current).expect("mkdir");
    let r = Report {
        created_unix: 1_700_000_001,
        ..report(true)
    };
    assert_eq!(
        file_run(&work, &promoted.current, &r).expect("filed"),
        work.join("runs/1700000001-promoted")
    );
}

#[test]
fn promotion_replaces_model_and_checkpoint_refusal_neither_and_rollback_restores_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let model = install_model(&d.join("live"));
    let cfg = config(d, &[d], &[]);
    let ck_path = cfg.checkpoint_path();
    let ck = checkpoint::load(&ck_path).expect("running checkpoint");
    let mut cand_ck = checkpoint::load(&ck_path).expect("candidate checkpoint");
    cand_ck.meta.step = 12_345;
    let cand = d.join("candidate.onnx");
    std::fs::write(&cand, b"candidate").expect("write");
    let shipped = std::fs::read(&model).expect("read");
    let decision = |promote| Decision {
        promote,
        reasons: Vec::new(),
        unguarded: Vec::new(),
    };

    apply_decision(&cfg, &decision(false), &cand, &ck_path, &ck, &cand_ck).expect("refuse");
    assert_eq!(std::fs::read(&model).expect("read"), shipped);
    assert_eq!(
        checkpoint::load(&ck_path).expect("load").meta.step,
        ck.meta.step
    );
    assert!(!d.join("live/model.prev.json").exists());

    apply_decision(&cfg, &decision(true), &cand, &ck_path, &ck, &cand_ck).expect("promote");
    assert_eq!(std::fs::read(&model).expect("read"), b"candidate");
    assert_eq!(
        std::fs::read(d.join("live/model.prev.onnx")).expect("prev"),
        shipped
    );
    assert_eq!(checkpoint::load(&ck_path).expect("load").meta.step, 12_345);
    let prev = checkpoint::load(&d.join("live/model.prev.json")).expect("previous checkpoint");
    assert_eq!(prev.meta.step, ck.meta.step);

    rollback(&cfg).expect("rollback");
    assert_eq!(std::fs::read(&model).expect("read"), shipped);
    assert_eq!(
        checkpoint::load(&ck_path).expect("load").meta.step,
        ck.meta.step,
        "the next retrain fine-tunes from the previous weights"
    );
}
