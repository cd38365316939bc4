//! The binary's CUDA paths as a user meets them: `doctor` describing the device, `train` picking
//! CUDA by itself and ending where the CPU ends, and a driver without a device falling back or
//! failing clearly. Needs a CUDA device: a GPU, or the emulated one of scripts/cuda-emu (which
//! sets CONTEXTRAST_CUDA_REQUIRED, so there a missing device fails instead of skipping).
use std::path::Path;
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_contextrast"));
    c.env("RUST_LOG", "info");
    c
}

fn run(c: &mut Command) -> Output {
    let out = c.output().expect("run contextrast");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{c:?} panicked:\n{err}");
    out
}

fn ok(c: &mut Command) -> (String, String) {
    let out = run(c);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{c:?} failed:\n{stderr}");
    (stdout, stderr)
}

/// `doctor`'s CUDA line, or `None` (after the skip line) where no device answers.
fn cuda_line(test: &str) -> Option<String> {
    let (out, _) = ok(bin().arg("doctor"));
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

/// A tiny line and a training config with the contrastive loss (BANE on) from the first step.
fn tiny_run(d: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = d.join("line");
    ok(bin().args(["synth", "--out"]).arg(&data).args([
        "--count", "8", "--seed", "5", "--width", "96", "--height", "64",
    ]));
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

fn train(data: &Path, cfg: &Path, out: &Path, device: &str) -> String {
    let (_, log) = ok(bin()
        .args(["train", "--device", device, "--data"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .arg("--config")
        .arg(cfg));
    log
}

fn metrics(run: &Path) -> serde_json::Value {
    let text = std::fs::read(run.join("last.json")).expect("last.json");
    let v: serde_json::Value = serde_json::from_slice(&text).expect("last.json is JSON");
    v["metrics"].clone()
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
    train(&data, &cfg, &cpu, "cpu");
    assert_same_metrics(&cpu, &gpu);
    // And resuming on CUDA continues the run rather than starting over.
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .expect("read")
            .replace("steps = 4", "steps = 6"),
    )
    .expect("write");
    let (_, log) = ok(bin()
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
    let Some(line) = cuda_line("CUDA driver without a device") else {
        return;
    };
    if !line.contains("CUDA emulator") {
        println!("SKIPPED (not the emulated driver): CUDA driver without a device");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (data, cfg) = tiny_run(dir.path());
    let (doctor, _) = ok(bin().arg("doctor").env("CUDA_EMU_DEVICES", "0"));
    assert!(
        doctor.contains("cuda: none (the CUDA driver loads but reports no device"),
        "{doctor}"
    );
    let (_, log) = ok(bin()
        .args(["train", "--device", "auto", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(dir.path().join("auto"))
        .arg("--config")
        .arg(&cfg)
        .env("CUDA_EMU_DEVICES", "0"));
    assert!(
        log.contains("no CUDA (the CUDA driver loads but reports no device")
            && log.contains("on cpu"),
        "{log}"
    );
    let out = run(bin()
        .args(["train", "--device", "cuda", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(dir.path().join("cuda"))
        .arg("--config")
        .arg(&cfg)
        .env("CUDA_EMU_DEVICES", "0"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "--device cuda without a device succeeded"
    );
    assert!(
        err.contains("--device cuda") && err.contains("device"),
        "{err}"
    );

    // A device too old for the kernels (Jetson Nano's 5.3): named, and `auto` trains on the CPU.
    let (doctor, _) = ok(bin().arg("doctor").env("CUDA_EMU_CC", "53"));
    assert!(
        doctor.contains("cuda: present but unusable")
            && doctor.contains("compute capability 5.3 is older than 6.0"),
        "{doctor}"
    );
    let (_, log) = ok(bin()
        .args(["train", "--device", "auto", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(dir.path().join("old"))
        .arg("--config")
        .arg(&cfg)
        .env("CUDA_EMU_CC", "53"));
    assert!(
        log.contains("CUDA present but unusable")
            && log.contains("older than 6.0")
            && log.contains("on cpu"),
        "{log}"
    );
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
    let (doctor, _) = ok(bin().arg("doctor").env("CONTEXTRAST_CUDA_CONV", "cudnn"));
    let (_, log) = ok(bin()
        .args(["train", "--device", "cuda", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&gpu)
        .arg("--config")
        .arg(&cfg)
        .env("CONTEXTRAST_CUDA_CONV", "cudnn"));
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
        let (doctor, err) = ok(bin()
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
