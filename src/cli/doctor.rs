use anyhow::Result;
use contextrast_train::backend::Backend;
use contextrast_train::backend::cuda::{Cuda, cuda_available};

pub fn run() -> Result<()> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("cpu: {threads} threads ({})", std::env::consts::ARCH);
    if !cuda_available() {
        println!("cuda: not found (libcuda, libnvrtc or libcublas missing): training uses the CPU");
        return Ok(());
    }
    match Cuda::new(0) {
        Ok(c) => println!("cuda: {} (kernels for {})", c.name(), c.arch()),
        Err(e) => println!("cuda: present but unusable: {e}"),
    }
    Ok(())
}
