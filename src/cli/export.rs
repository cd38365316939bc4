use anyhow::{Context, Result};
use clap::Args;
use contextrast_model::meta::ModelMeta;
use contextrast_train::checkpoint;
use contextrast_train::export::export_onnx;
use contextrast_train::model::{contextrast_net, inference_flops};
use std::path::PathBuf;

#[derive(Args)]
pub struct ExportArgs {
    /// Checkpoint (.json or .safetensors) written by `contextrast train`.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Output ONNX file.
    #[arg(long)]
    out: PathBuf,
    /// Input size the runtime should resize frames to, HxW (default: the training crop).
    #[arg(long)]
    size: Option<String>,
}

pub fn parse_size(s: &str) -> Result<(usize, usize)> {
    let (h, w) = s
        .split_once(['x', 'X'])
        .context("--size must look like 256x256")?;
    let (h, w): (usize, usize) = (h.trim().parse()?, w.trim().parse()?);
    if h == 0 || w == 0 || h % 32 != 0 || w % 32 != 0 {
        anyhow::bail!("--size {s}: both sides must be positive multiples of 32");
    }
    Ok((h, w))
}

pub fn run(a: ExportArgs) -> Result<()> {
    let ck = checkpoint::load(&a.checkpoint)?;
    let cfg = &ck.meta.config;
    let (h, w) = match &a.size {
        Some(s) => parse_size(s)?,
        None => (cfg.crop[0], cfg.crop[1]),
    };
    let graph = contextrast_net(&cfg.model, ck.meta.classes.len());
    let mut provenance = ck.meta.provenance.clone();
    provenance.insert("checkpoint".into(), a.checkpoint.display().to_string());
    provenance.insert("step".into(), ck.meta.step.to_string());
    let meta = ModelMeta {
        class_names: ck.meta.classes.iter().map(|c| c.name.clone()).collect(),
        colors: ck.meta.classes.iter().map(|c| c.color).collect(),
        defect: ck.meta.classes.iter().map(|c| c.defect).collect(),
        input_h: h,
        input_w: w,
        mean: cfg.mean,
        std: cfg.std,
        size_multiple: graph.size_multiple,
        metrics: ck.meta.metrics.clone(),
        provenance,
    };
    export_onnx(&graph, &ck.params, &meta, &a.out)
        .with_context(|| format!("exporting {}", a.checkpoint.display()))?;
    let gflops = inference_flops(&graph, h, w)? as f64 / 1e9;
    log::info!(
        "wrote {} ({h}×{w}, {gflops:.2} GFLOPs per frame)",
        a.out.display()
    );
    Ok(())
}
