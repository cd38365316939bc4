//! Where the model's output map sits in the frame: shared by preprocessing (which lays the
//! frame into the input), upsampling and the decision (which map pixels back to frame pixels).

/// Geometry between the model's output map and the frame.
///
/// The map is `map_w x map_h`; only its top-left `content_w x content_h` region
/// shows the frame (the rest is letterbox padding and is ignored). Content pixel
/// `(x, y)` covers frame pixels `[x*frame_w/content_w, (x+1)*frame_w/content_w)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MapGeom {
    /// Width of the model's output map, padding included.
    pub map_w: usize,
    /// Height of the model's output map, padding included.
    pub map_h: usize,
    /// Width of the map's top-left region that shows the frame.
    pub content_w: usize,
    /// Height of the map's top-left region that shows the frame.
    pub content_h: usize,
    /// Frame width in pixels.
    pub frame_w: u32,
    /// Frame height in pixels.
    pub frame_h: u32,
}

#[cfg(test)]
impl MapGeom {
    /// A `w`×`h` map without padding over a frame of the same size, for tests.
    pub(crate) fn unscaled(w: usize, h: usize) -> MapGeom {
        MapGeom {
            map_w: w,
            map_h: h,
            content_w: w,
            content_h: h,
            frame_w: w as u32,
            frame_h: h as u32,
        }
    }
}
