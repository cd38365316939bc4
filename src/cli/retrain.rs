//! `contextrast retrain` / `rollback`: fine-tune the running model on newly labelled data, judge
//! it against the running model on the same held-out images, and promote it only if it is no
//! worse beyond the configured tolerances. Every decision is logged with both models' numbers and
//! written to a report (JSON + PNG plots). A run interrupted by a power cut resumes from its last
//! checkpoint on the next start.
use super::train::{pick_device, unix_now};
use anyhow::{Context, Result};
use clap::Args;
use contextrast::retrain::plots;
use contextrast::retrain::{Decision, RetrainConfig, Scores, merge_datasets, promote, rollback};
use contextrast_train::backend::Cpu;
use contextrast_train::checkpoint;
use contextrast_train::config::LossKind;
use contextrast_train::data::Dataset;
use contextrast_train::data::classes::Classes;
use contextrast_train::data::cvat::{ImportOptions, NameMap, import_cvat_with};
use contextrast_train::evaluate::evaluate;
use contextrast_train::export::export_onnx;
use contextrast_train::meta::ModelMeta;
use contextrast_train::model::contextrast_net;
use contextrast_train::onnx_model::OnnxModel;
use contextrast_train::trainer::{Event, TrainOptions, train};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

#[derive(Args)]
pub struct RetrainArgs {
    /// Retrain config (TOML); see firmware-config/retrain.toml.
    #[arg(long)]
    config: PathBuf,
}

/// What a run decided and why, with both models' numbers.
#[derive(Serialize)]
struct Report {
    created_unix: u64,
    model: PathBuf,
    train_images: usize,
    holdout_images: usize,
    steps: u64,
    loss: Vec<(u64, f32)>,
    current: Scores,
    candidate: Scores,
    decision: Decision,
    promoted: bool,
}

pub fn run(a: RetrainArgs) -> Result<()> {
    let cfg = RetrainConfig::load(&a.config)?;
    lower_priority(cfg.nice);
    super::set_threads(cfg.threads);
    let current_model = OnnxModel::load(&cfg.model).context("the running model")?;
    let meta = current_model.meta().cloned().with_context(|| {
        format!(
            "{}: no Contextrast metadata; retraining needs our own model",
            cfg.model.display()
        )
    })?;
    let ck_path = cfg.checkpoint_path();
    let ck = checkpoint::load(&ck_path).context("the running model's checkpoint")?;
    if ck
        .meta
        .classes
        .iter()
        .map(|c| &c.name)
        .ne(meta.class_names.iter())
    {
        anyhow::bail!(
            "{} and {} name different classes",
            ck_path.display(),
            cfg.model.display()
        );
    }

    // The run in progress lives in work/current; a power cut resumes it.
    let current = cfg.work.join("current");
    let data_dir = current.join("data");
    let run_dir = current.join("run");
    let resuming = run_dir.join("last.json").is_file();
    if resuming {
        log::info!("resuming the interrupted run in {}", current.display());
    } else {
        if current.exists() {
            std::fs::remove_dir_all(&current)
                .with_context(|| format!("clearing {}", current.display()))?;
        }
        let mut sources = cfg.data.clone();
        // CVAT exports become project-format sets first, mapped onto the model's classes.
        let classes = Classes {
            classes: ck.meta.classes.clone(),
        };
        let mut names = NameMap::new();
        for (from, to) in &cfg.cvat_names {
            names.insert(from, to);
        }
        for (i, export) in cfg.cvat.iter().enumerate() {
            let out = current.join(format!("cvat{i}"));
            let r = import_cvat_with(
                export,
                &classes,
                &out,
                &names,
                &ImportOptions {
                    val_every: Some(cfg.val_every),
                },
            )?;
            log::info!("imported {} images from {}", r.images, export.display());
            sources.push(out);
        }
        sources.retain(|p| {
            p.is_dir() || {
                log::warn!("{}: not a folder, skipped", p.display());
                false
            }
        });
        let (n_train, n_val) =
            merge_datasets(&sources, &meta.class_names, cfg.val_every, &data_dir)?;
        log::info!("training set: {n_train} images, {n_val} held out");
    }
    let holdout_dir = if cfg.holdout.is_empty() {
        data_dir.clone()
    } else {
        let d = current.join("holdout");
        if !d.join("val.txt").is_file() {
            // Every image of a trusted held-out set is held out (val_every = 1 would make all val).
            merge_holdout(&cfg.holdout, &meta.class_names, &d)?;
        }
        d
    };

    let mut tc = ck.meta.config.clone();
    let ft = &cfg.train;
    tc.steps = ft.steps;
    tc.batch = ft.batch;
    tc.crop = ft.crop;
    tc.lr = ft.lr;
    tc.seed = ft.seed;
    tc.loss = match ft.loss.as_str() {
        "ce" => LossKind::Ce,
        "ccl" => LossKind::Ccl,
        _ => LossKind::Contextrast,
    };
    // Validation inside training would pick a "best" step on the same held-out images the gate
    // judges on; the candidate is the last step instead, judged once.
    tc.val_every = ft.steps;
    tc.checkpoint_every = (ft.steps / 10).max(10);
    tc.threads = cfg.threads;
    let opts = TrainOptions {
        data: data_dir.clone(),
        out: run_dir.clone(),
        config: tc,
        resume: true,
        init_from: Some(ck_path.clone()),
        provenance: BTreeMap::from([
            (
                "command".to_string(),
                std::env::args().collect::<Vec<_>>().join(" "),
            ),
            ("created_unix".to_string(), unix_now().to_string()),
            ("retrained_from".to_string(), ck_path.display().to_string()),
        ]),
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let mut loss = Vec::new();
    let mut on_event = |e: Event| match e {
        Event::Step { step, loss: l, .. } => loss.push((step, l)),
        Event::Started {
            start_step,
            total,
            backend,
            train_images,
            ..
        } => log::info!(
            "fine-tuning on {backend}: {train_images} images, steps {start_step}..{total}"
        ),
        _ => {}
    };
    let summary = match pick_device(&cfg.device)? {
        Some(cuda) => train(&cuda, &opts, &stop, &mut on_event),
        None => train(&Cpu, &opts, &stop, &mut on_event),
    }
    .context("fine-tuning")?;
    if summary.interrupted {
        log::warn!(
            "interrupted at step {}; the next `retrain` resumes it",
            summary.steps
        );
        return Ok(());
    }

    // The candidate as the service would run it: exported to ONNX, loaded by tract.
    let cand_ck = checkpoint::load(&summary.last)?;
    let graph = contextrast_net(&cand_ck.meta.config.model, cand_ck.meta.classes.len());
    let mut cand_meta = ModelMeta {
        metrics: BTreeMap::new(),
        provenance: cand_ck.meta.provenance.clone(),
        ..meta.clone()
    };
    cand_meta
        .provenance
        .insert("step".into(), cand_ck.meta.step.to_string());
    let cand_path = current.join("candidate.onnx");
    export_onnx(&graph, &cand_ck.params, &cand_meta, &cand_path)?;

    let ds = Dataset::open(&holdout_dir)?;
    if ds.val.is_empty() {
        anyhow::bail!("{}: the held-out split is empty", holdout_dir.display());
    }
    let score = |path: &Path| -> Result<Scores> {
        let mut m = OnnxModel::load(path)?;
        let r = evaluate(&mut m, &ds, &ds.val, meta.mean, meta.std)?;
        Ok(Scores::from_report(&r, &meta.defect))
    };
    let cur_scores = score(&cfg.model)?;
    let cand_scores = score(&cand_path)?;
    let decision = cfg.gate.judge(&cur_scores, &cand_scores);
    let line = |s: &Scores| {
        let recall: Vec<String> = s
            .recall
            .iter()
            .map(|(k, v)| format!("{k} {v:.3}"))
            .collect();
        format!(
            "mIoU {:.4}, Boundary IoU {:.4}, recall {}",
            s.miou,
            s.boundary_iou,
            recall.join(", ")
        )
    };
    log::info!("current   {}", line(&cur_scores));
    if !decision.unguarded.is_empty() {
        log::info!(
            "recall not guarded (running model IoU < {}): {}",
            cfg.gate.guard_min_iou,
            decision.unguarded.join(", ")
        );
    }
    log::info!("candidate {}", line(&cand_scores));
    if decision.promote {
        // The ONNX rename is the commit; the checkpoint follows, so a cut in between leaves an
        // older checkpoint (safe: the next run fine-tunes from the older weights).
        promote(&cfg.model, &cand_path)?;
        save_checkpoints(&ck_path, &ck, &cand_ck)?;
        log::info!(
            "PROMOTED: {} replaced (previous kept for `contextrast rollback`)",
            cfg.model.display()
        );
    } else {
        log::warn!(
            "REFUSED, the running model stays: {}",
            decision.reasons.join("; ")
        );
    }
    let report = Report {
        created_unix: unix_now(),
        model: cfg.model.clone(),
        train_images: Dataset::open(&data_dir).map(|d| d.train.len()).unwrap_or(0),
        holdout_images: ds.val.len(),
        steps: summary.steps,
        loss,
        current: cur_scores,
        candidate: cand_scores,
        promoted: decision.promote,
        decision,
    };
    let runs = cfg.work.join("runs");
    std::fs::create_dir_all(&runs).with_context(|| format!("creating {}", runs.display()))?;
    let done = runs.join(format!(
        "{}-{}",
        report.created_unix,
        if report.promoted {
            "promoted"
        } else {
            "refused"
        }
    ));
    std::fs::rename(&current, &done)
        .with_context(|| format!("moving the run to {}", done.display()))?;
    let json = serde_json::to_vec_pretty(&report)?;
    contextrast_train::atomic::write_atomic(&done.join("report.json"), &json)?;
    write_plots(&done, &report, &meta.class_names);
    println!("{}", done.join("report.json").display());
    Ok(())
}

/// A trusted held-out set: every image is held out.
fn merge_holdout(sources: &[PathBuf], classes: &[String], out: &Path) -> Result<()> {
    // val_every = 2 puts every other image in val; then move the train list to val as well.
    merge_datasets(sources, classes, 2, out)?;
    let train = std::fs::read_to_string(out.join("train.txt"))?;
    let val = std::fs::read_to_string(out.join("val.txt"))?;
    contextrast_train::atomic::write_atomic(
        &out.join("val.txt"),
        format!("{val}{train}").as_bytes(),
    )?;
    Ok(())
}

/// The running checkpoint becomes `<stem>.prev.*`, the candidate's becomes the running one.
fn save_checkpoints(
    ck_path: &Path,
    old: &checkpoint::Checkpoint,
    new: &checkpoint::Checkpoint,
) -> Result<()> {
    let dir = ck_path.parent().unwrap_or(Path::new("."));
    let stem = ck_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let mut m = old.meta.clone();
    checkpoint::save(dir, &format!("{stem}.prev"), &mut m, &old.params, None)?;
    let mut m = new.meta.clone();
    checkpoint::save(dir, &stem, &mut m, &new.params, None)?;
    Ok(())
}

/// loss.png (the fine-tuning loss) and iou.png (per-class IoU before and after), so an engineer
/// can look instead of read. A plot that fails is logged; the report stands without it.
fn write_plots(dir: &Path, r: &Report, classes: &[String]) {
    let loss: Vec<(f64, f64)> = r
        .loss
        .iter()
        .map(|&(s, l)| (s as f64, f64::from(l)))
        .collect();
    if let Err(e) = plots::line_chart(
        &dir.join("loss.png"),
        "Fine-tuning loss (cross-entropy)",
        "step",
        "loss",
        &[("loss", &loss)],
    ) {
        log::warn!("{e}");
    }
    let names: Vec<&str> = classes.iter().map(String::as_str).collect();
    let get = |s: &Scores| -> Vec<f64> {
        classes
            .iter()
            .map(|c| s.iou.get(c).copied().unwrap_or(f64::NAN))
            .collect()
    };
    if let Err(e) = plots::before_after_bars(
        &dir.join("iou.png"),
        &format!(
            "Held-out IoU per class: mIoU {:.3} → {:.3} ({})",
            r.current.miou,
            r.candidate.miou,
            if r.promoted { "promoted" } else { "refused" }
        ),
        "IoU",
        &names,
        &get(&r.current),
        &get(&r.candidate),
        "running model",
        "candidate",
    ) {
        log::warn!("{e}");
    }
}

/// Lowers this process's CPU priority so the inspection service wins every contest.
fn lower_priority(nice: i32) {
    // SAFETY: setpriority only reads its arguments; PRIO_PROCESS with who = 0 is this process.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if r != 0 {
        log::warn!(
            "could not lower the CPU priority to nice {nice}: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[derive(Args)]
pub struct RollbackArgs {
    /// The retrain config naming the model file.
    #[arg(long)]
    config: PathBuf,
}

/// Puts the previous model (and its checkpoint) back.
pub fn run_rollback(a: RollbackArgs) -> Result<()> {
    let cfg = RetrainConfig::load(&a.config)?;
    rollback(&cfg.model)?;
    let ck = cfg.checkpoint_path();
    let stem = ck
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prev = ck.with_file_name(format!("{stem}.prev.json"));
    if prev.is_file() {
        let old = checkpoint::load(&prev)?;
        let mut m = old.meta.clone();
        checkpoint::save(
            ck.parent().unwrap_or(Path::new(".")),
            &stem,
            &mut m,
            &old.params,
            None,
        )?;
    }
    log::info!(
        "rolled back: {} is the previous model again",
        cfg.model.display()
    );
    Ok(())
}
