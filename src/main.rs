//! `contextrast`: the inspection runtime and the on-device trainer, one binary.
use anyhow::Result;
use clap::{Parser, Subcommand};

mod cli;

/// Counts allocations for `bench pipeline` (one relaxed atomic add per allocation).
#[global_allocator]
static ALLOC: contextrast::alloc_count::CountingAlloc = contextrast::alloc_count::CountingAlloc;

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
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    let cli = Cli::parse();
    let result: Result<()> = match cli.cmd {
        Cmd::Inspect(a) => cli::inspect::run(a),
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
