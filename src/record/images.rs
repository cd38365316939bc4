//! Defect images: for a defective frame, the original and an overlay (defect pixels tinted by
//! class colour, boxes drawn) under `DIR/images/YYYY-MM-DD/`. Images are evidence, not the
//! record: when the queue is full or the disk fails they are shed and counted, never waited
//! for (the event log is what must not lose anything). Retention keeps the folder bounded in
//! files and bytes by deleting the oldest first.
use crate::record::events::{EventsConfig, utc_date};
use crate::{Error, Result};
use contextrast_model::atomic::write_atomic_unsynced;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::SystemTime;

/// Colour of the bounding boxes (yellow stands out on most parts and class colours).
const BOX_COLOR: [u8; 3] = [255, 255, 0];
/// Box line width in pixels.
const BOX_WIDTH: u32 = 2;
/// JPEG quality of the original when `image_format = "jpeg"`.
const JPEG_QUALITY: u8 = 90;

/// One defective frame to save.
#[derive(Clone, Debug, Default)]
pub struct ImageJob {
    /// The frame's capture sequence number.
    pub seq: u64,
    /// Frame name (a path is fine: only its sanitised stem is used).
    pub name: String,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// `width * height * 3`, row-major RGB.
    pub rgb: Vec<u8>,
    /// Class id per pixel at frame size, 0 = none; empty = no tint.
    pub mask: Vec<u8>,
    /// Colour per class id (index 0 = background, unused); missing ids are drawn white.
    pub colors: Vec<[u8; 3]>,
    /// `[x0, y0, x1, y1]`, half-open, frame pixels.
    pub boxes: Vec<[u32; 4]>,
}

/// Counters of the image writer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImageStats {
    /// Jobs written (original and overlay).
    pub written: u64,
    /// Jobs refused by `submit` because the queue was full.
    pub shed_queue_full: u64,
    /// Jobs lost to a bad job or a write failure.
    pub shed_errors: u64,
    /// Files deleted by retention.
    pub deleted: u64,
    /// Bytes under `images/` now (as tracked by the writer).
    pub bytes: u64,
}

/// A job plus the date folder picked at submit time (the caller's clock, like its event).
struct Queued {
    date: String,
    job: ImageJob,
}

#[derive(Default)]
struct Shared {
    written: AtomicU64,
    shed_queue_full: AtomicU64,
    shed_errors: AtomicU64,
    deleted: AtomicU64,
    bytes: AtomicU64,
    /// Tests: while true the writer takes nothing.
    held: Mutex<bool>,
    held_cv: Condvar,
}

impl Shared {
    fn stats(&self) -> ImageStats {
        ImageStats {
            written: self.written.load(Relaxed),
            shed_queue_full: self.shed_queue_full.load(Relaxed),
            shed_errors: self.shed_errors.load(Relaxed),
            deleted: self.deleted.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
        }
    }
}

/// The image writer thread and its bounded queue.
pub struct ImageWriter {
    tx: Option<SyncSender<Queued>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    ext: &'static str,
}

/// File name of a frame's original: `SEQ-STEM.png|jpg`, seq zero-padded so name order is seq
/// order (retention deletes by name order).
pub fn image_file_name(seq: u64, frame: &str, ext: &str) -> String {
    format!("{seq:012}-{}.{ext}", sanitize(frame))
}

/// File name of a frame's overlay: `SEQ-STEM-overlay.png`.
pub fn overlay_file_name(seq: u64, frame: &str) -> String {
    format!("{seq:012}-{}-overlay.png", sanitize(frame))
}

/// The stem of the last path component, with anything but `[A-Za-z0-9._-]` replaced, at most
/// 64 characters: frame names come from cameras and file lists, not from us.
fn sanitize(frame: &str) -> String {
    let stem = Path::new(frame)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let s: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if s.is_empty() { "frame".into() } else { s }
}

impl ImageWriter {
    /// Starts the writer if `cfg.images`; `None` otherwise. Scans `DIR/images/` once for
    /// retention (and removes temporary files left by a crash).
    pub fn open(cfg: &EventsConfig) -> Result<Option<ImageWriter>> {
        if !cfg.images {
            return Ok(None);
        }
        ImageWriter::open_with(cfg, false).map(Some)
    }

    pub(crate) fn open_with(cfg: &EventsConfig, start_held: bool) -> Result<ImageWriter> {
        let root = cfg.dir.join("images");
        std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        let files = scan(&root)?;
        let shared = Arc::new(Shared {
            held: Mutex::new(start_held),
            ..Shared::default()
        });
        let ext = if cfg.image_format == "jpeg" {
            "jpg"
        } else {
            "png"
        };
        let mut w = Worker {
            root: root.clone(),
            shared: shared.clone(),
            files,
            total: 0,
            max_images: cfg.max_images,
            max_bytes: cfg.max_bytes,
            jpeg: ext == "jpg",
            last_err: None,
        };
        w.total = w.files.values().sum();
        shared.bytes.store(w.total, Relaxed);
        // Apply the limits now too: the config may have shrunk since the last run.
        w.retain();
        let (tx, rx) = std::sync::mpsc::sync_channel(cfg.image_queue.max(1));
        let thread = std::thread::Builder::new()
            .name("event-images".into())
            .spawn(move || w.run(rx))
            .map_err(|e| Error::io(&root, e))?;
        Ok(ImageWriter {
            tx: Some(tx),
            shared,
            thread: Some(thread),
            ext,
        })
    }

    /// Queues a job; never blocks. `false` (and counted) when the queue is full.
    pub fn submit(&self, job: ImageJob) -> bool {
        let Some(tx) = &self.tx else { return false };
        let date = utc_date(SystemTime::now());
        match tx.try_send(Queued { date, job }) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.shared.shed_queue_full.fetch_add(1, Relaxed);
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                self.shared.shed_errors.fetch_add(1, Relaxed);
                false
            }
        }
    }

    /// The name the original of `seq`/`frame` gets, for `VerdictEvent::image`; its folder is
    /// `images/` + the UTC date of the event.
    pub fn file_name(&self, seq: u64, frame: &str) -> String {
        image_file_name(seq, frame, self.ext)
    }

    /// Counters so far.
    pub fn stats(&self) -> ImageStats {
        self.shared.stats()
    }

    /// Tests: hold or release the writer.
    #[cfg(test)]
    pub(crate) fn hold(&self, on: bool) {
        *self.shared.held.lock().unwrap_or_else(|e| e.into_inner()) = on;
        self.shared.held_cv.notify_all();
    }

    /// Writes what is queued, joins the writer, returns the final counts.
    pub fn close(mut self) -> ImageStats {
        self.shutdown();
        self.shared.stats()
    }

    fn shutdown(&mut self) {
        #[cfg(test)]
        self.hold(false);
        self.tx = None;
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            log::error!("event images: writer thread panicked");
        }
    }
}

impl Drop for ImageWriter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Image files under `root`, keyed `(date folder, file name)` so map order is deletion order.
type Files = BTreeMap<(String, String), u64>;

/// Reads `root/*/*` once; temporary files of an interrupted write are removed.
fn scan(root: &Path) -> Result<Files> {
    let mut files = Files::new();
    let rd = std::fs::read_dir(root).map_err(|e| Error::io(root, e))?;
    for dir in rd.flatten() {
        if !dir.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let folder = dir.file_name().to_string_lossy().into_owned();
        let Ok(inner) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for f in inner.flatten() {
            let Ok(meta) = f.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let name = f.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(f.path());
                continue;
            }
            files.insert((folder.clone(), name), meta.len());
        }
    }
    Ok(files)
}

struct Worker {
    root: PathBuf,
    shared: Arc<Shared>,
    files: Files,
    /// Running total of `files`, so retention never rescans the tree.
    total: u64,
    max_images: usize,
    max_bytes: u64,
    jpeg: bool,
    last_err: Option<String>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Queued>) {
        loop {
            {
                let mut held = self.shared.held.lock().unwrap_or_else(|e| e.into_inner());
                while *held {
                    held = (self.shared.held_cv.wait(held)).unwrap_or_else(|e| e.into_inner());
                }
            }
            let Ok(q) = rx.recv() else { break };
            match self.write(&q) {
                Ok(()) => {
                    self.shared.written.fetch_add(1, Relaxed);
                    self.last_err = None;
                }
                Err(e) => {
                    self.shared.shed_errors.fetch_add(1, Relaxed);
                    let msg = e.to_string();
                    if self.last_err.as_deref() != Some(msg.as_str()) {
                        log::warn!("event images: shedding images: {msg}");
                        self.last_err = Some(msg);
                    }
                }
            }
            self.retain();
        }
    }

    fn write(&mut self, q: &Queued) -> Result<()> {
        let j = &q.job;
        let dir = self.root.join(&q.date);
        let n = j.width as usize * j.height as usize;
        if n == 0 || j.rgb.len() != n * 3 || !(j.mask.is_empty() || j.mask.len() == n) {
            return Err(Error::frame(
                &j.name,
                format!(
                    "image job {}x{} has {} rgb bytes and {} mask bytes",
                    j.width,
                    j.height,
                    j.rgb.len(),
                    j.mask.len()
                ),
            ));
        }
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let ext = if self.jpeg { "jpg" } else { "png" };
        let original = encode(&j.rgb, j.width, j.height, self.jpeg)
            .map_err(|e| Error::frame(&j.name, format!("cannot encode: {e}")))?;
        self.put(&q.date, image_file_name(j.seq, &j.name, ext), &original)?;
        let ov = overlay(j);
        let overlay = encode(&ov, j.width, j.height, false)
            .map_err(|e| Error::frame(&j.name, format!("cannot encode: {e}")))?;
        self.put(&q.date, overlay_file_name(j.seq, &j.name), &overlay)
    }

    /// Writes via a temporary file and a rename, so a crash or a full disk never leaves a
    /// truncated image under a real name. Unsynced: images come at line rate, and losing the
    /// newest to a power cut is better than stalling the writer on every fsync.
    fn put(&mut self, date: &str, name: String, bytes: &[u8]) -> Result<()> {
        let path = self.root.join(date).join(&name);
        write_atomic_unsynced(&path, bytes)?;
        let len = bytes.len() as u64;
        if let Some(old) = self.files.insert((date.to_string(), name), len) {
            self.total -= old; // same seq and name written again
        }
        self.total += len;
        self.shared.bytes.store(self.total, Relaxed);
        Ok(())
    }

    /// Deletes the oldest files until both limits hold.
    fn retain(&mut self) {
        while self.files.len() > self.max_images || self.total > self.max_bytes {
            let Some(((folder, name), len)) = self.files.pop_first() else {
                break;
            };
            self.total -= len;
            let dir = self.root.join(&folder);
            match std::fs::remove_file(dir.join(&name)) {
                Ok(()) => {
                    self.shared.deleted.fetch_add(1, Relaxed);
                }
                // Gone already (someone cleaned up): just forget it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // Forgotten anyway, or retention would loop on it forever.
                Err(e) => log::warn!("event images: cannot delete {}/{name}: {e}", dir.display()),
            }
            let folder_left = self
                .files
                .range((folder.clone(), String::new())..)
                .next()
                .is_some_and(|((f, _), _)| *f == folder);
            if !folder_left {
                let _ = std::fs::remove_dir(&dir); // fails harmlessly if not empty
            }
        }
        self.shared.bytes.store(self.total, Relaxed);
    }
}

fn encode(rgb: &[u8], w: u32, h: u32, jpeg: bool) -> image::ImageResult<Vec<u8>> {
    let mut buf = Vec::new();
    if jpeg {
        JpegEncoder::new_with_quality(&mut buf, JPEG_QUALITY).write_image(
            rgb,
            w,
            h,
            ExtendedColorType::Rgb8,
        )?;
    } else {
        PngEncoder::new(&mut buf).write_image(rgb, w, h, ExtendedColorType::Rgb8)?;
    }
    Ok(buf)
}

/// The frame with defect pixels blended 50/50 with their class colour and boxes outlined.
pub fn overlay(j: &ImageJob) -> Vec<u8> {
    let mut out = j.rgb.clone();
    if !j.mask.is_empty() {
        for (px, &id) in out.chunks_exact_mut(3).zip(&j.mask) {
            if id != 0 {
                let k = j.colors.get(id as usize).copied().unwrap_or([255; 3]);
                for (p, c) in px.iter_mut().zip(k) {
                    *p = ((u16::from(*p) + u16::from(c)) / 2) as u8;
                }
            }
        }
    }
    let (w, h) = (j.width, j.height);
    let mut set = |x: u32, y: u32| {
        let i = (y as usize * w as usize + x as usize) * 3;
        out[i..i + 3].copy_from_slice(&BOX_COLOR);
    };
    for &[x0, y0, x1, y1] in &j.boxes {
        let (x1, y1) = (x1.min(w), y1.min(h));
        if x0 >= x1 || y0 >= y1 {
            continue;
        }
        for y in y0..y1 {
            if y < y0 + BOX_WIDTH || y + BOX_WIDTH >= y1 {
                (x0..x1).for_each(|x| set(x, y));
            } else {
                let left = x0..x1.min(x0 + BOX_WIDTH);
                let right = x1.saturating_sub(BOX_WIDTH).max(x0)..x1;
                left.chain(right).for_each(|x| set(x, y));
            }
        }
    }
    out
}
