use super::*;
use std::path::{Path, PathBuf};

fn shipped_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.onnx")
}

fn config(dir: &Path, body: &str) -> LineConfig {
    LineConfig::parse(body, &dir.join("line.toml")).expect("valid config")
}

fn synthetic(dir: &Path, frames: u64, extra: &str) -> LineConfig {
    config(
        dir,
        &format!(
            "[source]\nkind = \"synthetic\"\n[source.synthetic]\nseed = 4242\nwidth = 96\nheight = 64\nfps = 0\nframes = {frames}\n\
             [model]\npath = \"{}\"\nthreads = 1\n[pipeline]\nstatus_every_s = 0\n[decision]\nthreshold = 0.5\nmin_area_px = 4\n{extra}",
            shipped_model().display()
        ),
    )
}

#[test]
fn open_source_opens_the_configured_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open_source(&synthetic(dir.path(), 2, "")).expect("synthetic line");
    assert_eq!(s.frame_size(), Some((96, 64)));
}

#[test]
fn open_source_names_a_missing_replay_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        "[source]\nkind = \"replay\"\n[source.replay]\ndir = \"nowhere\"\n[model]\npath = \"m.onnx\"\n",
    );
    let err = open_source(&cfg).err().expect("no such folder").to_string();
    assert!(err.contains("nowhere"), "{err}");
}

#[test]
fn an_inspection_judges_every_frame_and_accounts_for_every_reject() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = synthetic(
        dir.path(),
        4,
        "[events]\ndir = \"events\"\nimages = false\n",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    let inspection = Inspection::open(cfg, &stop).expect("opens");
    let s = inspection
        .run(&Service::disabled(), &stop, &hup, None)
        .expect("runs");
    assert_eq!(s.run.frames_processed, 4, "{s:#?}");
    assert_eq!(s.run.source_error, None);
    // Every reject verdict reached the reject thread; the synthetic line knows the truth.
    assert_eq!(s.reject.scheduled, s.run.rejects, "{s:#?}");
    assert_eq!(s.detection.as_ref().map(|d| d.frames), Some(4), "{s:#?}");
    assert!(s.images.is_none(), "images are off");
    let events = s.events.expect("event log");
    assert_eq!(events.written, s.run.defective_frames, "{s:#?}");
    // The summary file's fields.
    let json = serde_json::to_value(&s).expect("json");
    for key in ["run", "detection", "reject", "events", "images"] {
        assert!(json.get(key).is_some(), "{key} missing: {json:#}");
    }
}

#[test]
fn max_frames_ends_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    let inspection = Inspection::open(synthetic(dir.path(), 0, ""), &stop).expect("opens");
    let s = inspection
        .run(&Service::disabled(), &stop, &hup, Some(2))
        .expect("runs");
    assert_eq!(s.run.frames_processed, 2, "{s:#?}");
    assert!(s.events.is_none(), "no [events]: no event log");
}
