//! Where frames come from: a camera (V4L2), a folder of images (replay), or the procedural line
//! (synthetic, with ground truth). The pipeline sees only [`FrameSource`], so every downstream
//! stage is exercised the same way on the bench as on the line.
pub mod convert;
pub mod memory;
mod pace;
pub mod replay;
pub mod synthetic;
pub mod v4l;

pub use pace::Pacer;

use crate::Result;
use contextrast_train::data::synth::FrameTruth;
use std::time::Instant;

/// One captured frame. Buffers are reused: a source overwrites `rgb` and `name` in place, so a
/// pooled frame costs no allocation once its capacity fits the camera's size.
#[derive(Debug)]
pub struct Frame {
    /// Capture order, from 0, never reused within a run (skipped frames keep their number).
    pub seq: u64,
    /// Monotonic capture time: reject pulses are timed from it.
    pub captured: Instant,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// RGB8, row-major, `width · height · 3` bytes.
    pub rgb: Vec<u8>,
    /// Where the frame came from (a file name, a camera buffer index): for events and errors.
    pub name: String,
    /// Ground truth, when the source knows it (synthetic line, replay of a generated set).
    pub truth: Option<FrameTruth>,
    /// Belt encoder count read as the frame was delivered (encoder-timed rejects).
    pub position: Option<u64>,
}

impl Frame {
    /// An empty frame whose buffer already fits `width`×`height`.
    pub fn with_capacity(width: u32, height: u32) -> Frame {
        Frame {
            seq: 0,
            captured: Instant::now(),
            width: 0,
            height: 0,
            rgb: Vec::with_capacity(width as usize * height as usize * 3),
            name: String::with_capacity(64),
            truth: None,
            position: None,
        }
    }

    /// Resizes the buffer for `width`×`height` (no allocation when capacity suffices).
    pub fn reset(&mut self, width: u32, height: u32) {
        self.width = width;
        self.height = height;
        self.rgb.resize(width as usize * height as usize * 3, 0);
        self.name.clear();
        self.truth = None;
        self.position = None;
    }
}

/// What a source produced on one call.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// `frame` holds a new frame.
    Frame,
    /// This frame was unreadable (reason given); it is counted and the stream goes on.
    Skipped(String),
    /// The stream has ended (a replay folder without looping, a synthetic run of fixed length).
    End,
}

/// A stream of frames. `next_frame` blocks until a frame is due (a camera's frame period, a
/// replay's rate) and fills `frame`, setting `seq` and `captured`. An `Err` means the source itself
/// failed (camera unplugged); the caller decides whether to reopen it.
pub trait FrameSource: Send {
    /// A short description for logs: device and mode, folder, seed.
    fn describe(&self) -> String;
    /// The frame size, when known before the first frame (so the model can be planned for it
    /// before the line starts instead of on the first part).
    fn frame_size(&self) -> Option<(u32, u32)> {
        None
    }
    /// Blocks until the next frame is due and fills `frame`, or says it was skipped or the end.
    fn next_frame(&mut self, frame: &mut Frame) -> Result<Next>;
}
