//! Tests of the dataset format: round trip with the generator, and one test per error case,
//! each checking that the message names the offending file.
use std::path::Path;

use image::{GrayImage, RgbImage};

use super::dataset::Dataset;
use super::synth::{Variant, generate, load_truth, render};

const W: u32 = 40;
const H: u32 = 30;

fn make_set(dir: &Path, n: usize) {
    generate(dir, n, 9, Variant::Standard, W, H).unwrap();
}

fn open_err(dir: &Path) -> String {
    Dataset::open(dir).unwrap_err().to_string()
}

#[test]
fn generated_set_round_trips_with_an_exact_split() {
    let dir = tempfile::tempdir().unwrap();
    make_set(dir.path(), 10);
    let ds = Dataset::open(dir.path()).unwrap();
    assert_eq!(ds.len(), 10);
    assert_eq!((ds.train.len(), ds.val.len()), (8, 2));
    assert!(ds.val.iter().all(|i| !ds.train.contains(i)));
    assert_eq!(
        ds.classes.names(),
        ["belt", "part", "scratch", "pit", "stain"]
    );
    let labelled: u64 = ds.class_pixels.iter().sum();
    assert!(labelled <= 10 * u64::from(W * H) && labelled > 9 * u64::from(W * H));
    let truth = load_truth(dir.path()).unwrap();
    assert_eq!(truth.frames.len(), 10);
    // What is on disk is exactly what `render` produced.
    for (i, item) in ds.items.iter().enumerate() {
        let index: u64 = item.name.trim_start_matches("std_").parse().unwrap();
        let (img, mask, t) = render(9, index, Variant::Standard, W, H);
        let (img2, mask2) = ds.load_item(i).unwrap();
        assert_eq!(img2.as_raw(), img.as_raw());
        assert_eq!(&mask2, mask.as_raw());
        assert_eq!(truth.frames[&item.name], t);
    }
    // A second run into the same folder is refused rather than mixing sets.
    let msg = generate(dir.path(), 3, 1, Variant::Shifted, W, H)
        .unwrap_err()
        .to_string();
    contextrast_model::testing::assert_mentions(&msg, &["images", "empty folder"]);
}

#[test]
fn without_lists_every_item_is_in_both_and_one_list_implies_the_other() {
    let dir = tempfile::tempdir().unwrap();
    make_set(dir.path(), 4);
    std::fs::remove_file(dir.path().join("train.txt")).unwrap();
    std::fs::remove_file(dir.path().join("val.txt")).unwrap();
    let ds = Dataset::open(dir.path()).unwrap();
    assert_eq!(
        (ds.train.clone(), ds.val.clone()),
        (vec![0, 1, 2, 3], vec![0, 1, 2, 3])
    );
    std::fs::write(
        dir.path().join("train.txt"),
        "# comment\nstd_000001\n\nimages/std_000003.png\n",
    )
    .unwrap();
    let ds = Dataset::open(dir.path()).unwrap();
    assert_eq!((ds.train.clone(), ds.val.clone()), (vec![1, 3], vec![0, 2]));
}

#[test]
fn jpeg_images_pair_with_png_masks() {
    let dir = tempfile::tempdir().unwrap();
    make_set(dir.path(), 2);
    let png = dir.path().join("images/std_000000.png");
    let img = image::open(&png).unwrap();
    img.save(dir.path().join("images/std_000000.jpg")).unwrap();
    std::fs::remove_file(&png).unwrap();
    let ds = Dataset::open(dir.path()).unwrap();
    assert!(ds.items[0].image.ends_with("std_000000.jpg"));
    let (rgb, mask) = ds.load_item(0).unwrap();
    assert_eq!(
        (rgb.width(), rgb.height(), mask.len()),
        (W, H, (W * H) as usize)
    );
}

#[test]
fn size_mismatch_names_the_mask() {
    let dir = tempfile::tempdir().unwrap();
    make_set(dir.path(), 3);
    GrayImage::new(W + 1, H)
        .save(dir.path().join("masks/std_000001.png"))
        .unwrap();
    let msg = open_err(dir.path());
    contextrast_model::testing::assert_mentions(&msg, &["std_000001.png", "41x30", "40x30"]);
}

#[test]
fn unknown_class_id_names_the_mask_value_and_pixel() {
    let dir = tempfile::tempdir().unwrap();
    make_set(dir.path(), 3);
    let mut m = GrayImage::new(W, H);
    m.put_pixel(7, 5, image::Luma([9]));
    m.put_pixel(8, 5, image::Luma([255]));
    m.save(dir.path().join("masks/std_000002.png")).unwrap();
    let msg = open_err(dir.path());
    assert!(
        msg.contains("std_000002.png") && msg.contains("class id 9") && msg.contains("(7, 5)"),
        "{msg}"
    );
}

#[test]
fn corrupt_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    make_set(dir.path(), 3);
    std::fs::write(dir.path().join("masks/std_000000.png"), b"not a png at all").unwrap();
    let msg = open_err(dir.path());
    assert!(msg.contains("masks/std_000000.png"), "{msg}");

    let dir = tempfile::tempdir().unwrap();
    make_set(dir.path(), 3);
    std::fs::write(dir.path().join("images/std_000001.png"), b"garbage").unwrap();
    let msg = open_err(dir.path());
    assert!(msg.contains("images/std_000001.png"), "{msg}");

    // A truncated image passes the header check in `open` and fails in `load_item`.
    let dir = tempfile::tempdir().unwrap();
    make_set(dir.path(), 3);
    let ds = Dataset::open(dir.path()).unwrap();
    let p = dir.path().join("images/std_000002.png");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let msg = ds.load_item(2).unwrap_err().to_string();
    assert!(msg.contains("images/std_000002.png"), "{msg}");
}

#[test]
fn colour_or_sixteen_bit_masks_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    make_set(dir.path(), 2);
    RgbImage::new(W, H)
        .save(dir.path().join("masks/std_000001.png"))
        .unwrap();
    let msg = open_err(dir.path());
    contextrast_model::testing::assert_mentions(
        &msg,
        &["std_000001.png", "8-bit single-channel", "Rgb8"],
    );
    image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::new(W, H)
        .save(dir.path().join("masks/std_000001.png"))
        .unwrap();
    let msg = open_err(dir.path());
    contextrast_model::testing::assert_mentions(&msg, &["std_000001.png", "L16"]);
}

#[test]
fn image_without_mask_is_named() {
    let dir = tempfile::tempdir().unwrap();
    make_set(dir.path(), 3);
    std::fs::remove_file(dir.path().join("masks/std_000002.png")).unwrap();
    let msg = open_err(dir.path());
    contextrast_model::testing::assert_mentions(&msg, &["images/std_000002.png", "has no mask"]);
}

#[test]
fn empty_sets_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    make_set(dir.path(), 2);
    std::fs::write(dir.path().join("val.txt"), "\n# nothing\n").unwrap();
    let msg = open_err(dir.path());
    contextrast_model::testing::assert_mentions(&msg, &["val.txt", "empty set"]);
    for f in ["std_000000", "std_000001"] {
        std::fs::remove_file(dir.path().join(format!("images/{f}.png"))).unwrap();
    }
    let msg = open_err(dir.path());
    assert!(msg.contains("images") && msg.contains("empty set"), "{msg}");
}

#[test]
fn unknown_name_in_a_list_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    make_set(dir.path(), 3);
    std::fs::write(dir.path().join("train.txt"), "std_000000\nstd_000042\n").unwrap();
    let msg = open_err(dir.path());
    contextrast_model::testing::assert_mentions(&msg, &["train.txt", "line 2", "std_000042"]);
}

#[test]
fn missing_classes_toml_is_named() {
    let dir = tempfile::tempdir().unwrap();
    make_set(dir.path(), 1);
    std::fs::remove_file(dir.path().join("classes.toml")).unwrap();
    let msg = open_err(dir.path());
    assert!(msg.contains("classes.toml"), "{msg}");
}
