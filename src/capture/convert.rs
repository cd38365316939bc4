//! Camera pixel formats to RGB8. Kept apart from the V4L2 plumbing so the arithmetic is testable
//! without a camera. Every function writes into a caller-owned buffer (a pooled frame), so YUYV and
//! GREY cost no allocation per frame; errors are plain strings because the caller turns them into
//! a skipped frame, not a failure.
use image::ImageDecoder;
use image::codecs::jpeg::JpegDecoder;
use std::io::Cursor;

/// BT.601 limited-range coefficients scaled by 2^16 (1.164383, 1.596027, 0.391762, 0.812968,
/// 2.017232): 16 fractional bits keep every channel within ±1 of the exact f64 result.
const K_Y: i32 = 76_309;
const K_RV: i32 = 104_597;
const K_GU: i32 = 25_675;
const K_GV: i32 = 53_279;
const K_BU: i32 = 132_201;
const HALF: i32 = 1 << 15;

/// One BT.601 limited-range YCbCr sample to RGB, integer-only (cheap on the Jetson's ARM cores).
#[inline]
fn ycbcr_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = (i32::from(y) - 16) * K_Y + HALF;
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    let clamp = |x: i32| (x >> 16).clamp(0, 255) as u8;
    [
        clamp(c + K_RV * e),
        clamp(c - K_GU * d - K_GV * e),
        clamp(c + K_BU * d),
    ]
}

/// Checks `dst` holds exactly `w·h` RGB pixels and returns that byte count.
fn rgb_len(w: u32, h: u32, dst: &[u8]) -> Result<usize, String> {
    let n = w as usize * h as usize * 3;
    if dst.len() != n {
        return Err(format!(
            "output buffer holds {} bytes, {w}x{h} RGB needs {n}",
            dst.len()
        ));
    }
    Ok(n)
}

/// Checks a packed source of `w·h` pixels at `bpp` bytes each, rows `stride` bytes apart, fits in
/// `src`: a short buffer is a truncated frame.
fn check_src(src: &[u8], w: u32, h: u32, bpp: usize, stride: usize) -> Result<(), String> {
    let row = w as usize * bpp;
    if stride < row {
        return Err(format!("stride {stride} is below the row size {row}"));
    }
    // The last row needs no padding after it.
    let need = if h == 0 {
        0
    } else {
        stride * (h as usize - 1) + row
    };
    if src.len() < need {
        return Err(format!(
            "truncated frame: {} bytes, {w}x{h} needs {need}",
            src.len()
        ));
    }
    Ok(())
}

/// Packed YUYV 4:2:2 (BT.601, limited range, as UVC cameras send it) to RGB8.
pub fn yuyv_to_rgb(src: &[u8], w: u32, h: u32, dst: &mut [u8]) -> Result<(), String> {
    yuyv_to_rgb_strided(src, w, h, w as usize * 2, dst)
}

/// [`yuyv_to_rgb`] for rows `stride` bytes apart (drivers may pad each row).
pub fn yuyv_to_rgb_strided(
    src: &[u8],
    w: u32,
    h: u32,
    stride: usize,
    dst: &mut [u8],
) -> Result<(), String> {
    if !w.is_multiple_of(2) {
        return Err(format!("YUYV width {w} is odd"));
    }
    rgb_len(w, h, dst)?;
    check_src(src, w, h, 2, stride)?;
    if w == 0 || h == 0 {
        return Ok(());
    }
    let row_in = w as usize * 2;
    let row_out = w as usize * 3;
    for (src_row, dst_row) in src
        .chunks(stride)
        .zip(dst.chunks_exact_mut(row_out))
        .take(h as usize)
    {
        // Each 4-byte group Y0 U Y1 V is two pixels sharing one chroma pair.
        for (p, o) in src_row[..row_in]
            .chunks_exact(4)
            .zip(dst_row.chunks_exact_mut(6))
        {
            o[..3].copy_from_slice(&ycbcr_to_rgb(p[0], p[1], p[3]));
            o[3..].copy_from_slice(&ycbcr_to_rgb(p[2], p[1], p[3]));
        }
    }
    Ok(())
}

/// 8-bit greyscale (monochrome sensors, full range) to RGB8 by copying the level to all channels.
pub fn grey_to_rgb(src: &[u8], w: u32, h: u32, dst: &mut [u8]) -> Result<(), String> {
    grey_to_rgb_strided(src, w, h, w as usize, dst)
}

/// [`grey_to_rgb`] for rows `stride` bytes apart.
pub fn grey_to_rgb_strided(
    src: &[u8],
    w: u32,
    h: u32,
    stride: usize,
    dst: &mut [u8],
) -> Result<(), String> {
    rgb_len(w, h, dst)?;
    check_src(src, w, h, 1, stride)?;
    if w == 0 || h == 0 {
        return Ok(());
    }
    let row_out = w as usize * 3;
    for (src_row, dst_row) in src
        .chunks(stride)
        .zip(dst.chunks_exact_mut(row_out))
        .take(h as usize)
    {
        for (&g, o) in src_row[..w as usize]
            .iter()
            .zip(dst_row.chunks_exact_mut(3))
        {
            o.fill(g);
        }
    }
    Ok(())
}

/// JPEG markers this module looks for.
const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const DHT: u8 = 0xC4;
const APP0: u8 = 0xE0;

/// An APP0 "AVI1" segment: it tells the decoder to use the standard MJPEG Huffman tables
/// (JPEG Annex K.3), which many UVC cameras leave out of every frame to save bandwidth.
const AVI1_APP0: [u8; 9] = [0xFF, APP0, 0x00, 0x07, b'A', b'V', b'I', b'1', 0x00];

/// Whether the header segments (up to start-of-scan) carry Huffman tables or an AVI1 marker.
/// Returns `None` when the segment chain is malformed; the decoder will then report the problem.
fn has_huffman_tables(jpeg: &[u8]) -> Option<bool> {
    let mut i = 2; // past SOI
    loop {
        let marker = *jpeg.get(i + 1)?;
        if jpeg[i] != 0xFF {
            return None;
        }
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        if marker == SOS {
            return Some(false);
        }
        let len = usize::from(u16::from_be_bytes([*jpeg.get(i + 2)?, *jpeg.get(i + 3)?]));
        if marker == DHT {
            return Some(true);
        }
        if marker == APP0 && jpeg.get(i + 4..i + 9) == Some(b"AVI1\0".as_slice()) {
            return Some(true);
        }
        i += 2 + len;
    }
}

/// A baseline JPEG (one MJPEG frame) to RGB8. The frame must decode to exactly `w`×`h`.
///
/// Rejects frames that do not end in an EOI marker: the decoder would otherwise fill the missing
/// rows with grey, and a half-grey frame looks like a defect to the model.
pub fn mjpeg_to_rgb(src: &[u8], w: u32, h: u32, dst: &mut [u8]) -> Result<(), String> {
    let n = rgb_len(w, h, dst)?;
    if src.len() < 4 || src[0] != 0xFF || src[1] != SOI {
        return Err("not a JPEG frame (no start-of-image marker)".into());
    }
    // Cameras may pad a frame with zeros after EOI.
    let end = src.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    if end < 2 || src[end - 2] != 0xFF || src[end - 1] != EOI {
        return Err("truncated JPEG frame (no end-of-image marker)".into());
    }
    let src = &src[..end];
    let patched;
    let jpeg = if has_huffman_tables(src) == Some(false) {
        patched = [&src[..2], &AVI1_APP0[..], &src[2..]].concat();
        &patched[..]
    } else {
        src
    };

    let decoder = JpegDecoder::new(Cursor::new(jpeg)).map_err(|e| format!("corrupt JPEG: {e}"))?;
    let (jw, jh) = decoder.dimensions();
    if (jw, jh) != (w, h) {
        return Err(format!("JPEG is {jw}x{jh}, expected {w}x{h}"));
    }
    match decoder.color_type() {
        image::ColorType::Rgb8 => decoder
            .read_image(dst)
            .map_err(|e| format!("corrupt JPEG: {e}")),
        image::ColorType::L8 => {
            let mut grey = vec![0u8; n / 3];
            decoder
                .read_image(&mut grey)
                .map_err(|e| format!("corrupt JPEG: {e}"))?;
            grey_to_rgb(&grey, w, h, dst)
        }
        other => Err(format!("unsupported JPEG colour type {other:?}")),
    }
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
