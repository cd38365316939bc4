//! A camera buffer of any size and content, converted as the V4L2 source converts YUYV, grey
//! and MJPEG: the first bytes pick the format and the frame size the driver claimed.
#![no_main]
use contextrast::capture::convert::{grey_to_rgb, mjpeg_to_rgb, yuyv_to_rgb};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [format, w, h, rest @ ..] = data else {
        return;
    };
    let (w, h) = (u32::from(*w) * 8, u32::from(*h) * 8);
    let mut dst = vec![0u8; w as usize * h as usize * 3];
    let _ = match format % 3 {
        0 => yuyv_to_rgb(rest, w, h, &mut dst),
        1 => grey_to_rgb(rest, w, h, &mut dst),
        _ => mjpeg_to_rgb(rest, w, h, &mut dst),
    };
});
