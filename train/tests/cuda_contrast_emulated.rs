//! kernels/contrast.cu run on the CPU, without a GPU: the kernels, the block helpers of
//! common.cuh and the host side of `Cuda::contrastive_loss_device` (written again in C++,
//! tests/cuda_emu/contrast_driver.cpp) are built with the host C++ compiler over a small CUDA
//! emulator (tests/cuda_emu/emu.hpp: every CUDA thread of a block that synchronises is a fiber
//! that runs to its next barrier; __syncthreads, warp shuffles, ballots and atomics emulated; the
//! threads resume in ascending order in some runs and descending in others, so a missing
//! barrier shows on either side of thread 0). Every case must select the very
//! same pixels as the CPU reference (`sample_anchor`, per scale and class) and give the
//! same L_PA, per-scale losses, anchor counts and gradients as `contrastive_loss`.
//!
//! This checks the kernels' logic (block reductions, radix selection, ordered compaction, EDT,
//! the fused backward) before any GPU runs them; it cannot check the Rust launch arguments (the
//! driver mirrors them by hand) nor device-only behaviour (memory model, resource limits), which
//! tests/cuda_contrast_parity.rs does on a GPU. Without a C++20 compiler the test prints
//! "SKIPPED (no c++20): ..." and passes.
// Test helpers may unwrap: a panic there is a failed test, not a crash on input.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use contextrast_train::Result;
use contextrast_train::loss::bane::{LabelMaps, downsample_nearest, sample_anchor};
use contextrast_train::loss::contrast::{ContrastConfig, SCALES};
use contextrast_train::loss::sampling::anchor_key_base;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;
use common::contrast_cases::{Case, STRIDES, assert_close64, cases, configs, cpu_reference};

const EMU: &str = include_str!("cuda_emu/emu.hpp");
const COMMON: &str = include_str!("../src/backend/cuda/kernels/common.cuh");
const KERNELS: &str = include_str!("../src/backend/cuda/kernels/contrast.cu");
const DRIVER: &str = include_str!("cuda_emu/contrast_driver.cpp");

/// Builds the emulated kernels and driver; `None` (after the skip line) without a compiler.
fn build(dir: &Path) -> Option<PathBuf> {
    let compiler = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    if Command::new(&compiler).arg("--version").output().is_err() {
        println!("SKIPPED (no c++20): kernels/contrast.cu on the CUDA emulator");
        return None;
    }
    std::fs::create_dir_all(dir).expect("temp dir");
    let (src, bin) = (dir.join("emu.cpp"), dir.join("emu"));
    std::fs::write(&src, format!("{EMU}\n{COMMON}\n{KERNELS}\n{DRIVER}")).expect("write source");
    let built = Command::new(&compiler)
        .args(["-std=c++20", "-O2", "-pthread", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("run c++");
    let log = String::from_utf8_lossy(&built.stderr);
    if !built.status.success() && log.contains("ucontext.h") && log.contains("No such file") {
        println!("SKIPPED (no ucontext.h): kernels/contrast.cu on the CUDA emulator");
        return None;
    }
    assert!(
        built.status.success(),
        "contrast.cu does not build on the emulator:\n{log}"
    );
    Some(bin)
}

fn input(c: &Case, cfg: &ContrastConfig, seed: u64, step: u64) -> String {
    let s = &cfg.sampling;
    let mut t = format!("{} {} {} {} {}\n", c.b, c.d, c.h, c.w, c.classes());
    for st in STRIDES {
        let _ = write!(t, "{st} ");
    }
    let _ = write!(t, "\n{:e}", cfg.tau);
    for l in cfg.lambda {
        let _ = write!(t, " {l:e}");
    }
    let _ = writeln!(t, " {:e} {:e}", cfg.w_l, cfg.w_h);
    let _ = writeln!(
        t,
        "{} {} {} {:e}",
        s.max_pos,
        s.max_neg,
        s.hard_cap(),
        s.k_percentile
    );
    for m in [&c.labels, &c.pred] {
        for v in m.iter() {
            let _ = write!(t, "{v} ");
        }
        t.push('\n');
    }
    for z in &c.z {
        for v in z {
            let _ = write!(t, "{} ", v.to_bits());
        }
        t.push('\n');
    }
    for i in 0..SCALES {
        for n in 0..256u32 {
            let _ = write!(t, "{} ", anchor_key_base(seed, step, i as u32 + 1, n));
        }
        t.push('\n');
    }
    t
}

/// Runs the emulated kernels on one case; `descending` resumes the threads of a block in
/// descending order (a missing barrier shows in one order or the other).
fn run(bin: &Path, dir: &Path, text: &str, descending: bool) -> String {
    let path = dir.join("input.txt");
    std::fs::write(&path, text).expect("write input");
    let out = Command::new(bin)
        .env("EMU_DESCENDING", if descending { "1" } else { "0" })
        .stdin(std::fs::File::open(&path).expect("open input"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run the emulated kernels");
    assert!(out.status.success(), "the emulated kernels failed");
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn emulated_kernels_match_the_cpu_reference() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("contextrast-ctr-emu-{}", std::process::id()));
    let Some(bin) = build(&dir) else {
        return Ok(());
    };
    // "wide" (3×16×96×128) alone would take most of the time on the emulator; the GPU suite
    // runs it.
    for c in cases().into_iter().filter(|c| c.name != "wide") {
        for (cname, cfg) in configs() {
            for (seed, step) in [(0u64, 0u64), (42, 977)] {
                let what = format!("{} / {cname} / seed {seed} step {step}", c.name);
                let want = cpu_reference(&c, &cfg, seed, step)?;
                if c.name == "deepest scale all ignored" {
                    assert_eq!(
                        want.anchors_used[SCALES - 1],
                        0,
                        "{what}: the case lost its point"
                    );
                }
                let out = run(&bin, &dir, &input(&c, &cfg, seed, step), step % 2 == 1);
                let mut tok = out.split_whitespace();
                let mut next = || {
                    tok.next()
                        .unwrap_or_else(|| panic!("{what}: output too short"))
                };
                let loss: f64 = next().parse().expect("loss");
                let per_scale: Vec<f64> =
                    (0..SCALES).map(|_| next().parse().expect("L_i")).collect();
                let used: Vec<usize> = (0..SCALES).map(|_| next().parse().expect("used")).collect();
                assert_eq!(used, want.anchors_used, "{what}: anchors_used");
                let mut anchors = Vec::new();
                for (i, &stride) in STRIDES.iter().enumerate() {
                    let (h, w) = (c.h / stride, c.w / stride);
                    let y = downsample_nearest(&c.labels, c.b, c.h, c.w, stride)?;
                    let p = downsample_nearest(&c.pred, c.b, c.h, c.w, stride)?;
                    let a: usize = next().parse().expect("anchors");
                    for _ in 0..a {
                        let m: u8 = next().parse().expect("class");
                        let np: usize = next().parse().expect("np");
                        let nh: usize = next().parse().expect("nh");
                        let nr: usize = next().parse().expect("nr");
                        let pos: Vec<u32> = (0..np).map(|_| next().parse().expect("p")).collect();
                        let neg: Vec<u32> =
                            (0..nh + nr).map(|_| next().parse().expect("q")).collect();
                        let s = sample_anchor(
                            &LabelMaps {
                                y: &y,
                                pred: &p,
                                b: c.b,
                                h,
                                w,
                            },
                            m,
                            &cfg.sampling,
                            seed,
                            step,
                            i as u32 + 1,
                        )?;
                        let at = format!("{what}: scale {} class {m}", i + 1);
                        assert_eq!(pos, s.positives, "{at}: positives");
                        assert_eq!(&neg[..nh], &s.hard_negatives[..], "{at}: hard negatives");
                        assert_eq!(
                            &neg[nh..],
                            &s.random_negatives[..],
                            "{at}: random negatives"
                        );
                        if np > 0 && nh + nr > 0 {
                            anchors.push((i, m, np, nh, nr));
                        }
                    }
                }
                let want_anchors: Vec<_> = want
                    .anchors
                    .iter()
                    .map(|a| (a.scale, a.class, a.positives, a.hard, a.random))
                    .collect();
                assert_eq!(anchors, want_anchors, "{what}: anchors");
                assert_close64(&format!("{what}: loss"), want.loss, loss, 1e-9);
                for (i, &l) in per_scale.iter().enumerate() {
                    assert_close64(&format!("{what}: L_{}", i + 1), want.per_scale[i], l, 1e-9);
                    let n: usize = next().parse().expect("grad length");
                    let g: Vec<f32> = (0..n)
                        .map(|_| f32::from_bits(next().parse().expect("grad")))
                        .collect();
                    let cpu = &want.grads[i];
                    assert_eq!(g.len(), cpu.len(), "{what}: grad {} length", i + 1);
                    let scale = cpu.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
                    for (j, (a, b)) in cpu.iter().zip(&g).enumerate() {
                        assert!(
                            (a - b).abs() <= 1e-5 * scale + 1e-5 * a.abs().max(b.abs()),
                            "{what}: grad {}[{j}] cpu {a} vs emulated {b}",
                            i + 1
                        );
                    }
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
