//! EDT parity with `scipy.ndimage.distance_transform_edt(mask) ** 2`, through
//! scripts/edt_reference.py in the project venv `.venv` (CI creates it from
//! scripts/requirements-bane.txt). Without the venv or scipy the test says so and is skipped.
use super::edt::{NO_BACKGROUND, edt_squared};
use super::test_util::Rng;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Case {
    name: String,
    h: usize,
    w: usize,
    mask: Vec<bool>,
}

fn case(name: impl Into<String>, h: usize, w: usize, f: impl Fn(usize, usize) -> bool) -> Case {
    let mask = (0..h * w).map(|p| f(p / w, p % w)).collect();
    Case {
        name: name.into(),
        h,
        w,
        mask,
    }
}

fn cases() -> Vec<Case> {
    let mut rng = Rng::new(7);
    let mut v = Vec::new();
    for &(h, w) in &[
        (16, 16),
        (7, 31),
        (31, 7),
        (1, 40),
        (40, 1),
        (50, 64),
        (3, 2),
    ] {
        for &d in &[0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99] {
            let mask = rng.mask(h * w, d);
            v.push(Case {
                name: format!("random {h}×{w} density {d}"),
                h,
                w,
                mask,
            });
        }
        v.push(case(format!("empty {h}×{w}"), h, w, |_, _| false));
        v.push(case(format!("one pixel {h}×{w}"), h, w, |y, x| {
            (y, x) == (h / 2, w / 2)
        }));
        v.push(case(format!("all but one {h}×{w}"), h, w, |y, x| {
            (y, x) != (h / 3, w / 3)
        }));
        v.push(case(format!("all but a corner {h}×{w}"), h, w, |y, x| {
            (y, x) != (h - 1, w - 1)
        }));
        v.push(case(format!("row line {h}×{w}"), h, w, |y, _| y == h / 2));
        v.push(case(format!("column line {h}×{w}"), h, w, |_, x| {
            x == w / 2
        }));
        v.push(case(format!("diagonal {h}×{w}"), h, w, |y, x| y == x));
        v.push(case(format!("anti-diagonal {h}×{w}"), h, w, |y, x| {
            y + x == w.min(h)
        }));
        v.push(case(format!("frame {h}×{w}"), h, w, |y, x| {
            y == 0 || x == 0 || y == h - 1 || x == w - 1
        }));
        v.push(case(
            format!("cross to every border {h}×{w}"),
            h,
            w,
            |y, x| y == h / 2 || x == w / 2,
        ));
        v.push(case(
            format!("all but a diagonal {h}×{w}"),
            h,
            w,
            |y, x| y != x,
        ));
        v.push(case(format!("checkerboard {h}×{w}"), h, w, |y, x| {
            (y + x).is_multiple_of(2)
        }));
    }
    v
}

/// The venv's python if it has numpy and scipy; otherwise why not.
fn reference_python(root: &Path) -> Result<PathBuf, String> {
    let py = root.join(".venv/bin/python");
    if !py.exists() {
        return Err(format!("{} does not exist", py.display()));
    }
    let ok = Command::new(&py)
        .args(["-c", "import numpy, scipy.ndimage"])
        .status();
    match ok {
        Ok(s) if s.success() => Ok(py),
        _ => Err(format!("{} cannot import numpy and scipy", py.display())),
    }
}

#[test]
fn matches_scipy() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let py = match reference_python(&root) {
        Ok(py) => py,
        Err(why) => {
            eprintln!(
                "SKIPPED edt scipy parity: {why}; create it with `python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements-bane.txt`"
            );
            return;
        }
    };
    let cases = cases();
    let dir = tempfile::tempdir().unwrap();
    let mut header = Vec::new();
    let mut bytes = Vec::new();
    for c in &cases {
        header
            .push(serde_json::json!({ "name": c.name, "h": c.h, "w": c.w, "offset": bytes.len() }));
        bytes.extend(c.mask.iter().map(|&b| u8::from(b)));
    }
    std::fs::write(
        dir.path().join("cases.json"),
        serde_json::to_vec(&header).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.path().join("masks.bin"), &bytes).unwrap();
    let out = Command::new(&py)
        .arg(root.join("scripts/edt_reference.py"))
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "edt_reference.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = std::fs::read(dir.path().join("edt.bin")).unwrap();
    assert_eq!(raw.len(), bytes.len() * 4);
    let scipy: Vec<u32> = raw
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();

    let (mut offset, mut compared) = (0, 0);
    for c in &cases {
        let ours = edt_squared(&c.mask, c.h, c.w).unwrap();
        let theirs = &scipy[offset..offset + c.h * c.w];
        offset += c.h * c.w;
        if c.mask.iter().all(|&m| m) {
            // A full mask has no background: scipy's numbers there are an artifact, ours a flag.
            assert!(ours.iter().all(|&d| d == NO_BACKGROUND), "{}", c.name);
            continue;
        }
        compared += 1;
        assert_eq!(ours, theirs, "{}", c.name);
    }
    // Only a handful of the cases are full masks (frames and crosses of 1-pixel-wide images).
    assert!(
        compared > 110,
        "compared only {compared} of {} cases",
        cases.len()
    );
}
