//! Bounded fuzzing of every parser that reads a file a user or a disk can corrupt (issue 28):
//! each target takes real files of the repository (or files our own writers produce), damages
//! them with the seeded [`Mutator`] (byte edits and text edits) and feeds them to the same entry
//! point the binary uses. A finding is a panic, a hang (a watchdog aborts after `HANG_S`), an
//! allocation larger than `MAX_ALLOC` (a header claiming a huge size), or an error that does not
//! name the file. Case `k` of a target is seed `k`: a failure names the case to replay.
//! `CONTEXTRAST_FUZZ_CASES=N` runs N cases per target (longer runs); the count per target is
//! printed with one refusal as an example (run with `--nocapture` to see it), and
//! `CONTEXTRAST_FUZZ_VERBOSE=1` prints every refusal.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

mod common;
use common::root;

use contextrast::capture::convert::{grey_to_rgb, mjpeg_to_rgb, yuyv_to_rgb};
use contextrast::capture::replay::{ReplayConfig, ReplaySource};
use contextrast::capture::{Frame, FrameSource, Next};
use contextrast::config::LineConfig;
use contextrast::infer::native::load_segmenter;
use contextrast::infer::{ModelConfig, Segmentation};
use contextrast::retrain::RetrainConfig;
use contextrast::sys::alloc_count::{CountingAlloc, take_largest};
use contextrast::train::data::classes::Classes;
use contextrast::train::data::cvat::{NameMap, import_cvat};
use contextrast::train::data::dataset::Dataset;
use contextrast::train::data::synth::{self, load_truth};
use contextrast::train::{checkpoint, config::TrainConfig, npy};
use contextrast_model::onnx_model::OnnxModel;
use contextrast_model::rng::SplitMix64;
use contextrast_model::testing::{Mutator, fuzz_cases};
use prost::Message;
use tract_onnx::pb;

/// The largest single allocation a damaged file may cause. The biggest legitimate one here is
/// a model's weights or a decoded test image, a few MB; the image decoder's own cap is 512 MiB.
const MAX_ALLOC: usize = 64 << 20;
/// A case that runs longer than this is a hang: the watchdog aborts the run, naming it.
const HANG_S: u64 = 120;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// One target at a time, so the largest allocation belongs to the case that made it.
static SERIAL: Mutex<()> = Mutex::new(());
/// Millisecond timestamp at which the running case started (0 = none), and its name.
static STARTED_MS: AtomicU64 = AtomicU64::new(0);
static CURRENT: Mutex<String> = Mutex::new(String::new());

fn now_ms() -> u64 {
    static T0: OnceLock<Instant> = OnceLock::new();
    T0.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

fn watchdog() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        std::thread::spawn(|| {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let t = STARTED_MS.load(Ordering::Relaxed);
                if t != 0 && now_ms() - t > HANG_S * 1000 {
                    let name = CURRENT.lock().map(|n| n.clone()).unwrap_or_default();
                    eprintln!("fuzz: {name} has run for over {HANG_S} s: a hang");
                    std::process::abort();
                }
            }
        });
    });
}

/// What one case did: the input was accepted, or refused with this message.
type Outcome = Result<(), String>;

/// Runs `cases` cases of `target`; `must_name` is what every refusal must mention (the file).
/// Panics at the end listing every finding.
fn fuzz(target: &str, cases: u64, must_name: &str, mut case: impl FnMut(u64) -> Outcome) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    watchdog();
    let (mut accepted, mut refused, mut largest) = (0u64, 0u64, 0usize);
    let mut findings = Vec::new();
    let mut example = None;
    for k in 0..cases {
        *CURRENT.lock().unwrap() = format!("{target} case {k}");
        take_largest();
        STARTED_MS.store(now_ms(), Ordering::Relaxed);
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| case(k)));
        STARTED_MS.store(0, Ordering::Relaxed);
        let big = take_largest();
        largest = largest.max(big);
        match r {
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                findings.push(format!("case {k}: panic: {msg}"));
            }
            Ok(Ok(())) => accepted += 1,
            Ok(Err(msg)) => {
                refused += 1;
                example.get_or_insert_with(|| msg.clone());
                if std::env::var_os("CONTEXTRAST_FUZZ_VERBOSE").is_some() {
                    eprintln!("{target} case {k}: {msg}");
                }
                if !msg.contains(must_name) {
                    findings.push(format!("case {k}: error does not name {must_name}: {msg}"));
                }
            }
        }
        if big > MAX_ALLOC {
            findings.push(format!("case {k}: allocated {big} bytes at once"));
        }
    }
    println!(
        "fuzz {target}: {cases} cases, {accepted} accepted, {refused} refused, largest allocation {:.1} MiB, {} findings",
        largest as f64 / (1 << 20) as f64,
        findings.len()
    );
    println!("  e.g. {}", example.unwrap_or_default());
    let first: Vec<&String> = findings.iter().take(8).collect();
    assert!(
        findings.is_empty(),
        "fuzz {target}: {} findings, the first: {first:#?}",
        findings.len()
    );
}

fn read_text(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).expect("seed file")
}

/// A small generated line (3 frames of 64×48): images, masks, classes.toml and truth.json.
fn synth_seed() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        synth::generate(dir.path(), 3, 5, synth::Variant::Standard, 64, 48).expect("synth");
        dir
    })
    .path()
}

/// The first image of the generated line, re-encoded as a JPEG.
fn jpeg_seed() -> Vec<u8> {
    let png = synth_seed().join("images").join("std_000000.png");
    let img = image::open(png).expect("seed image").to_rgb8();
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("encode");
    out.into_inner()
}

fn first_png(sub: &str) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(synth_seed().join(sub))
        .expect("seed dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files.remove(0)
}

#[test]
fn line_configs() {
    let seeds = [
        read_text("firmware-config/demo.toml"),
        read_text("firmware-config/example-line.toml"),
    ];
    let path = Path::new("/etc/contextrast/line.toml");
    fuzz("line config", fuzz_cases(1500), "line.toml", |k| {
        let mut m = Mutator::new(k);
        let text = m.any_text(&seeds[k as usize % 2]);
        LineConfig::parse(&text, path)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
}

/// Runs `load` on `seed` damaged by case `k`'s mutator, written to `name` in a fresh folder.
fn file_case<T, E: std::fmt::Display>(
    k: u64,
    name: &str,
    seed: &[u8],
    text: bool,
    load: impl FnOnce(&Path) -> Result<T, E>,
) -> Outcome {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join(name);
    let mut m = Mutator::new(k);
    let bytes = if text {
        m.any_text(&String::from_utf8_lossy(seed)).into_bytes()
    } else {
        m.bytes(seed)
    };
    std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
    load(&path).map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn retrain_configs() {
    let seed = read_text("firmware-config/retrain.toml");
    fuzz("retrain config", fuzz_cases(800), "retrain.toml", |k| {
        file_case(
            k,
            "retrain.toml",
            seed.as_bytes(),
            true,
            RetrainConfig::load,
        )
    });
}

#[test]
fn train_configs() {
    let seeds = [
        read_text("models/default-train.toml"),
        read_text("models/hires-train.toml"),
    ];
    fuzz("train config", fuzz_cases(800), "train.toml", |k| {
        let seed = seeds[k as usize % 2].as_bytes();
        file_case(k, "train.toml", seed, true, TrainConfig::load)
    });
}

#[test]
fn classes_files() {
    let seed = std::fs::read(synth_seed().join("classes.toml")).expect("classes.toml");
    fuzz("classes.toml", fuzz_cases(800), "classes.toml", |k| {
        file_case(k, "classes.toml", &seed, true, |p| Classes::load(p))
    });
}

#[test]
fn truth_files() {
    let seed = std::fs::read(synth_seed().join("truth.json")).expect("truth.json");
    fuzz("truth.json", fuzz_cases(600), "truth.json", |k| {
        file_case(k, "truth.json", &seed, k % 2 == 0, |p| {
            load_truth(p.parent().expect("folder"))
        })
    });
}

#[test]
fn npy_files() {
    let data: Vec<f32> = (0..60).map(|i| i as f32 * 0.25).collect();
    let seed = npy::encode(&data, &[3, 4, 5]);
    fuzz("npy", fuzz_cases(1500), "probs.npy", |k| {
        file_case(k, "probs.npy", &seed, false, npy::read_npy)
    });
}

/// Damages a checkpoint: its JSON (text edits) or its safetensors file (byte edits, and every
/// fourth case the 8-byte header length set to a hostile value).
#[test]
fn checkpoints() {
    let json = read_text("models/default.json");
    let tensors = std::fs::read(root().join("models/default.safetensors")).expect("safetensors");
    fuzz("checkpoint", fuzz_cases(300), "default.json", |k| {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut m = Mutator::new(k);
        let (mut j, mut t) = (json.clone().into_bytes(), tensors.clone());
        match k % 4 {
            0 => j = m.any_text(&json).into_bytes(),
            1 => {
                let claim: u64 = [0, 7, u64::MAX, 1 << 40, t.len() as u64][(k / 4 % 5) as usize];
                t[..8].copy_from_slice(&claim.to_le_bytes());
            }
            _ => {
                // Edits near the front hit the header; elsewhere they hit the weights.
                let head = 8 + u64::from_le_bytes(t[..8].try_into().expect("8 bytes")) as usize;
                let cut = if k % 4 == 2 {
                    head.min(t.len())
                } else {
                    t.len()
                };
                let mut front = m.bytes(&t[..cut]);
                front.extend_from_slice(&t[cut..]);
                t = front;
            }
        }
        std::fs::write(dir.path().join("default.json"), j).map_err(|e| e.to_string())?;
        std::fs::write(dir.path().join("default.safetensors"), t).map_err(|e| e.to_string())?;
        checkpoint::load(&dir.path().join("default.json"))
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
}

/// A replay folder holding one damaged PNG or JPEG: the line's path from disk to a frame.
#[test]
fn replayed_images() {
    let png = std::fs::read(first_png("images")).expect("png");
    let jpeg = jpeg_seed();
    fuzz("replay image", fuzz_cases(500), "frame", |k| {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (seed, name) = if k % 2 == 0 {
            (&png, "frame.png")
        } else {
            (&jpeg, "frame.jpg")
        };
        std::fs::write(dir.path().join(name), Mutator::new(k).bytes(seed))
            .map_err(|e| e.to_string())?;
        let cfg = ReplayConfig {
            dir: dir.path().to_path_buf(),
            fps: 0.0,
            looping: false,
        };
        let mut src = ReplaySource::open(&cfg).map_err(|e| e.to_string())?;
        let mut frame = Frame::with_capacity(64, 48);
        match src.next_frame(&mut frame).map_err(|e| e.to_string())? {
            Next::Skipped(why) => Err(why),
            Next::Frame | Next::End => Ok(()),
        }
    });
}

/// A dataset whose first mask (or image) is damaged: what `train` and `retrain` read.
#[test]
fn dataset_masks_and_images() {
    let src = synth_seed();
    fuzz("dataset item", fuzz_cases(400), "std_000000", |k| {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        for sub in ["images", "masks"] {
            std::fs::create_dir_all(dir.path().join(sub)).map_err(|e| e.to_string())?;
            for e in std::fs::read_dir(src.join(sub)).map_err(|e| e.to_string())? {
                let p = e.map_err(|e| e.to_string())?.path();
                let to = dir.path().join(sub).join(p.file_name().expect("name"));
                std::fs::copy(&p, to).map_err(|e| e.to_string())?;
            }
        }
        for f in ["classes.toml", "train.txt", "val.txt"] {
            let _ = std::fs::copy(src.join(f), dir.path().join(f));
        }
        let sub = if k % 3 == 0 { "images" } else { "masks" };
        let victim = dir.path().join(sub).join("std_000000.png");
        let bytes = std::fs::read(&victim).map_err(|e| e.to_string())?;
        std::fs::write(&victim, Mutator::new(k).bytes(&bytes)).map_err(|e| e.to_string())?;
        let ds = Dataset::open(dir.path()).map_err(|e| e.to_string())?;
        for i in 0..ds.len() {
            ds.load_item(i).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
}

/// A CVAT export ("Segmentation mask 1.1") with a damaged labelmap or colour mask.
#[test]
fn cvat_exports() {
    let labelmap = "# label:color_rgb:parts:actions\nbackground:0,0,0::\nPart:0,0,255::\n\
                    Kratzer:255,0,0::\nSTAIN:0,255,0::\n";
    let mask = image::RgbImage::from_fn(16, 12, |x, y| match (x / 4, y / 4) {
        (0, _) => image::Rgb([0, 0, 0]),
        (1, _) => image::Rgb([0, 0, 255]),
        (2, 1) => image::Rgb([255, 0, 0]),
        _ => image::Rgb([0, 255, 0]),
    });
    let mut png = std::io::Cursor::new(Vec::new());
    mask.write_to(&mut png, image::ImageFormat::Png)
        .expect("encode");
    let png = png.into_inner();
    let photo = std::fs::read(first_png("images")).expect("png");
    let names: NameMap = [("Kratzer", "scratch"), ("background", "belt")]
        .into_iter()
        .collect();
    fuzz("cvat export", fuzz_cases(400), "export", |k| {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let export = dir.path().join("export");
        let w = |rel: &str, bytes: &[u8]| {
            let p = export.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).map_err(|e| e.to_string())?;
            std::fs::write(p, bytes).map_err(|e| e.to_string())
        };
        let mut m = Mutator::new(k);
        let lm = if k % 2 == 0 {
            m.any_text(labelmap)
        } else {
            labelmap.to_string()
        };
        let mk = if k % 2 == 1 {
            m.bytes(&png)
        } else {
            png.clone()
        };
        w("labelmap.txt", lm.as_bytes())?;
        w("SegmentationClass/a.png", &mk)?;
        w("JPEGImages/a.png", &photo)?;
        import_cvat(
            &export,
            &Classes::synthetic_default(),
            &dir.path().join("out"),
            &names,
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    });
}

/// Camera buffers of the wrong length for their claimed size, and damaged MJPEG frames.
#[test]
fn v4l2_buffers() {
    let jpeg = jpeg_seed();
    fuzz("v4l2 buffer", fuzz_cases(1500), "", |k| {
        let mut rng = SplitMix64::new(k);
        let w = [0, 1, 2, 3, 64, 640, 4096][rng.below(7) as usize];
        let h = [0, 1, 48, 480, 3000][rng.below(5) as usize];
        let px = w as usize * h as usize;
        let dst_len = match rng.below(3) {
            0 => px * 3,
            1 => px * 3 / 2,
            _ => rng.below(1 << 16) as usize,
        };
        let mut dst = vec![0u8; dst_len];
        let src = match rng.below(3) {
            0 => vec![128u8; px * 2],
            1 => vec![7u8; rng.below(1 << 16) as usize],
            _ => Mutator::new(k).bytes(&jpeg),
        };
        match k % 3 {
            0 => yuyv_to_rgb(&src, w, h, &mut dst),
            1 => grey_to_rgb(&src, w, h, &mut dst),
            _ => mjpeg_to_rgb(&src, w, h, &mut dst),
        }
    });
}

/// A damaged model file through the runtime's loader (native engine, or tract for what it does
/// not run) and, when it loads, one frame: byte edits, and structure-aware edits of the decoded
/// graph (a dimension, an attribute, an initialiser's size, a node's inputs or op).
#[test]
fn onnx_models() {
    let bytes = std::fs::read(root().join("models/default.onnx")).expect("model");
    let proto = pb::ModelProto::decode(bytes.as_slice()).expect("decodes");
    fuzz("onnx model", fuzz_cases(300), "model.onnx", |k| {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("model.onnx");
        let mut m = Mutator::new(k);
        let damaged = if k % 3 == 0 {
            m.bytes(&bytes)
        } else {
            let mut p = proto.clone();
            mutate_graph(&mut p, &mut SplitMix64::new(k));
            p.encode_to_vec()
        };
        std::fs::write(&path, damaged).map_err(|e| e.to_string())?;
        if k % 10 == 9 {
            // The evaluation path (tract) too.
            OnnxModel::load(&path).map_err(|e| e.to_string())?;
        }
        let cfg = ModelConfig {
            path: path.clone(),
            threads: 1,
            ..ModelConfig::default()
        };
        let mut seg = load_segmenter(&cfg).map_err(|e| e.to_string())?;
        let (w, h) = (64, 48);
        seg.prepare(w, h).map_err(|e| e.to_string())?;
        let mut frame = Frame::with_capacity(w, h);
        frame.reset(w, h);
        let mut out = Segmentation::default();
        seg.segment(&frame, &mut out).map_err(|e| e.to_string())
    });
}

/// One structure-aware edit of a model's graph.
fn mutate_graph(p: &mut pb::ModelProto, rng: &mut SplitMix64) {
    let hostile: [i64; 6] = [0, -1, 1, 3, 1 << 31, i64::MAX];
    let v = hostile[rng.below(6) as usize];
    let Some(g) = p.graph.as_mut() else { return };
    let pick = |rng: &mut SplitMix64, n: usize| rng.below(n.max(1) as u64) as usize;
    fn at<'v, T>(rng: &mut SplitMix64, v: &'v mut [T]) -> Option<&'v mut T> {
        let i = rng.below(v.len().max(1) as u64) as usize;
        v.get_mut(i)
    }
    match rng.below(8) {
        0 => {
            if let Some(t) = at(rng, &mut g.initializer)
                && let Some(d) = at(rng, &mut t.dims)
            {
                *d = v;
            }
        }
        1 => {
            if let Some(t) = at(rng, &mut g.initializer) {
                let keep = rng.below(t.raw_data.len().max(1) as u64) as usize;
                t.raw_data.truncate(keep);
                t.float_data.truncate(keep / 4);
            }
        }
        2 => {
            if let Some(n) = at(rng, &mut g.node)
                && let Some(a) = at(rng, &mut n.attribute)
            {
                a.i = v;
                if let Some(x) = at(rng, &mut a.ints) {
                    *x = v;
                }
                a.f = f32::NAN;
            }
        }
        3 => {
            if let Some(n) = at(rng, &mut g.node) {
                n.op_type = ["Conv", "Relu", "Add", "Resize", "Concat", "Gemm", ""]
                    [rng.below(7) as usize]
                    .to_string();
            }
        }
        4 => {
            let n = g.node.len();
            if n > 1 {
                let (a, b) = (pick(rng, n), pick(rng, n));
                let name = g.node[a].output.first().cloned().unwrap_or_default();
                if let Some(i) = g.node[b].input.first_mut() {
                    *i = name; // a cycle or a forward reference
                }
            }
        }
        5 => {
            let n = g.node.len();
            if n > 0 {
                g.node.remove(pick(rng, n));
            }
        }
        6 => {
            for input in &mut g.input {
                if let Some(pb::type_proto::Value::TensorType(t)) =
                    input.r#type.as_mut().and_then(|t| t.value.as_mut())
                    && let Some(s) = t.shape.as_mut()
                    && let Some(d) = at(rng, &mut s.dim)
                {
                    d.value = Some(pb::tensor_shape_proto::dimension::Value::DimValue(v));
                }
            }
        }
        _ => {
            if let Some(prop) = at(rng, &mut p.metadata_props) {
                prop.value = ["", "[]", "{", "nan", "99999999999999999999"][rng.below(5) as usize]
                    .to_string();
            }
        }
    }
}
