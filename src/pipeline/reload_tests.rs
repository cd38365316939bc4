use super::*;
use std::sync::mpsc::channel;
use std::time::Instant;

fn shipped() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/default.onnx")
}

fn setup(dir: &Path) -> (PathBuf, LineConfig) {
    let model = dir.join("model.onnx");
    std::fs::copy(shipped(), &model).expect("copy model");
    let cfg_path = dir.join("line.toml");
    std::fs::write(&cfg_path, "[model]\npath = \"model.onnx\"\nthreads = 1\n").expect("config");
    let cfg = LineConfig::load(&cfg_path).expect("config loads");
    (cfg_path, cfg)
}

fn next(rx: &std::sync::mpsc::Receiver<Control>) -> Control {
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the watcher answers")
}

/// Replaces `path` atomically, as the retrainer does.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[test]
fn a_new_model_is_swapped_a_corrupt_one_refused_and_sighup_rereads_the_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg_path, cfg) = setup(dir.path());
    let model = cfg.model.path.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    let (tx, rx) = channel();
    let handle = spawn_watcher(
        Watch {
            config_path: cfg_path.clone(),
            config: cfg,
            frame_size: Some((64, 64)),
            poll: Duration::from_millis(50),
            stop: stop.clone(),
            hup: hup.clone(),
        },
        tx,
    )
    .expect("spawn");

    // A corrupt file: refused, naming the file.
    replace(&model, b"definitely not onnx");
    match next(&rx) {
        Control::Refused { why } => assert!(why.contains("model.onnx"), "{why}"),
        Control::Swap { .. } => panic!("a corrupt model must not be swapped in"),
    }
    // A good model again: swapped in, planned for the frame size.
    replace(&model, &std::fs::read(shipped()).expect("read"));
    match next(&rx) {
        Control::Swap { why, judge: engine } => {
            assert!(why.contains("changed"), "{why}");
            assert_eq!(engine.segmenter.info().num_classes(), 5);
        }
        Control::Refused { why } => panic!("refused a good model: {why}"),
    }
    // SIGHUP with a bad config: refused, naming the key; the running one stays.
    std::fs::write(
        &cfg_path,
        "[model]\npath = \"model.onnx\"\n[decision]\nthreshold = 7\n",
    )
    .expect("write");
    hup.store(true, Ordering::Relaxed);
    match next(&rx) {
        Control::Refused { why } => assert!(why.contains("decision.threshold"), "{why}"),
        Control::Swap { .. } => panic!("a bad config must be refused"),
    }
    // SIGHUP with a good config: a new engine.
    std::fs::write(
        &cfg_path,
        "[model]\npath = \"model.onnx\"\n[decision]\nthreshold = 0.7\n",
    )
    .expect("write");
    hup.store(true, Ordering::Relaxed);
    assert!(matches!(next(&rx), Control::Swap { .. }));
    stop.store(true, Ordering::Relaxed);
    let t = Instant::now();
    handle.join().expect("watcher ends");
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn an_incompatible_model_is_refused() {
    // The decision names a class the model does not have: the engine cannot be built.
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg_path, _) = setup(dir.path());
    std::fs::write(
        &cfg_path,
        "[model]\npath = \"model.onnx\"\n[decision]\nthresholds = { dent = 0.3 }\n",
    )
    .expect("write");
    let cfg = LineConfig::load(&cfg_path).expect("parses");
    let e = build_judge(&cfg, Some((64, 64))).err().expect("refused");
    assert!(e.to_string().contains("decision.thresholds.dent"), "{e}");
}
