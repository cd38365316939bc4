//! `contextrast`: the inspection runtime and the on-device trainer, one binary.
use anyhow::Result;
use clap::{Parser, Subcommand};
use contextrast::sys::malloc_tune::Tuning;

mod cli;

/// Counts allocations for `bench pipeline` (one relaxed atomic add per allocation).
#[global_allocator]
static ALLOC: contextrast::sys::alloc_count::CountingAlloc =
    contextrast::sys::alloc_count::CountingAlloc;

/// Contextrast Edge: inline defect inspection with on-device Contextrast retraining.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the inspection pipeline on a line config: frames → model → verdicts → rejects.
    Inspect(cli::inspect::InspectArgs),
    /// Fine-tune the running model on new labelled data; promote it only if it is no worse.
    Retrain(cli::retrain::RetrainArgs),
    /// Put the previous model back (after a promotion).
    Rollback(cli::retrain::RollbackArgs),
    /// Write a synthetic production-line dataset (images, pixel-exact masks, classes.toml).
    Synth(cli::synth::SynthArgs),
    /// Train a segmentation model on a dataset.
    Train(cli::train::TrainArgs),
    /// Evaluate a checkpoint or an ONNX model on a dataset: mIoU, Boundary IoU, confusion matrix.
    Eval(cli::eval::EvalArgs),
    /// Export a checkpoint to ONNX for the runtime (batch norm folded, projection heads dropped).
    Export(cli::export::ExportArgs),
    /// Run a model on images: class-id masks, colour overlays, optionally raw outputs (.npy).
    Segment(cli::segment::SegmentArgs),
    /// Benchmarks (training step vs GEMM peak).
    #[command(subcommand)]
    Bench(cli::bench::BenchCmd),
    /// Report what this machine offers: CPU threads, CUDA.
    Doctor,
}

fn main() {
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    logger.format_target(false);
    // Under systemd stderr goes to the journal: prefix each line with its syslog priority
    // (sd-daemon(3)) so `journalctl -p warning` works; the journal adds its own timestamps.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        logger.format(|buf, record| {
            use std::io::Write;
            let prio = match record.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                log::Level::Debug | log::Level::Trace => 7,
            };
            writeln!(buf, "<{prio}>{}", record.args())
        });
    }
    logger.init();
    let cli = Cli::parse();
    // The training engine re-allocates its activations every step; see malloc_tune.
    if matches!(
        cli.cmd,
        Cmd::Train(_) | Cmd::Retrain(_) | Cmd::Eval(_) | Cmd::Bench(cli::bench::BenchCmd::Train(_))
    ) {
        match contextrast::sys::malloc_tune::tune_for_training() {
            Tuning::LeftToUser(var) => log::info!("malloc: left to the environment ({var})"),
            t => log::debug!("malloc: {t}"),
        }
    }
    // The service's threads share one arena, so hot swaps do not fragment several; see malloc_tune.
    if matches!(
        cli.cmd,
        Cmd::Inspect(_)
            | Cmd::Bench(cli::bench::BenchCmd::Soak(_) | cli::bench::BenchCmd::Pipeline(_))
    ) {
        match contextrast::sys::malloc_tune::tune_for_service() {
            Tuning::LeftToUser(var) => log::info!("malloc: left to the environment ({var})"),
            t => log::debug!("malloc: {t}"),
        }
    }
    let result: Result<()> = match cli.cmd {
        Cmd::Inspect(a) => cli::inspect::run(a),
        Cmd::Retrain(a) => cli::retrain::run(a),
        Cmd::Rollback(a) => cli::retrain::run_rollback(a),
        Cmd::Synth(a) => cli::synth::run(a),
        Cmd::Train(a) => cli::train::run(a),
        Cmd::Eval(a) => cli::eval::run(a),
        Cmd::Export(a) => cli::export::run(a),
        Cmd::Segment(a) => cli::segment::run(a),
        Cmd::Bench(c) => cli::bench::run(c),
        Cmd::Doctor => cli::doctor::run(),
    };
    if let Err(e) = result {
        // One clear message with its causes; no backtrace for an operator to decode.
        eprintln!("error: {e}");
        let mut shown = e.to_string();
        for cause in e.chain().skip(1) {
            // Library errors often already print their source; say each thing once.
            let text = cause.to_string();
            if !shown.contains(&text) {
                eprintln!("  caused by: {text}");
            }
            shown = text;
        }
        std::process::exit(1);
    }
}
