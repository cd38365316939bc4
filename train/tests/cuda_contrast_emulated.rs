//! kernels/contrast.cu run on the CPU, without a GPU: the kernels, the block helpers of
//! common.cuh and the host side of `Cuda::contrastive_loss_device` (written again in C++,
//! tests/cuda_emu/contrast_driver.cpp) are built with the host C++ compiler over a small CUDA
//! emulator (tests/cuda_emu/emu.hpp: every CUDA thread of a block that synchronises is a fiber
//! that runs to its next barrier; __syncthreads, warp shuffles, ballots and atomics emulated; the
//! threads resume in ascending order in some runs and descending in others, so a missing
//! barrier shows on either side of thread 0). Every case must select the very
//! same pixels as the CPU reference (`sample_anchor`, per scale and present class) and give the
//! same L_PA, per-scale losses, anchor counts and gradients as `contrastive_loss`.
//!
//! This checks the kernels' logic (block reductions, radix selection, ordered compaction, EDT,
//! the fused backward) before any GPU runs them; it cannot check the Rust launch arguments (the
//! driver mirrors them by hand) nor device-only behaviour (memory model, resource limits), which
//! tests/cuda_contrast_parity.rs does on a GPU. Without a C++20 compiler the test prints
//! "SKIPPED (no c++20): ..." and passes.
use contextrast_train::Result;
use contextrast_train::loss::bane::{IGNORE, downsample_nearest, sample_anchor};
use contextrast_train::loss::contrast::{ContrastConfig, SCALES, ScaleInput, contrastive_loss};
use contextrast_train::loss::sampling::anchor_key_base;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;
use common::Rng;

const STRIDES: [usize; SCALES] = [4, 8, 16, 32];
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

/// Blocky labels and predictions that copy them except in flipped blocks (error regions with
/// edges), `ignore` of the labels 255; as tests/cuda_contrast_parity.rs makes them.
fn maps(
    rng: &mut Rng,
    (b, h, w): (usize, usize, usize),
    classes: &[u8],
    block: usize,
    ignore: f64,
) -> (Vec<u8>, Vec<u8>) {
    let pick = |rng: &mut Rng| classes[rng.below(classes.len() as u64) as usize];
    let (bh, bw) = (h.div_ceil(block), w.div_ceil(block));
    let mut y = vec![0u8; b * h * w];
    let mut p = vec![0u8; b * h * w];
    for bi in 0..b {
        let lab: Vec<u8> = (0..bh * bw).map(|_| pick(rng)).collect();
        let flip: Vec<Option<u8>> = (0..bh * bw)
            .map(|_| rng.chance(0.3).then(|| pick(rng)))
            .collect();
        for r in 0..h {
            for c in 0..w {
                let k = (r / block) * bw + c / block;
                let i = bi * h * w + r * w + c;
                y[i] = if rng.chance(0.05) { pick(rng) } else { lab[k] };
                p[i] = flip[k].unwrap_or(y[i]);
                if rng.chance(ignore) {
                    y[i] = IGNORE;
                }
            }
        }
    }
    (y, p)
}

struct Case {
    name: &'static str,
    b: usize,
    d: usize,
    h: usize,
    w: usize,
    labels: Vec<u8>,
    pred: Vec<u8>,
    z: Vec<Vec<f32>>,
}

fn case(
    rng: &mut Rng,
    name: &'static str,
    (b, d, h, w): (usize, usize, usize, usize),
    classes: &[u8],
) -> Case {
    let (labels, pred) = maps(rng, (b, h, w), classes, 7, 0.1);
    let z = STRIDES
        .iter()
        .map(|&s| {
            let n = b * d * (h / s) * (w / s);
            (0..n)
                .map(|_| rng.below(2001) as f32 / 1000.0 - 1.0)
                .collect()
        })
        .collect();
    Case {
        name,
        b,
        d,
        h,
        w,
        labels,
        pred,
        z,
    }
}

fn cases() -> Vec<Case> {
    let mut rng = Rng(15);
    let mut out = vec![
        case(&mut rng, "odd", (1, 5, 70, 45), &[0, 1, 3]),
        case(&mut rng, "square", (2, 8, 64, 64), &[0, 1, 2]),
        case(&mut rng, "one class", (2, 4, 32, 32), &[2]),
    ];
    // Class 3 only where no stride-32 sample looks (not fused); image 0 a full error region.
    let mut c = case(
        &mut rng,
        "unfused class + full error",
        (2, 6, 64, 64),
        &[0, 1],
    );
    let (h, w) = (c.h, c.w);
    for r in (4..h).step_by(8) {
        for col in (4..w).step_by(8) {
            c.labels[h * w + r * w + col] = 3;
        }
    }
    c.labels[..h * w].fill(1);
    c.pred[..h * w].fill(0);
    out.push(c);
    // Every label of the deepest scale ignored in a batch of one: no anchor there at all.
    let mut c = case(
        &mut rng,
        "deepest scale all ignored",
        (1, 3, 64, 64),
        &[0, 1, 2],
    );
    for r in (0..c.h).step_by(32) {
        for col in (0..c.w).step_by(32) {
            c.labels[r * c.w + col] = IGNORE;
        }
    }
    out.push(c);
    out
}

fn configs() -> Vec<(&'static str, ContrastConfig)> {
    let base = ContrastConfig::default();
    let mut small = base.clone();
    small.sampling.max_pos = 9;
    small.sampling.max_neg = 20;
    let mut off = base.clone();
    off.sampling.bane = false;
    off.sampling.max_neg = 37;
    let mut k = base.clone();
    k.tau = 0.05;
    k.w_l = 0.3;
    k.w_h = 0.7;
    k.sampling.k_percentile = 0.2;
    k.sampling.hard_fraction = 0.7;
    k.sampling.max_neg = 101;
    let mut zero = base.clone();
    zero.sampling.max_pos = 0;
    zero.sampling.max_neg = 0;
    let mut all_hard = base.clone();
    all_hard.sampling.max_neg = 64;
    all_hard.sampling.hard_fraction = 1.0;
    all_hard.sampling.k_percentile = 1.0;
    vec![
        ("zero caps", zero),
        ("all hard, K 1", all_hard),
        ("default", base),
        ("small caps", small),
        ("BANE off", off),
        ("tau 0.05, K 0.2, hard 0.7", k),
    ]
}

fn input(c: &Case, cfg: &ContrastConfig, seed: u64, step: u64) -> String {
    let s = &cfg.sampling;
    let mut t = format!("{} {} {} {}\n", c.b, c.d, c.h, c.w);
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

#[track_caller]
fn close64(what: &str, cpu: f64, emu: f64, rtol: f64) {
    assert!(
        (cpu - emu).abs() <= rtol * cpu.abs().max(emu.abs()).max(1e-12),
        "{what}: cpu {cpu} vs emulated {emu}"
    );
}

#[test]
fn emulated_kernels_match_the_cpu_reference() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("contextrast-ctr-emu-{}", std::process::id()));
    let Some(bin) = build(&dir) else {
        return Ok(());
    };
    for c in cases() {
        for (cname, cfg) in configs() {
            for (seed, step) in [(0u64, 0u64), (42, 977)] {
                let what = format!("{} / {cname} / seed {seed} step {step}", c.name);
                let inputs: [ScaleInput; SCALES] = std::array::from_fn(|i| ScaleInput {
                    z: &c.z[i],
                    b: c.b,
                    d: c.d,
                    h: c.h / STRIDES[i],
                    w: c.w / STRIDES[i],
                    stride: STRIDES[i],
                });
                let want =
                    contrastive_loss(&inputs, &c.labels, &c.pred, c.h, c.w, &cfg, seed, step)?;
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
                            &y,
                            &p,
                            c.b,
                            h,
                            w,
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
                close64(&format!("{what}: loss"), want.loss, loss, 1e-9);
                for (i, &l) in per_scale.iter().enumerate() {
                    close64(&format!("{what}: L_{}", i + 1), want.per_scale[i], l, 1e-9);
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
