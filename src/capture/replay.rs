//! A folder of images played back as a camera: in name order, at a set rate or as fast as
//! possible, optionally looping. A folder made by `contextrast synth` (its `images/` and
//! `truth.json`) carries its ground truth along. An unreadable image is skipped and counted,
//! never fatal: one bad file in a month of recordings must not stop a test run.
use crate::capture::{Frame, FrameSource, Next, Pacer};
use crate::{Error, Result};
use contextrast_train::data::synth::{SynthManifest, load_truth};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// `[source.replay]` of a line config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayConfig {
    /// Folder of PNG/JPEG images, or a dataset folder with an `images/` subfolder.
    pub dir: PathBuf,
    /// Frames per second; 0 = as fast as the pipeline takes them.
    pub fps: f64,
    /// Start again at the first image after the last.
    #[serde(rename = "loop")]
    pub looping: bool,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            dir: PathBuf::from("frames"),
            fps: 10.0,
            looping: false,
        }
    }
}

/// A [`FrameSource`] playing a folder of images in name order (see [`ReplayConfig`]).
pub struct ReplaySource {
    dir: PathBuf,
    files: Vec<PathBuf>,
    truth: Option<SynthManifest>,
    looping: bool,
    fps: f64,
    pacer: Pacer,
    next: usize,
    seq: u64,
    first_size: Option<(u32, u32)>,
}

impl ReplaySource {
    /// Lists the folder now, so a wrong path or an empty folder fails at start-up.
    pub fn open(cfg: &ReplayConfig) -> Result<ReplaySource> {
        let images = cfg.dir.join("images");
        let dir = if images.is_dir() {
            images
        } else {
            cfg.dir.clone()
        };
        let files = list_images(&dir)?;
        // A generated set knows its defects; a broken truth file is reported, not fatal.
        let truth = if cfg.dir.join("truth.json").is_file() {
            match load_truth(&cfg.dir) {
                Ok(t) => Some(t),
                Err(e) => {
                    log::warn!("replay: ignoring ground truth: {e}");
                    None
                }
            }
        } else {
            None
        };
        let first_size = files.first().and_then(|f| image::image_dimensions(f).ok());
        Ok(ReplaySource {
            dir,
            files,
            truth,
            looping: cfg.looping,
            fps: cfg.fps,
            pacer: Pacer::new(cfg.fps),
            next: 0,
            seq: 0,
            first_size,
        })
    }

    /// Number of images in one pass.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether the folder has no images (never, once opened: `open` refuses an empty folder).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// PNG and JPEG files of `dir`, sorted by name.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::io(
            dir,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no PNG or JPEG images in this folder",
            ),
        ));
    }
    Ok(files)
}

impl FrameSource for ReplaySource {
    fn describe(&self) -> String {
        format!(
            "replay of {} ({} images, {} fps{}{})",
            self.dir.display(),
            self.files.len(),
            if self.fps > 0.0 {
                self.fps.to_string()
            } else {
                "max".into()
            },
            if self.looping { ", looping" } else { "" },
            if self.truth.is_some() {
                ", with ground truth"
            } else {
                ""
            }
        )
    }

    fn frame_size(&self) -> Option<(u32, u32)> {
        self.first_size
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<Next> {
        if self.next >= self.files.len() {
            if !self.looping {
                return Ok(Next::End);
            }
            self.next = 0;
        }
        let path = &self.files[self.next];
        self.next += 1;
        let seq = self.seq;
        self.seq += 1;
        let captured = self.pacer.wait();
        let img = match image::open(path) {
            Ok(img) => img.into_rgb8(),
            Err(e) => {
                return Ok(Next::Skipped(format!(
                    "{}: cannot decode image: {e}",
                    path.display()
                )));
            }
        };
        frame.reset(img.width(), img.height());
        frame.rgb.copy_from_slice(img.as_raw());
        frame.seq = seq;
        frame.captured = captured;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default();
        frame.name.push_str(&stem);
        frame.truth = self
            .truth
            .as_ref()
            .and_then(|t| t.frames.get(stem.as_ref()).cloned());
        Ok(Next::Frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::RgbImage;

    fn write_png(dir: &Path, name: &str, v: u8) {
        RgbImage::from_pixel(8, 6, image::Rgb([v, v, v]))
            .save(dir.join(name))
            .expect("write png");
    }

    #[test]
    fn plays_in_name_order_skips_corrupt_files_and_loops() {
        let tmp = tempfile::tempdir().expect("tempdir");
        write_png(tmp.path(), "b.png", 2);
        write_png(tmp.path(), "a.png", 1);
        std::fs::write(tmp.path().join("c.png"), b"not a png").expect("write");
        std::fs::write(tmp.path().join("notes.txt"), b"ignored").expect("write");
        let cfg = ReplayConfig {
            dir: tmp.path().to_path_buf(),
            fps: 0.0,
            looping: true,
        };
        let mut src = ReplaySource::open(&cfg).expect("open");
        assert_eq!(src.len(), 3);
        assert_eq!(src.frame_size(), Some((8, 6)));
        let mut f = Frame::with_capacity(8, 6);
        let mut seen = Vec::new();
        for _ in 0..4 {
            match src.next_frame(&mut f).expect("no source error") {
                Next::Frame => seen.push(format!("{}:{}:{}", f.seq, f.name, f.rgb[0])),
                Next::Skipped(why) => {
                    assert!(why.contains("c.png"), "{why}");
                    seen.push("skip".into());
                }
                Next::End => seen.push("end".into()),
            }
        }
        assert_eq!(seen, ["0:a:1", "1:b:2", "skip", "3:a:1"]);
    }

    #[test]
    fn without_loop_the_stream_ends() {
        let tmp = tempfile::tempdir().expect("tempdir");
        write_png(tmp.path(), "a.png", 1);
        let cfg = ReplayConfig {
            dir: tmp.path().to_path_buf(),
            fps: 0.0,
            looping: false,
        };
        let mut src = ReplaySource::open(&cfg).expect("open");
        let mut f = Frame::with_capacity(8, 6);
        assert_eq!(src.next_frame(&mut f).expect("frame"), Next::Frame);
        assert_eq!(src.next_frame(&mut f).expect("end"), Next::End);
    }

    #[test]
    fn empty_or_missing_folder_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cfg = ReplayConfig {
            dir: tmp.path().to_path_buf(),
            ..ReplayConfig::default()
        };
        let e = ReplaySource::open(&cfg)
            .err()
            .expect("empty folder refused");
        assert!(e.to_string().contains("no PNG or JPEG"), "{e}");
        let cfg = ReplayConfig {
            dir: tmp.path().join("missing"),
            ..ReplayConfig::default()
        };
        let e = ReplaySource::open(&cfg)
            .err()
            .expect("missing folder refused");
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
