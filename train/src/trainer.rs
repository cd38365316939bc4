//! The training loop: data → forward → loss → backward → SGD, periodic validation, atomic
//! checkpoints, and resume from the last checkpoint after a kill.
use crate::backend::{Backend, ContrastInputs, ScaleBuf, Shape, poly_lr};
use crate::checkpoint::{self, CheckpointMeta};
use crate::config::{LossKind, TrainConfig};
use crate::data::dataset::Dataset;
use crate::data::loader::{Loader, LoaderConfig};
use crate::evaluate::{EnginePredictor, EvalReport, evaluate};
use crate::loss::contrast::{AnchorCount, ContrastConfig, SCALES};
use crate::loss::tally::{ClassSampling, SamplingTally};
use crate::model::{NetConfig, contextrast_net};
use crate::nn::exec::{Activations, Grads, Mode, backward, forward};
use crate::nn::graph::Graph;
use crate::nn::params::{HostParams, Params};
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// What the caller asked for.
pub struct TrainOptions {
    /// The dataset folder, opened with [`Dataset::open`].
    pub data: PathBuf,
    /// The run folder: checkpoints `last.*` and `best.*` are written here.
    pub out: PathBuf,
    /// The training configuration (validated against the dataset's class count).
    pub config: TrainConfig,
    /// Continue from `{out}/last.json` if it exists.
    pub resume: bool,
    /// Fine-tune: start from this checkpoint's parameters (fresh optimiser, step 0) instead of a
    /// random initialisation. Ignored when resuming.
    pub init_from: Option<PathBuf>,
    /// Extra provenance (command line, git revision...).
    pub provenance: BTreeMap<String, String>,
}

/// Progress reports for the caller's display.
pub enum Event<'a> {
    /// The run is set up and about to take its first step.
    Started {
        /// The step it starts at (0, or the checkpoint's step when resuming).
        start_step: u64,
        /// The configured number of steps.
        total: u64,
        /// Trainable scalars, training-only heads excluded.
        params: usize,
        /// The backend's name.
        backend: String,
        /// Images in the training split.
        train_images: usize,
    },
    /// One optimiser step is done.
    Step {
        /// Steps done so far, this one included.
        step: u64,
        /// CE loss plus α·L_PA when the contrastive loss ran.
        loss: f32,
        /// The step's learning rate (after poly decay).
        lr: f32,
        /// The batch's images divided by the step's wall time.
        images_per_s: f64,
        /// The step's wall time, in milliseconds.
        step_ms: f64,
    },
    /// A validation pass finished.
    Validated {
        /// The step it ran after.
        step: u64,
        /// Its metrics.
        report: &'a EvalReport,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// The step it holds.
        step: u64,
        /// Its metadata file (`last.json` or `best.json`).
        path: &'a Path,
    },
    /// What the contrastive loss sampled per anchor class over steps `from..step` (reported with
    /// each validation).
    Sampling {
        /// First step of the window.
        from: u64,
        /// End of the window (exclusive).
        step: u64,
        /// One row per anchor class.
        classes: &'a [ClassSampling],
    },
}

/// The contrastive part of a step's result.
pub struct StepContrast {
    /// L_PA, not multiplied by α.
    pub l_pa: f64,
    /// What was sampled per anchor class.
    pub anchors: Vec<AnchorCount>,
}

/// The end of a run.
pub struct TrainSummary {
    /// The step the run ended at (counting steps of the run it resumed).
    pub steps: u64,
    /// The last step's loss (NaN when this run took no step).
    pub final_loss: f32,
    /// `{out}/last.json`.
    pub last: PathBuf,
    /// The best checkpoint's metadata file, if one exists.
    pub best: Option<PathBuf>,
    /// The best validation mIoU seen (0 when never validated).
    pub best_miou: f64,
    /// Whether `stop` ended the run before the last step.
    pub interrupted: bool,
    /// Mean wall time of this run's steps, in milliseconds (0 when none).
    pub mean_step_ms: f64,
}

struct State<B: Backend> {
    graph: Graph,
    params: Params<B>,
    velocity: Vec<Option<B::Buf>>,
    step: u64,
    best_miou: f64,
}

fn velocity_to_host<B: Backend>(be: &B, p: &Params<B>, v: &[Option<B::Buf>]) -> Result<HostParams> {
    let mut out = HostParams::new();
    for (spec, buf) in p.specs.iter().zip(v) {
        if let Some(b) = buf {
            out.insert(spec.name.clone(), be.download(b)?);
        }
    }
    Ok(out)
}

fn init_state<B: Backend>(be: &B, opts: &TrainOptions, classes: usize) -> Result<State<B>> {
    let cfg = &opts.config;
    let last = opts.out.join("last.json");
    if opts.resume && last.exists() {
        let ck = checkpoint::load(&last)?;
        if ck.meta.config.model != cfg.model {
            return Err(Error::Checkpoint {
                path: last,
                msg: "its model config differs from this run's".into(),
            });
        }
        let graph = contextrast_net(&cfg.model, classes);
        let params = Params::from_host(be, &graph, &ck.params)?;
        let vh = ck.velocity.unwrap_or_default();
        let velocity = params
            .specs
            .iter()
            .map(|s| {
                if !s.trainable() {
                    return Ok(None);
                }
                match vh.get(&s.name) {
                    Some(v) if v.len() == s.numel() => be.upload(v).map(Some),
                    _ => be.zeros(s.numel()).map(Some),
                }
            })
            .collect::<Result<_>>()?;
        let best_miou = ck.meta.metrics.get("best_miou").copied().unwrap_or(0.0);
        log::info!("resuming from {} at step {}", last.display(), ck.meta.step);
        return Ok(State {
            graph,
            params,
            velocity,
            step: ck.meta.step,
            best_miou,
        });
    }
    let graph = contextrast_net(&cfg.model, classes);
    let params = match &opts.init_from {
        Some(path) => {
            let ck = checkpoint::load(path)?;
            // A stride-4 model grows a refinement path: its weights carry over, the new path
            // starts fresh with its correction at zero (see `model::NetConfig::refine`).
            let grows = cfg.model.refine > 0
                && ck.meta.config.model
                    == NetConfig {
                        refine: 0,
                        ..cfg.model.clone()
                    };
            if (ck.meta.config.model != cfg.model && !grows) || ck.meta.classes.len() != classes {
                return Err(Error::Checkpoint {
                    path: path.clone(),
                    msg: format!(
                        "cannot fine-tune from it: it has {} classes and model {:?}, this run {} classes and {:?}",
                        ck.meta.classes.len(),
                        ck.meta.config.model,
                        classes,
                        cfg.model
                    ),
                });
            }
            log::info!(
                "fine-tuning from {} (step {})",
                path.display(),
                ck.meta.step
            );
            if grows {
                let mut host = Params::init(be, &graph, cfg.seed)?.to_host(be)?;
                let fresh = host.len().saturating_sub(ck.params.len());
                for (name, v) in ck.params {
                    let slot = host.get_mut(&name).ok_or_else(|| Error::Checkpoint {
                        path: path.clone(),
                        msg: format!("parameter {name} is not in the grown model"),
                    })?;
                    *slot = v;
                }
                log::info!(
                    "growing a refinement path ({} channels): {fresh} new parameter tensors, the rest from the checkpoint",
                    cfg.model.refine
                );
                Params::from_host(be, &graph, &host)?
            } else {
                Params::from_host(be, &graph, &ck.params)?
            }
        }
        None => Params::init(be, &graph, cfg.seed)?,
    };
    let velocity = Grads::zeros(be, &params)?.values;
    Ok(State {
        graph,
        params,
        velocity,
        step: 0,
        best_miou: 0.0,
    })
}

/// SGD hyper-parameters of one step.
pub struct Sgd {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor of the velocity.
    pub momentum: f32,
    /// L2 weight decay.
    pub weight_decay: f32,
}

/// The contrastive part of a step: its constants and the (seed, step) that key its sampling.
pub struct ContrastStep<'a> {
    /// The loss's constants.
    pub cfg: &'a ContrastConfig,
    /// The run's seed.
    pub seed: u64,
    /// The optimiser step this is.
    pub step: u64,
}

/// The contrastive loss's inputs: the four projection heads' outputs of a forward pass run with
/// heads, each with its stride from the `input` resolution. Shared by [`train_step`] and the
/// benchmark that times the loss alone, so both feed it the same tensors.
pub fn projection_scales<'a, B: Backend>(
    graph: &Graph,
    acts: &'a Activations<B>,
    input: Shape,
) -> Result<[ScaleBuf<'a, B>; SCALES]> {
    let scales = graph
        .projections
        .iter()
        .map(|&id| {
            let sh = acts.shapes[id];
            Ok(ScaleBuf {
                z: acts.get(id)?,
                shape: sh,
                stride: input.h / sh.h.max(1),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    scales
        .try_into()
        .map_err(|_| Error::Shape("projection_scales: the model has not four projections".into()))
}

/// One optimiser step: upload, forward, cross-entropy (+ α·L_PA when `contrast` is given),
/// backward, SGD. Returns the CE loss as a 1-element backend buffer (downloading it is the
/// caller's choice: it syncs a GPU) and the contrastive part when computed.
///
/// L_PA is the backend's [`contrastive_loss`](crate::backend::ContrastOps::contrastive_loss): on
/// the CPU the reference; on CUDA the kernels keep it on the device (after the first step's check against the host reference; see
/// `backend::cuda::contrast::LossPath`), and its value is read back only after the backward
/// pass and SGD are queued, so the device never waits for the host inside a step.
#[allow(clippy::too_many_arguments)]
pub fn train_step<B: Backend>(
    be: &B,
    graph: &Graph,
    params: &mut Params<B>,
    grads: &mut Grads<B>,
    velocity: &mut [Option<B::Buf>],
    images: &[f32],
    labels: &[u8],
    shape: Shape,
    class_weights: Option<&B::Buf>,
    sgd: &Sgd,
    contrast: Option<ContrastStep>,
) -> Result<(B::Buf, Option<StepContrast>)> {
    let x = be.upload(images)?;
    let label_buf = be.upload_labels(labels)?;
    let acts = forward(be, graph, params, x, shape, Mode::Train, contrast.is_some())?;
    let logit_shape = acts.shapes[graph.logits];
    let (loss, dlogits) = be.softmax_cross_entropy(
        acts.get(graph.logits)?,
        logit_shape,
        &label_buf,
        class_weights,
    )?;
    let mut seeds = vec![(graph.logits, dlogits)];
    let mut report = None;
    if let Some(c) = contrast {
        let pred = be.argmax_channels(acts.get(graph.logits)?, logit_shape)?;
        let scales = projection_scales(graph, &acts, shape)?;
        let inputs = ContrastInputs {
            scales: &scales,
            labels: &label_buf,
            pred: &pred,
            classes: logit_shape.c,
            full_h: shape.h,
            full_w: shape.w,
        };
        let out = be.contrastive_loss(&inputs, c.cfg, c.seed, c.step)?;
        let alpha = c.cfg.alpha as f32;
        for (&id, mut g) in graph.projections.iter().zip(out.grads) {
            be.scale(&mut g, alpha)?;
            seeds.push((id, g));
        }
        report = Some(out.report);
    }
    grads.clear(be)?;
    backward(be, graph, params, &acts, seeds, grads)?;
    drop(acts);
    // Without L_PA the projection heads get no gradient; like PyTorch's SGD with a `None`
    // gradient, they are then left alone (no weight decay, no momentum).
    let heads_idle = report.is_none();
    for (((p, g), v), spec) in params
        .values
        .iter_mut()
        .zip(&grads.values)
        .zip(velocity.iter_mut())
        .zip(&params.specs)
    {
        if heads_idle && spec.training_only {
            continue;
        }
        if let (Some(g), Some(v)) = (g, v) {
            be.sgd_step(p, g, v, sgd.lr, sgd.momentum, sgd.weight_decay)?;
        }
    }
    let stats = report
        .map(|r| r.resolve(be))
        .transpose()?
        .map(|r| StepContrast {
            l_pa: r.loss,
            anchors: r.anchors,
        });
    Ok((loss, stats))
}

/// Trains on `opts.data` into `opts.out`. `stop` ends the run early (after a checkpoint).
pub fn train<B: Backend>(
    be: &B,
    opts: &TrainOptions,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(Event),
) -> Result<TrainSummary> {
    let cfg = &opts.config;
    let ds = Arc::new(Dataset::open(&opts.data)?);
    let classes = ds.classes.classes.len();
    cfg.validate(Path::new("training config"), Some(classes))?;
    if ds.train.is_empty() {
        return Err(Error::data(&opts.data, "the training split is empty"));
    }
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let mut st = init_state(be, opts, classes)?;
    let graph = st.graph.clone();
    let weights = if cfg.class_weights.is_empty() {
        None
    } else {
        Some(be.upload(&cfg.class_weights)?)
    };
    let mut grads = Grads::zeros(be, &st.params)?;
    // `loss` picks BANE on or off; the contrastive loss starts after the warm-up (predictions
    // are meaningless at first, and BANE samples from them).
    let mut contrast_cfg = cfg.contrast.clone();
    contrast_cfg.sampling.bane = cfg.loss == LossKind::Contextrast;
    let warmup = (cfg.contrast.warmup_fraction * cfg.steps as f64).round() as u64;
    let mut aug = cfg.augment.clone();
    aug.crop = (cfg.crop[0], cfg.crop[1]);
    // Batch k depends only on (seed, k): a resumed run restarts at the interrupted batch.
    let mut loader = Loader::new_at(
        ds.clone(),
        ds.train.clone(),
        LoaderConfig {
            batch: cfg.batch,
            aug: Some(aug),
            mean: cfg.mean,
            std: cfg.std,
            seed: cfg.seed,
            epoch_start: 0,
            workers: cfg.workers.max(1),
        },
        st.step,
    );
    on_event(Event::Started {
        start_step: st.step,
        total: cfg.steps,
        params: st.params.count(false),
        backend: be.name(),
        train_images: ds.train.len(),
    });

    let mut meta = CheckpointMeta {
        format: String::new(),
        step: st.step,
        config: cfg.clone(),
        classes: ds.classes.classes.clone(),
        metrics: BTreeMap::new(),
        provenance: opts.provenance.clone(),
        params_file: String::new(),
        optimizer_file: None,
    };
    meta.provenance
        .insert("data".into(), opts.data.display().to_string());
    meta.provenance.insert(
        "tool".into(),
        format!("contextrast-train {}", env!("CARGO_PKG_VERSION")),
    );
    // The run's own device (a resumed run may have started elsewhere).
    meta.provenance.insert("device".into(), be.name());

    let mut last_loss = f32::NAN;
    let mut step_ms_sum = 0.0;
    let mut steps_done = 0u64;
    let mut interrupted = false;
    let mut best_path = None;
    // The first report's window starts where the contrastive loss does.
    let mut tally = SamplingTally::from_step(st.step.max(warmup));
    let class_names: Vec<String> = ds.classes.classes.iter().map(|c| c.name.clone()).collect();
    while st.step < cfg.steps {
        if stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        let t0 = Instant::now();
        let batch = loader.next_batch()?;
        let shape = Shape::new(batch.n, 3, batch.h, batch.w);
        let lr = poly_lr(cfg.lr, st.step, cfg.steps, cfg.poly_power);
        let hyper = Sgd {
            lr,
            momentum: cfg.momentum,
            weight_decay: cfg.weight_decay,
        };
        let contrast = (cfg.loss != LossKind::Ce && st.step >= warmup).then_some(ContrastStep {
            cfg: &contrast_cfg,
            seed: cfg.seed,
            step: st.step,
        });
        let (loss_buf, step_contrast) = train_step(
            be,
            &graph,
            &mut st.params,
            &mut grads,
            &mut st.velocity,
            &batch.images,
            &batch.labels,
            shape,
            weights.as_ref(),
            &hyper,
            contrast,
        )?;
        let ce = be.download(&loss_buf)?.first().copied().unwrap_or(f32::NAN);
        let l_pa = step_contrast.map(|c| {
            tally.add(&c.anchors);
            c.l_pa
        });
        let loss = ce + l_pa.map_or(0.0, |l| (contrast_cfg.alpha * l) as f32);
        st.step += 1;
        if !loss.is_finite() {
            return Err(Error::Diverged {
                step: st.step,
                loss,
            });
        }
        last_loss = loss;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        step_ms_sum += ms;
        steps_done += 1;
        on_event(Event::Step {
            step: st.step,
            loss,
            lr,
            images_per_s: batch.n as f64 / (ms / 1e3),
            step_ms: ms,
        });

        let validate = st.step == cfg.steps || (cfg.val_every > 0 && st.step % cfg.val_every == 0);
        if validate && !ds.val.is_empty() {
            let report = {
                let mut pred = EnginePredictor {
                    be,
                    graph: &graph,
                    params: &mut st.params,
                };
                evaluate(&mut pred, &ds, &ds.val, cfg.mean, cfg.std)?
            };
            on_event(Event::Validated {
                step: st.step,
                report: &report,
            });
            meta.metrics = BTreeMap::from([
                ("miou".to_string(), report.miou),
                ("boundary_iou".to_string(), report.boundary_iou),
                ("pixel_accuracy".to_string(), report.pixel_accuracy),
            ]);
            for (k, v) in &report.per_class {
                meta.metrics.insert(format!("iou/{k}"), *v);
            }
            if !tally.is_empty() {
                let from = tally.since_step;
                let rows = tally.take(&class_names, st.step);
                if contrast_cfg.sampling.bane {
                    for r in &rows {
                        let key = format!("bane_hard_share/{}", r.class);
                        meta.metrics.insert(key, r.hard_share());
                    }
                }
                on_event(Event::Sampling {
                    from,
                    step: st.step,
                    classes: &rows,
                });
            }
            if report.miou >= st.best_miou {
                st.best_miou = report.miou;
                meta.step = st.step;
                meta.metrics.insert("best_miou".into(), st.best_miou);
                let host = st.params.to_host(be)?;
                note_loss_path(be, cfg, &mut meta);
                let p = checkpoint::save(&opts.out, "best", &mut meta, &host, None)?;
                on_event(Event::Checkpoint {
                    step: st.step,
                    path: &p,
                });
                best_path = Some(p);
            }
        }
        if st.step == cfg.steps || st.step % cfg.checkpoint_every.max(1) == 0 {
            note_loss_path(be, cfg, &mut meta);
            save_last(be, opts, &st, &mut meta, on_event)?;
        }
    }
    if interrupted {
        note_loss_path(be, cfg, &mut meta);
        save_last(be, opts, &st, &mut meta, on_event)?;
    }
    let best = best_path.or_else(|| {
        let p = opts.out.join("best.json");
        p.exists().then_some(p)
    });
    Ok(TrainSummary {
        steps: st.step,
        final_loss: last_loss,
        last: opts.out.join("last.json"),
        best,
        best_miou: st.best_miou,
        interrupted,
        mean_step_ms: if steps_done > 0 {
            step_ms_sum / steps_done as f64
        } else {
            0.0
        },
    })
}

/// Records where L_PA ran (`l_pa`), for runs with a contrastive loss on a backend with more than
/// one path (CUDA: device, or the host after a failed first-step check), so that a checkpoint
/// says how it was trained.
fn note_loss_path<B: Backend>(be: &B, cfg: &TrainConfig, meta: &mut CheckpointMeta) {
    if cfg.loss == LossKind::Ce {
        return;
    }
    if let Some(path) = be.contrastive_loss_path() {
        meta.provenance.insert("l_pa".into(), path);
    }
}

fn save_last<B: Backend>(
    be: &B,
    opts: &TrainOptions,
    st: &State<B>,
    meta: &mut CheckpointMeta,
    on_event: &mut dyn FnMut(Event),
) -> Result<()> {
    meta.step = st.step;
    meta.metrics.insert("best_miou".into(), st.best_miou);
    let host = st.params.to_host(be)?;
    let vel = velocity_to_host(be, &st.params, &st.velocity)?;
    let p = checkpoint::save(&opts.out, "last", meta, &host, Some(&vel))?;
    on_event(Event::Checkpoint {
        step: st.step,
        path: &p,
    });
    Ok(())
}
