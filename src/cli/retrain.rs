//! `contextrast retrain` / `rollback`: fine-tune the running model on newly labelled data, judge
//! it against the running model on the same held-out images, and promote it only if it is no
//! worse beyond the configured tolerances. Every decision is logged with both models' numbers and
//! written to a report (JSON + PNG plots). A run interrupted by a power cut resumes from its last
//! checkpoint on the next start. The run itself is `contextrast::retrain::run`.
use anyhow::{Context, Result};
use clap::Args;
use contextrast::retrain::RetrainConfig;
use contextrast::retrain::run::{Outcome, RetrainRun, rollback};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

#[derive(Args)]
pub struct RetrainArgs {
    /// Retrain config (TOML); see firmware-config/retrain.toml.
    #[arg(long)]
    config: PathBuf,
}

pub fn run(a: RetrainArgs) -> Result<()> {
    let cfg = RetrainConfig::load(&a.config)?;
    lower_priority(cfg.nice);
    super::set_threads(cfg.threads);
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let retrain = RetrainRun::prepare(&cfg, &command)?;
    // Installed once the data are in place: SIGINT/SIGTERM then end the fine-tuning after the
    // current step, with a checkpoint the next run resumes from.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    match retrain.run(&stop)? {
        Outcome::Interrupted { .. } => {}
        Outcome::Judged { dir, .. } => println!("{}", dir.join("report.json").display()),
    }
    Ok(())
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
    rollback(&cfg)?;
    Ok(())
}
