//! Tests of the CVAT import: small exports built in a temp dir, exact ids per pixel, and one
//! test per error case checking that the message names what to fix.
use std::path::Path;

use image::{Rgb, RgbImage};

use super::*;
use crate::data::dataset::Dataset;

const LABELMAP: &str = "# label:color_rgb:parts:actions\n\
                        background:0,0,0::\n\
                        Part:0,0,255::\n\
                        Kratzer:255,0,0::\n\
                        STAIN:0,255,0::\n";

const BG: [u8; 3] = [0, 0, 0];
const PART: [u8; 3] = [0, 0, 255];
const KRATZER: [u8; 3] = [255, 0, 0];
const STAIN: [u8; 3] = [0, 255, 0];

/// The synthetic classes: belt 0, part 1, scratch 2, pit 3, stain 4.
fn classes() -> Classes {
    Classes::synthetic_default()
}

fn names() -> NameMap {
    [("Kratzer", "scratch"), ("background", "belt")]
        .into_iter()
        .collect()
}

/// A 4x3 colour mask: row 0 background, row 1 part, row 2 [kratzer, kratzer, stain, stain].
fn colour_mask() -> RgbImage {
    let rows = [[BG; 4], [PART; 4], [KRATZER, KRATZER, STAIN, STAIN]];
    RgbImage::from_fn(4, 3, |x, y| Rgb(rows[y as usize][x as usize]))
}

const EXPECTED_IDS: [u8; 12] = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 4, 4];

fn photo(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| Rgb([(x * 40) as u8, (y * 60) as u8, 128]))
}

/// Writes a CVAT export with `labelmap` and, per name, a colour mask and an image (`ext`).
fn write_export(dir: &Path, labelmap: &str, items: &[(&str, RgbImage, RgbImage, &str)]) {
    std::fs::create_dir_all(dir.join("SegmentationClass")).unwrap();
    std::fs::create_dir_all(dir.join("JPEGImages")).unwrap();
    std::fs::create_dir_all(dir.join("SegmentationObject")).unwrap();
    std::fs::write(dir.join("labelmap.txt"), labelmap).unwrap();
    for (name, mask, img, ext) in items {
        mask.save(dir.join("SegmentationClass").join(format!("{name}.png")))
            .unwrap();
        img.save(dir.join("JPEGImages").join(format!("{name}.{ext}")))
            .unwrap();
    }
}

fn simple_export(dir: &Path, names: &[&str]) {
    let items: Vec<_> = names
        .iter()
        .map(|n| (*n, colour_mask(), photo(4, 3), "jpg"))
        .collect();
    write_export(dir, LABELMAP, &items);
}

fn read_ids(path: &Path) -> Vec<u8> {
    image::open(path).unwrap().into_luma8().into_raw()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn err_of(src: &Path, out: &Path, names: &NameMap) -> String {
    import_cvat(src, &classes(), out, names)
        .unwrap_err()
        .to_string()
}

#[test]
fn imports_exact_ids_copies_image_bytes_and_opens_as_a_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let (src, out) = (dir.path().join("cvat"), dir.path().join("set"));
    write_export(
        &src,
        LABELMAP,
        &[
            ("a", colour_mask(), photo(4, 3), "jpg"),
            ("b", colour_mask(), photo(4, 3), "png"),
        ],
    );
    let report = import_cvat(&src, &classes(), &out, &names()).unwrap();
    assert_eq!(report.images, 2);
    assert_eq!(report.pixels_per_class, [8, 8, 4, 0, 4]);
    assert_eq!(report.ignored_pixels, 0);
    for (name, ext) in [("a", "jpg"), ("b", "png")] {
        assert_eq!(
            read_ids(&out.join(format!("masks/{name}.png"))),
            EXPECTED_IDS
        );
        let copied = std::fs::read(out.join(format!("images/{name}.{ext}"))).unwrap();
        let original = std::fs::read(src.join(format!("JPEGImages/{name}.{ext}"))).unwrap();
        assert_eq!(
            copied, original,
            "{name}.{ext} must be copied byte for byte"
        );
    }
    assert_eq!(lines(&out.join("train.txt")), ["a", "b"]);
    assert!(!out.join("val.txt").exists());
    assert_eq!(Classes::load(out.join("classes.toml")).unwrap(), classes());
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
    let ds = Dataset::open(&out).unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.class_pixels, report.pixels_per_class);
}

#[test]
fn label_names_match_case_insensitively_after_trimming() {
    let dir = tempfile::tempdir().unwrap();
    let (src, out) = (dir.path().join("cvat"), dir.path().join("set"));
    let labelmap = "BELT:0,0,0::\n  part :0,0,255::\n Scratch:255,0,0::\nStain:0,255,0::\n";
    write_export(&src, labelmap, &[("a", colour_mask(), photo(4, 3), "jpg")]);
    import_cvat(&src, &classes(), &out, &NameMap::new()).unwrap();
    assert_eq!(read_ids(&out.join("masks/a.png")), EXPECTED_IDS);
}

#[test]
fn mapping_wins_and_ignore_becomes_255() {
    let dir = tempfile::tempdir().unwrap();
    let (src, out) = (dir.path().join("cvat"), dir.path().join("set"));
    write_export(&src, LABELMAP, &[("a", colour_mask(), photo(4, 3), "jpg")]);
    // "stain" exists as a class, but the explicit mapping to ignore takes precedence.
    let mut map = names();
    map.insert(" stain ", "IGNORE").insert("part", "Pit");
    let report = import_cvat(&src, &classes(), &out, &map).unwrap();
    assert_eq!(
        read_ids(&out.join("masks/a.png")),
        [0, 0, 0, 0, 3, 3, 3, 3, 2, 2, 255, 255]
    );
    assert_eq!(report.pixels_per_class, [4, 0, 2, 4, 0]);
    assert_eq!(report.ignored_pixels, 2);
    Dataset::open(&out).unwrap();
}

#[test]
fn unknown_labels_are_all_listed_with_the_model_classes_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (src, out) = (dir.path().join("cvat"), dir.path().join("set"));
    let labelmap = format!("{LABELMAP}Delle:9,9,9::\n");
    write_export(&src, &labelmap, &[("a", colour_mask(), photo(4, 3), "jpg")]);
    let msg = err_of(&src, &out, &NameMap::new());
    for want in [
        "labelmap.txt",
        "\"background\"",
        "\"Kratzer\"",
        "\"Delle\"",
        "belt, part, scratch, pit, stain",
        "ignore",
    ] {
        assert!(msg.contains(want), "{want:?} missing in: {msg}");
    }
    assert!(!msg.contains("\"Part\""), "Part matches a class: {msg}");
    assert!(!out.exists(), "a failed import must not create the dataset");

    let mut bad = names();
    bad.insert("Delle", "dent");
    let msg = err_of(&src, &out, &bad);
    contextrast_model::testing::assert_mentions(&msg, &["\"dent\"", "labelmap.txt"]);
}

#[test]
fn unknown_colour_names_the_mask_the_colour_and_its_pixel_count() {
    let dir = tempfile::tempdir().unwrap();
    let (src, out) = (dir.path().join("cvat"), dir.path().join("set"));
    let mut mask = colour_mask();
    for x in 0..3 {
        mask.put_pixel(x, 0, Rgb([1, 2, 3]));
    }
    write_export(
        &src,
        LABELMAP,
        &[
            ("a", colour_mask(), photo(4, 3), "jpg"),
            ("odd", mask, photo(4, 3), "jpg"),
        ],
    );
    let msg = err_of(&src, &out, &names());
    for want in ["odd.png", "RGB(1,2,3)", "3 pixel", "labelmap.txt"] {
        assert!(msg.contains(want), "{want:?} missing in: {msg}");
    }
    assert!(!out.join("images").exists() && !out.join("train.txt").exists());
}

#[test]
fn size_mismatch_names_mask_and_image() {
    let dir = tempfile::tempdir().unwrap();
    let (src, out) = (dir.path().join("cvat"), dir.path().join("set"));
    write_export(&src, LABELMAP, &[("a", colour_mask(), photo(5, 3), "jpg")]);
    let msg = err_of(&src, &out, &names());
    for want in ["a.png", "a.jpg", "4x3", "5x3"] {
        assert!(msg.contains(want), "{want:?} missing in: {msg}");
    }
}

#[test]
fn mask_without_image_and_image_without_mask_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (src, out) = (dir.path().join("cvat"), dir.path().join("set"));
    simple_export(&src, &["a"]);
    colour_mask()
        .save(src.join("SegmentationClass/lonely.png"))
        .unwrap();
    let msg = err_of(&src, &out, &names());
    assert!(msg.contains("lonely") && msg.contains("no image"), "{msg}");

    std::fs::remove_file(src.join("SegmentationClass/lonely.png")).unwrap();
    photo(4, 3).save(src.join("JPEGImages/stray.jpg")).unwrap();
    let msg = err_of(&src, &out, &names());
    contextrast_model::testing::assert_mentions(&msg, &["stray.jpg", "no mask"]);
}

#[test]
fn default_txt_selects_and_orders_items_and_missing_entries_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (src, out) = (dir.path().join("cvat"), dir.path().join("set"));
    simple_export(&src, &["a", "b", "c"]);
    let list_dir = src.join("ImageSets/Segmentation");
    std::fs::create_dir_all(&list_dir).unwrap();
    std::fs::write(list_dir.join("default.txt"), "c\na\n").unwrap();
    let report = import_cvat(&src, &classes(), &out, &names()).unwrap();
    assert_eq!(report.images, 2);
    assert_eq!(lines(&out.join("train.txt")), ["c", "a"]);
    assert!(!out.join("images/b.jpg").exists());

    std::fs::write(list_dir.join("default.txt"), "ghost\n").unwrap();
    let msg = err_of(&src, &dir.path().join("set2"), &names());
    contextrast_model::testing::assert_mentions(&msg, &["ghost", "default.txt"]);
}

#[test]
fn corrupt_mask_png_is_an_image_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (src, out) = (dir.path().join("cvat"), dir.path().join("set"));
    simple_export(&src, &["a"]);
    let path = src.join("SegmentationClass/a.png");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = import_cvat(&src, &classes(), &out, &names()).unwrap_err();
    assert!(matches!(err, Error::Image { .. }), "{err:?}");
    assert!(err.to_string().contains("a.png"), "{err}");
}

#[test]
fn val_every_sends_every_kth_image_to_val() {
    let dir = tempfile::tempdir().unwrap();
    let (src, out) = (dir.path().join("cvat"), dir.path().join("set"));
    simple_export(&src, &["a", "b", "c", "d", "e"]);
    let opts = ImportOptions { val_every: Some(2) };
    import_cvat_with(&src, &classes(), &out, &names(), &opts).unwrap();
    assert_eq!(lines(&out.join("train.txt")), ["a", "c", "e"]);
    assert_eq!(lines(&out.join("val.txt")), ["b", "d"]);
    let ds = Dataset::open(&out).unwrap();
    assert_eq!((ds.train.len(), ds.val.len()), (3, 2));

    let zero = ImportOptions { val_every: Some(0) };
    let msg = import_cvat_with(&src, &classes(), &dir.path().join("x"), &names(), &zero)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("val_every"), "{msg}");
}

#[test]
fn appends_to_an_existing_dataset_and_refuses_duplicate_names() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("set");
    let (first, second) = (dir.path().join("cvat1"), dir.path().join("cvat2"));
    simple_export(&first, &["a", "b"]);
    simple_export(&second, &["c"]);
    import_cvat(&first, &classes(), &out, &names()).unwrap();
    let opts = ImportOptions { val_every: Some(1) };
    let report = import_cvat_with(&second, &classes(), &out, &names(), &opts).unwrap();
    assert_eq!(report.images, 1);
    assert_eq!(lines(&out.join("train.txt")), ["a", "b"]);
    assert_eq!(lines(&out.join("val.txt")), ["c"]);
    assert_eq!(Dataset::open(&out).unwrap().len(), 3);

    let before = lines(&out.join("train.txt"));
    let msg = err_of(&first, &out, &names());
    assert!(msg.contains("a.jpg") && msg.contains("already"), "{msg}");
    assert_eq!(lines(&out.join("train.txt")), before);
    assert_eq!(Dataset::open(&out).unwrap().len(), 3);
}

#[test]
fn existing_images_without_split_lists_stay_in_train() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("set");
    let (first, second) = (dir.path().join("cvat1"), dir.path().join("cvat2"));
    simple_export(&first, &["a", "b"]);
    simple_export(&second, &["c", "d"]);
    import_cvat(&first, &classes(), &out, &names()).unwrap();
    std::fs::remove_file(out.join("train.txt")).unwrap();
    let opts = ImportOptions { val_every: Some(2) };
    import_cvat_with(&second, &classes(), &out, &names(), &opts).unwrap();
    assert_eq!(lines(&out.join("train.txt")), ["a", "b", "c"]);
    assert_eq!(lines(&out.join("val.txt")), ["d"]);
}

#[test]
fn existing_classes_toml_must_match_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let (src, out) = (dir.path().join("cvat"), dir.path().join("set"));
    simple_export(&src, &["a"]);
    let mut other = classes();
    other.classes.swap(0, 1);
    other.save(out.join("classes.toml")).unwrap();
    let msg = err_of(&src, &out, &names());
    contextrast_model::testing::assert_mentions(&msg, &["classes.toml", "differ"]);
}

#[test]
fn labelmap_parsing_accepts_colons_in_names_and_rejects_bad_colours() {
    let p = Path::new("labelmap.txt");
    let labels = parse_labelmap(p, "# header\n\na:b:1,2,3::\nplain:4,5,6\n").unwrap();
    assert_eq!(
        labels,
        [
            Label {
                name: "a:b".into(),
                color: [1, 2, 3]
            },
            Label {
                name: "plain".into(),
                color: [4, 5, 6]
            }
        ]
    );
    for (text, want) in [
        ("x:1,2::\n", "line 1"),
        ("x:1,2,300::\n", "x"),
        ("x:1,2,3::\nX:4,5,6::\n", "twice"),
        ("# only a header\n", "no labels"),
        ("justaname\n", "line 1"),
    ] {
        let msg = parse_labelmap(p, text).unwrap_err().to_string();
        assert!(
            msg.contains("labelmap.txt") && msg.contains(want),
            "{text:?}: {msg}"
        );
    }
}

#[test]
fn labels_sharing_a_colour_must_agree() {
    let dir = tempfile::tempdir().unwrap();
    let (src, out) = (dir.path().join("cvat"), dir.path().join("set"));
    let labelmap = format!("{LABELMAP}pit:0,255,0::\n");
    write_export(&src, &labelmap, &[("a", colour_mask(), photo(4, 3), "jpg")]);
    let msg = err_of(&src, &out, &names());
    assert!(msg.contains("share colour"), "{msg}");
}

#[test]
fn name_map_parses_toml_and_rejects_case_conflicts() {
    let p = Path::new("names.toml");
    let m = NameMap::from_toml("Kratzer = \"scratch\"\n\"Hinter grund\" = \"belt\"\n", p).unwrap();
    assert_eq!(m.get(" kratzer"), Some("scratch"));
    assert_eq!(m.get("HINTER GRUND"), Some("belt"));
    assert_eq!(m.len(), 2);
    let msg = NameMap::from_toml("A = \"x\"\na = \"y\"\n", p)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("names.toml") && msg.contains("twice"), "{msg}");
    let msg = NameMap::from_toml("A = 3\n", p).unwrap_err().to_string();
    assert!(msg.contains("names.toml"), "{msg}");
    // The same target spelled differently is not a conflict.
    NameMap::from_toml("A = \"x\"\na = \"X\"\n", p).unwrap();
}
