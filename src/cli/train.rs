use anyhow::{Context, Result};
use clap::Args;
use contextrast_train::backend::Cpu;
use contextrast_train::backend::cuda::{Cuda, DeviceChoice};
use contextrast_train::config::TrainConfig;
use contextrast_train::trainer::{Event, TrainOptions, train};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

#[derive(Args)]
pub struct TrainArgs {
    /// Dataset folder (images/, masks/, classes.toml).
    #[arg(long)]
    data: PathBuf,
    /// Output folder for checkpoints (last.*, best.*).
    #[arg(long)]
    out: PathBuf,
    /// Training config (TOML); defaults are the paper's.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue from OUT/last.json after an interruption.
    #[arg(long)]
    resume: bool,
    /// Fine-tune: start from this checkpoint's weights instead of a random initialisation.
    #[arg(long)]
    init_from: Option<PathBuf>,
    /// Override the config's step count.
    #[arg(long)]
    steps: Option<u64>,
    /// Override the config's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Compute device: auto (CUDA when present, else CPU), cpu or cuda.
    #[arg(long, default_value = "auto")]
    device: String,
}

pub fn run(a: TrainArgs) -> Result<()> {
    let mut cfg = match &a.config {
        Some(p) => TrainConfig::load(p)?,
        None => TrainConfig::default(),
    };
    if let Some(s) = a.steps {
        cfg.steps = s;
    }
    if let Some(s) = a.seed {
        cfg.seed = s;
    }
    super::set_threads(cfg.threads);
    let provenance = BTreeMap::from([
        (
            "command".to_string(),
            std::env::args().collect::<Vec<_>>().join(" "),
        ),
        ("created_unix".to_string(), unix_now().to_string()),
    ]);
    let opts = TrainOptions {
        data: a.data.clone(),
        out: a.out.clone(),
        config: cfg,
        resume: a.resume,
        init_from: a.init_from.clone(),
        provenance,
    };
    let bar = ProgressBar::new(opts.config.steps);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // SIGINT/SIGTERM end the run after the current step, with a checkpoint to resume from.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let mut on_event = |ev: Event| {
        match ev {
        Event::Started {
            start_step,
            total,
            params,
            backend,
            train_images,
        } => {
            bar.set_position(start_step);
            bar.suspend(|| {
                log::info!(
                    "training {params} parameters on {backend}: {train_images} images, steps {start_step}..{total}"
                )
            });
        }
        Event::Step {
            step,
            loss,
            lr,
            images_per_s,
            ..
        } => {
            bar.set_position(step);
            bar.set_message(format!(
                "loss {loss:.4}  lr {lr:.2e}  {images_per_s:.1} img/s"
            ));
        }
        Event::Validated { step, report } => bar.suspend(|| {
            log::info!(
                "step {step}: val mIoU {:.4}  Boundary IoU {:.4}  {}",
                report.miou,
                report.boundary_iou,
                report
                    .per_class
                    .iter()
                    .map(|(k, v)| format!("{k} {v:.3}"))
                    .collect::<Vec<_>>()
                    .join("  ")
            )
        }),
        Event::Checkpoint { step, path } => {
            log::debug!("step {step}: checkpoint {}", path.display())
        }
        Event::Sampling {
            from,
            step,
            classes,
        } => bar.suspend(|| {
            log::info!(
                "steps {from}..{step}: contrastive anchors per class (share of negatives from BANE)  {}",
                classes
                    .iter()
                    .map(|c| format!(
                        "{} {} ({:.1}%)",
                        c.class,
                        c.anchors,
                        100.0 * c.hard_share()
                    ))
                    .collect::<Vec<_>>()
                    .join("  ")
            )
        }),
    }
    };
    let summary = match pick_device(&a.device)? {
        Some(cuda) => train(&cuda, &opts, &stop, &mut on_event),
        None => train(&Cpu, &opts, &stop, &mut on_event),
    }
    .with_context(|| format!("training on {}", a.data.display()))?;
    bar.finish_and_clear();
    if summary.interrupted {
        log::warn!(
            "interrupted at step {}; checkpoint {} — continue with --resume",
            summary.steps,
            summary.last.display()
        );
        return Ok(());
    }
    log::info!(
        "done: {} steps, final loss {:.4}, mean step {:.0} ms, best val mIoU {:.4}; checkpoints in {}",
        summary.steps,
        summary.final_loss,
        summary.mean_step_ms,
        summary.best_miou,
        a.out.display()
    );
    Ok(())
}

/// The backend `--device` names: `Some(cuda)` for the GPU, `None` for the CPU.
pub fn pick_device(device: &str) -> Result<Option<Cuda>> {
    DeviceChoice::parse(device)
        .with_context(|| format!("--device {device}: expected auto, cpu or cuda"))?
        .open()
        .with_context(|| format!("--device {device}"))
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
