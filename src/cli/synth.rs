use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use contextrast_train::data::synth::{Variant, generate};
use std::path::PathBuf;

#[derive(Clone, Copy, ValueEnum)]
pub enum VariantArg {
    Standard,
    /// Other lighting and material, for testing generalisation.
    Shifted,
}

#[derive(Args)]
pub struct SynthArgs {
    /// Output dataset folder.
    #[arg(long)]
    out: PathBuf,
    /// Number of frames.
    #[arg(long, default_value_t = 200)]
    count: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = VariantArg::Standard)]
    variant: VariantArg,
    /// Frame width in pixels.
    #[arg(long, default_value_t = 256)]
    width: u32,
    /// Frame height in pixels.
    #[arg(long, default_value_t = 256)]
    height: u32,
}

pub fn run(a: SynthArgs) -> Result<()> {
    let variant = match a.variant {
        VariantArg::Standard => Variant::Standard,
        VariantArg::Shifted => Variant::Shifted,
    };
    if a.count == 0 || a.width < 32 || a.height < 32 {
        anyhow::bail!("need --count ≥ 1 and frames of at least 32×32");
    }
    let t = std::time::Instant::now();
    generate(&a.out, a.count, a.seed, variant, a.width, a.height)
        .with_context(|| format!("writing the synthetic dataset to {}", a.out.display()))?;
    log::info!(
        "wrote {} frames of {}×{} to {} in {:.1} s",
        a.count,
        a.width,
        a.height,
        a.out.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
