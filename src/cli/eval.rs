use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use contextrast_model::atomic;
use contextrast_model::onnx_model::OnnxModel;
use contextrast_train::backend::Cpu;
use contextrast_train::checkpoint;
use contextrast_train::data::dataset::Dataset;
use contextrast_train::evaluate::{EnginePredictor, EvalReport, Predictor, evaluate};
use contextrast_train::metrics::ConfusionMatrix;
use contextrast_train::model::contextrast_net;
use contextrast_train::nn::params::Params;
use std::path::PathBuf;

#[derive(Clone, Copy, ValueEnum)]
pub enum Split {
    Val,
    Train,
    All,
}

#[derive(Args)]
pub struct EvalArgs {
    /// A model: an exported .onnx file, or a checkpoint (.json or .safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Dataset folder.
    #[arg(long)]
    data: PathBuf,
    #[arg(long, value_enum, default_value_t = Split::Val)]
    split: Split,
    /// Also write the report as JSON (keys miou, boundary_iou, per_class, ...).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Compute threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

pub fn run(a: EvalArgs) -> Result<()> {
    super::set_threads(a.threads);
    let ds = Dataset::open(&a.data)?;
    let indices: Vec<usize> = match a.split {
        Split::Val => ds.val.clone(),
        Split::Train => ds.train.clone(),
        Split::All => (0..ds.items.len()).collect(),
    };
    let report = if a.model.extension().is_some_and(|e| e == "onnx") {
        let mut m = OnnxModel::load(&a.model)?;
        let (mean, std) = match m.meta() {
            Some(meta) => (meta.mean, meta.std),
            None => anyhow::bail!(
                "{}: no Contextrast metadata (mean/std); export it with `contextrast export`",
                a.model.display()
            ),
        };
        evaluate(&mut m, &ds, &indices, mean, std)
    } else {
        let ck = checkpoint::load(&a.model)?;
        let cfg = &ck.meta.config;
        let graph = contextrast_net(&cfg.model, ck.meta.classes.len());
        let mut params = Params::from_host(&Cpu, &graph, &ck.params)
            .with_context(|| format!("loading {}", a.model.display()))?;
        let mut pred = EnginePredictor {
            be: &Cpu,
            graph: &graph,
            params: &mut params,
        };
        check_classes(
            &pred,
            &ck.meta
                .classes
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>(),
            &ds,
        )?;
        evaluate(&mut pred, &ds, &indices, cfg.mean, cfg.std)
    }
    .with_context(|| format!("evaluating {} on {}", a.model.display(), a.data.display()))?;
    print_report(&report);
    if let Some(path) = &a.json {
        let text = serde_json::to_vec_pretty(&report)?;
        atomic::write_atomic(path, &text)?;
        log::info!("wrote {}", path.display());
    }
    Ok(())
}

fn check_classes(p: &dyn Predictor, names: &[String], ds: &Dataset) -> Result<()> {
    let ds_names = ds.classes.names();
    if p.num_classes() != ds_names.len() || names != ds_names.as_slice() {
        anyhow::bail!("the model's classes {names:?} differ from the dataset's {ds_names:?}");
    }
    Ok(())
}

fn print_report(r: &EvalReport) {
    println!("images: {}", r.images);
    println!(
        "mIoU: {:.4}   Boundary IoU: {:.4}   pixel accuracy: {:.4}",
        r.miou, r.boundary_iou, r.pixel_accuracy
    );
    println!("{:<14} {:>8} {:>13}", "class", "IoU", "Boundary IoU");
    for name in &r.class_names {
        let f = |v: Option<&f64>| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
        println!(
            "{:<14} {:>8} {:>13}",
            name,
            f(r.per_class.get(name)),
            f(r.per_class_boundary.get(name))
        );
    }
    println!("\nper class, from the confusion matrix");
    print!(
        "{}",
        ConfusionMatrix::from_counts(r.confusion.clone()).table(&r.class_names)
    );
}
