use anyhow::Result;

pub fn run() -> Result<()> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("cpu: {threads} threads ({})", std::env::consts::ARCH);
    println!("cuda: not built into this version (CPU training)");
    Ok(())
}
