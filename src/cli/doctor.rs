//! `contextrast doctor`: what this machine offers the runtime and the trainer — CPU, CUDA,
//! cameras, GPIO chips — each line saying what will be used.
use anyhow::Result;
use contextrast_train::backend::cuda::{Cuda, CudaOptions, cuda_unavailable};

pub fn run() -> Result<()> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("cpu: {threads} threads ({})", std::env::consts::ARCH);
    match cuda_unavailable() {
        Some(why) => println!("cuda: none ({why}): training uses the CPU"),
        None => match Cuda::new(0, CudaOptions::from_env()).and_then(|c| c.info()) {
            Ok(i) => println!(
                "cuda: {}, compute capability {}.{} (kernels for {}), driver CUDA {}.{}, \
                 memory {} of {} MiB free, convolutions by {}: training uses it",
                i.name,
                i.compute_capability.0,
                i.compute_capability.1,
                i.arch,
                i.driver_version.0,
                i.driver_version.1,
                i.free_bytes >> 20,
                i.total_bytes >> 20,
                i.conv
            ),
            Err(e) => println!("cuda: present but unusable ({e}): training uses the CPU"),
        },
    }
    let mut cameras: Vec<String> = std::fs::read_dir("/dev")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("video"))
                .collect()
        })
        .unwrap_or_default();
    cameras.sort();
    if cameras.is_empty() {
        println!("cameras: none (/dev/video*): use a replay or the synthetic source");
    } else {
        println!("cameras: /dev/{}", cameras.join(", /dev/"));
    }
    let chips = contextrast::line::gpio::describe_chips();
    if chips.is_empty() {
        println!("gpio: no chips (/dev/gpiochip*): rejects can only go to the log");
    } else {
        for c in chips {
            println!("gpio: {c}");
        }
    }
    Ok(())
}
