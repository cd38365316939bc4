//! One retrain run: fine-tune the running model on newly labelled data, judge it against the
//! running model on the same held-out images, and promote it only if the gate lets it through.
//! Every decision is logged with both models' numbers and written to a report (JSON + PNG
//! plots) under `work/runs/`. The run in progress lives in `work/current`; one interrupted by a
//! power cut (or a signal) resumes from its last checkpoint on the next start.
//!
//! Two steps, so the caller can install its signal handlers in between (as the binary does:
//! a signal during the import still ends the process): [`RetrainRun::prepare`] checks the
//! running model and builds (or, resuming, keeps) the training and held-out sets;
//! [`RetrainRun::run`] fine-tunes, exports, evaluates, gates, promotes and files the report.
use super::{Decision, GateScores, RetrainConfig, merge_datasets, plots, promote};
use crate::{Error, Result};
use contextrast_model::atomic::write_atomic;
use contextrast_model::meta::ModelMeta;
use contextrast_model::onnx_model::OnnxModel;
use contextrast_train::backend::Cpu;
use contextrast_train::backend::cuda::{Cuda, DeviceChoice};
use contextrast_train::checkpoint::{self, Checkpoint};
use contextrast_train::config::{LossKind, TrainConfig};
use contextrast_train::data::Dataset;
use contextrast_train::data::classes::Classes;
use contextrast_train::data::cvat::{ImportOptions, NameMap, import_cvat_with};
use contextrast_train::evaluate::evaluate;
use contextrast_train::export::export_onnx;
use contextrast_train::model::contextrast_net;
use contextrast_train::trainer::{Event, TrainOptions, TrainSummary, train};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// What a run decided and why, with both models' numbers: `report.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// When the run was judged, seconds since the Unix epoch.
    pub created_unix: u64,
    /// The running model's file.
    pub model: PathBuf,
    /// Images in the merged training split.
    pub train_images: usize,
    /// Images in the held-out set both models were judged on.
    pub holdout_images: usize,
    /// Fine-tuning steps the candidate reached (steps of a resumed run included).
    pub steps: u64,
    /// `(step, loss)` of each fine-tuning step this process ran.
    pub loss: Vec<(u64, f32)>,
    /// The running model's scores on the held-out set.
    pub current: GateScores,
    /// The candidate's scores on the held-out set.
    pub candidate: GateScores,
    /// The gate's verdict and its reasons.
    pub decision: Decision,
    /// Whether the candidate replaced the running model.
    pub promoted: bool,
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// Stopped after `steps` steps; the next run resumes it.
    Interrupted {
        /// Steps reached so far.
        steps: u64,
    },
    /// Judged (promoted or refused): the run's folder (`report.json`, `loss.png`, `iou.png`).
    Judged {
        /// The run's folder under `work/runs/`.
        dir: PathBuf,
        /// What was decided, as written to `report.json`.
        report: Box<Report>,
    },
}

/// Where the run in progress lives: `work/current`, with the merged training set, the training
/// run (checkpoints), and the held-out set when trusted held-out sets are configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkDirs {
    /// `work/current`: the run in progress.
    pub current: PathBuf,
    /// `work/current/data`: the merged training set.
    pub data: PathBuf,
    /// `work/current/run`: the training run's checkpoints.
    pub run: PathBuf,
}

impl WorkDirs {
    /// The folders of the run in progress under the `work` folder.
    pub fn new(work: &Path) -> WorkDirs {
        let current = work.join("current");
        WorkDirs {
            data: current.join("data"),
            run: current.join("run"),
            current,
        }
    }

    /// An interrupted run left a checkpoint: it is resumed, its data kept as they are.
    pub fn resumable(&self) -> bool {
        self.run.join("last.json").is_file()
    }
}

/// A run ready to fine-tune: running model checked, training and held-out sets in place.
pub struct RetrainRun<'a> {
    cfg: &'a RetrainConfig,
    meta: ModelMeta,
    ck_path: PathBuf,
    ck: Checkpoint,
    dirs: WorkDirs,
    holdout: PathBuf,
    resuming: bool,
    opts: TrainOptions,
}

impl<'a> RetrainRun<'a> {
    /// Loads the running model and its checkpoint (they must name the same classes), then
    /// resumes the run in `work/current` if one was interrupted, or starts a new one: CVAT
    /// exports imported, all labelled sets merged with every `val_every`-th image held out,
    /// trusted held-out sets merged. `command` is recorded in the candidate's provenance.
    pub fn prepare(cfg: &'a RetrainConfig, command: &str) -> Result<RetrainRun<'a>> {
        let current_model =
            OnnxModel::load(&cfg.model).map_err(|e| Error::retrain("the running model", e))?;
        let meta = current_model.meta().cloned().ok_or_else(|| {
            Error::model(
                &cfg.model,
                "no Contextrast metadata; retraining needs our own model",
            )
        })?;
        let ck_path = cfg.checkpoint_path();
        let ck = checkpoint::load(&ck_path)
            .map_err(|e| Error::retrain("the running model's checkpoint", e))?;
        if ck
            .meta
            .classes
            .iter()
            .map(|c| &c.name)
            .ne(meta.class_names.iter())
        {
            return Err(Error::model(
                &ck_path,
                format!(
                    "{} and {} name different classes",
                    ck_path.display(),
                    cfg.model.display()
                ),
            ));
        }
        let dirs = WorkDirs::new(&cfg.work);
        let resuming = prepare_data(cfg, &ck, &meta.class_names, &dirs)?;
        let holdout = holdout_dir(cfg, &meta.class_names, &dirs)?;
        let opts = TrainOptions {
            data: dirs.data.clone(),
            out: dirs.run.clone(),
            config: fine_tune_config(&ck.meta.config, cfg),
            resume: true,
            init_from: Some(ck_path.clone()),
            provenance: BTreeMap::from([
                ("command".to_string(), command.to_string()),
                ("created_unix".to_string(), unix_now().to_string()),
                ("retrained_from".to_string(), ck_path.display().to_string()),
            ]),
        };
        Ok(RetrainRun {
            cfg,
            meta,
            ck_path,
            ck,
            dirs,
            holdout,
            resuming,
            opts,
        })
    }

    /// Whether this continues an interrupted run.
    pub fn resuming(&self) -> bool {
        self.resuming
    }

    /// The fine-tuning the run will do.
    pub fn train_options(&self) -> &TrainOptions {
        &self.opts
    }

    /// The folder both models are judged on.
    pub fn holdout(&self) -> &Path {
        &self.holdout
    }

    /// Fine-tunes (until done or `stop` is set), exports the candidate as the service would run
    /// it, evaluates both models on the held-out split, applies the gate, promotes or refuses,
    /// and files the run with its report under `work/runs/`.
    pub fn run(self, stop: &AtomicBool) -> Result<Outcome> {
        let RetrainRun {
            cfg,
            meta,
            ck_path,
            ck,
            dirs,
            holdout,
            opts,
            ..
        } = self;
        let mut loss = Vec::new();
        let summary =
            fine_tune(cfg, &opts, stop, &mut loss).map_err(|e| Error::retrain("fine-tuning", e))?;
        if summary.interrupted {
            log::warn!(
                "interrupted at step {}; the next `retrain` resumes it",
                summary.steps
            );
            return Ok(Outcome::Interrupted {
                steps: summary.steps,
            });
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
        let cand_path = dirs.current.join("candidate.onnx");
        export_onnx(&graph, &cand_ck.params, &cand_meta, &cand_path)?;

        let ds = Dataset::open(&holdout)?;
        if ds.val.is_empty() {
            return Err(
                contextrast_train::Error::data(&holdout, "the held-out split is empty").into(),
            );
        }
        let score = |path: &Path| -> Result<GateScores> {
            let mut m = OnnxModel::load(path)?;
            let r = evaluate(&mut m, &ds, &ds.val, meta.mean, meta.std)?;
            Ok(GateScores::from_report(&r, &meta.defect))
        };
        let cur_scores = score(&cfg.model)?;
        let cand_scores = score(&cand_path)?;
        let decision = cfg.gate.judge(&cur_scores, &cand_scores);
        log::info!("current   {}", score_line(&cur_scores));
        if !decision.unguarded.is_empty() {
            log::info!(
                "recall not guarded (running model IoU < {}): {}",
                cfg.gate.guard_min_iou,
                decision.unguarded.join(", ")
            );
        }
        log::info!("candidate {}", score_line(&cand_scores));
        apply_decision(cfg, &decision, &cand_path, &ck_path, &ck, &cand_ck)?;
        let report = Report {
            created_unix: unix_now(),
            model: cfg.model.clone(),
            train_images: Dataset::open(&dirs.data)
                .map(|d| d.train.len())
                .unwrap_or(0),
            holdout_images: ds.val.len(),
            steps: summary.steps,
            loss,
            current: cur_scores,
            candidate: cand_scores,
            promoted: decision.promote,
            decision,
        };
        let dir = file_run(&cfg.work, &dirs.current, &report)?;
        write_plots(&dir, &report, &meta.class_names);
        Ok(Outcome::Judged {
            dir,
            report: Box::new(report),
        })
    }
}

/// Resumes (keeps `work/current` as it is, returns `true`) when an interrupted run left a
/// checkpoint; otherwise clears `work/current` and builds the training set in `dirs.data`:
/// CVAT exports imported onto the model's classes, then merged with the `data` folders (a path
/// that is not a folder is skipped with a warning).
pub fn prepare_data(
    cfg: &RetrainConfig,
    ck: &Checkpoint,
    class_names: &[String],
    dirs: &WorkDirs,
) -> Result<bool> {
    if dirs.resumable() {
        log::info!("resuming the interrupted run in {}", dirs.current.display());
        return Ok(true);
    }
    if dirs.current.exists() {
        std::fs::remove_dir_all(&dirs.current).map_err(|e| Error::io(&dirs.current, e))?;
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
        let out = dirs.current.join(format!("cvat{i}"));
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
    let (n_train, n_val) = merge_datasets(&sources, class_names, cfg.val_every, &dirs.data)?;
    log::info!("training set: {n_train} images, {n_val} held out");
    Ok(false)
}

/// The folder both models are judged on: the trusted held-out sets merged into
/// `work/current/holdout` (once: a resumed run keeps it), or without any, the training set's
/// held-out split.
pub fn holdout_dir(
    cfg: &RetrainConfig,
    class_names: &[String],
    dirs: &WorkDirs,
) -> Result<PathBuf> {
    if cfg.holdout.is_empty() {
        return Ok(dirs.data.clone());
    }
    let d = dirs.current.join("holdout");
    if !d.join("val.txt").is_file() {
        merge_holdout(&cfg.holdout, class_names, &d)?;
    }
    Ok(d)
}

/// A trusted held-out set: every image is held out (`val_every` = 1 would make all val but is
/// refused by the merge).
pub fn merge_holdout(sources: &[PathBuf], classes: &[String], out: &Path) -> Result<()> {
    // val_every = 2 puts every other image in val; then move the train list to val as well.
    merge_datasets(sources, classes, 2, out)?;
    let read = |name: &str| {
        let p = out.join(name);
        std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))
    };
    let (train, val) = (read("train.txt")?, read("val.txt")?);
    write_atomic(&out.join("val.txt"), format!("{val}{train}").as_bytes())?;
    Ok(())
}

/// The running model's training config with the retrain config's `[train]` settings: a short
/// run, validated only at its end (validation inside training would pick a "best" step on the
/// same held-out images the gate judges on; the candidate is the last step, judged once).
pub fn fine_tune_config(base: &TrainConfig, cfg: &RetrainConfig) -> TrainConfig {
    let mut tc = base.clone();
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
    tc.val_every = ft.steps;
    tc.checkpoint_every = (ft.steps / 10).max(10);
    tc.threads = cfg.threads;
    tc
}

/// The configured device: `Some(cuda)` for the GPU, `None` for the CPU. `auto` falls back to the
/// CPU with one clear line.
fn pick_device(cfg: &RetrainConfig) -> Result<Option<Cuda>> {
    DeviceChoice::parse(&cfg.device)
        .ok_or_else(|| {
            let other = &cfg.device;
            Error::config(
                &cfg.path,
                "device",
                format!("`{other}` is not auto, cpu or cuda"),
            )
        })?
        .open()
        .map_err(|e| Error::config(&cfg.path, "device", format!("cuda: {e}")))
}

/// Trains on the configured device, collecting `(step, loss)`.
fn fine_tune(
    cfg: &RetrainConfig,
    opts: &TrainOptions,
    stop: &AtomicBool,
    loss: &mut Vec<(u64, f32)>,
) -> Result<TrainSummary> {
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
    Ok(match pick_device(cfg)? {
        Some(cuda) => train(&cuda, opts, stop, &mut on_event),
        None => train(&Cpu, opts, stop, &mut on_event),
    }?)
}

/// One log line of a model's held-out figures.
fn score_line(s: &GateScores) -> String {
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
}

/// Promotes the candidate (model file, then checkpoint) when the gate says so; otherwise the
/// running model stays. Logs which.
pub fn apply_decision(
    cfg: &RetrainConfig,
    decision: &Decision,
    candidate: &Path,
    ck_path: &Path,
    ck: &Checkpoint,
    cand_ck: &Checkpoint,
) -> Result<()> {
    if decision.promote {
        // The ONNX rename is the commit; the checkpoint follows, so a cut in between leaves an
        // older checkpoint (safe: the next run fine-tunes from the older weights).
        promote(&cfg.model, candidate)?;
        save_checkpoints(ck_path, ck, cand_ck)?;
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
    Ok(())
}

fn stem_of(ck_path: &Path) -> String {
    ck_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

/// The running checkpoint becomes `<stem>.prev.*`, the candidate's becomes the running one.
pub fn save_checkpoints(ck_path: &Path, old: &Checkpoint, new: &Checkpoint) -> Result<()> {
    let dir = ck_path.parent().unwrap_or(Path::new("."));
    let stem = stem_of(ck_path);
    let mut m = old.meta.clone();
    checkpoint::save(dir, &format!("{stem}.prev"), &mut m, &old.params, None)?;
    let mut m = new.meta.clone();
    checkpoint::save(dir, &stem, &mut m, &new.params, None)?;
    Ok(())
}

/// Moves `current` to `work/runs/<created>-<promoted|refused>` and writes `report.json` there;
/// returns the folder.
pub fn file_run(work: &Path, current: &Path, report: &Report) -> Result<PathBuf> {
    let runs = work.join("runs");
    std::fs::create_dir_all(&runs).map_err(|e| Error::io(&runs, e))?;
    let done = runs.join(format!(
        "{}-{}",
        report.created_unix,
        if report.promoted {
            "promoted"
        } else {
            "refused"
        }
    ));
    std::fs::rename(current, &done).map_err(|e| Error::io(&done, e))?;
    let path = done.join("report.json");
    let json = serde_json::to_vec_pretty(report)
        .map_err(|e| Error::io(&path, std::io::Error::other(e)))?;
    write_atomic(&path, &json)?;
    Ok(done)
}

/// loss.png (the fine-tuning loss) and iou.png (per-class IoU before and after), so an engineer
/// can look instead of read. A plot that fails is logged; the report stands without it.
pub fn write_plots(dir: &Path, r: &Report, classes: &[String]) {
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
    let get = |s: &GateScores| -> Vec<f64> {
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

/// `contextrast rollback`: puts the previous model back, and its checkpoint when one was kept,
/// so the next retrain fine-tunes from it.
pub fn rollback(cfg: &RetrainConfig) -> Result<()> {
    super::rollback(&cfg.model)?;
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

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
