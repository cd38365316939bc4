//! The procedural production line of the training crate as a live source, ground truth attached:
//! the demo and the end-to-end tests measure detection recall against it.
use crate::Result;
use crate::capture::{Frame, FrameSource, Next, Pacer};
use contextrast_train::data::synth::{Variant, render};
use serde::Deserialize;

/// `[source.synthetic]` of a line config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    /// Stream seed; frames are a pure function of (seed, variant, index).
    pub seed: u64,
    /// `standard` or `shifted` (other lighting and material).
    pub variant: String,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frames per second; 0 = as fast as they can be rendered.
    pub fps: f64,
    /// Stop after this many frames; 0 = run until stopped.
    pub frames: u64,
    /// Index of the first frame rendered, to start at a known place of the stream.
    pub first_index: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            seed: 9001,
            variant: "standard".into(),
            width: 640,
            height: 480,
            fps: 10.0,
            frames: 0,
            first_index: 0,
        }
    }
}

/// Renders one frame of the line per call.
pub struct SyntheticSource {
    cfg: SyntheticConfig,
    variant: Variant,
    pacer: Pacer,
    seq: u64,
}

impl SyntheticSource {
    /// Fails only on a variant name it does not know (the config loader checks it first).
    pub fn new(cfg: &SyntheticConfig) -> std::result::Result<SyntheticSource, String> {
        let variant = Variant::parse(&cfg.variant)
            .ok_or_else(|| format!("unknown variant `{}` (standard or shifted)", cfg.variant))?;
        if cfg.width == 0 || cfg.height == 0 {
            return Err(format!("frame size {}x{} is empty", cfg.width, cfg.height));
        }
        Ok(SyntheticSource {
            cfg: cfg.clone(),
            variant,
            pacer: Pacer::new(cfg.fps),
            seq: 0,
        })
    }
}

impl FrameSource for SyntheticSource {
    fn describe(&self) -> String {
        format!(
            "synthetic line (seed {}, {}, {}x{}, {} fps)",
            self.cfg.seed,
            self.variant,
            self.cfg.width,
            self.cfg.height,
            if self.cfg.fps > 0.0 {
                self.cfg.fps.to_string()
            } else {
                "max".into()
            }
        )
    }

    fn frame_size(&self) -> Option<(u32, u32)> {
        Some((self.cfg.width, self.cfg.height))
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<Next> {
        if self.cfg.frames > 0 && self.seq >= self.cfg.frames {
            return Ok(Next::End);
        }
        let index = self.cfg.first_index + self.seq;
        let (img, _mask, truth) = render(
            self.cfg.seed,
            index,
            self.variant,
            self.cfg.width,
            self.cfg.height,
        );
        frame.captured = self.pacer.wait();
        frame.reset(self.cfg.width, self.cfg.height);
        frame.rgb.copy_from_slice(img.as_raw());
        frame.seq = self.seq;
        frame.truth = Some(truth);
        use std::fmt::Write;
        let _ = write!(frame.name, "synth-{}-{index:06}", self.cfg.seed);
        self.seq += 1;
        Ok(Next::Frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_match_the_generator_and_stop_at_the_count() {
        let cfg = SyntheticConfig {
            width: 96,
            height: 64,
            fps: 0.0,
            frames: 3,
            first_index: 5,
            ..SyntheticConfig::default()
        };
        let mut src = SyntheticSource::new(&cfg).expect("valid config");
        let mut f = Frame::with_capacity(96, 64);
        for i in 0..3 {
            assert_eq!(src.next_frame(&mut f).expect("frame"), Next::Frame);
            assert_eq!(f.seq, i);
            let (img, _, truth) = render(9001, 5 + i, Variant::Standard, 96, 64);
            assert_eq!(f.rgb, img.into_raw());
            assert_eq!(f.truth.as_ref(), Some(&truth));
        }
        assert_eq!(src.next_frame(&mut f).expect("end"), Next::End);
    }

    #[test]
    fn unknown_variant_is_refused() {
        let cfg = SyntheticConfig {
            variant: "purple".into(),
            ..SyntheticConfig::default()
        };
        let e = SyntheticSource::new(&cfg).err().expect("refused");
        assert!(e.contains("purple"), "{e}");
    }
}
