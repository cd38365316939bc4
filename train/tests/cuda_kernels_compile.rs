//! Every CUDA kernel compiles with NVRTC for the Jetson Xavier (compute_72), Orin (compute_87)
//! and Hopper (compute_90) architectures. Needs only libnvrtc, no GPU: scripts/setup-python
//! installs it into .venv (NVRTC 12.6, which offers all three) and the CI script puts its lib
//! folder on LD_LIBRARY_PATH. A newer NVRTC (a GPU host's CUDA 13) checks what it offers.
use contextrast_train::backend::cuda::{compile_all, nvrtc_archs, nvrtc_version};

/// libnvrtc loadable? Checked here so a machine without it skips instead of panicking in cudarc.
fn nvrtc_loadable() -> bool {
    // SAFETY: only tries to open the library by its candidate names.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

#[test]
fn all_kernels_compile_for_every_target_arch() {
    if !nvrtc_loadable() {
        println!(
            "SKIPPED: libnvrtc not loadable; run scripts/setup-python and put \
             .venv/lib/python3.11/site-packages/nvidia/cuda_nvrtc/lib on LD_LIBRARY_PATH"
        );
        return;
    }
    let version = nvrtc_version().expect("nvrtcVersion");
    let offered = nvrtc_archs().expect("NVRTC's architectures");
    for arch in [72, 87, 90] {
        // CUDA 13 dropped every architecture below 75; 12.x, CI's pin, must offer all three.
        if !offered.contains(&arch) {
            assert!(
                version.0 >= 13 && arch < 75,
                "NVRTC {version:?} does not offer compute_{arch} (it offers {offered:?})"
            );
            println!(
                "SKIPPED: compute_{arch}: NVRTC {}.{} no longer offers it",
                version.0, version.1
            );
            continue;
        }
        if let Err(e) = compile_all(&format!("compute_{arch}")) {
            panic!("kernels fail to compile for compute_{arch}: {e}");
        }
    }
}

#[test]
fn an_unknown_arch_is_an_error_not_a_panic() {
    if !nvrtc_loadable() {
        println!("SKIPPED: libnvrtc not loadable");
        return;
    }
    let err = compile_all("compute_1")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("compute_1"),
        "error should name the arch: {err:?}"
    );
}
