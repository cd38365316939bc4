//! Frames held in memory, played in a cycle as fast as they are taken: the pipeline benchmark's
//! source, so what is measured is the pipeline, not PNG decoding or scene rendering.
use crate::Result;
use crate::capture::{Frame, FrameSource, Next};
use std::time::Instant;

/// A [`FrameSource`] cycling through RGB frames held in memory, unpaced, for a fixed count.
pub struct MemorySource {
    width: u32,
    height: u32,
    frames: Vec<Vec<u8>>,
    count: u64,
    seq: u64,
}

impl MemorySource {
    /// `frames`: RGB8 buffers of `width`×`height`; `count` frames are produced in all.
    pub fn new(
        width: u32,
        height: u32,
        frames: Vec<Vec<u8>>,
        count: u64,
    ) -> std::result::Result<MemorySource, String> {
        let n = width as usize * height as usize * 3;
        if frames.is_empty() || frames.iter().any(|f| f.len() != n) {
            return Err(format!(
                "need at least one {width}x{height} RGB frame of {n} bytes"
            ));
        }
        Ok(MemorySource {
            width,
            height,
            frames,
            count,
            seq: 0,
        })
    }
}

impl FrameSource for MemorySource {
    fn describe(&self) -> String {
        format!(
            "{} in-memory frames of {}x{}, cycled, unpaced",
            self.frames.len(),
            self.width,
            self.height
        )
    }

    fn frame_size(&self) -> Option<(u32, u32)> {
        Some((self.width, self.height))
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<Next> {
        if self.seq >= self.count {
            return Ok(Next::End);
        }
        frame.reset(self.width, self.height);
        frame
            .rgb
            .copy_from_slice(&self.frames[(self.seq % self.frames.len() as u64) as usize]);
        frame.seq = self.seq;
        frame.captured = Instant::now();
        self.seq += 1;
        Ok(Next::Frame)
    }
}
