use super::*;
use image::ImageEncoder;
use image::codecs::jpeg::JpegEncoder;

/// The BT.601 limited-range formula in f64, the reference for the integer path.
fn reference(y: u8, u: u8, v: u8) -> [f64; 3] {
    let c = 255.0 / 219.0 * (f64::from(y) - 16.0);
    let d = f64::from(u) - 128.0;
    let e = f64::from(v) - 128.0;
    let kr = 0.299;
    let kb = 0.114;
    let kg = 1.0 - kr - kb;
    let s = 255.0 / 224.0;
    let r = c + s * 2.0 * (1.0 - kr) * e;
    let g = c - s * 2.0 * (1.0 - kb) * kb / kg * d - s * 2.0 * (1.0 - kr) * kr / kg * e;
    let b = c + s * 2.0 * (1.0 - kb) * d;
    [r, g, b].map(|x| x.round().clamp(0.0, 255.0))
}

#[test]
fn yuyv_mid_grey_is_130() {
    // Y=128 limited range: (128−16)·255/219 = 130.4 → 130 on every channel.
    let src = [128, 128, 128, 128];
    let mut dst = [0u8; 6];
    yuyv_to_rgb(&src, 2, 1, &mut dst).unwrap();
    assert_eq!(dst, [130; 6]);
}

#[test]
fn yuyv_black_white_and_clipping() {
    // Black (Y=16), white (Y=235), and saturated chroma that must clip, not wrap.
    let src = [16, 128, 235, 128, 255, 255, 0, 255];
    let mut dst = [0u8; 12];
    yuyv_to_rgb(&src, 4, 1, &mut dst).unwrap();
    assert_eq!(&dst[..6], &[0, 0, 0, 255, 255, 255]);
    // Y=255, U=V=255: R and B clip high; Y=0, U=V=255: G clips low.
    assert_eq!(&dst[6..9], &[255, 125, 255]);
    assert_eq!(&dst[9..], &[184, 0, 238]);
}

#[test]
fn yuyv_matches_f64_formula_within_one() {
    let mut worst = 0.0f64;
    for y in (0..=255u8).step_by(5) {
        for u in (0..=255u8).step_by(15) {
            for v in (0..=255u8).step_by(15) {
                let mut dst = [0u8; 6];
                yuyv_to_rgb(&[y, u, y, v], 2, 1, &mut dst).unwrap();
                let want = reference(y, u, v);
                for c in 0..3 {
                    let err = (f64::from(dst[c]) - want[c]).abs();
                    worst = worst.max(err);
                    assert!(
                        err <= 1.0,
                        "Y{y} U{u} V{v} ch{c}: {} vs {}",
                        dst[c],
                        want[c]
                    );
                    assert_eq!(dst[c], dst[c + 3]);
                }
            }
        }
    }
    assert!(worst <= 1.0);
}

#[test]
fn yuyv_shares_chroma_and_honours_stride() {
    // 2x2 image, rows padded to 6 bytes; padding bytes are garbage that must be ignored.
    let src = [
        81, 90, 145, 240, 0xEE, 0xEE, // row 0: Y0=81 Y1=145, U=90 V=240
        41, 240, 210, 110, // row 1: Y0=41 Y1=210, U=240 V=110
    ];
    let mut dst = [0u8; 12];
    yuyv_to_rgb_strided(&src, 2, 2, 6, &mut dst).unwrap();
    for (px, (y, u, v)) in [
        (81, 90, 240),
        (145, 90, 240),
        (41, 240, 110),
        (210, 240, 110),
    ]
    .into_iter()
    .enumerate()
    {
        let want = reference(y, u, v);
        for c in 0..3 {
            let got = f64::from(dst[px * 3 + c]);
            assert!((got - want[c]).abs() <= 1.0, "pixel {px} ch{c}");
        }
    }
}

#[test]
fn short_or_mismatched_buffers_error() {
    let mut dst = vec![0u8; 4 * 2 * 3];
    let e = yuyv_to_rgb(&[0u8; 15], 4, 2, &mut dst).unwrap_err();
    assert!(e.contains("truncated"), "{e}");
    assert!(yuyv_to_rgb(&[0u8; 16], 4, 2, &mut dst[..21]).is_err());
    assert!(yuyv_to_rgb(&[0u8; 12], 3, 2, &mut [0u8; 18]).is_err());
    assert!(grey_to_rgb(&[0u8; 7], 4, 2, &mut dst).is_err());
    assert!(yuyv_to_rgb_strided(&[0u8; 16], 4, 2, 6, &mut dst).is_err());
}

#[test]
fn grey_replicates_levels() {
    let src = [0, 7, 128, 255, 9, 9];
    let mut dst = [0u8; 12];
    grey_to_rgb_strided(&src, 2, 2, 3, &mut dst).unwrap();
    assert_eq!(dst, [0, 0, 0, 7, 7, 7, 255, 255, 255, 9, 9, 9]);
}

fn test_image(w: u32, h: u32) -> Vec<u8> {
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            // Smooth gradients: JPEG at high quality reproduces them closely.
            rgb.extend_from_slice(&[(x * 4) as u8, (y * 4) as u8, 128]);
        }
    }
    rgb
}

fn encode(rgb: &[u8], w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 95)
        .write_image(rgb, w, h, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

fn max_diff(a: &[u8], b: &[u8]) -> u8 {
    a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap()
}

#[test]
fn mjpeg_round_trips() {
    let (w, h) = (48, 32);
    let rgb = test_image(w, h);
    let jpeg = encode(&rgb, w, h);
    let mut dst = vec![0u8; rgb.len()];
    mjpeg_to_rgb(&jpeg, w, h, &mut dst).unwrap();
    assert!(
        max_diff(&rgb, &dst) <= 12,
        "max diff {}",
        max_diff(&rgb, &dst)
    );

    // Zero padding after EOI, as some cameras send, is accepted.
    let mut padded = jpeg.clone();
    padded.extend_from_slice(&[0; 100]);
    mjpeg_to_rgb(&padded, w, h, &mut dst).unwrap();
}

#[test]
fn mjpeg_without_huffman_tables_uses_the_standard_ones() {
    let (w, h) = (48, 32);
    let rgb = test_image(w, h);
    let jpeg = encode(&rgb, w, h);
    // Drop every DHT segment, as many UVC cameras do.
    let mut stripped = jpeg[..2].to_vec();
    let mut i = 2;
    loop {
        let marker = jpeg[i + 1];
        if marker == SOS {
            stripped.extend_from_slice(&jpeg[i..]);
            break;
        }
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        if marker != DHT {
            stripped.extend_from_slice(&jpeg[i..i + 2 + len]);
        }
        i += 2 + len;
    }
    assert!(stripped.len() < jpeg.len());
    assert_eq!(has_huffman_tables(&stripped), Some(false));
    let mut dst = vec![0u8; rgb.len()];
    mjpeg_to_rgb(&stripped, w, h, &mut dst).unwrap();
    assert!(max_diff(&rgb, &dst) <= 12);
}

#[test]
fn mjpeg_grey_jpeg_expands_to_rgb() {
    let (w, h) = (16, 8);
    let grey: Vec<u8> = (0..w * h).map(|i| (i * 2) as u8).collect();
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, 100)
        .write_image(&grey, w, h, image::ExtendedColorType::L8)
        .unwrap();
    let mut dst = vec![0u8; (w * h * 3) as usize];
    mjpeg_to_rgb(&jpeg, w, h, &mut dst).unwrap();
    for (g, px) in grey.iter().zip(dst.chunks_exact(3)) {
        assert!(px[0] == px[1] && px[1] == px[2]);
        assert!(g.abs_diff(px[0]) <= 8);
    }
}

#[test]
fn mjpeg_errors_on_corrupt_truncated_or_wrong_size() {
    let (w, h) = (48, 32);
    let rgb = test_image(w, h);
    let jpeg = encode(&rgb, w, h);
    let mut dst = vec![0u8; rgb.len()];

    let e = mjpeg_to_rgb(&jpeg[..jpeg.len() / 2], w, h, &mut dst).unwrap_err();
    assert!(e.contains("truncated"), "{e}");

    assert!(mjpeg_to_rgb(b"not a jpeg at all", w, h, &mut dst).is_err());
    assert!(mjpeg_to_rgb(&[], w, h, &mut dst).is_err());

    // Header intact, everything after SOI replaced by junk that still ends in EOI.
    let mut junk = vec![0xFF, SOI];
    junk.extend((0..500u32).map(|i| (i * 37 % 251) as u8));
    junk.extend_from_slice(&[0xFF, EOI]);
    assert!(mjpeg_to_rgb(&junk, w, h, &mut dst).is_err());

    let e = mjpeg_to_rgb(&jpeg, 32, 48, &mut dst).unwrap_err();
    assert!(e.contains("48x32"), "{e}");
}
