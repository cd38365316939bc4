//! The binary's CUDA paths as a user meets them: `doctor` describing the device, `train` picking
//! CUDA by itself and ending where the CPU ends, and a driver without a device falling back or
//! failing clearly. Needs a CUDA device: a GPU, or the emulated one of scripts/cuda-emu (which
//! sets CONTEXTRAST_CUDA_REQUIRED, so there a missing device fails instead of skipping).
// Test helpers may unwrap: a panic there is a failed test, not a crash on input.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
use common::{bin, ok, output, synth};
use std::path::Path;
use std::process::Command;

/// `doctor`'s CUDA line, or `None` (after the skip line) where no device answers.
fn cuda_line(test: &str) -> Option<String> {
    let (out, _) = ok(bin("info").arg("doctor"));
    let line = out.lines().find(|l| l.starts_with("cuda: "))?.to_string();
    if line.starts_with("cuda: none") {
        assert!(
            std::env::var_os("CONTEXTRAST_CUDA_REQUIRED").is_none(),
            "CONTEXTRAST_CUDA_REQUIRED is set, but {line}"
        );
        println!("SKIPPED (no CUDA): {test}");
        return None;
    }
    Some(line)
}

/// Whether the device is the emulated one (tests that need its switches); prints the skip line
/// where it is not.
fn on_the_emulator(test: &str) -> bool {
    let Some(line) = cuda_line(test) else {
        return false;
    };
    let emulated = line.contains("CUDA emulator");
    if !emulated {
        println!("SKIPPED (not the emulated driver): {test}");
    }
    emulated
}

/// A tiny line and a training config with the contrastive loss (BANE on) from the first step.
fn tiny_run(d: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = d.join("line");
    synth("info", &data, "--count 8 --seed 5 --width 96 --height 64");
    let cfg = d.join("train.toml");
    std::fs::write(
        &cfg,
        "steps = 4\nbatch = 2\ncrop = [64, 64]\nval_every = 4\ncheckpoint_every = 2\nthreads = 1\n\
         loss = \"contextrast\"\n[contrast]\nwarmup_fraction = 0.0\n\
         [model]\nwidth = 4\ndecoder = 8\nproj_dim = 4\n",
    )
    .expect("write train.toml");
    (data, cfg)
}

/// `contextrast train --device DEVICE --data DATA --out OUT --config CFG`, for more env or args.
fn train_cmd(data: &Path, cfg: &Path, out: &Path, device: &str) -> Command {
    let mut c = bin("info");
    c.args(["train", "--device", device, "--data"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .arg("--config")
        .arg(cfg);
    c
}

/// [`train_cmd`] run to success; its log.
fn train(data: &Path, cfg: &Path, out: &Path, device: &str) -> String {
    ok(&mut train_cmd(data, cfg, out, device)).1
}

fn last_json(run: &Path) -> serde_json::Value {
    let text = std::fs::read(run.join("last.json")).expect("last.json");
    serde_json::from_slice(&text).expect("last.json is JSON")
}

fn metrics(run: &Path) -> serde_json::Value {
    last_json(run)["metrics"].clone()
}

/// The checkpoint's `provenance[key]`, `""` where absent.
fn provenance(run: &Path, key: &str) -> String {
    last_json(run)["provenance"][key]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The two runs' final metrics agree to 1 %.
fn assert_same_metrics(cpu: &Path, gpu: &Path) {
    let (c, g) = (metrics(cpu), metrics(gpu));
    println!("cuda {g}\ncpu  {c}");
    let keys: Vec<&String> = c
        .as_object()
        .expect("metrics is an object")
        .keys()
        .collect();
    assert!(!keys.is_empty(), "no metrics in last.json");
    for k in keys {
        let (a, b) = (c[k].as_f64(), g[k].as_f64());
        let (Some(a), Some(b)) = (a, b) else {
            panic!("metric {k}: cpu {:?}, cuda {:?}", c[k], g[k]);
        };
        assert!(
            (a - b).abs() <= 1e-2 * a.abs().max(1.0),
            "metric {k}: cpu {a} vs cuda {b}"
        );
    }
}

#[test]
fn doctor_describes_the_device() {
    let Some(line) = cuda_line("doctor describes the CUDA device") else {
        return;
    };
    for part in [
        "cuda:0 (",
        "compute capability ",
        "kernels for compute_",
        "driver CUDA ",
        "MiB free",
        "convolutions by ",
    ] {
        assert!(
            line.contains(part),
            "doctor's CUDA line lacks {part:?}: {line}"
        );
    }
}

#[test]
fn train_picks_cuda_and_ends_where_the_cpu_ends() {
    let Some(_) = cuda_line("train --device auto on CUDA against the CPU") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let (data, cfg) = tiny_run(dir.path());
    let (gpu, cpu) = (dir.path().join("gpu"), dir.path().join("cpu"));
    let log = train(&data, &cfg, &gpu, "auto");
    assert!(
        log.contains("parameters on cuda:0"),
        "auto did not train on CUDA:\n{log}"
    );
    if std::env::var_os("CONTEXTRAST_CUDA_LOSS").is_none() {
        // The default L_PA path: the kernels, once checked against the host reference.
        assert!(
            log.contains("the device agrees with the host reference on the first step"),
            "the first step's L_PA check did not pass:\n{log}"
        );
        let l_pa = provenance(&gpu, "l_pa");
        assert!(
            l_pa.starts_with("device: agreed with the host reference on the first step (L_PA "),
            "{l_pa}"
        );
    }
    assert!(provenance(&gpu, "device").starts_with("cuda:0 ("));
    train(&data, &cfg, &cpu, "cpu");
    assert!(provenance(&cpu, "device").starts_with("cpu ("));
    assert_eq!(provenance(&cpu, "l_pa"), "", "the CPU has one L_PA path");
    assert_same_metrics(&cpu, &gpu);
    // And resuming on CUDA continues the run rather than starting over.
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .expect("read")
            .replace("steps = 4", "steps = 6"),
    )
    .expect("write");
    let (_, log) = ok(bin("info")
        .args(["train", "--device", "cuda", "--resume", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&gpu)
        .arg("--config")
        .arg(&cfg));
    assert!(
        log.contains("at step 4"),
        "did not resume at step 4:\n{log}"
    );
}

/// A driver that loads but has no device (CUDA_EMU_DEVICES=0, the emulator only): `auto` trains
/// on the CPU and says why, `--device cuda` fails with a message, and `doctor` says so too; the
/// same for a device older than the kernels support.
#[test]
fn a_driver_without_a_device_falls_back_or_fails_clearly() {
    if !on_the_emulator("CUDA driver without a device") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (data, cfg) = tiny_run(dir.path());
    let (doctor, _) = ok(bin("info").arg("doctor").env("CUDA_EMU_DEVICES", "0"));
    assert!(
        doctor.contains("cuda: none (the CUDA driver loads but reports no device"),
        "{doctor}"
    );
    let (_, log) =
        ok(train_cmd(&data, &cfg, &dir.path().join("auto"), "auto").env("CUDA_EMU_DEVICES", "0"));
    assert!(
        log.contains("no CUDA (the CUDA driver loads but reports no device")
            && log.contains("on cpu"),
        "{log}"
    );
    let out = output(
        train_cmd(&data, &cfg, &dir.path().join("cuda"), "cuda").env("CUDA_EMU_DEVICES", "0"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "--device cuda without a device succeeded"
    );
    contextrast_model::testing::assert_mentions(&err, &["--device cuda", "device"]);

    // A device too old for the kernels (Jetson Nano's 5.3): named, and `auto` trains on the CPU.
    let (doctor, _) = ok(bin("info").arg("doctor").env("CUDA_EMU_CC", "53"));
    contextrast_model::testing::assert_mentions(
        &doctor,
        &[
            "cuda: present but unusable",
            "compute capability 5.3 is older than 6.0",
        ],
    );
    let (_, log) =
        ok(train_cmd(&data, &cfg, &dir.path().join("old"), "auto").env("CUDA_EMU_CC", "53"));
    contextrast_model::testing::assert_mentions(
        &log,
        &["CUDA present but unusable", "older than 6.0", "on cpu"],
    );
}

/// CUDA 13's NVRTC (the GPU hosts') against a CUDA 13.0 driver trains on the device; against a
/// JetPack 6 driver (12.6), which cannot load its PTX, `doctor` names both versions and the fix
/// and `auto` trains on the CPU. `CONTEXTRAST_NVRTC13_LIB` (set by scripts/cuda-emu) is the
/// library path that puts NVRTC 13 first.
#[test]
fn an_nvrtc_newer_than_the_driver_is_named() {
    let test = "NVRTC 13 against CUDA 13.0 and 12.6 drivers";
    let Some(nvrtc13) = std::env::var_os("CONTEXTRAST_NVRTC13_LIB") else {
        println!("SKIPPED (CONTEXTRAST_NVRTC13_LIB not set): {test}");
        return;
    };
    if !on_the_emulator(test) {
        return;
    }
    let mut path = nvrtc13;
    path.push(":");
    path.push(std::env::var_os("LD_LIBRARY_PATH").unwrap_or_default());
    let with13 = |driver: &str, cc: &str| {
        let mut c = bin("info");
        c.env("LD_LIBRARY_PATH", &path)
            .env("CUDA_EMU_DRIVER", driver)
            .env("CUDA_EMU_CC", cc);
        c
    };
    let (doctor, _) = ok(with13("13000", "90").arg("doctor"));
    contextrast_model::testing::assert_mentions(
        &doctor,
        &[
            "driver CUDA 13.0",
            "kernels for compute_90",
            "training uses it",
        ],
    );
    let (doctor, _) = ok(with13("12060", "87").arg("doctor"));
    assert!(
        doctor.contains("cuda: present but unusable")
            && doctor.contains("the driver (CUDA 12.6) cannot load PTX from NVRTC 13.0")
            && doctor.contains("scripts/setup-python installs 12.6"),
        "{doctor}"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let (data, cfg) = tiny_run(dir.path());
    let (_, log) = ok(train_cmd(&data, &cfg, &dir.path().join("auto"), "auto")
        .env("LD_LIBRARY_PATH", &path)
        .env("CUDA_EMU_DRIVER", "12060"));
    contextrast_model::testing::assert_mentions(
        &log,
        &["cannot load PTX from NVRTC 13.0", "on cpu"],
    );
}

/// A device whose L_PA kernels compute something else (on the emulator, one kernel skipped: the
/// losses still agree, only the gradients do not) is caught on the first step, named, and the
/// run goes on with the host reference, ending where the CPU ends.
#[test]
fn wrong_loss_kernels_are_caught_on_the_first_step() {
    if !on_the_emulator("a wrong L_PA kernel caught by the first step's check") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (data, cfg) = tiny_run(dir.path());
    let (gpu, cpu) = (dir.path().join("gpu"), dir.path().join("cpu"));
    let (_, log) = ok(train_cmd(&data, &cfg, &gpu, "cuda")
        .env_remove("CONTEXTRAST_CUDA_LOSS")
        .env("EMU_SKIP_KERNEL", "ctr_scatter_samples"));
    assert!(
        log.contains("the device disagrees with the host reference on the first step (scale ")
            && log.contains(" gradient [")
            && log.contains("the rest of the run uses the host reference"),
        "{log}"
    );
    assert_eq!(
        log.matches("disagrees with the host reference").count(),
        1,
        "said more than once:\n{log}"
    );
    // And the checkpoint says so.
    let l_pa = provenance(&gpu, "l_pa");
    assert!(
        l_pa.starts_with("host reference: the device disagreed with it on the first step: scale "),
        "{l_pa}"
    );
    let cpu_log = train(&data, &cfg, &cpu, "cpu");
    assert_same_metrics(&cpu, &gpu);
    // The training loss too, where one wrong step would show: the same as the CPU's, while the
    // same kernel fault unchecked ends elsewhere.
    let (_, unchecked) = ok(
        train_cmd(&data, &cfg, &dir.path().join("unchecked"), "cuda")
            .env("CONTEXTRAST_CUDA_LOSS", "device")
            .env("EMU_SKIP_KERNEL", "ctr_scatter_samples"),
    );
    let (c, g, u) = (
        final_loss(&cpu_log),
        final_loss(&log),
        final_loss(&unchecked),
    );
    println!("final loss: cpu {c}, checked {g}, unchecked {u}");
    assert!((c - g).abs() <= 2e-4, "final loss cpu {c} vs checked {g}");
    assert!(
        (c - u).abs() > 1e-3,
        "the skipped kernel changed nothing (cpu {c}, unchecked {u})"
    );
}

/// The `final loss X` of `train`'s last line.
fn final_loss(log: &str) -> f64 {
    log.split("final loss ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("no final loss in:\n{log}"))
}

/// `CONTEXTRAST_CUDA_CONV=cudnn`: cuDNN where libcudnn opens, else one warning with the reason
/// and im2col + cuBLAS; either way training ends where the CPU ends. `CONTEXTRAST_EXPECT_CUDNN`
/// (1 or 0, set by scripts/cuda-emu and scripts/gpu-run) says which of the two this machine must
/// show; on the emulator with cuDNN, one older than 9 is refused too.
#[test]
fn cudnn_is_used_or_refused_with_a_reason() {
    let Some(line) = cuda_line("CONTEXTRAST_CUDA_CONV=cudnn") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let (data, cfg) = tiny_run(dir.path());
    let (gpu, cpu) = (dir.path().join("gpu"), dir.path().join("cpu"));
    let (doctor, _) = ok(bin("info")
        .arg("doctor")
        .env("CONTEXTRAST_CUDA_CONV", "cudnn"));
    let (_, log) = ok(train_cmd(&data, &cfg, &gpu, "cuda").env("CONTEXTRAST_CUDA_CONV", "cudnn"));
    let used = log.contains("CUDA convolutions: cuDNN 9.");
    let refused = log.contains("cuDNN was asked for (CONTEXTRAST_CUDA_CONV=cudnn) but ");
    assert!(used != refused, "neither or both of used/refused:\n{log}");
    assert_eq!(
        doctor.contains("convolutions by cuDNN 9."),
        used,
        "doctor and train disagree:\n{doctor}\n{log}"
    );
    match std::env::var("CONTEXTRAST_EXPECT_CUDNN").as_deref() {
        Ok("1") => assert!(used, "cuDNN expected:\n{log}"),
        Ok("0") => assert!(refused, "no cuDNN expected:\n{log}"),
        _ => println!("cuDNN used: {used}"),
    }
    train(&data, &cfg, &cpu, "cpu");
    assert_same_metrics(&cpu, &gpu);
    if used && line.contains("CUDA emulator") {
        let (doctor, err) = ok(bin("info")
            .arg("doctor")
            .env("CONTEXTRAST_CUDA_CONV", "cudnn")
            .env("CUDNN_EMU_VERSION", "8904"));
        assert!(
            doctor.contains("convolutions by im2col + cuBLAS")
                && err.contains("cuDNN 8.9.4 is older than 9"),
            "{doctor}\n{err}"
        );
    }
}
