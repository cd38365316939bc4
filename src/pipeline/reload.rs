//! Building the engine (model + decision) from a line config, and hot reload: a watcher thread
//! notices a new model file (retraining replaces it atomically) or a SIGHUP, builds and checks
//! the new engine off the hot path, and hands it to the pipeline, which swaps it between
//! frames. A corrupt or incompatible model, or a bad config, is refused and the running engine
//! stays.
use crate::capture::Frame;
use crate::config::LineConfig;
use crate::decide::Decider;
use crate::infer::Segmentation;
use crate::infer::native::load_segmenter;
use crate::pipeline::{Control, Judge};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, SystemTime};

/// Loads the model, plans it for the frame size, runs it once on a grey frame (a model that
/// loads but produces NaN is refused here, not on the line), and resolves the decision.
pub fn build_judge(cfg: &LineConfig, frame_size: Option<(u32, u32)>) -> Result<Judge> {
    let mut seg = load_segmenter(&cfg.model)?;
    if let Some((w, h)) = frame_size {
        seg.prepare(w, h)?;
        let mut frame = Frame::with_capacity(w, h);
        frame.reset(w, h);
        frame.rgb.fill(128);
        let mut out = Segmentation::default();
        seg.segment(&frame, &mut out)?;
        if !out.scores.all_finite() {
            return Err(Error::model(
                &cfg.model.path,
                "produces non-finite output on a grey frame",
            ));
        }
    }
    let decider = Decider::new(cfg.decision(seg.info())?)
        .map_err(|m| Error::config(&cfg.path, "decision", m))?;
    Ok(Judge {
        segmenter: seg,
        decider,
    })
}

/// What identifies a version of the model file: replaced atomically, it gets a new inode.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileSig {
    len: u64,
    modified: Option<SystemTime>,
    ino: u64,
}

fn sig(path: &Path) -> Option<FileSig> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(FileSig {
        len: m.len(),
        modified: m.modified().ok(),
        ino: m.ino(),
    })
}

/// Settings of the watcher thread.
pub struct Watch {
    /// The line config file, reread on SIGHUP.
    pub config_path: PathBuf,
    /// The config now running; a changed model file is reloaded with it.
    pub config: LineConfig,
    /// The source's frame size: a new model is planned and test-run for it before the swap.
    pub frame_size: Option<(u32, u32)>,
    /// How often the model file is looked at; a change must hold for one more period.
    pub poll: Duration,
    /// Set to stop the watcher.
    pub stop: Arc<AtomicBool>,
    /// Set by SIGHUP: reload the config (and with it the model).
    pub hup: Arc<AtomicBool>,
}

/// Starts the watcher; it ends when `stop` is set or the pipeline hangs up the channel.
pub fn spawn_watcher(
    w: Watch,
    tx: Sender<Control>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    // The running model's signature is taken now, not in the thread: a file replaced right
    // after the start must count as a change.
    let seen = sig(&w.config.model.path);
    std::thread::Builder::new()
        .name("reload".into())
        .spawn(move || watch(w, seen, tx))
}

fn watch(w: Watch, mut seen: Option<FileSig>, tx: Sender<Control>) {
    let Watch {
        config_path,
        mut config,
        frame_size,
        poll,
        stop,
        hup,
    } = w;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(poll);
        let mut candidate = None;
        if hup.swap(false, Ordering::Relaxed) {
            log::info!("SIGHUP: reloading {}", config_path.display());
            match LineConfig::load(&config_path) {
                Ok(new) => {
                    for (what, changed) in [
                        (
                            "[source]",
                            format!("{:?}", new.source) != format!("{:?}", config.source),
                        ),
                        (
                            "[pipeline]",
                            format!("{:?}", new.pipeline) != format!("{:?}", config.pipeline),
                        ),
                        (
                            "[reject]",
                            format!("{:?}", new.reject) != format!("{:?}", config.reject),
                        ),
                    ] {
                        if changed {
                            log::warn!(
                                "{what} changed in {}: takes effect at the next restart",
                                config_path.display()
                            );
                        }
                    }
                    candidate = Some((new, "config reloaded (SIGHUP)".to_string()));
                }
                Err(e) => {
                    let why = format!("config not reloaded: {e}");
                    if tx.send(Control::Refused { why }).is_err() {
                        return;
                    }
                    continue;
                }
            }
        }
        let now = sig(&config.model.path);
        if candidate.is_none() && now.is_some() && now != seen {
            // Wait one more period: a file still being written changes again.
            std::thread::sleep(poll);
            if sig(&config.model.path) != now {
                continue;
            }
            candidate = Some((
                config.clone(),
                format!("model file {} changed", config.model.path.display()),
            ));
        }
        let Some((cfg, why)) = candidate else {
            continue;
        };
        seen = sig(&cfg.model.path);
        let msg = match build_judge(&cfg, frame_size) {
            Ok(engine) => {
                let why = format!("{why}: now {}", engine.segmenter.info().version);
                config = cfg;
                Control::Swap {
                    judge: Box::new(engine),
                    why,
                }
            }
            // The same broken file is not retried until it changes again.
            Err(e) => Control::Refused {
                why: format!("{why}, but the new engine was refused: {e}"),
            },
        };
        if tx.send(msg).is_err() {
            return;
        }
    }
}

#[cfg(test)]
#[path = "reload_tests.rs"]
mod tests;
