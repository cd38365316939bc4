//! The trainer is deterministic for a seed, and a run interrupted and resumed from its last
//! checkpoint ends bit-identical to an uninterrupted one.
// Test helpers may unwrap: a panic there is a failed test, not a crash on input.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use contextrast_train::checkpoint;
use contextrast_train::config::TrainConfig;
use contextrast_train::data::synth::{Variant, generate};
use contextrast_train::model::NetConfig;
use contextrast_train::trainer::{TrainOptions, train};
use contextrast_train::{Error, backend::Cpu};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

fn config(steps: u64) -> TrainConfig {
    let mut cfg = TrainConfig {
        steps,
        batch: 2,
        crop: [64, 64],
        val_every: 0,
        checkpoint_every: 2,
        workers: 1,
        seed: 3,
        model: NetConfig {
            width: 4,
            decoder: 8,
            proj_dim: 4,
            refine: 0,
        },
        ..TrainConfig::default()
    };
    cfg.augment.crop = (64, 64);
    cfg
}

/// `frames` synthetic frames of `w`×`h` (seed `seed`) in a fresh temporary folder's `data/`.
fn synth_set(frames: usize, seed: u64, w: u32, h: u32) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    generate(&data, frames, seed, Variant::Standard, w, h).unwrap();
    (dir, data)
}

fn opts(data: &Path, out: &Path, steps: u64, resume: bool) -> TrainOptions {
    TrainOptions {
        init_from: None,
        data: data.to_path_buf(),
        out: out.to_path_buf(),
        config: config(steps),
        resume,
        provenance: BTreeMap::new(),
    }
}

#[test]
fn resume_after_interruption_matches_an_uninterrupted_run() {
    let (dir, data) = synth_set(10, 5, 96, 64);
    let never = AtomicBool::new(false);

    // Uninterrupted: 6 steps.
    let a = dir.path().join("a");
    let sa = train(&Cpu, &opts(&data, &a, 6, false), &never, &mut |_| {}).unwrap();
    assert_eq!(sa.steps, 6);
    // Same seed again: identical.
    let a2 = dir.path().join("a2");
    train(&Cpu, &opts(&data, &a2, 6, false), &never, &mut |_| {}).unwrap();

    // Interrupted after step 3 (the stop flag is raised from the progress callback, as SIGINT
    // would), then resumed to 6.
    let b = dir.path().join("b");
    let stop = AtomicBool::new(false);
    let sb = train(&Cpu, &opts(&data, &b, 6, false), &stop, &mut |ev| {
        if let contextrast_train::trainer::Event::Step { step: 3, .. } = ev {
            stop.store(true, Ordering::Relaxed);
        }
    })
    .unwrap();
    assert!(sb.interrupted);
    assert_eq!(checkpoint::load(&b.join("last.json")).unwrap().meta.step, 3);
    let sb = train(&Cpu, &opts(&data, &b, 6, true), &never, &mut |_| {}).unwrap();
    assert_eq!(sb.steps, 6);

    let pa = checkpoint::load(&a.join("last.json")).unwrap();
    let pa2 = checkpoint::load(&a2.join("last.json")).unwrap();
    let pb = checkpoint::load(&b.join("last.json")).unwrap();
    assert_eq!(pa.params, pa2.params, "same seed, different weights");
    assert_eq!(
        pa.params, pb.params,
        "resumed run differs from the uninterrupted one"
    );
    assert_eq!(pa.velocity, pb.velocity);
    assert!(sa.final_loss.is_finite() && sa.final_loss == sb.final_loss);
}

#[test]
fn contrastive_losses_train_resume_and_differ_from_ce() {
    use contextrast_train::config::LossKind;
    let (dir, data) = synth_set(10, 6, 96, 64);
    let never = AtomicBool::new(false);
    let mut finals = Vec::new();
    for loss in [LossKind::Ce, LossKind::Ccl, LossKind::Contextrast] {
        let run = |out: &Path, steps: u64, resume: bool| {
            let mut o = opts(&data, out, steps, resume);
            o.config.loss = loss;
            o.config.contrast.warmup_fraction = 0.0;
            // Small caps, so that sampling picks subsets and BANE's choice matters (with the
            // default caps every negative of these tiny frames is taken either way).
            o.config.contrast.sampling.max_pos = 16;
            o.config.contrast.sampling.max_neg = 16;
            train(&Cpu, &o, &never, &mut |_| {}).unwrap()
        };
        let a = dir.path().join(format!("{loss:?}-a"));
        let s = run(&a, 4, false);
        assert!(s.final_loss.is_finite(), "{loss:?}: {}", s.final_loss);
        // Resume through the contrastive path is exact too.
        let b = dir.path().join(format!("{loss:?}-b"));
        run(&b, 2, false);
        run(&b, 4, true);
        let (pa, pb) = (
            checkpoint::load(&a.join("last.json")).unwrap(),
            checkpoint::load(&b.join("last.json")).unwrap(),
        );
        // Steps 1-2 ran under a 2-step poly schedule in `b`, so compare only that both are
        // complete and finite; bit-identity of resume is covered above with equal schedules.
        assert_eq!(pb.meta.step, 4);
        assert!(pa.params.values().flatten().all(|v| v.is_finite()));
        finals.push(s.final_loss);
    }
    // CE+CCL and CE+CCL+BANE add α·L_PA > 0 and pick different negatives.
    assert!(
        finals[1] != finals[0] && finals[2] != finals[0] && finals[1] != finals[2],
        "{finals:?}"
    );
}

#[test]
fn bad_config_values_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("train.toml");
    for (text, key) in [
        ("crop = [100, 64]", "crop"),
        ("lr = -1.0", "lr"),
        ("momentum = 1.5", "momentum"),
        ("batch = 0", "batch"),
        (
            "loss = \"contextrast\"\n[contrast]\ntau = -0.1",
            "contrast.tau",
        ),
    ] {
        std::fs::write(&p, text).unwrap();
        let e = TrainConfig::load(&p).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Config { .. }), "{text}: {msg}");
        assert!(
            msg.contains(key) && msg.contains("train.toml"),
            "{text}: {msg}"
        );
    }
    std::fs::write(&p, "stepz = 3").unwrap();
    let msg = TrainConfig::load(&p).unwrap_err().to_string();
    assert!(msg.contains("stepz") && msg.contains("train.toml"), "{msg}");
}

#[test]
fn class_weights_of_the_wrong_length_are_refused() {
    let (dir, data) = synth_set(4, 1, 64, 64);
    let mut o = opts(&data, &dir.path().join("o"), 2, false);
    o.config.class_weights = vec![1.0, 2.0];
    let msg = train(&Cpu, &o, &AtomicBool::new(false), &mut |_| {})
        .err()
        .unwrap()
        .to_string();
    contextrast_model::testing::assert_mentions(&msg, &["class_weights", "5 classes"]);
}

/// A stride-4 checkpoint grows a refinement path: every old weight carries over, the new
/// correction starts at zero (so the grown network predicts as the old one did), and it trains.
#[test]
fn a_stride4_checkpoint_grows_a_refinement_path() {
    use contextrast_train::backend::Shape;
    use contextrast_train::model::contextrast_net;
    use contextrast_train::nn::exec::{Mode, forward};
    use contextrast_train::nn::params::Params;
    let (dir, data) = synth_set(10, 5, 96, 64);
    let never = AtomicBool::new(false);
    let base = dir.path().join("base");
    train(&Cpu, &opts(&data, &base, 2, false), &never, &mut |_| {}).unwrap();
    let old = checkpoint::load(&base.join("last.json")).unwrap();

    let grown_cfg = NetConfig {
        refine: 2,
        ..config(1).model
    };
    let mut o = opts(&data, &dir.path().join("grown"), 1, false);
    o.config.model = grown_cfg.clone();
    o.init_from = Some(base.join("last.json"));
    // Zero steps are refused, so compare at step 0 through the same growing the trainer does:
    // the old logits and the grown network's, from the old weights plus a fresh path.
    let graph = contextrast_net(&grown_cfg, 5);
    let mut host = Params::init(&Cpu, &graph, 3)
        .unwrap()
        .to_host(&Cpu)
        .unwrap();
    assert!(host["ref.cls.weight"].iter().all(|&w| w == 0.0));
    for (k, v) in &old.params {
        host.insert(k.clone(), v.clone());
    }
    let logits = |g: &contextrast_train::nn::graph::Graph,
                  h: &contextrast_train::nn::params::HostParams| {
        let mut p = Params::from_host(&Cpu, g, h).unwrap();
        let shape = Shape::new(1, 3, 64, 64);
        let x: Vec<f32> = (0..shape.numel())
            .map(|i| ((i * 7) % 13) as f32 / 6.0 - 1.0)
            .collect();
        let acts = forward(&Cpu, g, &mut p, x, shape, Mode::Eval, false).unwrap();
        acts.get(g.logits).unwrap().clone()
    };
    let before = logits(&contextrast_net(&config(1).model, 5), &old.params);
    assert_eq!(
        before,
        logits(&graph, &host),
        "the grown network must start where the old one was"
    );

    let s = train(&Cpu, &o, &never, &mut |_| {}).unwrap();
    assert_eq!(s.steps, 1);
    let grown = checkpoint::load(&s.last).unwrap();
    assert_eq!(grown.meta.config.model.refine, 2);
    assert!(
        grown.params["ref.cls.weight"].iter().any(|&w| w != 0.0),
        "the correction learns"
    );
    assert!(grown.params.len() > old.params.len());

    // Other architecture changes are still refused, naming the checkpoint.
    let mut wider = opts(&data, &dir.path().join("wider"), 1, false);
    wider.config.model = NetConfig {
        width: 8,
        ..grown_cfg
    };
    wider.init_from = Some(base.join("last.json"));
    let Err(e) = train(&Cpu, &wider, &never, &mut |_| {}) else {
        panic!("a wider model must not fine-tune from a narrower checkpoint");
    };
    let e = e.to_string();
    contextrast_model::testing::assert_mentions(&e, &["last.json", "cannot fine-tune"]);
}

/// A kill inside `checkpoint::save` (between its tensor files, its JSON and the renames) leaves
/// a checkpoint whose tensors are all of the step its JSON names; a torn pair is refused.
#[test]
fn a_checkpoint_killed_mid_save_loads_one_consistent_step() {
    use contextrast_train::checkpoint::{CheckpointMeta, FORMAT, save};
    let tmp = tempfile::tempdir().unwrap();
    // The three files of a committed checkpoint `last` at `step`, weights `x`, velocity `-x`.
    let files = |step: u64, x: f32| -> [Vec<u8>; 3] {
        let d = tmp.path().join(format!("s{step}"));
        let mut meta = CheckpointMeta {
            format: FORMAT.into(),
            step,
            config: config(2),
            classes: Vec::new(),
            metrics: BTreeMap::new(),
            provenance: BTreeMap::new(),
            params_file: String::new(),
            optimizer_file: None,
        };
        let t = |v: f32| BTreeMap::from([("w".to_string(), vec![v; 3])]);
        save(&d, "last", &mut meta, &t(x), Some(&t(-x))).unwrap();
        ["last.json", "last.safetensors", "last.optim.safetensors"]
            .map(|f| std::fs::read(d.join(f)).unwrap())
    };
    let ([j1, p1, o1], [j2, p2, o2]) = (files(1, 1.0), files(2, 2.0));
    let dir = tmp.path().join("ckpt");
    // The folder as a kill left it: JSON, committed tensor files, pending (`.new`) ones.
    let state = |json: &[u8], params: &[u8], optim: &[u8], pending: [Option<&[u8]>; 2]| {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("last.json"), json).unwrap();
        std::fs::write(dir.join("last.safetensors"), params).unwrap();
        std::fs::write(dir.join("last.optim.safetensors"), optim).unwrap();
        for (name, bytes) in ["last.safetensors.new", "last.optim.safetensors.new"]
            .iter()
            .zip(pending)
        {
            if let Some(b) = bytes {
                std::fs::write(dir.join(name), b).unwrap();
            }
        }
        checkpoint::load(&dir.join("last.json"))
            .map(|c| (c.meta.step, c.params["w"][0], c.velocity.unwrap()["w"][0]))
    };
    let (step1, step2) = (Some((1, 1.0, -1.0)), Some((2, 2.0, -2.0)));
    assert_eq!(state(&j2, &p2, &o2, [None, None]).ok(), step2);
    // After the JSON of step 2, before the renames.
    assert_eq!(state(&j2, &p1, &o1, [Some(&p2), Some(&o2)]).ok(), step2);
    // Between the two renames.
    assert_eq!(state(&j2, &p2, &o1, [None, Some(&o2)]).ok(), step2);
    // Before the JSON of step 2: its tensors pending, the step-1 checkpoint still whole.
    assert_eq!(state(&j1, &p1, &o1, [Some(&p2), Some(&o2)]).ok(), step1);
    // A torn pair, as the old save order could leave: refused, never resumed from.
    let e = state(&j1, &p2, &o1, [None, None]).expect_err("refused");
    assert!(e.to_string().contains("torn"), "{e}");
}
